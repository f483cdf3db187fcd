"""The CIDEr-D reward equals pycocoevalcap's CIDEr-D on the same captions and corpus."""

from __future__ import annotations

import random

import numpy as np
from pycocoevalcap.cider.cider_scorer import CiderScorer

from captioner.rewards import CiderD, ngram_counts
from captioner.vocab import Vocabulary, tokenize


def test_ngram_counts():
    assert ngram_counts([1, 2, 1, 2], 2) == {(1,): 2, (2,): 2, (1, 2): 2, (2, 1): 1}


def test_the_reward_equals_pycocoevalcap_cider_d(tiny_records):
    vocab = Vocabulary.build(c for r in tiny_records for c in r.captions)
    rng = random.Random(0)
    references = [[vocab.encode(c, 30)[1:-1] for c in r.captions] for r in tiny_records]
    candidates = []
    for refs in references:  # its own reference, another image's, shuffled words, a short one and an empty one
        candidates += [rng.choice(refs), rng.choice(rng.choice(references)), rng.sample(refs[0], len(refs[0])),
                       refs[1][:2], []]
    candidate_refs = [refs for refs in references for _ in range(5)]
    ours = CiderD(references).scores(candidates, candidate_refs)
    theirs = []
    for k in range(5):  # pycocoevalcap takes document frequencies from the references it scores: the same corpus
        scorer = CiderScorer(n=4, sigma=6.0)
        for candidate, refs in zip(candidates[k::5], references):
            scorer += (" ".join(vocab.words[i] for i in candidate), [" ".join(vocab.words[i] for i in r) for r in refs])
        theirs.append(scorer.compute_score()[1])
    theirs = np.stack(theirs, axis=1).reshape(-1)
    assert np.abs(ours - theirs).max() < 1e-6 and ours.max() > 1.0 and ours.min() == 0.0
    assert all(tokenize(" ".join(vocab.words[i] for i in c)) == [vocab.words[i] for i in c] for c in candidates)

