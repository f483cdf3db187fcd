"""Tokenizer and vocabulary: plain lists of strings, safe to store in a checkpoint."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize(text: str) -> list[str]:
    """Lower-case words and numbers; punctuation dropped (as the Karpathy splits' tokens)."""
    return _WORD.findall(text.lower())


class Vocabulary:
    """Maps words to ids. Ids 0-3 are ``<pad> <bos> <eos> <unk>``."""

    def __init__(self, words: Sequence[str]):
        if tuple(words[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary must start with {SPECIALS}, got {list(words[:4])}")
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise ValueError("a vocabulary must not repeat words")
        self.pad, self.bos, self.eos, self.unk = (self.index[s] for s in SPECIALS)

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 1) -> Vocabulary:
        """Words seen at least ``min_count`` times, most frequent first (ties alphabetical)."""
        counts = Counter(w for caption in captions for w in tokenize(caption))
        kept = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        return cls(list(SPECIALS) + kept)

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, caption: str, max_length: int) -> list[int]:
        """``<bos> w1 .. wn <eos>`` with at most ``max_length`` words."""
        ids = [self.index.get(w, self.unk) for w in tokenize(caption)[:max_length]]
        return [self.bos, *ids, self.eos]

    def decode(self, ids: Iterable[int]) -> str:
        """Words up to the first ``<eos>``; ``<bos>`` and ``<pad>`` skipped."""
        words = []
        for i in ids:
            if i == self.eos:
                break
            if i not in (self.bos, self.pad):
                words.append(self.words[i])
        return " ".join(words)
