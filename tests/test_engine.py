"""The one captioning loop: every kind of input, every view of it and the command give the same captions."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import cli
from PIL import Image

from captioner import Candidate, Captioner
from captioner.data import loading
from captioner.data.images import load_image
from captioner.errors import ImageError

VERSION_3 = Path(__file__).parent / "fixtures" / "v3"
BIDIRECTIONAL = VERSION_3 / "v3_bidirectional_word_classes.pt"


def test_files_pictures_and_tensors_give_the_same_results_through_every_view(attention_checkpoint, tiny_records):
    captioner = Captioner.load(attention_checkpoint)
    paths = [r.path for r in tiny_records[:5]]
    pictures = [load_image(path) for path in paths]
    pixels = torch.stack([captioner.transform(picture) for picture in pictures])
    options = {"beam_size": 3, "num_captions": 2}
    from_files = list(captioner.caption_results(paths, batch_size=2, **options))
    assert [r.path for r in from_files] == [str(p) for p in paths]
    assert all(isinstance(c, Candidate) and len(r.candidates) == 2 for r in from_files for c in r.candidates)
    for images in (pictures, pixels, list(pixels), [paths[0], pictures[1], pixels[2], paths[3], pictures[4]]):
        assert captioner.caption_candidates(images, batch_size=2, **options) == [r.candidates for r in from_files]
    assert captioner.caption(pixels[0]) == captioner.caption(paths[0]) == [from_files[0].caption]  # one (3, S, S)
    assert [r.path for r in captioner.caption_results(pictures[:2])] == ["<image 0>", "<image 1>"]
    encoded = []
    captioner.model.encoder.body.register_forward_hook(lambda *_: encoded.append(1))
    attended = list(captioner.caption_results(paths, batch_size=2, attention=True, **options))
    assert len(encoded) == 3  # 5 images in batches of 2, each encoded once for the search and the maps
    assert [r.candidates for r in attended] == [r.candidates for r in from_files]
    assert all(r.attention.shape[0] == len(r.caption.split()) for r in attended)
    maps = captioner.attention_maps(pixels, [r.caption for r in attended])
    assert all(np.allclose(a, r.attention, atol=1e-6) for a, r in zip(maps, attended))


def test_an_unreadable_image_is_a_result_in_the_loop_and_an_error_in_the_views(tiny_checkpoint, tiny_records,
                                                                              tmp_path):
    captioner = Captioner.load(tiny_checkpoint)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    images = [tiny_records[0].path, broken, load_image(tiny_records[1].path)]
    results = list(captioner.caption_results(images, batch_size=2))
    assert [r.error for r in results] == [None, "not an image Pillow can read", None]
    assert [r.caption for r in results if r.error is None] == captioner.caption([images[0], images[2]])
    with pytest.raises(ImageError, match="broken.png: not an image Pillow can read"):
        captioner.caption(images)
    with pytest.raises(Exception, match="decode.beam_size must be >= 1"):
        captioner.caption_results(images, beam_size=0)  # checked at the call, before anything is read


def worker_pid(image) -> torch.Tensor:
    """A transform that says which process read the image."""
    return torch.tensor([float(os.getpid())])


@pytest.mark.parametrize("count, in_memory, in_workers", [(9, False, True), (4, False, False), (9, True, False)])
def test_loader_processes_read_files_only_when_there_is_more_than_a_batch(tiny_records, monkeypatch, count,
                                                                          in_memory, in_workers):
    monkeypatch.setattr(loading, "default_workers", lambda: 1)
    images = [tiny_records[i % len(tiny_records)].path for i in range(count)]
    if in_memory:
        images = [Image.open(path).convert("RGB") for path in images]
    pids = {int(p) for batch in loading.load_images(images, worker_pid, batch_size=4) for p in batch.pixels[:, 0]}
    assert (pids != {os.getpid()}) == in_workers


def test_the_command_and_python_caption_alike_with_a_re_ranker_and_head_settings(tmp_path):
    images = sorted((VERSION_3 / "images").glob("*.png"))
    output = tmp_path / "captions.json"
    result = cli("caption", f"checkpoint={BIDIRECTIONAL}", f"input={VERSION_3 / 'images'}", f"output={output}",
                 "decode.beam_size=3", "decode.num_captions=2", "rerank=bidirectional", "rerank.weight=0.5",
                 "head.decoding_lm_weight=0.5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = json.loads(output.read_text())
    captioner = Captioner.load(BIDIRECTIONAL, rerank={"name": "bidirectional", "weight": 0.5},
                               head={"decoding_lm_weight": 0.5})
    expected = captioner.caption_candidates(images, beam_size=3, num_captions=2)
    assert [[c["caption"] for c in row["candidates"]] for row in rows] == [[c.caption for c in e] for e in expected]
    plain = Captioner.load(BIDIRECTIONAL).caption_candidates(images, beam_size=3, num_captions=2)
    assert expected != plain  # the settings took effect


@pytest.mark.parametrize("overrides, message", [
    (["rerank=bidirectional"], "rerank=bidirectional needs a model trained with model.decoder.bidirectional=true"),
    (["head.decoding_lm_weight=0.5"], "head.decoding_lm_weight: the plain head of this model has no such decoding"),
    (["rerank=bidirectional", "rerank.weight=abc"], "rerank.weight must be a number, got abc"),
])
def test_settings_a_model_cannot_take_are_one_line(tiny_checkpoint, tiny_records, tmp_path, overrides, message):
    result = cli("caption", f"checkpoint={tiny_checkpoint}", f"input={tiny_records[0].path}", *overrides,
                 cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith(f"error: {message}") and len(result.stderr.strip().splitlines()) == 1
