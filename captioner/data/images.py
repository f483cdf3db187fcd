"""Reading any image Pillow opens as upright 8-bit RGB, with errors that name the file."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from captioner.errors import ImageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
_BACKGROUND = (255, 255, 255)  # transparent pixels are shown on white, as viewers do


def load_image(source: str | Path | Image.Image | bytes, name: str = "upload") -> Image.Image:
    """An RGB image from a path, a PIL image or a file's bytes (``name`` in messages: an upload's).

    EXIF orientation is applied; transparency is composited on white; 16-bit images are
    scaled to 8 bits; animated images give their first frame. A file that cannot be read
    raises :class:`ImageError` naming it and the reason.
    """
    if isinstance(source, Image.Image):
        return to_rgb(source)
    in_memory = isinstance(source, bytes)
    label = name if in_memory else Path(source)
    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that: refuse those too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(source) if in_memory else label) as image:
                image.seek(0)
                image.load()
                return to_rgb(image)
    except FileNotFoundError:
        raise ImageError(label, "no such file") from None
    except IsADirectoryError:
        raise ImageError(label, "is a directory") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(label, f"refused: too many pixels ({error})") from None
    except Image.UnidentifiedImageError:
        size = len(source) if in_memory else label.stat().st_size if label.exists() else 0
        reason = "empty file" if size == 0 else "not an image Pillow can read"
        raise ImageError(label, reason) from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageError(label, f"cannot decode image ({error})") from None


def to_rgb(image: Image.Image) -> Image.Image:
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        pixels = np.asarray(image, dtype=np.float64)
        scale = 255.0 / 65535.0 if pixels.max(initial=0) > 255 else 1.0
        image = Image.fromarray(np.clip(pixels * scale, 0, 255).astype(np.uint8), mode="L")
    elif image.mode == "F":
        image = Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
