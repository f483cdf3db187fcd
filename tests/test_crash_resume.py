"""Crash-safe training: SIGKILL between checkpoints, resume, and end with an uninterrupted run's weights."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import cli, tiny_data

pytestmark = pytest.mark.slow


def step_of(path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["step"]


def test_sigkill_then_resume_ends_with_the_same_weights(tmp_path):
    settings = [*tiny_data(tmp_path), "model.image_size=32", "model.encoder.stage=layer1",
                "model.decoder.hidden_dim=16", "model.decoder.embed_dim=8", "trainer.max_epochs=20",
                "trainer.batch_size=8", "trainer.max_steps=60", "trainer.checkpoint_every_steps=4",
                "trainer.device=cpu", "test_split=null", "show_examples=0"]
    whole = cli("train", *settings, f"hydra.run.dir={tmp_path / 'whole'}", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr

    run_dir = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "captioner.cli.train", *settings, f"hydra.run.dir={run_dir}"],
                               cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (run_dir / "last.pt").is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)  # right after the first checkpoint: the steps after it are lost
    process.wait()
    assert process.returncode == -signal.SIGKILL
    killed_at = step_of(run_dir / "last.pt")  # complete and readable: written to a temp file, then renamed
    assert 0 < killed_at < 60

    resumed = cli("train", *settings, "trainer.resume=true", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {run_dir / 'last.pt'} at step {killed_at}" in resumed.stderr
    expected = torch.load(tmp_path / "whole" / "last.pt", map_location="cpu", weights_only=True)
    got = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)
    assert got["step"] == expected["step"] == 60
    for name, tensor in expected["state_dict"].items():
        assert torch.equal(got["state_dict"][name], tensor), name
