"""captioner-evaluate: caption a split with a model and score it, or score any system's COCO results file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from captioner.api import Captioner
from captioner.cli.common import CONFIG_PATH, limit_threads_in_parallel_sweeps, typed, user_errors
from captioner.data.formats import ImageRecord, split_records
from captioner.decoding import DecodeOptions
from captioner.devices import resolve_device
from captioner.errors import CaptionerError
from captioner.evaluation import evaluate_records
from captioner.io import write_json
from captioner.metrics import coco_caption_metrics


def evaluate_model(captioner: Captioner, records: list[ImageRecord], out_dir: str | Path, split: str = "test",
                   decode: DecodeOptions = DecodeOptions(), batch_size: int = 64,
                   text_metrics: dict | None = None) -> dict:
    """Caption ``split`` with the model; write predictions.json (COCO results format) and metrics.json."""
    records = split_records(records, split)
    print(f"captioning {len(records)} {split} images", file=sys.stderr)
    scores, captions = evaluate_records(captioner, records, decode, batch_size, text_metrics or {})
    write_json(Path(out_dir) / "predictions.json",
               [{"image_id": r.image_id, "caption": c} for r, c in zip(records, captions)])
    return _finish(out_dir, scores | {"num_images": len(records)})


def evaluate_files(predictions: str | Path, references: str | Path, out_dir: str | Path,
                   text_metrics: dict | None = None) -> dict:
    """Score a COCO results file against COCO caption annotations, as coco-caption does."""
    predicted = read_coco_results(predictions)
    refs = read_coco_references(references)
    unknown = [image for image in predicted if image not in refs]
    if unknown:
        raise CaptionerError(f"{predictions}: {len(unknown)} image ids are not in {references} (e.g. {unknown[0]})")
    if len(predicted) < len(refs):
        print(f"note: scoring the {len(predicted)} of {len(refs)} reference images that have a prediction",
              file=sys.stderr)
    scores = coco_caption_metrics(refs, predicted, **(text_metrics or {}))
    return _finish(out_dir, scores | {"num_images": len(predicted)})


def _finish(out_dir: str | Path, metrics: dict) -> dict:
    metrics = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}
    write_json(Path(out_dir) / "metrics.json", metrics)
    print(format_table(metrics))
    print(f"wrote {Path(out_dir) / 'metrics.json'}", file=sys.stderr)
    return metrics


def format_table(metrics: dict) -> str:
    width = max(len(k) for k in metrics)
    return "\n".join([f"{'metric':<{width}}  value", f"{'-' * width}  ------"] +
                     [f"{k:<{width}}  {v:.4f}" if isinstance(v, float) else f"{k:<{width}}  {v}"
                      for k, v in metrics.items()])


def read_coco_results(path: str | Path) -> dict[int, str]:
    """``[{"image_id": ..., "caption": ...}]``, one caption per image."""
    data = _read_json(path)
    if not isinstance(data, list) or not all(isinstance(r, dict) and {"image_id", "caption"} <= r.keys() for r in data):
        raise CaptionerError(f"{path}: not a COCO results file (a list of {{\"image_id\", \"caption\"}} objects)")
    results: dict[int, str] = {}
    for row in data:
        if row["image_id"] in results:
            raise CaptionerError(f"{path}: image {row['image_id']} has more than one caption")
        results[row["image_id"]] = str(row["caption"])
    return results


def read_coco_references(path: str | Path) -> dict[int, list[str]]:
    """COCO caption annotations: ``{"annotations": [{"image_id", "caption"}, ...]}`` -> captions per image."""
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise CaptionerError(f"{path}: not a COCO caption annotation file (no \"annotations\" list)")
    references: dict[int, list[str]] = {}
    for annotation in data["annotations"]:
        references.setdefault(annotation["image_id"], []).append(annotation["caption"])
    return references


def _read_json(path: str | Path):
    path = Path(path)
    if not path.is_file():
        raise CaptionerError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CaptionerError(f"{path}: not valid JSON ({error})") from None


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="evaluate")
def main(cfg: DictConfig) -> None:
    with user_errors():
        limit_threads_in_parallel_sweeps()
        out_dir = HydraConfig.get().runtime.output_dir
        text_metrics = OmegaConf.to_container(cfg.metrics)
        if cfg.checkpoint and (cfg.predictions or cfg.references):
            raise CaptionerError("give either checkpoint=PATH or predictions=FILE references=FILE, not both")
        if cfg.checkpoint:
            decode = typed(DecodeOptions, cfg.decode, "decode")
            captioner = Captioner.load(cfg.checkpoint, device=resolve_device(cfg.device))  # before any data work
            evaluate_model(captioner, instantiate(cfg.data), out_dir, cfg.split, decode, cfg.batch_size, text_metrics)
        elif cfg.predictions and cfg.references:
            evaluate_files(cfg.predictions, cfg.references, out_dir, text_metrics)
        else:
            raise CaptionerError("nothing to evaluate: give checkpoint=PATH, or predictions=FILE references=FILE")


if __name__ == "__main__":
    main()
