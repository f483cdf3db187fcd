"""What training reads: the train and val splits as datasets of images, or, while a frozen encoder's
features are cached (``trainer.feature_cache``, :mod:`captioner.feature_cache`), as datasets of those
features; and the loaders that batch them."""

from __future__ import annotations

from functools import partial

import torch
from torch.utils.data import DataLoader, Sampler

from captioner.api import Captioner
from captioner.data.dataset import CaptionDataset, collate_captions
from captioner.data.formats import ImageRecord
from captioner.devices import autocast_dtype
from captioner.feature_cache import Extraction, cached_features
from captioner.training_config import TrainerConfig


def feature_extraction(config: TrainerConfig, device: torch.device) -> Extraction:
    """How training computes a feature cache: in the precision and layout its steps would run the encoder."""
    return Extraction(autocast_dtype(device) if config.amp else None, config.channels_last, config.val_batch_size,
                      config.num_workers)


class TrainingData:
    """The splits as training reads them, and their loaders (``batch_size`` per process for training)."""

    def __init__(self, captioner: Captioner, train_records: list[ImageRecord], val_records: list[ImageRecord],
                 seed: int, config: TrainerConfig):
        self.captioner, self.num_workers = captioner, config.num_workers
        self.images = tuple(CaptionDataset(records, captioner.vocab, captioner.transform, captioner.max_length, seed,
                                           config.captions_per_image, config.cache_images)
                            for records in (train_records, val_records))
        self.features: tuple[CaptionDataset, CaptionDataset] | None = None

    def cache_features(self, cache_dir: str | None, extraction: Extraction) -> None:
        """Encode every image once with the frozen encoder (or find it done) and read the features from now on."""
        captioner = self.captioner
        self.features = tuple(
            images.with_features(cached_features(captioner.model.encoder, captioner.preprocess,
                                                 [r.path for r in images.records], cache_dir, extraction))
            for images in self.images)

    def splits(self) -> tuple[CaptionDataset, CaptionDataset]:
        """Train and val: cached features while the encoder is frozen and they exist, else images."""
        return self.features if self.features and self.captioner.model.encoder.frozen else self.images

    def loader(self, dataset: CaptionDataset, batch_size: int, sampler: Sampler | None = None) -> DataLoader:
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                          collate_fn=partial(collate_captions, pad=self.captioner.vocab.pad),
                          num_workers=self.num_workers, pin_memory=self.captioner.device.type == "cuda",
                          generator=torch.Generator())  # its own seed draw: the global RNG (dropout) stays resumable
