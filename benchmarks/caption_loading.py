"""Captioning photo-sized JPEGs: loading alone, the model alone, and both, sequential and with loader workers.

    .venv/bin/python benchmarks/caption_loading.py [--images 1000] [--encoders mobilenet_v3_small resnet50]

The benchmark set is made once in a temporary folder: 640x480 JPEGs cut at random from the real
photos in ../shared/media/photos. The models are untrained (weights=null: speed does not depend on
the weights), 224 px, a 1-layer LSTM 512 over a 1000-word vocabulary, greedy, captions cut at 16
words. Compare the rates within one run.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from captioner import Captioner
from captioner.data.loading import default_workers, load_images
from captioner.data.transforms import Preprocess
from captioner.models.model import CaptionModel
from captioner.vocab import SPECIALS, Vocabulary

PHOTOS = Path(__file__).resolve().parents[1].parent / "shared" / "media" / "photos"


def make_jpegs(folder: Path, count: int) -> list[Path]:
    photos = [Image.open(p).convert("RGB") for p in sorted(PHOTOS.iterdir()) if p.suffix in (".png", ".jpg")]
    rng = random.Random(0)
    paths = []
    for i in range(count):
        photo = rng.choice(photos)
        scale = rng.uniform(1.0, 1.6)
        big = photo.resize((round(640 * scale), round(480 * scale)), Image.Resampling.BICUBIC)
        left, top = rng.randrange(big.width - 639), rng.randrange(big.height - 479)
        path = folder / f"{i:05d}.jpg"
        big.crop((left, top, left + 640, top + 480)).save(path, quality=90)
        paths.append(path)
    return paths


def untrained_captioner(encoder: str) -> Captioner:
    torch.manual_seed(0)
    vocab = Vocabulary(list(SPECIALS) + [f"w{i}" for i in range(996)])
    model = CaptionModel(len(vocab), {"name": encoder, "grid_size": 1},
                         {"cell": "lstm", "embed_dim": 512, "hidden_dim": 512})
    return Captioner(model, vocab, Preprocess(224), max_length=16)


def rate(count: int, run) -> float:
    started = time.perf_counter()
    run()
    return count / (time.perf_counter() - started)


def command_seconds(checkpoint: Path, images: Path, out: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "captioner.cli.caption", f"checkpoint={checkpoint}", f"input={images}",
                    f"output={out}"], check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--encoders", nargs="*", default=["mobilenet_v3_small", "resnet50"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        (work / "images").mkdir()
        (work / "one").mkdir()
        paths = make_jpegs(work / "images", args.images)
        (work / "one" / "0.jpg").write_bytes(paths[0].read_bytes())
        print(f"{len(paths)} JPEGs of 640x480, {torch.get_num_threads()} threads, "
              f"{default_workers()} loader workers by default\n")
        print("| encoder | loading only | model only | sequential (0 workers) | with workers | "
              "`captioner-caption` (start-up subtracted) | start-up s |")
        print("|---|---|---|---|---|---|---|")
        transform = Preprocess(224).transform()
        loading = rate(len(paths), lambda: [None for _ in load_images(paths, transform, 32)])
        for encoder in args.encoders:
            captioner = untrained_captioner(encoder)
            pixels = torch.cat([b.pixels for b in load_images(paths[:128], transform, 32, num_workers=0)])
            model = rate(len(pixels), lambda: captioner.caption(pixels, 32))
            sequential = rate(len(paths), lambda: list(captioner.caption_results(paths, num_workers=0)))
            workers = rate(len(paths), lambda: list(captioner.caption_results(paths)))
            captioner.save(work / f"{encoder}.pt")
            startup = command_seconds(work / f"{encoder}.pt", work / "one", work / "one.jsonl")
            whole = command_seconds(work / f"{encoder}.pt", work / "images", work / "all.jsonl")
            print(f"| {encoder} | {loading:.0f} | {model:.0f} | {sequential:.1f} | {workers:.1f} "
                  f"({workers / sequential:.2f}x) | {len(paths) / (whole - startup):.1f} | {startup:.1f} |", flush=True)


if __name__ == "__main__":
    main()
