"""The one way in: ``Captioner.load(path).caption(images)``, used by the CLIs and the Python API."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from captioner.data.images import load_image
from captioner.data.transforms import Preprocess
from captioner.decoding import greedy_decode
from captioner.errors import CaptionerError, ImageError
from captioner.models.captioner import CaptionModel, load_checkpoint, model_from_checkpoint, save_checkpoint
from captioner.vocab import Vocabulary

ImageInput = str | Path | Image.Image


@dataclass
class CaptionResult:
    """The caption of one file, or why it could not be captioned."""

    path: str
    caption: str | None = None
    error: str | None = None


class Captioner:
    """A trained captioning model with its vocabulary and preprocessing."""

    def __init__(self, model: CaptionModel, vocab: Vocabulary, preprocess: Preprocess,
                 device: str | torch.device = "cpu", max_length: int = 30):
        self.model = model.to(device).eval()
        self.vocab = vocab
        self.preprocess = preprocess
        self.device = torch.device(device)
        self.max_length = max_length
        self.transform = preprocess.transform()

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> Captioner:
        """Load a checkpoint written by training; needs neither the training data nor its config."""
        payload = load_checkpoint(path)
        return cls(model_from_checkpoint(payload), Vocabulary(payload["vocab"]),
                   Preprocess.from_dict(payload["preprocess"]), device, payload["max_length"])

    def save(self, path: str | Path, step: int = 0, **training_state) -> None:
        save_checkpoint(path, self.model, self.vocab.words, self.preprocess.to_dict(), step,
                        max_length=self.max_length, **training_state)

    def caption(self, images: ImageInput | Sequence[ImageInput], beam_size: int = 1, batch_size: int = 32) -> list[str]:
        """Captions for image paths or PIL images. A file that cannot be read raises ImageError."""
        if isinstance(images, (str, Path, Image.Image)):
            images = [images]
        captions: list[str] = []
        for start in range(0, len(images), batch_size):
            batch = [self.transform(load_image(image)) for image in images[start : start + batch_size]]
            captions += self.caption_tensors(torch.stack(batch), beam_size=beam_size)
        return captions

    def caption_files(self, paths: Iterable[str | Path], beam_size: int = 1, batch_size: int = 32) -> Iterator[CaptionResult]:
        """Caption many files lazily; unreadable ones come back with ``error`` set, the rest go on."""
        pending: list[tuple[str, torch.Tensor]] = []
        for path in paths:
            try:
                pending.append((str(path), self.transform(load_image(path))))
            except ImageError as error:
                yield CaptionResult(str(path), error=error.reason)
            if len(pending) == batch_size:
                yield from self._caption_pending(pending, beam_size)
                pending = []
        yield from self._caption_pending(pending, beam_size)

    def _caption_pending(self, pending: list[tuple[str, torch.Tensor]], beam_size: int) -> Iterator[CaptionResult]:
        if pending:
            captions = self.caption_tensors(torch.stack([pixels for _, pixels in pending]), beam_size)
            yield from (CaptionResult(path, caption) for (path, _), caption in zip(pending, captions))

    @torch.no_grad()
    def caption_tensors(self, pixels: torch.Tensor, beam_size: int = 1) -> list[str]:
        """Captions for preprocessed images (B, 3, S, S)."""
        if beam_size != 1:
            raise CaptionerError("beam search is not available yet; use beam_size=1")
        was_training = self.model.training
        self.model.eval()
        features = self.model.encoder(pixels.to(self.device))  # (B, F)
        tokens = greedy_decode(self.model.decoder, features, self.vocab.bos, self.vocab.eos, self.max_length)
        self.model.train(was_training)
        return [self.vocab.decode(row) for row in tokens.tolist()]
