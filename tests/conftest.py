"""Shared fixtures: a tiny synthetic dataset and a tiny trained checkpoint (built once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from captioner.data.build_synthetic import synthetic_dataset
from captioner.training import TrainerConfig

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"

TINY_ENCODER = {"name": "resnet18", "weights": None, "grid_size": 2}
TINY_DECODER = {"cell": "lstm", "embed_dim": 16, "hidden_dim": 32, "num_layers": 1, "dropout": 0.0}


def tiny_trainer(**overrides) -> TrainerConfig:
    settings = {"device": "cpu", "max_epochs": 1, "batch_size": 8, "warmup_steps": 2, "checkpoint_every_steps": 1000,
                "val_batch_size": 16}
    return TrainerConfig(**(settings | overrides))


@pytest.fixture(scope="session")
def media() -> Path:
    if not MEDIA.is_dir():
        pytest.skip(f"shared media not found at {MEDIA}")
    return MEDIA


@pytest.fixture(scope="session")
def tiny_data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("synthetic")


@pytest.fixture(scope="session")
def tiny_records(tiny_data_root):
    return synthetic_dataset(tiny_data_root, image_size=32, num_train=48, num_val=16, num_test=20, seed=3)


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_records, tmp_path_factory) -> Path:
    from captioner.cli.train import run

    out_dir = tmp_path_factory.mktemp("run")
    run(tiny_records, out_dir, TINY_ENCODER, TINY_DECODER, tiny_trainer(max_steps=3), image_size=32, test_split=None)
    return out_dir / "model.pt"
