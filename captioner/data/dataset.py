"""Torch datasets over image records: one image decode per image per epoch (or once, cached), or
the rows of a feature cache."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence

import torch
from torch.utils.data import Dataset, Sampler

from captioner.data.formats import ImageRecord
from captioner.data.loading import Images
from captioner.errors import CaptionerError, ImageError
from captioner.vocab import Vocabulary


class CaptionDataset(Dataset):
    """An image tensor and its caption ids: one image decode per image and epoch (or once, cached).

    ``captions_per_image="all"`` gives every reference caption of the image (the encoder
    runs once for all of them); ``"one"`` draws one per epoch, deterministically from
    ``(seed, epoch, index)``, so a resumed run sees the same captions as an uninterrupted one.

    ``cache_images=True`` keeps each preprocessed image in memory after its first decode (the
    same tensors, so training is unchanged); it needs the data loaded in this process
    (``num_workers=0``: a worker's cache would die with the worker at the end of each epoch).

    ``features`` (rows in the records' order, :class:`~captioner.feature_cache.FeatureRows`) give
    each image's cached encoder features (F,) in place of the image.
    """

    def __init__(self, records: list[ImageRecord], vocab: Vocabulary, transform: Callable,
                 max_length: int, seed: int = 0, captions_per_image: str = "all", cache_images: bool = False,
                 features: Sequence[torch.Tensor] | None = None):
        if captions_per_image not in ("all", "one"):
            raise CaptionerError(f"captions_per_image must be all or one, got {captions_per_image!r}")
        self.records, self.vocab, self.transform = records, vocab, transform
        self.images = Images([r.path for r in records], transform)  # how every path reads image files
        self.max_length, self.seed, self.epoch = max_length, seed, 0
        self.captions_per_image = captions_per_image
        self.cache: dict[int, torch.Tensor] | None = {} if cache_images else None
        self.features = features
        if features is not None and len(features) != len(records):
            raise CaptionerError(f"{len(features)} feature rows for {len(records)} images")

    def with_features(self, features: Sequence[torch.Tensor]) -> CaptionDataset:
        """The same captions with each image's cached features in place of the image."""
        return CaptionDataset(self.records, self.vocab, self.transform, self.max_length, self.seed,
                              self.captions_per_image, features=features)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """-> image (3, S, S) or its features (F,), caption ids [(T,)], and word targets (V,): the
        fraction of the image's captions that use each word."""
        record = self.records[index]
        all_tokens = [torch.tensor(self.vocab.encode(c, self.max_length)) for c in record.captions]
        word_targets = torch.zeros(len(self.vocab))
        for tokens in all_tokens:
            word_targets[tokens.unique()] += 1.0 / len(all_tokens)
        word_targets[[self.vocab.pad, self.vocab.bos, self.vocab.eos]] = 0.0
        if self.captions_per_image == "one":
            all_tokens = [all_tokens[random.Random(f"{self.seed}-{self.epoch}-{index}").randrange(len(all_tokens))]]
        return self._image(index), all_tokens, word_targets

    def _image(self, index: int) -> torch.Tensor:
        if self.features is not None:
            return self.features[index]
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        path, image, error = self.images[index]
        if error is not None:  # training needs every image: a bad one stops it, named
            raise ImageError(path, error)
        if self.cache is not None:
            self.cache[index] = image
        return image


def collate_captions(batch: list[tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]], pad: int):
    """-> images (B, 3, S, S) or features (B, F), padded captions (N, T), which image each caption is of (N,),
    word targets (B, V)."""
    images = torch.stack([image for image, _, _ in batch])  # (B, 3, S, S)
    captions = [t for _, tokens, _ in batch for t in tokens]
    tokens = torch.nn.utils.rnn.pad_sequence(captions, batch_first=True, padding_value=pad)  # (N, T)
    image_index = torch.tensor([i for i, (_, t, _) in enumerate(batch) for _ in t])  # (N,)
    return images, tokens, image_index, torch.stack([w for _, _, w in batch])


class EpochSampler(Sampler[int]):
    """A permutation seeded by ``(seed, epoch)``, starting at ``start``: resumable mid-epoch.

    With ``world`` processes, process ``rank`` takes every world-th index from ``rank`` on (as
    torch's DistributedSampler): local batches of ``B / world`` then make up exactly the global
    batches of ``B`` one process would see. The tail is cut to a multiple of ``world``, so every
    process runs the same number of steps.
    """

    def __init__(self, size: int, seed: int, epoch: int, start: int = 0, rank: int = 0, world: int = 1):
        self.size, self.seed, self.epoch, self.start, self.rank, self.world = size, seed, epoch, start, rank, world

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator)[self.start : self._end()]
        return iter(order[self.rank :: self.world].tolist())

    def __len__(self) -> int:
        return max(0, self._end() - self.start) // self.world

    def _end(self) -> int:
        return self.size // self.world * self.world
