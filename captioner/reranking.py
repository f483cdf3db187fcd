"""Re-ranking a search's candidates after it ends, with a part of the model the search does not use.

A re-ranker is chosen by name (the ``rerank`` config group) and given to the
:class:`~captioner.api.Captioner`; the search knows nothing of it. It says what it needs from the
search (``search_options``: e.g. all the beam's candidates) and orders each image's candidates again.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import replace

import torch

from captioner.decode_options import DecodeOptions
from captioner.decoding import Hypothesis
from captioner.errors import CaptionerError


class BidirectionalReranking:
    """The beam's candidates ordered by forward log-prob + ``weight`` x the log-prob the reverse decoder
    gives the caption read backwards (Wang et al., ACM MM 2016, "Image Captioning with Deep
    Bidirectional LSTMs"): a model trained with ``model.decoder.bidirectional=true``."""

    def __init__(self, weight: float = 1.0):
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise CaptionerError(f"rerank.weight must be a number, got {weight}")
        self.weight = weight

    def check(self, decoder) -> None:
        """Raise CaptionerError unless ``decoder`` has the reverse decoder this needs."""
        if decoder.reverse is None:
            raise CaptionerError("rerank=bidirectional needs a model trained with model.decoder.bidirectional=true")

    def search_options(self, options: DecodeOptions) -> DecodeOptions:
        """What the search is asked for: every one of the beam's candidates (the best ``num_captions`` of them
        are kept after re-ranking)."""
        if options.strategy != "beam":
            raise CaptionerError("rerank=bidirectional re-ranks a beam's candidates: decode.strategy=beam")
        return replace(options, num_captions=options.beam_size)

    def __call__(self, decoder, features: torch.Tensor, candidates: list[list[Hypothesis]], bos: int,
                 eos: int) -> list[list[Hypothesis]]:
        """Each image's candidates (its features (B, F), the same number per image) in their new order."""
        self.check(decoder)
        beams = len(candidates[0])
        backward = reverse_log_probs(decoder.reverse, features.repeat_interleave(beams, dim=0),
                                     [h.tokens for image in candidates for h in image], bos, eos)  # (B * K,)
        forward = torch.tensor([[h.log_prob for h in image] for image in candidates], device=features.device)
        order = (forward + self.weight * backward.view(-1, beams)).argsort(dim=1, descending=True, stable=True)
        return [[image[k] for k in ranks] for image, ranks in zip(candidates, order.tolist())]


@torch.no_grad()
def reverse_log_probs(reverse, features: torch.Tensor, captions: list[list[int]], bos: int, eos: int) -> torch.Tensor:
    """The reverse decoder's log-probability of each caption (word ids) read backwards, <eos> included,
    with the logits formed as decoding forms them -> (N,)."""
    backwards = [caption[::-1] + [eos] for caption in captions]
    width = max(len(b) for b in backwards)
    targets = torch.tensor([b + [eos] * (width - len(b)) for b in backwards], device=features.device)  # (N, T)
    inputs = torch.cat([torch.full_like(targets[:, :1], bos), targets[:, :-1]], dim=1)
    chosen = reverse.decoding_logits(features, inputs).float().log_softmax(-1).gather(2, targets.unsqueeze(2))
    lengths = torch.tensor([len(b) for b in backwards], device=features.device)
    inside = torch.arange(width, device=features.device) < lengths.unsqueeze(1)  # (N, T)
    return (chosen.squeeze(2) * inside).sum(1)


RERANKERS: dict[str, type | None] = {"none": None, "bidirectional": BidirectionalReranking}


def reranker(name: str = "none", **options) -> BidirectionalReranking | None:
    """The re-ranker called ``name`` with its options (the ``rerank`` config group); None for ``none``."""
    if name not in RERANKERS:
        raise CaptionerError(f"unknown rerank {name!r}; choose one of: {', '.join(RERANKERS)}")
    kind = RERANKERS[name]
    if kind is None:
        if options:
            raise CaptionerError(f"rerank=none takes no options, got {', '.join(options)}")
        return None
    allowed = inspect.signature(kind).parameters
    unknown = [option for option in options if option not in allowed]
    if unknown:
        raise CaptionerError(f"rerank.{unknown[0]}: rerank={name} takes {', '.join(allowed)}")
    return kind(**options)
