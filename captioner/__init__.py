"""captioner: image captioning and video tagging with a CNN encoder and a recurrent decoder.

>>> from captioner import Captioner, train
>>> Captioner.load("outputs/demo/model.pt").caption(["photo.jpg"], beam_size=3)

The names below load on first use (PEP 562), so that ``import captioner.video...`` does not pull
in ``torch``: the video analysis process and the command's start stay light.
"""

from __future__ import annotations

import importlib

from captioner.errors import CaptionerError, ImageError

_LAZY = {"Candidate": "captioner.api", "Captioner": "captioner.api", "CaptionResult": "captioner.api",
         "train": "captioner.recipe"}

__all__ = ["Candidate", "CaptionResult", "Captioner", "CaptionerError", "ImageError", "train"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'captioner' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
