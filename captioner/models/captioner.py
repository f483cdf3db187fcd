"""The captioning network (encoder + decoder) and its self-contained checkpoint file."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from captioner.errors import CaptionerError
from captioner.io import atomic_open
from captioner.models.decoder import Decoder
from captioner.models.encoder import Encoder

CHECKPOINT_FORMAT = "captioner-checkpoint"
CHECKPOINT_VERSION = 2  # 2: the word head moved into the decoder (version 1 files are upgraded on load)


class CaptionModel(nn.Module):
    """Encoder and decoder, built from plain keyword arguments (stored in checkpoints)."""

    def __init__(self, vocab_size: int, encoder: dict, decoder: dict):
        super().__init__()
        self.args = {"vocab_size": vocab_size, "encoder": dict(encoder), "decoder": dict(decoder)}
        self.encoder = Encoder(**encoder)
        self.decoder = Decoder(vocab_size, self.encoder.feature_dim, locations=self.encoder.locations, **decoder)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor,
                image_index: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: images (B, 3, H, W), tokens (N, T) -> word logits (N, T, V), and
        the logits of each word appearing in the image's captions (B, V): the decoder's word head,
        trained by an auxiliary loss as a signal that reaches the encoder directly (Wu et al.,
        2016, "What value do explicit high level concepts have in vision to language problems?").

        ``image_index`` (N,) says which image each caption describes (several captions per
        image: one encoder pass); by default caption i describes image i.
        """
        features = self.encoder(images)  # (B, F)
        return self.decoder(features, tokens, image_index), self.decoder.word_logits(features)


def save_checkpoint(path: str | Path, model: CaptionModel, vocab_words: list[str], preprocess: dict,
                    step: int, **training_state) -> None:
    """One file: format, version, constructor arguments, vocabulary, preprocessing, weights.

    ``training_state`` (optimizer, scheduler, RNG ...) is added for resumable checkpoints.
    Everything is tensors and plain containers, so ``torch.load(weights_only=True)`` reads it.
    """
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model_args": model.args,
        "vocab": list(vocab_words),
        "preprocess": preprocess,
        "step": step,
        "state_dict": model.state_dict(),
        **training_state,
    }
    with atomic_open(path, "wb") as handle:
        torch.save(payload, handle)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint without unpickling code; clear errors for anything else."""
    path = Path(path)
    if not path.is_file():
        raise CaptionerError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if "Weights only load failed" in str(error):
            unsupported = next((line.strip() for line in str(error).splitlines() if "Unsupported global" in line),
                               "it holds more than tensors and plain containers")
            raise CaptionerError(f"{path}: refused: loading it could run code ({unsupported})") from None
        raise CaptionerError(f"{path}: not a readable checkpoint ({_first_line(error)})") from None
    except Exception as error:  # torch.load raises many kinds on a damaged or foreign file
        raise CaptionerError(f"{path}: not a readable checkpoint ({_first_line(error)})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CaptionerError(f"{path}: not a captioner checkpoint")
    if payload.get("version") not in (1, CHECKPOINT_VERSION):
        raise CaptionerError(f"{path}: checkpoint format version {payload.get('version')!r}, "
                             f"this captioner reads versions 1 to {CHECKPOINT_VERSION}")
    return _upgrade(payload)


def _upgrade(payload: dict) -> dict:
    """A version 1 payload in today's layout."""
    if payload["version"] == 1:
        payload["state_dict"] = {("decoder." if key.startswith("word_head.") else "") + key: value
                                 for key, value in payload["state_dict"].items()}
        payload["version"] = CHECKPOINT_VERSION
    return payload


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def model_from_checkpoint(payload: dict) -> CaptionModel:
    """Rebuild the network from a checkpoint; pretrained weights are never downloaded again."""
    args = payload["model_args"]
    model = CaptionModel(args["vocab_size"], {**args["encoder"], "weights": None}, args["decoder"])
    model.args = args
    model.load_state_dict(payload["state_dict"])
    return model
