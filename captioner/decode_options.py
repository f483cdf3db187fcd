"""How captions are searched for: the ``decode`` config group, checked as it is built.

Apart from :mod:`captioner.decoding` so that the commands can check it before ``torch`` is imported."""

from __future__ import annotations

import math
from dataclasses import dataclass

from captioner.errors import CaptionerError


@dataclass(frozen=True)
class DecodeOptions:
    """How captions are searched for (the ``decode`` config group)."""

    strategy: str = "beam"  # beam (beam_size 1: greedy) | sample
    beam_size: int = 1
    max_length: int | None = None  # words per caption (None: the checkpoint's limit)
    length_penalty: float = 0.0  # GNMT alpha: log-prob / ((5 + length) / 6) ** alpha; 0: plain log-prob
    no_repeat_ngram_size: int = 0  # forbid repeating any n-gram of this many words (0: allow)
    suppress_unk: bool = True  # never emit <unk>
    num_captions: int = 1  # captions returned per image, best first (beam: <= beam_size)
    temperature: float = 1.0  # sampling only
    top_k: int = 0  # sampling only: keep the k most likely words (0: all)
    top_p: float = 1.0  # sampling only: keep the smallest set of words with this much probability
    seed: int | None = 0  # sampling only: None draws a fresh seed
    amp: bool = True  # autocast where the device has fast low precision (bf16/fp16 on CUDA, bf16 on CPUs with it)

    def __post_init__(self):
        checks = [
            (self.strategy in ("beam", "sample"), f"decode.strategy must be beam or sample, got {self.strategy!r}"),
            (self.beam_size >= 1, f"decode.beam_size must be >= 1, got {self.beam_size}"),
            (self.max_length is None or self.max_length >= 1, f"decode.max_length must be >= 1, got {self.max_length}"),
            (self.num_captions >= 1, f"decode.num_captions must be >= 1, got {self.num_captions}"),
            (self.strategy == "sample" or self.num_captions <= self.beam_size,
             f"decode.num_captions ({self.num_captions}) cannot exceed decode.beam_size ({self.beam_size})"),
            (math.isfinite(self.temperature) and self.temperature > 0,
             f"decode.temperature must be a number > 0, got {self.temperature}"),
            (math.isfinite(self.length_penalty), f"decode.length_penalty must be a number, got {self.length_penalty}"),
            (0 < self.top_p <= 1, f"decode.top_p must be in (0, 1], got {self.top_p}"),
            (self.top_k >= 0 and self.no_repeat_ngram_size >= 0,
             "decode.top_k and decode.no_repeat_ngram_size must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise CaptionerError(message)
