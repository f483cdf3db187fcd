"""Shared fixtures: a tiny synthetic dataset and a tiny trained checkpoint (built once)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from captioner.recipe import train
from captioner.synthetic.dataset import synthetic_dataset
from captioner.training import Trainer
from captioner.training_config import TrainerConfig

ROOT = Path(__file__).resolve().parents[1]

# The tests press Ctrl-C on the commands they start (SIGINT). A shell's background job starts with
# SIGINT ignored, and a child inherits that: the commands would never see it. A handler (not "ignore")
# here lets every command start with the default, as from a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
MEDIA = ROOT.parent / "shared" / "media"

TINY_ENCODER = {"name": "resnet18", "weights": None, "grid_size": 2}
TINY_DECODER = {"cell": "lstm", "embed_dim": 16, "hidden_dim": 32, "num_layers": 1, "dropout": 0.0}


def tiny_trainer(**overrides) -> TrainerConfig:
    settings = {"device": "cpu", "max_epochs": 1, "batch_size": 8, "warmup_steps": 2, "checkpoint_every_steps": 1000,
                "val_batch_size": 16}
    return TrainerConfig(**(settings | overrides))


@pytest.fixture(scope="session", autouse=True)
def cache_home(tmp_path_factory) -> Path:
    """Feature caches (and anything else kept in the user's cache) go to a temporary folder, in
    this process and in the commands it runs."""
    folder = tmp_path_factory.mktemp("cache_home")
    os.environ["XDG_CACHE_HOME"] = str(folder)
    return folder


def missing(cuda: bool = False, chromium: bool = False, media: bool = False, submitit: bool = False,
            java: bool = False, curl: bool = False) -> list[str]:
    """What this machine lacks of what a test needs, each said so that a reader can install it."""
    import torch

    needs = [
        (cuda, lambda: torch.cuda.is_available(), "a CUDA device"),
        (chromium, lambda: any(map(shutil.which, ("chromium", "chromium-browser", "google-chrome")))
         and shutil.which("chromedriver"), "headless Chromium with its driver (Debian: apt-get install chromium "
                                           "chromium-driver)"),
        (media, MEDIA.is_dir, f"the shared media at {MEDIA}"),
        (submitit, lambda: importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher"),
         "hydra-submitit-launcher"),
        (java, lambda: shutil.which("java"), "Java"),
        (curl, lambda: shutil.which("curl"), "curl"),
    ]
    return [what for wanted, present, what in needs if wanted and not present()]


def run_if(**needs: bool) -> pytest.MarkDecorator:
    """One skip marker for what a test needs (as lightning-hydra-template's ``RunIf``): ``@run_if(cuda=True)``;
    the reason names each missing thing."""
    lacking = missing(**needs)
    return pytest.mark.skipif(bool(lacking), reason="needs " + ", ".join(lacking))


@pytest.fixture(scope="session")
def media() -> Path:
    if missing(media=True):
        pytest.skip("needs " + ", ".join(missing(media=True)))
    return MEDIA


@pytest.fixture(scope="session")
def tiny_data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("synthetic")


@pytest.fixture(scope="session")
def tiny_records(tiny_data_root):
    return synthetic_dataset(tiny_data_root, image_size=32, num_train=48, num_val=16, num_test=20, seed=3)


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_records, tmp_path_factory) -> Path:
    out_dir = tmp_path_factory.mktemp("run")
    train(tiny_records, out_dir, TINY_ENCODER, TINY_DECODER, tiny_trainer(max_steps=3), image_size=32, test_split=None)
    return out_dir / "model.pt"


@pytest.fixture(scope="session")
def attention_checkpoint(tiny_records, tmp_path_factory) -> Path:
    """A tiny model that attends over its encoder's 2x2 grid."""
    out_dir = tmp_path_factory.mktemp("attention_run")
    train(tiny_records, out_dir, TINY_ENCODER, TINY_DECODER | {"attention_dim": 8}, tiny_trainer(max_steps=3),
          image_size=32, test_split=None)
    return out_dir / "model.pt"


@contextlib.contextmanager
def interrupted_at_step(step: int = 5) -> Iterator[None]:
    """Inside the block a real SIGINT (Ctrl-C) arrives as the ``step``-th optimizer step begins: the step
    runs to its end, last.pt is saved with it, and the run stops."""
    real, calls = Trainer._step, [0]

    def interrupting(self, *args):
        calls[0] += 1
        if calls[0] == step:
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, *args)

    Trainer._step = interrupting
    try:
        yield
    finally:
        Trainer._step = real


def tiny_data(work: Path) -> list[str]:
    """Overrides for a tiny synthetic dataset under ``work/data`` (the same in every command)."""
    return [f"data.root={work / 'data'}", "data.num_train=24", "data.num_val=8", "data.num_test=8",
            "data.image_size=32"]


def cli(module: str, *overrides: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"captioner.cli.{module}", *overrides], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Path:
    """A tiny model trained for a few steps through captioner-train."""
    work = tmp_path_factory.mktemp("cli")
    result = cli("train", *tiny_data(work), "model.image_size=32", "model.decoder.hidden_dim=16",
                 "model.decoder.embed_dim=8", "trainer.max_steps=3", "trainer.batch_size=8", "trainer.device=cpu",
                 "show_examples=2", f"hydra.run.dir={work / 'run'}")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("  model:") == 2 and result.stderr.count("  reference:") == 2
    assert "attribute_accuracy=" in result.stderr and "CIDEr=" in result.stderr
    return work


@contextlib.contextmanager
def served(checkpoint: Path, *overrides: str) -> Iterator[str]:
    """``captioner-serve`` in a subprocess on a free loopback port; -> its URL once ``/health`` answers.
    Stopped with Ctrl-C at the end, which must end it cleanly."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "captioner.cli.serve", f"checkpoint={checkpoint}",
                                f"port={port}", *overrides], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    wait_until_serving(url, process)
    try:
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0 and "Traceback" not in stderr, stderr


def wait_until_serving(url: str, process: subprocess.Popen, seconds: float = 120) -> None:
    """Return once ``url/health`` answers; fail with the server's stderr if it exits first."""
    deadline = time.monotonic() + seconds
    while True:
        assert process.poll() is None, process.communicate()[1]
        try:
            urllib.request.urlopen(f"{url}/health", timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"{url} did not answer in {seconds:.0f} s"
            time.sleep(0.1)


@contextlib.contextmanager
def small_disk(folder: Path, size: int) -> Iterator[Path]:
    """A tmpfs of ``size`` bytes mounted on ``folder``: a real disk that fills (mounting takes root)."""
    folder.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("needs a small disk: no mount command")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"needs a small disk: mounting a tmpfs failed ({mounted.stderr.strip()})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)
