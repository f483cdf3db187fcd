"""The one way in: ``Captioner.load(path).caption(images)``, used by the CLIs, the server, video tagging
and the Python API.

One captioning loop, :meth:`Captioner.caption_results`: image files, PIL images or preprocessed
tensors -> batches through the one loading path (:func:`~captioner.data.loading.load_images`) ->
the search (:mod:`captioner.decoding`), then the re-ranker if there is one -> a
:class:`CaptionResult` per image, with its candidates and, when asked, where the model looked.
``caption`` and ``caption_candidates`` are views of it. Every method takes the decoding options
the same way, as keyword arguments of :class:`~captioner.decode_options.DecodeOptions`
(``beam_size=3``, ``strategy="sample"`` ...).

The model runs at the precision the device is fast at, as training does: autocast where the device
has fast low precision (bf16 on CPUs with bf16 instructions, bf16 or fp16 on CUDA; ``amp=False`` turns it
off) and the convolutions channels-last.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from captioner.checkpoint import broken_content, load_checkpoint, model_from_checkpoint, save_checkpoint
from captioner.data.loading import ImageBatch, ImageSource, load_images
from captioner.data.transforms import Preprocess
from captioner.decode_options import DecodeOptions
from captioner.decoding import decode
from captioner.devices import autocast_dtype
from captioner.errors import CaptionerError, ImageError
from captioner.models.model import CaptionModel
from captioner.reranking import BidirectionalReranking, reranker
from captioner.vocab import Vocabulary

Images = ImageSource | Sequence[ImageSource]  # one image, several, or a batch: a tensor (B, 3, S, S) or features (B, F)


class Candidate(NamedTuple):
    """One caption the search found, with the model's log-probability of it."""

    caption: str
    log_prob: float


@dataclass
class CaptionResult:
    """The caption of one image, or why it could not be captioned."""

    path: str  # the file; ``<image N>`` for the N-th input given in memory
    caption: str | None = None
    log_prob: float | None = None
    candidates: list[Candidate] | None = None  # decode.num_captions of them, best first
    error: str | None = None
    attention: np.ndarray | None = None  # asked for: (words, grid, grid), where the model looked for each word
    attention_strip: str | None = None  # where a command drew ``attention`` (captioner-caption attention_dir=)

    def checked(self) -> CaptionResult:
        """This result, or ImageError for an image that could not be read (where every image is needed)."""
        if self.error is not None:
            raise ImageError(self.path, self.error)
        return self


class Captioner:
    """A trained captioning model with its vocabulary and preprocessing, and the re-ranker its captions go
    through (None: the search's order)."""

    def __init__(self, model: CaptionModel, vocab: Vocabulary, preprocess: Preprocess,
                 device: str | torch.device = "cpu", max_length: int = 30, channels_last: bool = True,
                 rerank: BidirectionalReranking | None = None):
        self.model = model.to(device).eval()
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        if rerank is not None:
            rerank.check(self.model.decoder)  # at once, not at the first caption
        self.channels_last, self.rerank = channels_last, rerank
        self.vocab = vocab
        self.preprocess = preprocess
        self.device = torch.device(device)
        self.max_length = max_length
        self.transform = preprocess.transform()

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu", channels_last: bool = True,
             rerank: BidirectionalReranking | dict | None = None, head: dict | None = None) -> Captioner:
        """Load a checkpoint written by training; needs neither the training data nor its config.

        ``rerank``: a re-ranker, or its config (``{"name": "bidirectional", "weight": 1.0}``, see
        :func:`captioner.reranking.reranker`). ``head``: decoding settings of the decoder's head that
        override the checkpoint's (a word-class head's ``decoding_lm_weight``; None keeps it)."""
        payload = load_checkpoint(path)
        try:
            model = model_from_checkpoint(payload)
            vocab, preprocess = Vocabulary(payload["vocab"]), Preprocess.from_dict(payload["preprocess"])
        except (KeyError, TypeError, ValueError, RuntimeError) as error:  # the right header, broken content
            raise CaptionerError(f"{path}: a damaged checkpoint ({broken_content(error)})") from None
        model.decoder.set_head_decoding(**(head or {}))
        if isinstance(rerank, dict):
            rerank = reranker(**rerank)
        return cls(model, vocab, preprocess, device, payload["max_length"], channels_last, rerank)

    def save(self, path: str | Path, step: int = 0, **training_state) -> None:
        save_checkpoint(path, self.model, self.vocab.words, self.preprocess.to_dict(), step,
                        max_length=self.max_length, **training_state)

    def caption(self, images: Images, batch_size: int = 32, **decode) -> list[str]:
        """The best caption of each image; one that cannot be read raises ImageError."""
        return [candidates[0].caption for candidates in self.caption_candidates(images, batch_size, **decode)]

    def caption_candidates(self, images: Images, batch_size: int = 32, **decode) -> list[list[Candidate]]:
        """``num_captions`` candidates per image, best first; an image that cannot be read raises ImageError."""
        return [result.checked().candidates for result in self.caption_results(images, batch_size, **decode)]

    def caption_results(self, images: Images, batch_size: int = 32, num_workers: int | None = None,
                        attention: bool = False, **decode) -> Iterator[CaptionResult]:
        """Caption image files, PIL images or preprocessed tensors as they are read (files by ``num_workers``
        loader processes; None: picked from the cores), in their order; one that cannot be read comes back
        with ``error`` set. ``attention``: each result also says where the model looked for each word."""
        options = DecodeOptions(**decode)  # checked now, not at the first result
        if attention:
            self.check_attention()
        if isinstance(images, (str, Path, Image.Image)):
            images = [images]
        elif isinstance(images, torch.Tensor) and images.dim() == 3:  # one preprocessed image (3, S, S)
            images = images.unsqueeze(0)
        batches = load_images(images, self.transform, batch_size, num_workers, pin_memory=self.device.type == "cuda")
        return (result for batch in batches for result in self._caption_batch(batch, options, attention))

    def _caption_batch(self, batch: ImageBatch, options: DecodeOptions, attention: bool) -> Iterator[CaptionResult]:
        pixels = batch.pixels
        if attention and pixels is not None:  # encoded once, for the search and for the maps
            pixels = self._grid_features(pixels, options.amp)
        decoded = self._decode(pixels, options) if pixels is not None else []
        maps = (self.attention_maps(pixels, [c[0].caption for c in decoded], options.amp)
                if attention and decoded else [None] * len(decoded))
        readable = iter(zip(decoded, maps))
        for path, error in zip(batch.paths, batch.errors):
            if error is not None:
                yield CaptionResult(path, error=error)
            else:
                candidates, where = next(readable)
                yield CaptionResult(path, candidates[0].caption, candidates[0].log_prob, candidates, attention=where)

    def check_attention(self) -> None:
        """Raise CaptionerError unless the model attends over a grid (there is nothing to show otherwise)."""
        if self.model.decoder.attention is None:
            raise CaptionerError("this model has no attention (trained with model.decoder.attention_dim=0): "
                                 "there is nowhere it looked to show")

    def attention_maps(self, pixels: torch.Tensor, captions: Sequence[str], amp: bool = True) -> list[np.ndarray]:
        """Where the model looked for each word of each image's caption: preprocessed images (B, 3, S, S),
        or their grid features (B, F), and their captions -> per image (words, grid, grid) attention weights
        (each word's sum to 1), from teaching the caption to the decoder: the weights with which decoding
        chose each word (``amp``: in the precision decoding ran in)."""
        self.check_attention()
        encoded = [self.vocab.encode(caption, self.max_length)[:-1] for caption in captions]  # <bos> w1 .. wn
        tokens = torch.nn.utils.rnn.pad_sequence([torch.tensor(ids) for ids in encoded], batch_first=True,
                                                 padding_value=self.vocab.pad).to(self.device)
        with self._inference(amp):
            features = self.model.encoder(self._on_device(pixels))
            weights = self.model.decoder.attention_weights(features, tokens).float().cpu()  # (B, T, L)
        grid = round(weights.shape[2] ** 0.5)
        return [weights[i, : len(ids) - 1].reshape(-1, grid, grid).numpy() for i, ids in enumerate(encoded)]

    def _grid_features(self, pixels: torch.Tensor, amp: bool) -> torch.Tensor:
        """Images (B, 3, S, S) -> the encoder's grid features (B, F), which it takes again as a cache's rows."""
        with self._inference(amp):
            return self.model.encoder.grid_features(self._on_device(pixels))

    def _decode(self, pixels: torch.Tensor, options: DecodeOptions) -> list[list[Candidate]]:
        """Images (B, 3, S, S) or their grid features (B, F) -> per image, ``num_captions`` candidates, best first."""
        vocab = self.vocab
        banned = [vocab.pad, vocab.bos] + ([vocab.unk] if options.suppress_unk else [])
        search = self.rerank.search_options(options) if self.rerank is not None else options
        with self._inference(options.amp):
            features = self.model.encoder(self._on_device(pixels))  # (B, F)
            found = decode(self.model.decoder, features, vocab.bos, vocab.eos, banned, search, self.max_length)
            if self.rerank is not None:
                found = self.rerank(self.model.decoder, features, found, vocab.bos, vocab.eos)
        return [[Candidate(vocab.decode(h.tokens), h.log_prob) for h in image[: options.num_captions]]
                for image in found]

    @contextlib.contextmanager
    def _inference(self, amp: bool) -> Iterator[None]:
        """Eval mode (restored after), no autograd, and the precision ``amp`` asks for."""
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode(), self.precision(amp):
                yield
        finally:
            self.model.train(was_training)

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
