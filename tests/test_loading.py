"""The one image-loading path: files decoded by worker processes, in order, bad files as values."""

from __future__ import annotations

import shutil

import pytest

from captioner import Captioner, ImageError
from captioner.data.loading import default_workers, load_images
from captioner.data.transforms import Preprocess
from captioner.evaluation import caption_records


@pytest.fixture()
def files(tiny_records, tmp_path):
    """Nine images, a broken one at position 3 and an empty one at position 7."""
    paths = []
    for i, record in enumerate(tiny_records[:9]):
        path = tmp_path / f"{i}.png"
        shutil.copy(record.path, path)
        paths.append(path)
    paths[3].write_text("not an image")
    paths[7].write_bytes(b"")
    return paths


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_keep_the_input_order_and_carry_each_bad_files_reason(files, workers):
    batches = list(load_images(files, Preprocess(32).transform(), batch_size=4, num_workers=workers))
    assert [len(b.paths) for b in batches] == [4, 4, 1]
    assert [p for b in batches for p in b.paths] == [str(p) for p in files]
    errors = [e for b in batches for e in b.errors]
    assert errors[3] == "not an image Pillow can read" and errors[7] == "empty file"
    assert sum(e is not None for e in errors) == 2
    assert [b.pixels.shape[0] for b in batches] == [3, 3, 1]  # the readable ones only


def test_captions_from_worker_processes_equal_those_read_in_process(tiny_checkpoint, files):
    captioner = Captioner.load(tiny_checkpoint)
    in_process = list(captioner.caption_results(files, batch_size=4, num_workers=0))
    in_workers = list(captioner.caption_results(files, batch_size=4, num_workers=2))
    assert [(r.path, r.caption, r.error) for r in in_workers] == [(r.path, r.caption, r.error) for r in in_process]
    assert [r.error is not None for r in in_workers] == [i in (3, 7) for i in range(9)]


def test_evaluation_refuses_an_unreadable_image_naming_it(tiny_checkpoint, tiny_records, files):
    records = [r.__class__(r.image_id, p, r.captions, r.split) for r, p in zip(tiny_records, files)]
    with pytest.raises(ImageError, match="3.png: not an image Pillow can read"):
        caption_records(Captioner.load(tiny_checkpoint), records, num_workers=1)
    assert len(caption_records(Captioner.load(tiny_checkpoint), records[:3], batch_size=2)) == 3


def test_default_workers_leave_a_core_to_the_model(monkeypatch):
    for cores, workers in ((1, 0), (2, 0), (3, 2), (16, 8), (None, 0)):
        monkeypatch.setattr("os.cpu_count", lambda cores=cores: cores)
        assert default_workers() == workers
