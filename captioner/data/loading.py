"""One way to read images for a model: a DataLoader over image files (or PIL images, or images already
preprocessed), decoding in worker processes while the model runs, in input order, a file that
cannot be read travelling as its reason (so a bad file in a worker is reported as one in the main
process, and the rest go on).

Captioning, evaluation, validation and feature extraction read images through ``load_images``;
training's CaptionDataset reads them with :class:`Images` too, beside its captions.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from captioner.data.images import load_image
from captioner.errors import ImageError

ImageSource = str | Path | Image.Image | torch.Tensor  # a file, a picture, or an image already preprocessed


def default_workers() -> int:
    """Loader processes when none are asked for: one core is left to the model (at most 8); none on
    two cores or fewer, where a worker took its core from the model and gained nothing
    (benchmarks/README.md, "caption_loading.py")."""
    cores = os.cpu_count() or 1
    return 0 if cores <= 2 else min(8, cores - 1)


@dataclass
class ImageBatch:
    """Consecutive inputs: their names (a file's path; ``<image N>`` for the N-th input given in memory),
    the images of the readable ones (N, 3, S, S) or None, and per input the reason it could not be read
    (None where it could)."""

    paths: list[str]
    pixels: torch.Tensor | None
    errors: list[str | None]

    def raise_first_error(self) -> None:
        """Raise ImageError for the first file that could not be read (where every file is needed)."""
        for path, error in zip(self.paths, self.errors):
            if error is not None:
                raise ImageError(path, error)


class Images(Dataset):
    """Image files, PIL images or preprocessed images (tensors, taken as they are) -> (name, preprocessed
    image or None, the reason it cannot be read or None)."""

    def __init__(self, sources: Sequence[ImageSource] | torch.Tensor, transform: Callable):
        self.sources, self.transform = sources, transform

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> tuple[str, torch.Tensor | None, str | None]:
        source = self.sources[index]
        if isinstance(source, torch.Tensor):
            return f"<image {index}>", source, None
        name = str(source) if isinstance(source, (str, Path)) else f"<image {index}>"
        try:
            return name, self.transform(load_image(source)), None
        except ImageError as error:
            return name, None, error.reason


def collate_images(items: list[tuple[str, torch.Tensor | None, str | None]]) -> ImageBatch:
    images = [image for _, image, _ in items if image is not None]
    return ImageBatch([name for name, _, _ in items], torch.stack(images) if images else None,
                      [error for _, _, error in items])


def load_images(sources: Sequence[ImageSource] | torch.Tensor, transform: Callable, batch_size: int = 32,
                num_workers: int | None = None, pin_memory: bool = False) -> Iterator[ImageBatch]:
    """Batches of ``batch_size`` consecutive images, in order, decoded by ``num_workers`` processes (0: in
    this process; None: :func:`default_workers` for files that fill more than one batch, since workers
    only help by reading the next batch while the model runs, and none for images given in memory)."""
    if num_workers is None:
        in_memory = isinstance(sources, torch.Tensor) or not all(isinstance(s, (str, Path)) for s in sources)
        num_workers = default_workers() if len(sources) > batch_size and not in_memory else 0
    loader = DataLoader(Images(sources, transform), batch_size=batch_size, num_workers=num_workers,
                        collate_fn=collate_images, pin_memory=pin_memory, prefetch_factor=4 if num_workers else None)
    yield from loader
