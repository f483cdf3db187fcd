"""Decoding a split and scoring it: the coco-caption metrics plus the scorers a dataset brings."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Protocol

from captioner import distributed
from captioner.api import Captioner
from captioner.data.formats import ImageRecord, read_coco_references, read_coco_results, split_records
from captioner.decode_options import DecodeOptions
from captioner.errors import CaptionerError
from captioner.io import write_json
from captioner.metrics import coco_caption_metrics, coco_caption_scores
from captioner.pictures.report import write_report


class Scorer(Protocol):
    """A dataset's own score (e.g. the synthetic data's attribute accuracy): captions and the
    records they caption, in the same order -> named figures (higher is better). ``data.scorers``
    lists them for a data config; training's validation and every evaluation report them."""

    def __call__(self, captions: list[str], records: list[ImageRecord]) -> dict[str, float]: ...


def caption_records(captioner: Captioner, records: list[ImageRecord], options: DecodeOptions = DecodeOptions(),
                    batch_size: int = 64, num_workers: int | None = None) -> list[str]:
    """The best caption of every record's image, in order; an image that cannot be read is an error
    (scores over part of a split would not compare)."""
    results = captioner.caption_results([r.path for r in records], batch_size, num_workers, **asdict(options))
    return [result.checked().caption for result in results]


def score_captions(captions: list[str], records: list[ImageRecord], text_metrics: dict | None = None,
                   scorers: Sequence[Scorer] = ()) -> dict[str, float]:
    """The coco-caption metrics (``text_metrics``: their options, None: skip) against the records'
    references, then each of ``scorers``' figures."""
    return score_each_caption(captions, records, text_metrics, scorers)[0]


def score_each_caption(captions: list[str], records: list[ImageRecord], text_metrics: dict | None = None,
                       scorers: Sequence[Scorer] = ()) -> tuple[dict[str, float], list[dict[str, float]]]:
    """:func:`score_captions`, and per caption its own CIDEr-D and BLEU-4 (empty without text metrics)."""
    scores: dict[str, float] = {}
    each: list[dict[str, float]] = [{} for _ in captions]
    if text_metrics is not None:  # keyed by position: image ids need not be unique across a split file
        scores, by_position = coco_caption_scores(dict(enumerate(r.captions for r in records)),
                                                  dict(enumerate(captions)), **text_metrics)
        each = [by_position[i] for i in range(len(captions))]
    for scorer in scorers:
        scores |= scorer(captions, records)
    return scores, each


def evaluate_records(captioner: Captioner, records: list[ImageRecord], options: DecodeOptions = DecodeOptions(),
                     batch_size: int = 64, text_metrics: dict | None = None, scorers: Sequence[Scorer] = (),
                     num_workers: int | None = None) -> tuple[dict[str, float], list[str]]:
    captions = caption_records(captioner, records, options, batch_size, num_workers)
    return score_captions(captions, records, text_metrics, scorers), captions


def evaluate_model(captioner: Captioner, records: list[ImageRecord], out_dir: str | Path, split: str = "test",
                   decode: DecodeOptions = DecodeOptions(), batch_size: int = 64, text_metrics: dict | None = None,
                   scorers: Sequence[Scorer] = (), num_workers: int | None = None, report: bool = False) -> dict:
    """Caption ``split`` with the model; write predictions.json (COCO results format), image_scores.json
    (each image's caption, references, CIDEr-D and BLEU-4) and metrics.json; ``report``: also
    report.html, every image beside its caption and scores (:mod:`captioner.pictures.report`).

    Under torchrun every process captions every world-th image and rank 0 scores them all and
    writes (the other ranks return an empty dict)."""
    records = split_records(records, split)
    if distributed.is_main():
        print(f"captioning {len(records)} {split} images", file=sys.stderr)
    mine = caption_records(captioner, distributed.share(records), decode, batch_size, num_workers)
    captions = list(distributed.in_input_order(mine, len(records), batch_size))
    if not distributed.is_main():
        return {}
    scores, each = score_each_caption(captions, records, text_metrics or {}, scorers)
    write_json(Path(out_dir) / "predictions.json",
               [{"image_id": r.image_id, "caption": c} for r, c in zip(records, captions)])
    write_json(Path(out_dir) / "image_scores.json",
               [{"image_id": r.image_id, "path": str(r.path), "caption": c, "references": r.captions} | e
                for r, c, e in zip(records, captions, each)])
    metrics = _finish(out_dir, scores | {"num_images": len(records)})
    if report:
        page = write_report(out_dir, metrics, records, captions, each, captioner, batch_size, decode.amp)
        print(f"wrote {page}", file=sys.stderr)
    return metrics


def evaluate_files(predictions: str | Path, references: str | Path, out_dir: str | Path,
                   text_metrics: dict | None = None) -> dict:
    """Score a COCO results file against COCO caption annotations, as coco-caption does."""
    predicted = read_coco_results(predictions)
    refs = read_coco_references(references)
    unknown = [image for image in predicted if image not in refs]
    if unknown:
        numbers = " (COCO's ids are numbers: 404464, not \"404464\")" if any(
            isinstance(image, str) and image.strip().isdigit() and int(image) in refs for image in unknown) else ""
        raise CaptionerError(f"{predictions}: {len(unknown)} image ids are not in {references} "
                             f"(e.g. {unknown[0]!r}){numbers}")
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
