"""Where a trained model loses the held-out colour-shape pairs: its word detector or its captions.

    .venv/bin/python benchmarks/novel_pairs.py [--checkpoint outputs/demo/model.pt]

On the single-object images of the synthetic test split, for pairs seen in training and for the
held-out (novel) pairs, this counts how often (a) the word head, which predicts from the image
which words its captions use, rates the right shape highest (synonyms merged), and (b) the greedy
caption names the right colour and shape.
"""

from __future__ import annotations

import argparse
from collections import Counter

import torch

from captioner import Captioner
from captioner.data.formats import split_records
from captioner.data.images import load_image
from captioner.synthetic.dataset import synthetic_dataset
from captioner.synthetic.scenes import SHAPE_WORDS, Scene, caption_matches_scene


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="outputs/demo/model.pt")
    args = parser.parse_args()
    captioner = Captioner.load(args.checkpoint)
    singles = [r for r in split_records(synthetic_dataset(), "test") if len(r.extra["attributes"]["objects"]) == 1]
    pixels = torch.stack([captioner.transform(load_image(r.path)) for r in singles])
    model, index = captioner.model.eval(), captioner.vocab.index
    with torch.no_grad():
        word_probs = model.decoder.word_logits(model.encoder(pixels)).sigmoid()  # (N, V)
    captions = captioner.caption(pixels, len(pixels))  # the images decoded once, above
    count, detector_right, caption_right = Counter(), Counter(), Counter()
    for record, probs, caption in zip(singles, word_probs, captions):
        kind = "novel" if record.extra["attributes"].get("novel") else "seen"
        score = {shape: max(probs[index[w]].item() for w in words) for shape, words in SHAPE_WORDS.items()}
        count[kind] += 1
        detector_right[kind] += max(score, key=score.get) == record.extra["attributes"]["objects"][0]["shape"]
        caption_right[kind] += caption_matches_scene(caption, Scene.from_json(record.extra["attributes"]))
    print(f"{args.checkpoint}: single-object test images\n")
    print("| pairs | images | word head rates the right shape highest | caption right |\n|---|---|---|---|")
    for kind in ("seen", "novel"):
        print(f"| {kind} | {count[kind]} | {detector_right[kind]} | {caption_right[kind]} |")


if __name__ == "__main__":
    main()
