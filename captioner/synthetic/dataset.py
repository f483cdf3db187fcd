"""The built-in synthetic image dataset: PNG files plus a Karpathy-format split file, made on first use."""

from __future__ import annotations

import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

from tqdm import tqdm

from captioner.data.formats import ImageRecord, check_images_exist, read_karpathy
from captioner.io import write_json
from captioner.synthetic.scenes import describe_scene, render_scene, sample_scene
from captioner.vocab import tokenize

SPLIT_FILE = "dataset_synthetic.json"


def synthetic_dataset(root: str | Path = "data/synthetic", image_size: int = 64, num_train: int = 8000,
                      num_val: int = 500, num_test: int = 1000, novel_fraction: float = 0.15,
                      seed: int = 0) -> list[ImageRecord]:
    """The synthetic dataset's records, generated under ``root`` on first use.

    A dataset already at ``root`` with the same settings is reused; other settings
    regenerate it. The validation and test splits also hold ``novel_fraction`` scenes with
    colour-shape pairs never seen in training, so that choosing a model or a decoding setting on
    validation weighs generalisation as the test split does.
    """
    root = Path(root)
    settings = {"image_size": image_size, "num_train": num_train, "num_val": num_val, "num_test": num_test,
                "novel_fraction": novel_fraction, "seed": seed, "generator_version": 5}
    split_file = root / SPLIT_FILE
    if not _has_settings(split_file, settings):
        _generate(root, settings)
    records = read_karpathy(split_file, root)
    check_images_exist(records, str(root))
    return records


def _has_settings(split_file: Path, settings: dict) -> bool:
    try:
        return json.loads(split_file.read_text(encoding="utf-8")).get("settings") == settings
    except (OSError, ValueError):
        return False


def scene_plan(settings: dict) -> list[tuple[str, int, bool]]:
    """``(split, index, novel)`` for every image: deterministic by the settings alone."""
    plan = [("train", i, False) for i in range(settings["num_train"])]
    for split in ("val", "test"):
        num_novel = round(settings[f"num_{split}"] * settings["novel_fraction"])
        plan += [(split, i, i < num_novel) for i in range(settings[f"num_{split}"])]
    return plan


def _generate(root: Path, settings: dict) -> None:
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    images = []
    plan = scene_plan(settings)
    for split, index, novel in tqdm(plan, desc=f"generating synthetic scenes in {root}", file=sys.stderr, unit="img"):
        rng = random.Random(f"{settings['seed']}-{split}-{index}")
        scene = sample_scene(rng, novel=novel)
        filename = f"{index:06d}.png"
        (staging / "images" / split).mkdir(parents=True, exist_ok=True)
        render_scene(scene, settings["image_size"], rng).save(staging / "images" / split / filename)
        image_id = len(images)
        captions = describe_scene(scene, rng)
        images.append({
            "filepath": f"images/{split}", "filename": filename, "imgid": image_id, "split": split,
            "sentences": [{"raw": c, "tokens": tokenize(c), "imgid": image_id} for c in captions],
            "attributes": scene.to_json() | {"novel": novel},
        })
    write_json(staging / SPLIT_FILE, {"dataset": "synthetic", "settings": settings, "images": images})
    if root.exists():
        shutil.rmtree(root)
    staging.rename(root)
