"""Decoding a split and scoring the captions."""

from __future__ import annotations

from torch.utils.data import DataLoader

from captioner.api import Captioner
from captioner.data.dataset import ImageDataset
from captioner.data.formats import ImageRecord
from captioner.metrics import attribute_accuracy


def caption_records(captioner: Captioner, records: list[ImageRecord], batch_size: int = 64,
                    beam_size: int = 1) -> list[str]:
    loader = DataLoader(ImageDataset(records, captioner.transform), batch_size=batch_size)
    captions: list[str] = []
    for pixels in loader:
        captions += captioner.caption_tensors(pixels, beam_size=beam_size)
    return captions


def score_captions(captions: list[str], records: list[ImageRecord]) -> dict[str, float]:
    """Attribute accuracy where the records carry synthetic ground truth (overall, seen, novel)."""
    if not records or any(r.attributes is None for r in records):
        return {}
    scores = {"attribute_accuracy": attribute_accuracy(captions, [r.attributes for r in records])}
    for name, wanted in (("seen", False), ("novel", True)):
        chosen = [(c, r.attributes) for c, r in zip(captions, records) if bool(r.attributes.get("novel")) == wanted]
        if chosen and any(r.attributes.get("novel") for r in records):
            scores[f"attribute_accuracy_{name}"] = attribute_accuracy(*map(list, zip(*chosen)))
    return scores


def evaluate_records(captioner: Captioner, records: list[ImageRecord], batch_size: int = 64,
                     beam_size: int = 1) -> tuple[dict[str, float], list[str]]:
    captions = caption_records(captioner, records, batch_size, beam_size)
    return score_captions(captions, records), captions
