"""A dataset of COCO's shape in Karpathy's format, for measuring the COCO recipes at their real size.

    .venv/bin/python benchmarks/coco_standin.py /tmp/coco_standin [--distinct 2000]

123,287 images (113,287 train incl. restval / 5,000 val / 5,000 test), 5 captions each. Caption lengths
are 6 + Poisson(4.5) words (COCO's mean of ~10.5, its shortest ~6, a tail past 16); the words are
drawn from a Zipf distribution over 40,000 made-up words whose exponent is chosen so that ``min_count``
5 keeps ~9,500 of them, as it keeps 9,487 of COCO's. The images are photo-sized JPEGs (640x480,
quality 90: smooth shapes, gradients and grain, ~74 kB each where COCO's average ~160 kB): ``--distinct``
files, each hard-linked under many of the 123,287 names, so the folder takes ~150 MB instead of ~9 GB.
Written once; a second call with the same settings reuses it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

SPLITS = {"train": 82_783, "restval": 30_504, "val": 5_000, "test": 5_000}  # Karpathy's COCO split
CAPTIONS_PER_IMAGE, WORDS, KEPT_WORDS, MIN_COUNT = 5, 40_000, 9_500, 5
SIZE = (640, 480)


def made_up_words(count: int) -> list[str]:
    """``count`` distinct lower-case words of two or three syllables (what the tokenizer keeps)."""
    syllables = [onset + vowel for onset in "bdfgklmnprstvz" for vowel in "aeiou"]  # 70: base-70 digits
    return ["".join(syllables[d] for d in [n % 70, n // 70 % 70] + ([n // 4900] if n >= 4900 else []))
            for n in range(count)]


def zipf_exponent(tokens: int) -> float:
    """The exponent s of p(rank r) ~ r^-s over WORDS words for which ``tokens`` draws are expected to
    give KEPT_WORDS words at least MIN_COUNT times (a word's count is Poisson)."""
    ranks = np.arange(1, WORDS + 1, dtype=np.float64)
    low, high = 0.5, 3.0
    for _ in range(60):
        s = (low + high) / 2
        rates = tokens * ranks ** -s / (ranks ** -s).sum()  # each word's expected count
        below = sum(np.exp(-rates) * rates ** k / math.factorial(k) for k in range(MIN_COUNT))
        low, high = (s, high) if (1 - below).sum() > KEPT_WORDS else (low, s)
    return (low + high) / 2


def captions(count: int, rng: np.random.Generator) -> list[list[str]]:
    lengths = 6 + rng.poisson(4.5, count)
    train_tokens = int(lengths.mean() * (SPLITS["train"] + SPLITS["restval"]) * CAPTIONS_PER_IMAGE)
    weights = np.arange(1, WORDS + 1, dtype=np.float64) ** -zipf_exponent(train_tokens)
    words = np.array(made_up_words(WORDS))
    drawn = words[rng.choice(WORDS, size=int(lengths.sum()), p=weights / weights.sum())]
    ends = np.cumsum(lengths)
    return [list(drawn[end - n : end]) for end, n in zip(ends, lengths)]


def photo(rng: np.random.Generator) -> Image.Image:
    """A 640x480 picture with the statistics a JPEG encoder sees in a photo: smooth regions, edges, grain."""
    coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    image = np.asarray(Image.fromarray(coarse).resize(SIZE, Image.Resampling.BICUBIC), dtype=np.float32)
    for _ in range(rng.integers(3, 9)):  # a few flat shapes with edges
        x0, y0 = rng.integers(0, SIZE[0] - 60), rng.integers(0, SIZE[1] - 60)
        w, h = rng.integers(40, 260), rng.integers(40, 200)
        image[y0 : y0 + h, x0 : x0 + w] = rng.integers(0, 256, 3)
    image += rng.normal(0, 6, image.shape)
    return Image.fromarray(image.clip(0, 255).astype(np.uint8))


def write(folder: Path, distinct: int = 2000, seed: int = 0) -> Path:
    """The stand-in under ``folder``: ``dataset_coco.json`` and ``images/``; -> the split file."""
    split_file = folder / "dataset_coco.json"
    settings = folder / "settings.json"
    wanted = {"distinct": distinct, "seed": seed, "splits": SPLITS}
    if split_file.is_file() and settings.is_file() and json.loads(settings.read_text()) == wanted:
        return split_file
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    sources = folder / "distinct"
    sources.mkdir(parents=True, exist_ok=True)
    for n in range(distinct):
        photo(rng).save(sources / f"{n:05d}.jpg", quality=90)
    print(f"  {distinct} distinct 640x480 JPEGs: {time.perf_counter() - started:.0f} s, "
          f"{sum(p.stat().st_size for p in sources.iterdir()) / distinct / 1e3:.0f} kB each", flush=True)
    total = sum(SPLITS.values())
    texts = captions(total * CAPTIONS_PER_IMAGE, rng)
    entries = []
    image_id = 0
    for split, count in SPLITS.items():
        filepath = "train2014" if split == "train" else "val2014"
        (folder / "images" / filepath).mkdir(parents=True, exist_ok=True)
        for _ in range(count):
            filename = f"COCO_{filepath}_{image_id:012d}.jpg"
            target = folder / "images" / filepath / filename
            if not target.exists():
                os.link(sources / f"{image_id % distinct:05d}.jpg", target)
            sentences = [{"tokens": words, "raw": " ".join(words).capitalize() + "."}
                         for words in texts[image_id * CAPTIONS_PER_IMAGE : (image_id + 1) * CAPTIONS_PER_IMAGE]]
            entries.append({"filepath": filepath, "filename": filename, "imgid": image_id, "cocoid": image_id,
                            "split": split, "sentences": sentences})
            image_id += 1
    split_file.write_text(json.dumps({"images": entries, "dataset": "coco"}))
    settings.write_text(json.dumps(wanted))
    print(f"  {total} images, {total * CAPTIONS_PER_IMAGE} captions: {time.perf_counter() - started:.0f} s in all; "
          f"split file {split_file.stat().st_size / 1e6:.0f} MB", flush=True)
    return split_file


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--distinct", type=int, default=2000)
    args = parser.parse_args()
    print(write(args.folder, args.distinct))
