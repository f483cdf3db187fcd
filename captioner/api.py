"""The one way in: ``Captioner.load(path).caption(images)``, used by the CLIs and the Python API.

Every captioning method takes the decoding options the same way, as keyword arguments of
:class:`~captioner.decoding.DecodeOptions` (``beam_size=3``, ``strategy="sample"`` ...).

The model runs at the precision the device is fast at, as training does: autocast where the device
has fast low precision (bf16 on CPUs with bf16 instructions, bf16 or fp16 on CUDA; ``amp=False`` turns it
off) and the convolutions channels-last.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from captioner.checkpoint import broken_content, load_checkpoint, model_from_checkpoint, save_checkpoint
from captioner.data.images import load_image
from captioner.data.loading import ImageBatch, load_images
from captioner.data.transforms import Preprocess
from captioner.decode_options import DecodeOptions
from captioner.decoding import decode
from captioner.devices import autocast_dtype
from captioner.errors import CaptionerError
from captioner.models.model import CaptionModel
from captioner.vocab import Vocabulary

ImageInput = str | Path | Image.Image


@dataclass
class CaptionResult:
    """The caption of one file, or why it could not be captioned."""

    path: str
    caption: str | None = None
    log_prob: float | None = None
    candidates: list[tuple[str, float]] | None = None  # decode.num_captions > 1: all of them, best first
    error: str | None = None
    attention: np.ndarray | None = None  # asked for: (words, grid, grid), where the model looked for each word
    attention_strip: str | None = None  # where a command drew ``attention`` (captioner-caption attention_dir=)


class Captioner:
    """A trained captioning model with its vocabulary and preprocessing."""

    def __init__(self, model: CaptionModel, vocab: Vocabulary, preprocess: Preprocess,
                 device: str | torch.device = "cpu", max_length: int = 30, channels_last: bool = True):
        self.model = model.to(device).eval()
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.channels_last = channels_last
        self.vocab = vocab
        self.preprocess = preprocess
        self.device = torch.device(device)
        self.max_length = max_length
        self.transform = preprocess.transform()

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu", channels_last: bool = True) -> Captioner:
        """Load a checkpoint written by training; needs neither the training data nor its config."""
        payload = load_checkpoint(path)
        try:
            return cls(model_from_checkpoint(payload), Vocabulary(payload["vocab"]),
                       Preprocess.from_dict(payload["preprocess"]), device, payload["max_length"], channels_last)
        except (KeyError, TypeError, ValueError, RuntimeError) as error:  # the right header, broken content
            raise CaptionerError(f"{path}: a damaged checkpoint ({broken_content(error)})") from None

    def save(self, path: str | Path, step: int = 0, **training_state) -> None:
        save_checkpoint(path, self.model, self.vocab.words, self.preprocess.to_dict(), step,
                        max_length=self.max_length, **training_state)

    def caption(self, images: ImageInput | Sequence[ImageInput], batch_size: int = 32, **decode) -> list[str]:
        """The best caption for each image path or PIL image; a file that cannot be read raises ImageError."""
        return [candidates[0][0] for candidates in self.caption_candidates(images, batch_size, **decode)]

    def caption_candidates(self, images: ImageInput | Sequence[ImageInput], batch_size: int = 32,
                           **decode) -> list[list[tuple[str, float]]]:
        """``num_captions`` captions per image, best first, each with its log-probability."""
        if isinstance(images, (str, Path, Image.Image)):
            images = [images]
        options = DecodeOptions(**decode)
        results: list[list[tuple[str, float]]] = []
        for start in range(0, len(images), batch_size):
            batch = [self.transform(load_image(image)) for image in images[start : start + batch_size]]
            results += self._decode(torch.stack(batch), options)
        return results

    def caption_with_attention(self, images: ImageInput | Sequence[ImageInput], batch_size: int = 32,
                               **decode) -> list[CaptionResult]:
        """The best caption of each image path or PIL image with where the model looked for each of its
        words (``attention``); a model without attention raises CaptionerError."""
        self.check_attention()
        if isinstance(images, (str, Path, Image.Image)):
            images = [images]
        options, results = DecodeOptions(**decode), []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            pixels = torch.stack([self.transform(load_image(image)) for image in chunk])
            candidates = self._decode(pixels, options)
            maps = self.attention_maps(pixels, [c[0][0] for c in candidates], options.amp)
            results += [CaptionResult(str(image) if not isinstance(image, Image.Image) else "", c[0][0], c[0][1], c,
                                      attention=m) for image, c, m in zip(chunk, candidates, maps)]
        return results

    def caption_files(self, paths: Sequence[str | Path], batch_size: int = 32, num_workers: int | None = None,
                      attention: bool = False, **decode) -> Iterator[CaptionResult]:
        """Caption many files as they are decoded (by ``num_workers`` loader processes, None: picked from
        the cores), in their order; unreadable ones come back with ``error`` set. ``attention``: each
        result also says where the model looked for each word."""
        if attention:
            self.check_attention()
        options = DecodeOptions(**decode)
        for batch in self.read_images(paths, batch_size, num_workers):
            decoded = self._decode(batch.pixels, options) if batch.pixels is not None else []
            maps = (self.attention_maps(batch.pixels, [c[0][0] for c in decoded], options.amp)
                    if attention and decoded else [])
            results, maps = iter(decoded), iter(maps)
            for path, error in zip(batch.paths, batch.errors):
                if error is not None:
                    yield CaptionResult(path, error=error)
                else:
                    candidates = next(results)
                    yield CaptionResult(path, candidates[0][0], candidates[0][1], candidates,
                                        attention=next(maps, None))

    def check_attention(self) -> None:
        """Raise CaptionerError unless the model attends over a grid (there is nothing to show otherwise)."""
        if self.model.decoder.attention is None:
            raise CaptionerError("this model has no attention (trained with model.decoder.attention_dim=0): "
                                 "there is nowhere it looked to show")

    @torch.inference_mode()
    def attention_maps(self, pixels: torch.Tensor, captions: Sequence[str], amp: bool = True) -> list[np.ndarray]:
        """Where the model looked for each word of each image's caption: preprocessed images (B, 3, S, S)
        and their captions -> per image (words, grid, grid) attention weights (each word's sum to 1),
        from teaching the caption to the decoder: the weights with which decoding chose each word
        (``amp``: in the precision decoding ran in)."""
        self.check_attention()
        was_training = self.model.training
        self.model.eval()
        encoded = [self.vocab.encode(caption, self.max_length)[:-1] for caption in captions]  # <bos> w1 .. wn
        tokens = torch.nn.utils.rnn.pad_sequence([torch.tensor(ids) for ids in encoded], batch_first=True,
                                                 padding_value=self.vocab.pad).to(self.device)
        with self.precision(amp):
            features = self.model.encoder(self._on_device(pixels))
            weights = self.model.decoder.attention_weights(features, tokens).float().cpu()  # (B, T, L)
        self.model.train(was_training)
        grid = round(weights.shape[2] ** 0.5)
        return [weights[i, : len(ids) - 1].reshape(-1, grid, grid).numpy() for i, ids in enumerate(encoded)]

    def read_images(self, paths: Sequence[str | Path], batch_size: int = 32,
                    num_workers: int | None = None) -> Iterator[ImageBatch]:
        """The files preprocessed for this model, in batches (see :func:`captioner.data.loading.load_images`)."""
        return load_images(paths, self.transform, batch_size, num_workers, pin_memory=self.device.type == "cuda")

    def caption_tensors(self, pixels: torch.Tensor, **decode) -> list[str]:
        """The best caption for each preprocessed image (B, 3, S, S)."""
        return [candidates[0][0] for candidates in self.decode_tensors(pixels, **decode)]

    def decode_tensors(self, pixels: torch.Tensor, **decode) -> list[list[tuple[str, float]]]:
        """Preprocessed images (B, 3, S, S) -> per image, ``num_captions`` (caption, log-prob) pairs."""
        return self._decode(pixels, DecodeOptions(**decode))

    @torch.inference_mode()
    def _decode(self, pixels: torch.Tensor, options: DecodeOptions) -> list[list[tuple[str, float]]]:
        was_training = self.model.training
        self.model.eval()
        vocab = self.vocab
        banned = [vocab.pad, vocab.bos] + ([vocab.unk] if options.suppress_unk else [])
        with self.precision(options.amp):
            features = self.model.encoder(self._on_device(pixels))  # (B, F)
            hypotheses = decode(self.model.decoder, features, vocab.bos, vocab.eos, banned, options, self.max_length)
        self.model.train(was_training)
        return [[(vocab.decode(h.tokens), h.log_prob) for h in image] for image in hypotheses]

    def precision(self, amp: bool = True) -> contextlib.AbstractContextManager:
        """Autocast to the device's fast low precision where it has one (``amp=False``: fp32)."""
        dtype = autocast_dtype(self.device) if amp else None
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    def _on_device(self, pixels: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, S, S), or cached features (B, F), on the model's device and in its conv layout."""
        pixels = pixels.to(self.device)
        if self.channels_last and pixels.dim() == 4:
            return pixels.contiguous(memory_format=torch.channels_last)
        return pixels
