"""Attention strips: drawn per word from the weights decoding used, by the Python API and captioner-caption."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import cli
from PIL import Image

from captioner import Captioner, CaptionerError
from captioner.pictures.attention import GAP, LABEL_HEIGHT, PANEL_HEIGHT, attention_strip


def test_a_strip_has_the_image_then_one_panel_per_word_bright_where_the_model_looked():
    image = Image.new("RGB", (200, 100), (200, 200, 200))
    left, right = np.zeros((2, 2)), np.zeros((2, 2))
    left[:, 0], right[:, 1] = 0.5, 0.5  # the first word looked at the left half, the second at the right
    strip = np.asarray(attention_strip(image, ["left", "right"], np.stack([left, right])), dtype=float)
    width = 2 * PANEL_HEIGHT  # the image's aspect, at most 2:1
    assert strip.shape == (PANEL_HEIGHT + LABEL_HEIGHT, 3 * width + 2 * GAP, 3)
    panels = [strip[:PANEL_HEIGHT, n * (width + GAP) : n * (width + GAP) + width] for n in range(3)]
    half = width // 2
    assert panels[1][:, : half - 20].mean() > panels[1][:, half + 20 :].mean() + 60
    assert panels[2][:, half + 20 :].mean() > panels[2][:, : half - 20].mean() + 60
    with pytest.raises(ValueError, match="2 words but 1 attention maps"):
        attention_strip(image, ["left", "right"], left[None])


def test_python_api_gives_each_word_its_attention_over_the_grid(attention_checkpoint, tiny_records):
    captioner = Captioner.load(attention_checkpoint)
    results = list(captioner.caption_results([r.path for r in tiny_records[:3]], attention=True))
    for result in results:
        words = result.caption.split()
        assert result.attention.shape == (len(words), 2, 2)  # the encoder's 2x2 grid
        assert np.allclose(result.attention.sum(axis=(1, 2)), 1.0, atol=1e-5)
    assert [r.caption for r in results] == captioner.caption([r.path for r in tiny_records[:3]])


def test_caption_cli_draws_a_strip_per_readable_image(attention_checkpoint, tiny_records, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i, record in enumerate(tiny_records[:3]):
        (images / f"{i}.png").write_bytes(record.path.read_bytes())
    (images / "broken.png").write_text("not a picture")
    strips = tmp_path / "strips"
    result = cli("caption", f"checkpoint={attention_checkpoint}", f"input={images}", f"attention_dir={strips}",
                 f"output={tmp_path / 'out.json'}", cwd=tmp_path)
    assert result.returncode == 1 and "broken.png: not an image Pillow can read" in result.stderr
    rows = json.loads((tmp_path / "out.json").read_text())
    drawn = [row for row in rows if row["error"] is None]
    assert len(drawn) == 3 and sorted(p.name for p in strips.iterdir()) == sorted(
        Path(row["attention"]).name for row in drawn)
    for row in drawn:
        with Image.open(row["attention"]) as strip:
            words = len(row["caption"].split())
            assert strip.format == "PNG" and strip.height == PANEL_HEIGHT + LABEL_HEIGHT
            assert strip.width == (words + 1) * (PANEL_HEIGHT + GAP) - GAP  # square images: square panels


def test_attention_strips_of_a_model_without_attention_are_one_line_and_nothing_is_written(tiny_checkpoint,
                                                                                             tiny_records, tmp_path):
    result = cli("caption", f"checkpoint={tiny_checkpoint}", f"input={tiny_records[0].path}",
                 f"attention_dir={tmp_path / 'strips'}", f"output={tmp_path / 'out.json'}", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == ("error: this model has no attention (trained with model.decoder.attention_dim=0): "
                                     "there is nowhere it looked to show")
    assert not (tmp_path / "strips").exists() and not (tmp_path / "out.json").exists() and result.stdout == ""
    with pytest.raises(CaptionerError, match="this model has no attention"):
        next(Captioner.load(tiny_checkpoint).caption_results([tiny_records[0].path], attention=True))
