"""The self-contained checkpoint file: format, version, constructor arguments, vocabulary,
preprocessing and weights, written atomically and read without unpickling code.

Older versions are upgraded on load, so a checkpoint keeps loading (and captioning the same)
as the code moves: version 1 kept the word head beside the decoder; version 2 spread the
word-class head's settings over the decoder's own arguments; version 3 set the decoder's state and
word head from the whole grid flattened (today the ``grid`` summary).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from captioner.errors import CaptionerError
from captioner.io import atomic_open
from captioner.models.model import CaptionModel

CHECKPOINT_FORMAT = "captioner-checkpoint"
CHECKPOINT_VERSION = 4


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
    """Read a checkpoint without unpickling code, in today's layout; clear errors for anything else."""
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
    if payload.get("version") not in UPGRADES and payload.get("version") != CHECKPOINT_VERSION:
        raise CaptionerError(f"{path}: checkpoint format version {payload.get('version')!r}, "
                             f"this captioner reads versions 1 to {CHECKPOINT_VERSION}")
    try:
        while payload["version"] != CHECKPOINT_VERSION:
            payload = UPGRADES[payload["version"]](payload) | {"version": payload["version"] + 1}
    except (KeyError, TypeError, ValueError) as error:
        raise CaptionerError(f"{path}: a damaged checkpoint ({broken_content(error)})") from None
    return payload


def model_from_checkpoint(payload: dict) -> CaptionModel:
    """Rebuild the network from a checkpoint; pretrained weights are never downloaded again."""
    args = payload["model_args"]
    model = CaptionModel(args["vocab_size"], {**args["encoder"], "weights": None}, args["decoder"])
    model.args = args
    model.load_state_dict(payload["state_dict"])
    return model


def _from_version_1(payload: dict) -> dict:
    """The word head moved into the decoder."""
    return payload | {"state_dict": _renamed(payload["state_dict"], "word_head.", "decoder.word_head.")}


def _from_version_2(payload: dict) -> dict:
    """The word-class settings left the decoder's arguments for its ``head``; the pointer's scale moved with them."""
    decoder = dict(payload["model_args"]["decoder"])
    groups = decoder.pop("word_classes", None)
    lm_weight = decoder.pop("class_lm_weight", 0.3)
    decoding_lm_weight = decoder.pop("decoding_class_lm_weight", None)
    pointer = decoder.pop("class_pointer", False)
    decoder["head"] = ({"name": "word_classes", "groups": groups, "lm_weight": lm_weight,
                        "decoding_lm_weight": decoding_lm_weight, "pointer": pointer} if groups else {"name": "plain"})
    state_dict = _renamed(payload["state_dict"], "decoder.pointer_scale", "decoder.head.pointer_scale")
    upgraded = payload | {"model_args": payload["model_args"] | {"decoder": decoder}, "state_dict": state_dict}
    if "averaged" in payload:  # a resumable checkpoint's weight average (torch's AveragedModel: keys under module.)
        upgraded["averaged"] = _renamed(payload["averaged"], "module.decoder.pointer_scale",
                                        "module.decoder.head.pointer_scale")
    return upgraded


def _from_version_3(payload: dict) -> dict:
    """The decoder read the whole grid, flattened, where today it reads a summary of it (by default the mean)."""
    decoder = payload["model_args"]["decoder"] | {"summary": "grid"}
    return payload | {"model_args": payload["model_args"] | {"decoder": decoder}}


# version -> its payload in the next version's layout
UPGRADES = {1: _from_version_1, 2: _from_version_2, 3: _from_version_3}


def _renamed(state: dict, old: str, new: str) -> dict:
    """``state`` with every key that starts with ``old`` starting with ``new`` instead, in the same order."""
    return {(new + key[len(old):] if key.startswith(old) else key): value for key, value in state.items()}


def broken_content(error: Exception) -> str:
    """What is wrong inside a checkpoint, in one line: the missing field, or the first of load_state_dict's
    complaints (a missing weight, a weight of another shape)."""
    if isinstance(error, KeyError):
        return f"no {error.args[0]!r} in it"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    detail = lines[1] if len(lines) > 1 and lines[0].startswith("Error(s) in loading") else lines[0] if lines else ""
    return detail if len(detail) <= 200 else detail[:200] + "..."


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__
