"""Captions per second with beam search: a batch of images at once vs one image at a time.

    .venv/bin/python benchmarks/decode_speed.py [--checkpoint outputs/demo/model.pt] [--images 128]

Same model, same preprocessed synthetic test images (decoding cost only, no file reading); the
captions of both ways are checked to be identical.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from captioner import Captioner
from captioner.data.formats import split_records
from captioner.data.loading import load_images
from captioner.synthetic.dataset import synthetic_dataset


def captions_per_second(captioner: Captioner, pixels: torch.Tensor, beam_size: int,
                        batch_size: int, repeats: int = 3) -> tuple[float, list[str]]:
    """The best of ``repeats`` runs (the machines are noisy; the best run is the least disturbed)."""
    best = float("inf")
    for _ in range(repeats):
        captions: list[str] = []
        started = time.perf_counter()
        for start in range(0, len(pixels), batch_size):
            captions += captioner.caption(pixels[start : start + batch_size], batch_size, beam_size=beam_size)
        best = min(best, time.perf_counter() - started)
    return len(pixels) / best, captions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="outputs/demo/model.pt", help="a trained model (make demo writes one)")
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    if not Path(args.checkpoint).is_file():
        raise SystemExit(f"{args.checkpoint}: not found; run `make demo` first or pass --checkpoint")
    captioner = Captioner.load(args.checkpoint)
    records = split_records(synthetic_dataset(), "test")[: args.images]
    pixels = torch.cat([batch.pixels for batch in load_images([r.path for r in records], captioner.transform,
                                                              num_workers=0)])
    captioner.caption(pixels[:8], beam_size=3)  # warm-up
    print(f"{len(pixels)} images, {torch.get_num_threads()} threads, checkpoint {args.checkpoint}")
    print(f"| beam | batch {args.batch_size} (captions/s) | one at a time (captions/s) | speed-up | identical |")
    print("|---|---|---|---|---|")
    for beam_size in (3, 5):
        batched, batched_captions = captions_per_second(captioner, pixels, beam_size, args.batch_size)
        single, single_captions = captions_per_second(captioner, pixels, beam_size, 1)
        same = batched_captions == single_captions
        print(f"| {beam_size} | {batched:.0f} | {single:.1f} | {batched / single:.1f}x | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
