"""Config mistakes give one line saying what is wrong and what is valid, and no traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import cli, tiny_data
from PIL import Image

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("command, overrides, message", [
    ("train", ["model.encoder.name=resnet1000"],
     "unknown encoder 'resnet1000'; torchvision classification models are: "),
    ("train", ["model.decoder.cell=transformer"], "unknown decoder cell 'transformer'; choose one of: lstm, gru, rnn"),
    ("train", ["trainer.max_epochs=abc"],
     "trainer.max_epochs: Value 'abc' of type 'str' could not be converted to Integer"),
    ("train", ["model.decoder.hidden_dim=big"], "model.decoder.hidden_dim: Value 'big' of type 'str' could not be"),
    ("train", ["model/decoder/head=word_classes", "model.decoder.head.words=[[red,violett]]",
               "model.decoder.word_prior=true"],
     "model.decoder.head.words: 'violett' is not in the training captions' vocabulary"),
    ("train", ["model/decoder/head=word_classes", "model.decoder.head.words=[[red,blue]]"],
     "word classes need word_prior or attention_dim > 0"),
    ("train", ["model/decoder/head=word_classes", "model.decoder.head.words=[[red,blue]]",
               "model.decoder.word_prior=true", "model.decoder.head.pointer=true"],
     "the word-class pointer needs attention_dim > 0: it steers the attention"),
    ("train", ["model/decoder/head=word_classes", "model.decoder.word_prior=true"],
     "the word_classes head needs words"),
    ("train", ["trainer.monitor_mode=up"], "trainer.monitor_mode must be min or max, got 'up'"),
    ("train", ["trainer.device=tpu"], "device must be auto, cpu or cuda, got 'tpu'"),
    ("caption", ["checkpoint=missing.pt", "input=photo.png"], "missing.pt: checkpoint not found"),
    ("caption", ["checkpoint=missing.pt", "input=photo.png", "decode.beam_size=wide"],
     "decode.beam_size: Value 'wide'"),
    ("evaluate", ["checkpoint=missing.pt"], "missing.pt: checkpoint not found"),
    ("tag", ["checkpoint=missing.pt", "video=.", "video.every_seconds=often"], "video.every_seconds: Value 'often'"),
    ("caption", ["checkpoint=missing.pt", "input="], "the input is empty: give a file, a folder or a quoted glob"),
    ("tag", ["checkpoint=missing.pt", "video="], "the input is empty: give a file, a folder or a quoted glob"),
    ("caption", ["checkpoint=missing.pt", "input=photo.png", "batch_size=0"], "batch_size must be >= 1, got 0"),
    ("caption", ["checkpoint=missing.pt", "input=photo.png", "num_workers=-1"], "num_workers must be >= 0"),
    ("caption", ["checkpoint=missing.pt", "input=photo.png", "decode.length_penalty=nan"],
     "decode.length_penalty must be a number, got nan"),
    ("tag", ["checkpoint=missing.pt", "video=.", "video.every_seconds=0"],
     "video.every_seconds must be a number > 0, got 0.0"),
    ("tag", ["checkpoint=missing.pt", "video=.", "video.every_seconds=-1"],
     "video.every_seconds must be a number > 0, got -1.0"),
    # outputs checked before any work: a run's results are never lost at its end, nor a user's file overwritten
    ("caption", ["checkpoint=missing.pt", "input=photo.png", "output=photo.png/captions.json"],
     "photo.png/captions.json: cannot be written there ("),
    ("caption", ["checkpoint=missing.pt", "input=notes.json", "output=notes.json"],
     "notes.json: is one of the inputs; give another output"),
    ("caption", ["checkpoint=missing.pt", "input=photo.png", "output=taken.jsonl"],
     "taken.jsonl: already holds captions; resume=true goes on from it, or give another output"),
    ("tag", ["checkpoint=missing.pt", "video=photo.png", "out_dir=photo.png"], "cannot be written there ("),
])
def test_config_error_is_one_line(tmp_path, command, overrides, message):
    extra = ([*tiny_data(tmp_path), "trainer.max_steps=1", f"hydra.run.dir={tmp_path / 'run'}"]
             if command == "train" else [])
    Image.new("RGB", (8, 8)).save(tmp_path / "photo.png")
    (tmp_path / "notes.json").write_text("{}\n")
    (tmp_path / "taken.jsonl").write_text('{"path": "photo.png"}\n')
    result = cli(command, *overrides, *extra, cwd=tmp_path)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("overrides, message", [
    (["model/decoder=transformer"],  # Hydra's own words, at compose time
     "error: In 'train': Could not find 'model/decoder/transformer'; Available options in 'model/decoder': gru, "
     "lstm, rnn"),
    (["trainer.max_epoch=3"], "error: Could not override 'trainer.max_epoch'. To append to your config use "
                              "+trainer.max_epoch=3 (Key 'max_epoch' is not in struct)"),
])
def test_a_key_or_option_hydra_cannot_compose_is_one_line_naming_the_valid_ones(tmp_path, overrides, message):
    result = cli("train", *overrides, cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.strip() == message and result.stdout == ""
    full = subprocess.run([sys.executable, "-m", "captioner.cli.train", *overrides], capture_output=True, text=True,
                          cwd=tmp_path, env=os.environ | {"HYDRA_FULL_ERROR": "1"})
    assert full.returncode == 1 and "Traceback" in full.stderr  # asked for: the whole story
