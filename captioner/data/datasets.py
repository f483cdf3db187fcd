"""What a ``data=`` config builds (its ``_target_``): a format read into ImageRecords, images checked.

Every real dataset goes through the same path as the synthetic one: records -> CaptionDataset.
``preresize`` (pixels, shorter side) writes smaller JPEG copies once under ``cache_dir`` and
trains from them: decoding a 640x480 COCO JPEG costs several times more than the model's input needs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from captioner.data.formats import (
    ImageRecord,
    check_images_exist,
    read_caption_csv,
    read_coco,
    read_flickr8k,
    read_karpathy,
)
from captioner.data.images import load_image
from captioner.errors import ImageError
from captioner.io import atomic_open


def karpathy(split_file: str, image_dir: str, preresize: int | None = None,
             cache_dir: str | None = None) -> list[ImageRecord]:
    records = read_karpathy(split_file, image_dir)
    return _ready(records, f"data.image_dir={image_dir}", preresize, cache_dir)


def coco(root: str, test_fraction: float = 0.5, seed: int = 0, preresize: int | None = None,
         cache_dir: str | None = None) -> list[ImageRecord]:
    return _ready(read_coco(root, test_fraction, seed), f"{root}/train2014 and {root}/val2014", preresize, cache_dir)


def flickr8k(root: str, preresize: int | None = None, cache_dir: str | None = None) -> list[ImageRecord]:
    records = read_flickr8k(root)
    return _ready(records, str(records[0].path.parent) if records else root, preresize, cache_dir)


def caption_csv(file: str, image_dir: str, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0,
                preresize: int | None = None, cache_dir: str | None = None) -> list[ImageRecord]:
    records = read_caption_csv(file, image_dir, val_fraction, test_fraction, seed)
    return _ready(records, f"data.image_dir={image_dir}", preresize, cache_dir)


def _ready(records: list[ImageRecord], where: str, preresize: int | None, cache_dir: str | None) -> list[ImageRecord]:
    check_images_exist(records, where)
    if not preresize:
        return records
    return preresize_images(records, Path(cache_dir or f"data/cache/resized_{preresize}"), preresize)


def preresize_images(records: list[ImageRecord], cache_dir: Path, size: int) -> list[ImageRecord]:
    """Records pointing at JPEG copies whose shorter side is ``size`` (made once, reused after)."""
    resized = []
    for record in tqdm(records, desc=f"pre-resizing to {size} px in {cache_dir}", unit="img", mininterval=1):
        target = cache_dir / f"{record.split}_{record.image_id}_{record.path.stem}.jpg"
        if not target.is_file():
            try:
                image = load_image(record.path)
            except ImageError:
                resized.append(record)  # left as it is: reading it later says why it fails
                continue
            scale = size / min(image.size)
            if scale < 1:
                smaller = (round(image.width * scale), round(image.height * scale))
                image = image.resize(smaller, Image.Resampling.BICUBIC)
            with atomic_open(target, "wb") as handle:
                image.save(handle, "JPEG", quality=92)
        resized.append(dataclasses.replace(record, path=target))
    return resized
