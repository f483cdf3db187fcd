"""Each epoch's validation: the teacher-forced loss over the whole split, and greedy captions of up to
``val_max_images`` of its images (a seeded subset, the same every epoch) scored with the coco-caption
metrics and the dataset's own scorers; then the figure named by ``monitor`` says whether the epoch is
the best so far (as Lightning's ``ModelCheckpoint(monitor=..., mode=...)``)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from captioner.api import Captioner
from captioner.data.dataset import CaptionDataset
from captioner.data.formats import ImageRecord
from captioner.decode_options import DecodeOptions
from captioner.errors import CaptionerError
from captioner.evaluation import Scorer, caption_records, score_captions


def seeded_subset(size: int, count: int, seed: int) -> list[int]:
    """Up to ``count`` of the indices ``0 .. size - 1``, drawn by ``seed``, in order (all when fewer)."""
    if count >= size:
        return list(range(size))
    return sorted(random.Random(f"validation-{seed}").sample(range(size), max(0, count)))


class Validation:
    """The validation split's figures for a model, and which of them chooses ``model.pt``."""

    def __init__(self, records: list[ImageRecord], scorers: Sequence[Scorer], max_images: int, seed: int,
                 monitor: str, monitor_mode: str, meteor: bool, amp: bool, batch_size: int, num_workers: int):
        self.records, self.scorers = records, list(scorers)
        self.captioned = seeded_subset(len(records), max_images, seed)
        self.monitor, self.sign = monitor, 1.0 if monitor_mode == "max" else -1.0
        self.meteor, self.amp, self.batch_size, self.num_workers = meteor, amp, batch_size, num_workers

    @torch.no_grad()
    def __call__(self, captioner: Captioner, dataset: CaptionDataset, batches: Iterable,
                 autocast: Callable) -> dict:
        """``val_loss`` over ``batches`` (the split, as the training collates it) and ``val_`` + each score of
        the captioned subset (read from ``dataset``: images, or the cached features it holds)."""
        model = captioner.model.eval()
        loss_fn = nn.CrossEntropyLoss(ignore_index=captioner.vocab.pad)
        total, count = 0.0, 0
        for pixels, tokens, image_index, _ in batches:
            pixels, tokens = pixels.to(captioner.device), tokens.to(captioner.device)
            with autocast():
                logits = model(pixels, tokens[:, :-1], image_index.to(captioner.device)).logits  # (N, T-1, V)
            targets = tokens[:, 1:]  # (N, T-1)
            words = (targets != captioner.vocab.pad).sum().item()
            total += loss_fn(logits.flatten(0, 1).float(), targets.flatten()).item() * words
            count += words
        scores = {}
        if self.captioned:
            records = [self.records[i] for i in self.captioned]
            scores = score_captions(self._captions(captioner, dataset, records), records, {"meteor": self.meteor},
                                    self.scorers)
        return {"val_loss": round(total / max(1, count), 4)} | {f"val_{k}": round(v, 4) for k, v in scores.items()}

    def score(self, row: dict) -> float:
        """The monitored figure of an epoch's row, higher is better (negated for ``monitor_mode=min``)."""
        if self.monitor not in row:
            reported = ", ".join(k for k in row if k.startswith("val_"))
            raise CaptionerError(f"trainer.monitor={self.monitor}: validation reports {reported}")
        return self.sign * row[self.monitor]

    def _captions(self, captioner: Captioner, dataset: CaptionDataset, records: list[ImageRecord]) -> list[str]:
        """Greedy captions of the captioned subset: from its cached features when validation reads them."""
        size = self.batch_size
        if dataset.features is None:
            return caption_records(captioner, records, DecodeOptions(amp=self.amp), size, self.num_workers)
        return captioner.caption([dataset.features[i] for i in self.captioned], size, amp=self.amp)
