"""Milliseconds per batch of the CIDEr-D reward that self-critical training computes each step.

    .venv/bin/python benchmarks/reward_speed.py [--images 32] [--samples 5] [--repeats 200]

The document frequencies come from the synthetic training split's references (8,000 images x 5
captions), as ``trainer.objective=scst`` builds them; each of ``images`` training images gets
``samples`` candidates: another image's reference with its words shuffled (captions of the usual
length and vocabulary, few n-grams in common with the references, as early sampled captions).
Prints the first batch (every reference's vector computed) and the median and best of the rest;
for scale, pycocoevalcap's ``CiderScorer`` on the same batch (which also counts the document
frequencies of the batch's references, so it does more).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from pycocoevalcap.cider.cider_scorer import CiderScorer

from captioner.data.formats import split_records
from captioner.rewards import CiderD
from captioner.synthetic.dataset import synthetic_dataset
from captioner.vocab import Vocabulary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()

    train = split_records(synthetic_dataset(), "train")
    vocab = Vocabulary.build(c for r in train for c in r.captions)
    references = [[vocab.encode(c, 30)[1:-1] for c in r.captions] for r in train]
    reward = CiderD(references)
    rng = random.Random(0)

    def batch() -> tuple[list, list]:
        images = rng.sample(range(len(references)), args.images)
        refs = [references[i] for i in images for _ in range(args.samples)]
        candidates = [rng.sample(c, len(c)) for c in (rng.choice(rng.choice(references)) for _ in refs)]
        return candidates, refs

    candidates, refs = batch()
    started = time.perf_counter()
    reward.scores(candidates, refs)
    first = time.perf_counter() - started
    times = []
    for _ in range(args.repeats):
        candidates, refs = batch()
        started = time.perf_counter()
        reward.scores(candidates, refs)
        times.append(time.perf_counter() - started)

    scorer = CiderScorer(n=4, sigma=6.0)
    for candidate, image_refs in zip(candidates, refs):
        scorer += (vocab.decode(candidate), [vocab.decode(r) for r in image_refs])
    started = time.perf_counter()
    scorer.compute_score()
    theirs = time.perf_counter() - started

    print(f"CIDEr-D reward, {args.images} images x {args.samples} samples, document frequencies of "
          f"{len(references)} training images")
    print(f"  first batch {first * 1000:.1f} ms; then median {statistics.median(times) * 1000:.1f} ms, "
          f"best {min(times) * 1000:.1f} ms over {args.repeats} batches")
    print(f"  pycocoevalcap CiderScorer on the last batch: {theirs * 1000:.1f} ms")


if __name__ == "__main__":
    main()
