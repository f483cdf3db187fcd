"""Caption search over any decoder with ``initial_state(features)`` and ``step(tokens, state)``."""

from __future__ import annotations

import torch


@torch.no_grad()
def greedy_decode(decoder, features: torch.Tensor, bos: int, eos: int, max_length: int) -> torch.Tensor:
    """The most likely word at each step: features (B, F) -> token ids (B, <= max_length)."""
    batch = features.shape[0]
    state = decoder.initial_state(features)
    tokens = torch.full((batch,), bos, dtype=torch.long, device=features.device)  # (B,)
    finished = torch.zeros(batch, dtype=torch.bool, device=features.device)  # (B,)
    outputs = []
    for _ in range(max_length):
        logits, state = decoder.step(tokens, state)  # (B, V)
        tokens = logits.argmax(dim=-1).masked_fill(finished, eos)  # (B,)
        outputs.append(tokens)
        finished |= tokens == eos
        if finished.all():
            break
    return torch.stack(outputs, dim=1)  # (B, T)
