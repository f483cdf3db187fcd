"""Training with a frozen encoder: an epoch that runs the encoder on every image vs one that reads the feature cache.

    .venv/bin/python benchmarks/feature_cache.py [--images 1000] [--epochs 2] [--encoder resnet50]

The benchmark set of caption_loading.py (640x480 JPEGs cut from ../shared/media/photos), five
made-up 12-word captions per image over a 1000-word vocabulary; coco_show_tell's model (the
encoder at 224 px, untrained: weights=null, speed does not depend on them; pooled to one vector;
an LSTM 512), batch 64, the trainer's defaults otherwise (bf16 autocast where the CPU has it).
Images/s of the training steps over ``--epochs`` epochs (validation not counted; the first steps'
warm-up weighs less than in one short epoch, as in a real run's 1,770 steps an epoch), and the
extraction's rate.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import torch
from caption_loading import make_jpegs

from captioner.data.formats import ImageRecord
from captioner.recipe import extract_features, train
from captioner.training_config import TrainerConfig

DECODER = {"cell": "lstm", "embed_dim": 512, "hidden_dim": 512, "dropout": 0.5}


def records(paths: list[Path]) -> list[ImageRecord]:
    rng = random.Random(0)
    words = [f"w{i}" for i in range(1000)]
    made = [ImageRecord(i, p, [" ".join(rng.choices(words, k=12)) for _ in range(5)], "train")
            for i, p in enumerate(paths)]
    return made + [ImageRecord(-1 - i, p, r.captions, "val") for i, (p, r) in enumerate(zip(paths[:16], made))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--encoder", default="resnet50")
    args = parser.parse_args()
    encoder = {"name": args.encoder, "weights": None, "grid_size": 1, "freeze": True}
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        (work / "images").mkdir()
        data = records(make_jpegs(work / "images", args.images))
        trainer = TrainerConfig(max_epochs=args.epochs, batch_size=64, monitor="val_loss", val_max_images=0,
                                feature_cache_dir=str(work / "cache"))
        started = time.perf_counter()
        rows = extract_features(data, encoder, trainer, image_size=224, splits=["train"])["train"]
        extraction = args.images / (time.perf_counter() - started)
        order = torch.randperm(args.images).tolist()
        started = time.perf_counter()
        [torch.stack([rows[i] for i in order[k : k + 64]]) for k in range(0, args.images, 64)]
        reading = args.images / (time.perf_counter() - started)
        rates = {}
        for name, cached in (("the frozen encoder on every image", False), ("the feature cache", True)):
            trainer.feature_cache = cached
            metrics = train(data, work / name, encoder, DECODER, trainer, image_size=224, vocab_min_count=1,
                            max_length=16, test_split=None)
            rates[name] = metrics["train_images_per_second"]
        print(f"\n{args.images} JPEGs of 640x480, {args.encoder} at 224 px, {args.epochs} epochs, "
              f"{torch.get_num_threads()} threads", file=sys.stderr)
        print("| training from | images/s | time per epoch |\n|---|---|---|")
        for name, value in rates.items():
            print(f"| {name} | {value:.1f} | {args.images / value:.1f} s |")
        print(f"\nfrom the cache: {rates['the feature cache'] / rates['the frozen encoder on every image']:.1f}x; "
              f"extraction (once): {extraction:.1f} images/s; reading the cached rows alone (batches of 64 in "
              f"random order): {reading:.0f} images/s")


if __name__ == "__main__":
    main()
