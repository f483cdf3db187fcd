"""One way to read image files for a model: a DataLoader over the files, decoding in worker
processes while the model runs, in input order, a file that cannot be read travelling as its
reason (so a bad file in a worker is reported as one in the main process, and the rest go on).

Captioning, evaluation, validation and feature extraction read images through ``load_images``;
training's CaptionDataset reads them with :class:`ImageFiles` too, beside its captions.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from captioner.data.images import load_image
from captioner.errors import ImageError


def default_workers() -> int:
    """Loader processes when none are asked for: one core is left to the model (at most 8); none on
    two cores or fewer, where a worker took its core from the model and gained nothing
    (benchmarks/README.md, "caption_loading.py")."""
    cores = os.cpu_count() or 1
    return 0 if cores <= 2 else min(8, cores - 1)


@dataclass
class ImageBatch:
    """Consecutive input files: their paths, the images of the readable ones (N, 3, S, S) or None,
    and per file the reason it could not be read (None where it could)."""

    paths: list[str]
    pixels: torch.Tensor | None
    errors: list[str | None]

    def raise_first_error(self) -> None:
        """Raise ImageError for the first file that could not be read (where every file is needed)."""
        for path, error in zip(self.paths, self.errors):
            if error is not None:
                raise ImageError(path, error)


class ImageFiles(Dataset):
    """Files -> (path, preprocessed image or None, the reason it cannot be read or None)."""

    def __init__(self, paths: Sequence[str | Path], transform: Callable):
        self.paths, self.transform = [str(p) for p in paths], transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[str, torch.Tensor | None, str | None]:
        path = self.paths[index]
        try:
            return path, self.transform(load_image(path)), None
        except ImageError as error:
            return path, None, error.reason


def collate_files(items: list[tuple[str, torch.Tensor | None, str | None]]) -> ImageBatch:
    images = [image for _, image, _ in items if image is not None]
    return ImageBatch([path for path, _, _ in items], torch.stack(images) if images else None,
                      [error for _, _, error in items])


def load_images(paths: Sequence[str | Path], transform: Callable, batch_size: int = 32,
                num_workers: int | None = None, pin_memory: bool = False) -> Iterator[ImageBatch]:
    """Batches of ``batch_size`` consecutive files, in order, decoded by ``num_workers`` processes
    (None: :func:`default_workers`; 0: in this process)."""
    workers = default_workers() if num_workers is None else num_workers
    loader = DataLoader(ImageFiles(paths, transform), batch_size=batch_size, num_workers=workers,
                        collate_fn=collate_files, pin_memory=pin_memory, prefetch_factor=4 if workers else None)
    yield from loader
