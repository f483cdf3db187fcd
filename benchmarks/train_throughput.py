"""Training throughput (images/s) on the synthetic data, demo model, for the data-loading settings.

    .venv/bin/python benchmarks/train_throughput.py [--steps 60]

Each setting trains the demo recipe's model for ``--steps`` optimizer steps from scratch (the same
seed) and reports the images per second of the training loop (validation excluded).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile

import torch

from captioner.api import Captioner
from captioner.data.build_synthetic import synthetic_dataset
from captioner.data.formats import split_records
from captioner.data.transforms import Preprocess
from captioner.models.captioner import CaptionModel
from captioner.training import Trainer, TrainerConfig
from captioner.vocab import Vocabulary

DEMO = TrainerConfig(device="cpu", batch_size=32, lr=3e-3, encoder_lr=1e-3, warmup_steps=50, max_epochs=1)
SETTINGS = {
    "demo (5 captions per image per step, no workers, bf16, channels-last)": {},
    "one caption per image per epoch": {"captions_per_image": "one"},
    "1 DataLoader worker": {"num_workers": 1},
    "fp32 (no autocast)": {"amp": False},
    "no channels-last": {"channels_last": False},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    records = synthetic_dataset()
    train, val = split_records(records, "train"), split_records(records, "val")[:32]
    vocab = Vocabulary.build(c for r in train for c in r.captions)
    print(f"{args.steps} steps of batch {DEMO.batch_size}, {torch.get_num_threads()} threads\n")
    print("| setting | images/s |\n|---|---|")
    for name, change in SETTINGS.items():
        torch.manual_seed(0)
        model = CaptionModel(len(vocab), {"name": "resnet18", "stage": "layer3", "grid_size": 2},
                             {"embed_dim": 128, "hidden_dim": 256})
        config = dataclasses.replace(DEMO, max_steps=args.steps, **change)
        with tempfile.TemporaryDirectory() as out:
            metrics = Trainer(Captioner(model, vocab, Preprocess(64)), train, val, config, out).fit()
        print(f"| {name} | {metrics['train_images_per_second']:.0f} |")


if __name__ == "__main__":
    main()
