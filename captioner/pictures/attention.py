"""Where the model looked: the image, then one panel per word of its caption with the attention
over the encoder's grid upsampled onto the image (as the figures of Show, Attend and Tell, Xu et
al., 2015). Drawn with Pillow and numpy: a few milliseconds a strip, so a report can hold thousands.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from captioner.io import atomic_open

PANEL_HEIGHT = 160
LABEL_HEIGHT = 26
GAP = 4
BACKGROUND = (255, 255, 255)


def attention_strip(image: Image.Image, words: list[str], maps: np.ndarray, panel_height: int = PANEL_HEIGHT
                    ) -> Image.Image:
    """``image`` (RGB), the caption's ``words`` and their attention ``maps`` (words, grid, grid) -> one
    picture: the image, then per word the image darkened where the model did not look and tinted
    where it did (each map scaled to its own peak, upsampled bicubically), the word below."""
    if len(words) != len(maps):
        raise ValueError(f"{len(words)} words but {len(maps)} attention maps")
    width = min(2 * panel_height, max(1, round(panel_height * image.width / image.height)))
    shown = image.convert("RGB").resize((width, panel_height), Image.Resampling.BICUBIC)
    pixels = np.asarray(shown, dtype=np.float32) / 255.0  # (H, W, 3)
    panels = [shown] + [_overlay(pixels, weights) for weights in maps]
    labels = ["(image)"] + list(words)
    strip = Image.new("RGB", (len(panels) * (width + GAP) - GAP, panel_height + LABEL_HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(strip)
    font = ImageFont.load_default(size=15)
    for n, (panel, label) in enumerate(zip(panels, labels)):
        x = n * (width + GAP)
        strip.paste(panel, (x, 0))
        text_width = draw.textlength(label, font=font)
        draw.text((x + max(0, (width - text_width) / 2), panel_height + 4), label, font=font,
                  fill=(110, 110, 110) if n == 0 else (0, 0, 0))
    return strip


def _overlay(pixels: np.ndarray, weights: np.ndarray) -> Image.Image:
    height, width = pixels.shape[:2]
    peak = float(weights.max()) or 1.0
    heat = Image.fromarray((weights / peak).astype(np.float32), mode="F").resize((width, height),
                                                                               Image.Resampling.BICUBIC)
    heat = np.clip(np.asarray(heat), 0.0, 1.0)[..., None]  # (H, W, 1)
    tint = np.array([1.0, 0.85, 0.2], dtype=np.float32)  # warm yellow where the model looked
    mixed = pixels * (0.2 + 0.8 * heat) * (1 - 0.35 * heat) + 0.35 * heat * tint
    return Image.fromarray((np.clip(mixed, 0, 1) * 255).astype(np.uint8))


def write_attention_strip(path: str | Path, image: Image.Image, caption: str, maps: np.ndarray,
                          panel_height: int = PANEL_HEIGHT) -> Path:
    """Write the strip of ``caption`` on ``image`` atomically, as a PNG (lossless) or, for a path ending
    in ``.jpg``, a JPEG (a seventh of the size: what a report of thousands of images holds); -> its path."""
    strip = attention_strip(image, caption.split(), maps, panel_height)
    with atomic_open(path, "wb") as handle:
        if Path(path).suffix.lower() == ".jpg":
            strip.save(handle, format="JPEG", quality=85)
        else:  # zlib level 1: a sixth of the default level's time, files a little larger (benchmarks/README.md)
            strip.save(handle, format="PNG", compress_level=1)
    return Path(path)
