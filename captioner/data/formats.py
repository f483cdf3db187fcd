"""Caption dataset formats, all read into one list of :class:`ImageRecord`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from captioner.errors import CaptionerError

SPLITS = ("train", "val", "test")


@dataclass
class ImageRecord:
    """One image with its reference captions, its split and (synthetic data) ground truth."""

    image_id: int
    path: Path
    captions: list[str]
    split: str
    attributes: dict | None = field(default=None, repr=False)


def read_karpathy(split_file: str | Path, image_dir: str | Path) -> list[ImageRecord]:
    """Karpathy's ``dataset_*.json``: images at ``image_dir/[filepath/]filename``.

    ``restval`` (the rest of COCO val) counts as training data, as in the Karpathy splits.
    """
    split_file, image_dir = Path(split_file), Path(image_dir)
    if not split_file.is_file():
        raise CaptionerError(f"{split_file}: split file not found")
    try:
        entries = json.loads(split_file.read_text(encoding="utf-8"))["images"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise CaptionerError(f"{split_file}: not a Karpathy split file ({error})") from None
    records = []
    for position, entry in enumerate(entries):
        split = "train" if entry["split"] == "restval" else entry["split"]
        captions = [s.get("raw") or " ".join(s["tokens"]) for s in entry["sentences"]]
        path = image_dir / entry.get("filepath", "") / entry["filename"]
        image_id = entry.get("cocoid", entry.get("imgid", position))
        records.append(ImageRecord(int(image_id), path, captions, split, entry.get("attributes")))
    return records


def check_images_exist(records: list[ImageRecord], where: str) -> None:
    """One clear error listing (the first few) missing images and where they were looked for."""
    missing = [r.path for r in records if not r.path.is_file()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:3])
        raise CaptionerError(f"{len(missing)} of {len(records)} images not found in {where} (e.g. {shown})")


def split_records(records: list[ImageRecord], split: str) -> list[ImageRecord]:
    if split not in SPLITS:
        raise CaptionerError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    chosen = [r for r in records if r.split == split]
    if not chosen:
        raise CaptionerError(f"the dataset has no images in the {split!r} split")
    return chosen
