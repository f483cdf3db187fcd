"""CIDEr-D as a training reward: coco-caption's CIDEr-D on word ids, with document frequencies from
a fixed corpus (the training references), as self-critical training uses it (Rennie et al., 2017;
coco-caption's ``CiderD`` with ``df="corpus"``).

It follows pycocoevalcap's ``CiderScorer`` step for step (n-grams up to 4, tf-idf vectors per
n, clipped cosine similarity, the Gaussian length penalty with sigma 6 on its length, which is the
count of bigrams, times 10), so a score equals pycocoevalcap's on the same captions and corpus (a
test checks 1e-6). Only the corpus differs: pycocoevalcap takes document frequencies from the
evaluated references, a reward from the training set's, fixed for the whole run.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

Caption = Sequence[int]  # word ids, without <bos>, <eos> or padding


def ngram_counts(caption: Caption, n: int = 4) -> Counter:
    """Every n-gram of 1 to ``n`` words with its count."""
    words = tuple(caption)
    return Counter(words[i : i + k] for k in range(1, n + 1) for i in range(len(words) - k + 1))


class CiderD:
    """CIDEr-D of candidate captions against their references, with the document frequencies of
    ``corpus``: per image, its reference captions."""

    def __init__(self, corpus: Iterable[Sequence[Caption]], n: int = 4, sigma: float = 6.0):
        self.n, self.sigma = n, sigma
        document_frequency: Counter = Counter()
        images = 0
        for references in corpus:
            images += 1
            document_frequency.update({g for ref in references for g in ngram_counts(ref, n)})
        self.log_images = math.log(max(1, images))  # the idf of an n-gram no reference has
        self.idf = {gram: self.log_images - math.log(count) for gram, count in document_frequency.items()}

    def scores(self, candidates: Sequence[Caption], references: Sequence[Sequence[Caption]]) -> np.ndarray:
        """Candidate i's CIDEr-D against ``references[i]`` -> (len(candidates),)."""
        cache: dict[tuple, tuple] = {}  # the references of an image come once per sample of it
        result = np.zeros(len(candidates))
        for i, (candidate, refs) in enumerate(zip(candidates, references)):
            vector = self._vector(candidate)
            total = 0.0
            for ref in refs:
                key = tuple(ref)
                if key not in cache:
                    cache[key] = self._vector(ref)
                total += self._similarity(vector, cache[key])
            result[i] = total / self.n / len(refs) * 10.0  # the mean over n-gram lengths, over references
        return result

    def _vector(self, caption: Caption) -> tuple[list[dict], list[float], int]:
        """tf-idf per n-gram length, the norms, and the caption's length as CiderScorer counts it (bigrams)."""
        vector: list[dict] = [{} for _ in range(self.n)]
        norms = [0.0] * self.n
        length = 0
        for gram, count in ngram_counts(caption, self.n).items():
            order = len(gram) - 1
            weight = count * self.idf.get(gram, self.log_images)
            vector[order][gram] = weight
            norms[order] += weight * weight
            if order == 1:
                length += count
        return vector, [math.sqrt(v) for v in norms], length

    def _similarity(self, hypothesis: tuple, reference: tuple) -> float:
        """The clipped cosine similarities of each n-gram length, summed, times the length penalty."""
        (hyp, hyp_norms, hyp_length), (ref, ref_norms, ref_length) = hypothesis, reference
        total = 0.0
        for hyp_grams, ref_grams, hyp_norm, ref_norm in zip(hyp, ref, hyp_norms, ref_norms):
            value = 0.0
            for gram, weight in hyp_grams.items():
                other = ref_grams.get(gram)
                if other is not None:
                    value += min(weight, other) * other
            if hyp_norm != 0 and ref_norm != 0:
                value /= hyp_norm * ref_norm
            total += value
        return total * math.exp(-((hyp_length - ref_length) ** 2) / (2 * self.sigma**2))
