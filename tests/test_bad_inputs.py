"""The hostile and awkward image matrix, through the Python API and captioner-caption."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import cli
from PIL import Image

from captioner import Captioner
from captioner.data.images import load_image
from captioner.errors import ImageError


def png_claiming(width: int, height: int) -> bytes:
    """A tiny valid PNG whose header claims width x height pixels (a decompression bomb)."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    header = struct.pack(">II", width, height) + data[24:29]  # IHDR: size, then depth, colour, ...
    data[16:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + header))
    return bytes(data)


def saved(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def awkward_images() -> dict[str, bytes]:
    """Files that must be captioned normally, by name."""
    gradient = np.linspace(0, 65535, 64 * 48, dtype=np.uint16).reshape(48, 64)
    palette = Image.new("P", (40, 30), 1)
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 255, 0))]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=100)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees to show upright
    return {
        "cmyk.jpg": saved(Image.new("CMYK", (40, 30), (0, 255, 255, 0)), "JPEG"),
        "gray16.png": saved(Image.fromarray(gradient), "PNG"),  # mode I;16
        "palette_transparent.png": saved(palette, "PNG", transparency=0),
        "la.png": saved(Image.new("LA", (40, 30), (128, 100)), "PNG"),
        "animated.gif": gif.getvalue(),
        "rotated.jpg": saved(Image.new("RGB", (40, 30), (0, 128, 255)), "JPEG", exif=exif),
        "thin_3x2000.png": saved(Image.new("RGB", (3, 2000), (200, 30, 30)), "PNG"),
        "UPPER.PNG": saved(Image.new("RGB", (40, 30), (30, 200, 30)), "PNG"),
        "photo.webp": saved(Image.new("RGB", (40, 30), (30, 30, 200)), "WEBP"),
    }


def hostile_files() -> dict[str, tuple[bytes, str]]:
    """Files that must be refused, by name, with the reason's words."""
    jpeg = saved(Image.new("RGB", (64, 64), (1, 2, 3)), "JPEG")
    return {
        "empty.jpg": (b"", "empty file"),
        "text.png": (b"this is a text file, not an image\n" * 20, "not an image Pillow can read"),
        "truncated.jpg": (jpeg[: len(jpeg) // 3], "cannot decode image"),
        "random.jpg": (np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
                       "not an image Pillow can read"),
        "bomb.png": (png_claiming(40000, 40000), "refused: too many pixels"),
    }


@pytest.fixture(scope="module")
def matrix(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("matrix")
    for name, content in awkward_images().items():
        (folder / name).write_bytes(content)
    for name, (content, _) in hostile_files().items():
        (folder / name).write_bytes(content)
    return folder


@pytest.mark.parametrize("name", sorted(awkward_images()))
def test_awkward_images_are_read_as_upright_rgb(matrix, name):
    image = load_image(matrix / name)
    assert image.mode == "RGB"
    if name == "rotated.jpg":
        assert image.size == (30, 40)  # stored 40x30, shown upright
    if name == "palette_transparent.png":
        assert image.getpixel((0, 0)) == (0, 0, 255)  # index 1 is opaque blue
    if name == "animated.gif":
        assert image.getpixel((0, 0))[0] > 200  # the first (red) frame


@pytest.mark.parametrize("name", sorted(hostile_files()))
def test_hostile_files_are_refused_naming_the_file_and_reason(matrix, name):
    with pytest.raises(ImageError, match=hostile_files()[name][1]) as error:
        load_image(matrix / name)
    assert str(matrix / name) in str(error.value) and "\n" not in str(error.value)


def test_bomb_is_refused_before_decoding_pixels(matrix, monkeypatch):
    decoded = []
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(self) or None)
    with pytest.raises(ImageError, match="too many pixels"):
        load_image(matrix / "bomb.png")
    assert decoded == []


def test_python_api_captions_the_awkward_images(matrix, tiny_checkpoint):
    captioner = Captioner.load(tiny_checkpoint)
    names = sorted(awkward_images())
    results = list(captioner.caption_results([matrix / n for n in [*names, "bomb.png"]]))
    assert [r.error is None for r in results] == [True] * len(names) + [False]
    assert all(isinstance(r.caption, str) for r in results[:-1])


@pytest.mark.slow
def test_cli_captions_the_valid_and_lists_the_bad(matrix, trained, tmp_path):
    result = cli("caption", f"checkpoint={trained / 'run' / 'model.pt'}", f"input={matrix}", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    captioned = {Path(line.split("\t")[0]).name for line in result.stdout.splitlines()}
    assert captioned == set(awkward_images())
    bad = hostile_files()
    assert f"{len(bad)} of {len(bad) + len(awkward_images())} files could not be captioned" in result.stderr
    for name, (_, reason) in bad.items():
        assert f"  {matrix / name}: " in result.stderr and reason in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(hostile_files()))
def test_cli_single_hostile_file_is_one_line_and_non_zero(matrix, trained, tmp_path, name):
    result = cli("caption", f"checkpoint={trained / 'run' / 'model.pt'}", f"input={matrix / name}", cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [f"error: {matrix / name}: " + result.stderr.split(": ", 2)[2].strip()]
    assert hostile_files()[name][1] in result.stderr
