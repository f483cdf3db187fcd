"""captioner: image captioning and video tagging with a CNN encoder and a recurrent decoder.

>>> from captioner import Captioner
>>> Captioner.load("outputs/demo/model.pt").caption(["photo.jpg"])
"""

from captioner.api import Captioner, CaptionResult
from captioner.errors import CaptionerError, ImageError

__all__ = ["CaptionResult", "Captioner", "CaptionerError", "ImageError"]
__version__ = "0.1.0"
