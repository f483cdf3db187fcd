"""The feature cache: rows equal to the frozen encoder's features, never stale, resumable, checked, and
training from it follows training from images."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
import torch
from conftest import TINY_DECODER, cli, small_disk, tiny_data, tiny_trainer

from captioner import CaptionerError, ImageError
from captioner import feature_cache as fc
from captioner.data.images import load_image
from captioner.data.transforms import Preprocess
from captioner.feature_cache import Extraction, cached_features
from captioner.models.encoder import Encoder
from captioner.recipe import train

SMALL = {"name": "resnet18", "weights": None, "grid_size": 2, "stage": "layer2", "freeze": True}


def frozen_encoder(**overrides) -> Encoder:
    torch.manual_seed(0)
    return Encoder(**(SMALL | overrides))


@pytest.fixture
def images(tiny_records, tmp_path) -> list:
    """Copies of 20 images, so a test may change them."""
    folder = tmp_path / "images"
    folder.mkdir()
    return [shutil.copy(r.path, folder / f"{i:02d}.png") for i, r in enumerate(tiny_records[:20])]


def extract(images, cache, encoder=None, preprocess=Preprocess(32), **extraction):
    settings = {"batch_size": 4, "chunk_rows": 4, "num_workers": 0} | extraction
    return cached_features(encoder or frozen_encoder(), preprocess, images, cache, Extraction(**settings))


def test_rows_are_the_frozen_encoders_features_in_fp16_and_a_second_call_reads_them(images, tmp_path, capsys):
    encoder, preprocess = frozen_encoder(), Preprocess(32)
    rows = extract(images, tmp_path / "cache", encoder)
    assert "extracting features of 20 images" in capsys.readouterr().err
    with torch.no_grad():
        expected = encoder.grid_features(torch.stack([preprocess.transform()(load_image(p)) for p in images]))
    assert len(rows) == 20 and rows[0].dtype == torch.float32 and rows[0].shape == (encoder.feature_dim,)
    cached = torch.stack([rows[i] for i in range(20)])
    assert torch.allclose(cached, expected, rtol=2e-3, atol=1e-3)  # fp16: 11 bits of mantissa
    again = extract(images, tmp_path / "cache", encoder)
    assert "reading cached features" in capsys.readouterr().err and again.path == rows.path


@pytest.mark.parametrize("change", ["grid size", "stage", "weights", "image size", "precision", "an image file",
                                    "the image list"])
def test_a_cache_made_with_other_settings_or_images_is_never_read(change, images, tmp_path):
    before = extract(images, tmp_path / "cache").path.parent
    encoder, preprocess, extraction, paths = frozen_encoder(), Preprocess(32), {}, list(images)
    if change == "grid size":
        encoder = frozen_encoder(grid_size=1)
    elif change == "stage":
        encoder = frozen_encoder(stage="layer3")
    elif change == "weights":
        with torch.no_grad():
            next(encoder.body.parameters()).add_(1e-3)
    elif change == "image size":
        preprocess = Preprocess(40)
    elif change == "precision":
        extraction = {"autocast": torch.bfloat16}
    elif change == "an image file":
        load_image(paths[3]).rotate(90).save(paths[3])
    else:
        paths = paths[:-1]
    after = extract(paths, tmp_path / "cache", encoder, preprocess, **extraction).path.parent
    assert after != before and (after / fc.COMPLETE).is_file()


def test_an_interrupted_extraction_goes_on_from_its_recorded_chunks(images, tmp_path, monkeypatch, capsys):
    encode, batches = fc._encode, []

    def interrupted(*args):
        if len(batches) == 2:
            raise KeyboardInterrupt
        batches.append(1)
        return encode(*args)

    monkeypatch.setattr(fc, "_encode", interrupted)
    with pytest.raises(KeyboardInterrupt):
        extract(images, tmp_path / "cache")
    monkeypatch.setattr(fc, "_encode", lambda *args: batches.append(1) or encode(*args))
    resumed = extract(images, tmp_path / "cache")
    assert "going on: 2 of 5 chunks done" in capsys.readouterr().err
    assert len(batches) == 2 + 3  # the 3 chunks left, one batch each
    whole = extract(images, tmp_path / "uninterrupted")
    assert np.array_equal(resumed.array(), whole.array())


@pytest.mark.parametrize("damage", ["flipped bytes", "truncated"])
def test_a_damaged_cache_is_rebuilt_with_a_note(damage, images, tmp_path, capsys):
    rows = extract(images, tmp_path / "cache")
    good = np.array(rows.array())
    data = bytearray(rows.path.read_bytes())
    if damage == "flipped bytes":
        data[-100:-90] = bytes(b ^ 0xFF for b in data[-100:-90])
        reason = "chunk 4 of 5 does not match its checksum"
    else:
        data = data[: len(data) // 2]
        reason = "features.npy: mmap length is greater than file size"
    rows.path.write_bytes(bytes(data))
    capsys.readouterr()
    rebuilt = extract(images, tmp_path / "cache")
    assert f"is damaged ({reason}); rebuilding it" in capsys.readouterr().err
    assert np.array_equal(rebuilt.array(), good)


def test_an_unreadable_image_stops_extraction_naming_it(images, tmp_path):
    images[7].write_text("not a picture")
    with pytest.raises(ImageError, match=f"{images[7]}: not an image Pillow can read"):
        extract(images, tmp_path / "cache")


def test_an_encoder_that_trains_has_no_cache(images, tmp_path):
    with pytest.raises(CaptionerError, match="set model.encoder.freeze=true"):
        extract(images, tmp_path / "cache", frozen_encoder(freeze=False))


def curve(run_dir) -> list[dict]:
    with (run_dir / "training_curve.csv").open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("finetune", [None, 1])
def test_training_from_the_cache_follows_training_from_images(finetune, tiny_records, tmp_path, capsys):
    """fp32 (amp off): the fp16 rows are the only difference; after finetune_after_epochs the images come back."""
    runs = {}
    for name, cached in (("images", False), ("cache", True)):
        trainer = tiny_trainer(max_epochs=3, amp=False, finetune_after_epochs=finetune, feature_cache=cached,
                               feature_cache_dir=str(tmp_path / "cache"), num_workers=1 if cached else 0)
        torch.manual_seed(0)
        train(tiny_records, tmp_path / name, SMALL, TINY_DECODER, trainer, image_size=32, test_split=None)
        runs[name] = curve(tmp_path / name)
    assert "extracting features of 48 images" in capsys.readouterr().err
    for a, b in zip(runs["images"], runs["cache"]):
        for key in ("train_loss", "val_loss"):
            assert float(b[key]) == pytest.approx(float(a[key]), rel=2e-3), (a["epoch"], key)


def test_train_from_a_cache_made_by_captioner_extract(tmp_path):
    settings = [*tiny_data(tmp_path), "model.image_size=32", "model.encoder.stage=layer2",
                "model.encoder.freeze=true", f"trainer.feature_cache_dir={tmp_path / 'cache'}", "trainer.device=cpu"]
    extracted = cli("extract", *settings, f"hydra.run.dir={tmp_path / 'extract'}", cwd=tmp_path)
    assert extracted.returncode == 0, extracted.stderr
    assert extracted.stderr.count("wrote the feature cache") == 2  # train and val
    trained = cli("train", *settings, "trainer.feature_cache=true", "trainer.max_epochs=1", "show_examples=0",
                  f"hydra.run.dir={tmp_path / 'train'}", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert trained.stderr.count("reading cached features") == 2 and "extracting" not in trained.stderr


def test_feature_cache_without_a_frozen_encoder_is_one_line(tmp_path):
    result = cli("train", *tiny_data(tmp_path), "trainer.feature_cache=true", f"hydra.run.dir={tmp_path / 'run'}",
                 cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == ("error: trainer.feature_cache=true caches a frozen encoder's "
                                                      "features: set model.encoder.freeze=true")


def test_a_feature_cache_the_disk_has_no_room_for_is_refused_before_any_image_is_encoded(images, tmp_path, capsys):
    with small_disk(tmp_path / "disk", 16 * 2**10) as disk:
        with pytest.raises(CaptionerError, match=r"the feature cache needs 20 KiB more for 20 images, \d+ KiB free "
                                                 r"there \(trainer.feature_cache_dir= puts it on another disk\)"):
            extract(images, disk / "cache")
        assert "extracting features" not in capsys.readouterr().err
