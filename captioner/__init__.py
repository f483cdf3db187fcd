"""captioner: image captioning and video tagging with a CNN encoder and a recurrent decoder.

>>> from captioner import Captioner, train
>>> Captioner.load("outputs/demo/model.pt").caption(["photo.jpg"], beam_size=3)
"""

from captioner.api import Captioner, CaptionResult
from captioner.errors import CaptionerError, ImageError
from captioner.recipe import train

__all__ = ["CaptionResult", "Captioner", "CaptionerError", "ImageError", "train"]
__version__ = "0.1.0"
