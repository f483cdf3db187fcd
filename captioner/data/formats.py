"""Caption dataset formats, all read into one list of :class:`ImageRecord`."""

from __future__ import annotations

import csv
import json
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from captioner.errors import CaptionerError

SPLITS = ("train", "val", "test")


# The fields of a Karpathy split file's image entry that every such file has; the rest is kept in ImageRecord.extra.
KARPATHY_FIELDS = frozenset({"filepath", "filename", "imgid", "cocoid", "split", "sentences", "sentids"})


@dataclass
class ImageRecord:
    """One image with its reference captions and its split.

    ``extra`` holds what else the format says of the image (e.g. ground truth a dataset's own
    scorers check captions against); general code never reads it.
    """

    image_id: int
    path: Path
    captions: list[str]
    split: str
    extra: dict = field(default_factory=dict, repr=False)


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
        extra = {key: value for key, value in entry.items() if key not in KARPATHY_FIELDS}
        records.append(ImageRecord(int(image_id), path, captions, split, extra))
    return records


def read_coco(root: str | Path, test_fraction: float = 0.5, seed: int = 0) -> list[ImageRecord]:
    """The COCO 2014 layout: ``root/annotations/captions_{train,val}2014.json``, images in
    ``root/train2014/`` and ``root/val2014/``. train2014 trains; val2014 is split, seeded by image
    id, into val and test (``test_fraction`` of it)."""
    root = Path(root)
    records = []
    for part in ("train2014", "val2014"):
        annotation_file = root / "annotations" / f"captions_{part}.json"
        data = _read_json(annotation_file, "COCO caption annotations", "data=coco expects "
                          "R/annotations/captions_train2014.json and captions_val2014.json")
        captions = defaultdict(list)
        for annotation in data.get("annotations", []):
            captions[annotation["image_id"]].append(annotation["caption"])
        for image in data.get("images", []):
            if part == "train2014":
                split = "train"
            else:
                split = "test" if random.Random(f"{seed}-{image['id']}").random() < test_fraction else "val"
            path = root / part / image["file_name"]
            records.append(ImageRecord(int(image["id"]), path, captions[image["id"]], split))
    return [r for r in records if r.captions]


def read_flickr8k(root: str | Path) -> list[ImageRecord]:
    """Flickr8k as distributed: ``Flickr8k.token.txt`` (``NAME.jpg#N<TAB>caption``), the split lists
    ``Flickr_8k.{train,dev,test}Images.txt``, images in ``Flicker8k_Dataset/`` (sic) or ``Images/``."""
    root = Path(root)
    token_file = root / "Flickr8k.token.txt"
    if not token_file.is_file():
        raise CaptionerError(f"{token_file}: Flickr8k captions not found (data=flickr8k expects data.root to hold "
                             "Flickr8k.token.txt, Flickr_8k.{train,dev,test}Images.txt and Flicker8k_Dataset/)")
    captions = defaultdict(list)
    for line in token_file.read_text(encoding="utf-8").splitlines():
        if "\t" in line:
            name, caption = line.split("\t", 1)
            captions[name.split("#")[0]].append(caption.strip())
    image_dir = next((root / d for d in ("Flicker8k_Dataset", "Images") if (root / d).is_dir()),
                     root / "Flicker8k_Dataset")
    records = []
    for split, list_name in (("train", "trainImages"), ("val", "devImages"), ("test", "testImages")):
        list_file = root / f"Flickr_8k.{list_name}.txt"
        if not list_file.is_file():
            raise CaptionerError(f"{list_file}: Flickr8k split list not found")
        for name in list_file.read_text(encoding="utf-8").split():
            records.append(ImageRecord(len(records), image_dir / name, captions.get(name, []), split))
    missing = [r.path.name for r in records if not r.captions]
    if missing:
        raise CaptionerError(f"{token_file}: no captions for {len(missing)} listed images (e.g. {missing[0]})")
    return records


def read_caption_csv(file: str | Path, image_dir: str | Path, val_fraction: float = 0.1, test_fraction: float = 0.1,
                     seed: int = 0) -> list[ImageRecord]:
    """A CSV with columns ``image,caption[,split]``, a row per caption. Without a split column the
    images are split at random, seeded, into train / val / test."""
    file, image_dir = Path(file), Path(image_dir)
    if not file.is_file():
        raise CaptionerError(f"{file}: caption CSV not found")
    try:  # utf-8-sig: Excel's "CSV UTF-8" starts with a byte-order mark
        with file.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or not {"image", "caption"} <= set(reader.fieldnames):
                raise CaptionerError(f"{file}: needs the columns image,caption[,split]; it has {reader.fieldnames}")
            rows = list(reader)
    except UnicodeDecodeError as error:
        byte = error.object[error.start]
        raise CaptionerError(f"{file}: not UTF-8 (a byte 0x{byte:02x}); save it as UTF-8") from None
    captions, splits = defaultdict(list), {}
    for number, row in enumerate(rows, start=2):  # row 1 is the header
        if not row.get("image") or not (row.get("caption") or "").strip():
            raise CaptionerError(f"{file}: row {number} has no {'image' if not row.get('image') else 'caption'}")
        captions[row["image"]].append(row["caption"])
        if row.get("split"):
            splits[row["image"]] = {"restval": "train", "dev": "val"}.get(row["split"], row["split"])
    records = []
    for image_id, name in enumerate(captions):
        draw = random.Random(f"{seed}-{name}").random()
        split = splits.get(name) or ("test" if draw < test_fraction else "val" if draw < test_fraction + val_fraction
                                     else "train")
        if split not in SPLITS:
            raise CaptionerError(f"{file}: image {name} has split {split!r}; use train, val or test")
        records.append(ImageRecord(image_id, image_dir / name, captions[name], split))
    return records


def read_coco_results(path: str | Path) -> dict[int, str]:
    """A COCO results file, ``[{"image_id": ..., "caption": ...}]``: one caption per image."""
    data = _read_json(Path(path))
    if not isinstance(data, list) or not all(isinstance(r, dict) and {"image_id", "caption"} <= r.keys() for r in data):
        raise CaptionerError(f"{path}: not a COCO results file (a list of {{\"image_id\", \"caption\"}} objects)")
    results: dict[int, str] = {}
    for row in data:
        if row["image_id"] in results:
            raise CaptionerError(f"{path}: image {row['image_id']} has more than one caption")
        if not isinstance(row["caption"], str):
            raise CaptionerError(f"{path}: image {row['image_id']!r} has the caption {row['caption']!r}: not text")
        results[row["image_id"]] = row["caption"]
    return results


def read_coco_references(path: str | Path) -> dict[int, list[str]]:
    """COCO caption annotations, ``{"annotations": [{"image_id", "caption"}, ...]}``: the captions per image."""
    data = _read_json(Path(path))
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise CaptionerError(f"{path}: not a COCO caption annotation file (no \"annotations\" list)")
    references: dict[int, list[str]] = {}
    for annotation in data["annotations"]:
        references.setdefault(annotation["image_id"], []).append(annotation["caption"])
    return references


def _read_json(path: Path, what: str = "file", expected: str | None = None):
    if not path.is_file():
        raise CaptionerError(f"{path}: {what} not found" + (f" ({expected})" if expected else ""))
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CaptionerError(f"{path}: not valid JSON ({error})") from None


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
