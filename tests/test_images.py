import io

import numpy as np
import pytest
from PIL import Image

from captioner.data.images import load_image
from captioner.errors import ImageError


def save(image: Image.Image, path, **params):
    image.save(path, **params)
    return path


@pytest.mark.parametrize("mode", ["RGB", "L", "LA", "RGBA", "CMYK", "I;16", "1", "P"])
def test_modes_become_rgb(tmp_path, mode):
    image = Image.new(mode, (20, 10))
    path = save(image, tmp_path / ("x.tif" if mode == "CMYK" else "x.png"))
    loaded = load_image(path)
    assert loaded.mode == "RGB" and loaded.size == (20, 10)


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    pixels = np.full((4, 4), 32768, dtype=np.uint16)
    path = save(Image.fromarray(pixels), tmp_path / "deep.png")
    assert load_image(path).getpixel((0, 0)) == (127, 127, 127)


def test_transparency_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert load_image(save(rgba, tmp_path / "clear.png")).getpixel((0, 0)) == (255, 255, 255)
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([10, 20, 30] * 256)
    path = save(palette, tmp_path / "pal.png", transparency=0)
    assert load_image(path).getpixel((0, 0)) == (255, 255, 255)


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in ((250, 0, 0), (0, 0, 250))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    red, green, blue = load_image(path).getpixel((0, 0))
    assert red > 200 and blue < 50


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (30, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: display as 10x30
    path = save(image, tmp_path / "rot.jpg", exif=exif)
    assert load_image(path).size == (10, 30)


def test_pil_images_are_accepted():
    assert load_image(Image.new("LA", (3, 3))).mode == "RGB"


def jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize("name, content, reason", [
    ("empty.jpg", b"", "empty file"),
    ("notes.png", b"this is text, not an image\n", "not an image"),
    ("half.jpg", jpeg_bytes()[:300], "cannot decode"),
])
def test_unreadable_files_name_the_file_and_reason(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageError, match=reason) as error:
        load_image(path)
    assert str(path) in str(error.value)


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.png")
