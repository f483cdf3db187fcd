"""Decoding a split and scoring the captions."""

from __future__ import annotations

from torch.utils.data import DataLoader

from captioner.api import Captioner
from captioner.data.dataset import ImageDataset
from captioner.data.formats import ImageRecord
from captioner.decoding import DecodeOptions
from captioner.metrics import attribute_accuracy, coco_caption_metrics


def caption_records(captioner: Captioner, records: list[ImageRecord], options: DecodeOptions = DecodeOptions(),
                    batch_size: int = 64) -> list[str]:
    loader = DataLoader(ImageDataset(records, captioner.transform), batch_size=batch_size)
    captions: list[str] = []
    for pixels in loader:
        captions += captioner.caption_tensors(pixels, options)
    return captions


def score_captions(captions: list[str], records: list[ImageRecord],
                   text_metrics: dict | None = None) -> dict[str, float]:
    """The coco-caption metrics (``text_metrics``: their options, None: skip) against the records'
    references, and attribute accuracy where the records carry synthetic ground truth (overall, seen, novel)."""
    scores: dict[str, float] = {}
    if text_metrics is not None:  # keyed by position: image ids need not be unique across a split file
        scores |= coco_caption_metrics(dict(enumerate(r.captions for r in records)), dict(enumerate(captions)),
                                       **text_metrics)
    if not records or any(r.attributes is None for r in records):
        return scores
    scores["attribute_accuracy"] = attribute_accuracy(captions, [r.attributes for r in records])
    for name, wanted in (("seen", False), ("novel", True)):
        chosen = [(c, r.attributes) for c, r in zip(captions, records) if bool(r.attributes.get("novel")) == wanted]
        if chosen and any(r.attributes.get("novel") for r in records):
            scores[f"attribute_accuracy_{name}"] = attribute_accuracy(*map(list, zip(*chosen)))
    return scores


def evaluate_records(captioner: Captioner, records: list[ImageRecord], options: DecodeOptions = DecodeOptions(),
                     batch_size: int = 64, text_metrics: dict | None = None) -> tuple[dict[str, float], list[str]]:
    captions = caption_records(captioner, records, options, batch_size)
    return score_captions(captions, records, text_metrics), captions
