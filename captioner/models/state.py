"""The decoding state: what a search carries from step to step, as named fields that reorder together."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass(frozen=True)
class DecoderState:
    """What a search carries from step to step. Every tensor has the batch (images x beams) on
    dim 1, as the cell's own state, so one index reorders them all for the beams."""

    hidden: tuple[torch.Tensor, ...]  # (h,) or (h, c), each (num_layers, B, hidden_dim)
    image: torch.Tensor | None = None  # (1, B, image_input_dim): par-inject's projected image
    locations: torch.Tensor | None = None  # (L, B, C): the grid cells' features
    keys: torch.Tensor | None = None  # (L, B, attention_dim): their attention keys
    prior: torch.Tensor | None = None  # (1, B, V): the word prior's log-probabilities

    def map(self, function) -> DecoderState:
        """``function`` applied to every tensor."""
        return DecoderState(**{f.name: _apply(function, getattr(self, f.name)) for f in fields(self)})

    def reorder(self, index: torch.Tensor) -> DecoderState:
        """The rows ``index`` (N,) of the batch, e.g. the beams each new candidate extends."""
        return self.map(lambda t: t[:, index])

    def repeat_interleave(self, repeats: int) -> DecoderState:
        """Each row ``repeats`` times in a row: one state per beam."""
        return self.map(lambda t: t.repeat_interleave(repeats, dim=1))


def _apply(function, value):
    if value is None:
        return None
    return tuple(function(t) for t in value) if isinstance(value, tuple) else function(value)
