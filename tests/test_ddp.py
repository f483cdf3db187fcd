"""DDP on CPU: two processes under torchrun train like one process with the same global batch."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import cli, tiny_data

pytestmark = pytest.mark.slow


def curve(run_dir) -> list[dict]:
    with (run_dir / "training_curve.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    settings = [*tiny_data(tmp_path), "model.image_size=32", "model.encoder.stage=layer2",
                "model.decoder.hidden_dim=32", "model.decoder.embed_dim=16", "trainer.batch_size=8",
                "trainer.max_epochs=4", "trainer.device=cpu",
                "trainer.amp=false", "trainer.warmup_steps=2", "show_examples=0", "metrics.meteor=false"]
    single = cli("train", *settings, f"hydra.run.dir={tmp_path / 'single'}", cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "captioner.cli.train", "trainer.strategy=ddp", *settings,
                          f"hydra.run.dir={tmp_path / 'ddp'}"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert ddp.returncode == 0, ddp.stderr
    assert ddp.stderr.count("training on 24 images") == 1  # only rank 0 logs
    one, two = curve(tmp_path / "single"), curve(tmp_path / "ddp")
    assert [row["step"] for row in two] == [row["step"] for row in one] == ["3", "6", "9", "12"]
    for a, b in zip(one, two):  # BatchNorm sees 4 images per process instead of 8: close, not equal
        assert float(b["train_loss"]) == pytest.approx(float(a["train_loss"]), rel=0.03)
        assert float(b["val_loss"]) == pytest.approx(float(a["val_loss"]), rel=0.03)
    assert float(two[-1]["train_loss"]) < float(two[0]["train_loss"])  # it learned
    assert (tmp_path / "ddp" / "model.pt").is_file() and (tmp_path / "ddp" / "metrics.json").is_file()


def test_ddp_outside_torchrun_says_how_to_launch(tmp_path):
    result = cli("train", "trainer.strategy=ddp", *tiny_data(tmp_path), f"hydra.run.dir={tmp_path / 'run'}",
                 cwd=tmp_path)
    assert result.returncode == 1 and "runs under torchrun: torchrun --standalone" in result.stderr


def one_and_two_processes(module: str, cwd, *overrides: str, name_override) -> dict:
    """``python -m captioner.cli.MODULE`` in one process and under torchrun in two; ``name_override(name)``
    adds each run's own override (its output). -> {"one": result, "two": result}."""
    launchers = {"one": [sys.executable, "-m", f"captioner.cli.{module}"],
                 "two": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                         "-m", f"captioner.cli.{module}"]}
    return {name: subprocess.run([*launcher, *overrides, name_override(name)], cwd=cwd, capture_output=True,
                                 text=True, timeout=600) for name, launcher in launchers.items()}


def test_captioning_under_torchrun_splits_the_files_and_writes_one_output_in_input_order(trained, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i, image in enumerate(sorted((trained / "data" / "images").rglob("*.png"))[:9]):
        shutil.copy(image, folder / f"{i}.png")
    (folder / "4.png").write_text("broken")  # a failure on one rank is reported by rank 0 all the same
    results = one_and_two_processes("caption", tmp_path, f"checkpoint={trained / 'run' / 'model.pt'}",
                                    f"input={folder}", "batch_size=2", "decode.beam_size=2",
                                    name_override=lambda name: f"output={tmp_path / name}.jsonl")
    outputs = {}
    for name, result in results.items():
        assert result.returncode == 1, result.stderr  # the broken file
        outputs[name] = (result.stdout, (tmp_path / f"{name}.jsonl").read_text())
        assert result.stderr.count("error: ") == 1 and "4.png: not an image Pillow can read" in result.stderr
    rows = [json.loads(line) for line in outputs["two"][1].splitlines()]
    assert [Path(r["path"]).name for r in rows] == [f"{i}.png" for i in range(9)]
    assert [(r["path"], r["caption"], r["error"]) for r in rows] == [
        (r["path"], r["caption"], r["error"]) for r in map(json.loads, outputs["one"][1].splitlines())]
    single = [json.loads(line)["log_prob"] for line in outputs["one"][1].splitlines()]
    assert [r["log_prob"] for r in rows] == pytest.approx(single, abs=1e-5)  # other batches: rounding at most
    assert outputs["two"][0] == outputs["one"][0]  # the same lines on stdout, in the same order


def test_evaluation_under_torchrun_scores_the_whole_split_as_one_process_does(trained, tmp_path):
    results = one_and_two_processes("evaluate", tmp_path, f"checkpoint={trained / 'run' / 'model.pt'}",
                                    *tiny_data(trained), "metrics.meteor=false", "batch_size=3", "device=cpu",
                                    name_override=lambda name: f"hydra.run.dir={tmp_path / name}")
    written = {}
    for name, result in results.items():
        assert result.returncode == 0, result.stderr
        assert result.stderr.count("captioning 8 test images") == 1  # rank 0 alone speaks
        written[name] = [json.loads((tmp_path / name / f).read_text()) for f in ("predictions.json", "metrics.json")]
    (one_predictions, one_metrics), (two_predictions, two_metrics) = written["one"], written["two"]
    assert two_predictions == one_predictions  # every image, in the split's order
    assert two_metrics == pytest.approx(one_metrics, abs=1e-4) and two_metrics["num_images"] == 8


def test_extraction_under_torchrun_writes_the_cache_one_process_writes(tmp_path):
    import numpy as np

    settings = [*tiny_data(tmp_path), "model.image_size=32", "model.encoder.stage=layer2", "model.encoder.freeze=true",
                "trainer.device=cpu", "trainer.amp=false", "splits=[train]", "chunk_rows=4"]
    runs = one_and_two_processes("extract", tmp_path, *settings,
                                 name_override=lambda name: f"trainer.feature_cache_dir={tmp_path / name}")
    for result in runs.values():
        assert result.returncode == 0, result.stderr
        assert result.stderr.count("wrote the feature cache") == 1  # rank 0 completes it
    one, two = (next((tmp_path / name).glob("*/features.npy")) for name in ("one", "two"))
    assert one.parent.name == two.parent.name  # the same key
    assert len(list(two.parent.glob("chunks-*.jsonl"))) == 2  # both processes encoded a share
    assert np.allclose(np.load(one), np.load(two), rtol=1e-3, atol=1e-3)  # batches of other sizes


def test_self_critical_training_runs_under_torchrun(tmp_path):
    settings = [*tiny_data(tmp_path), "model.image_size=32", "model.encoder.stage=layer2",
                "model.decoder.hidden_dim=32", "model.decoder.embed_dim=16", "trainer.batch_size=8",
                "trainer.device=cpu", "trainer.amp=false", "show_examples=0", "metrics.meteor=false"]
    first = cli("train", *settings, "trainer.max_steps=3", f"hydra.run.dir={tmp_path / 'xe'}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    scst = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "captioner.cli.train", "trainer.strategy=ddp", *settings, "trainer.objective=scst",
                           f"trainer.init_from={tmp_path / 'xe' / 'model.pt'}", "trainer.max_epochs=2",
                           "trainer.lr=1e-3", "trainer.scst.samples=2", f"hydra.run.dir={tmp_path / 'scst'}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert scst.returncode == 0, scst.stderr
    rows = curve(tmp_path / "scst")
    assert [row["step"] for row in rows] == ["3", "6"] and all(float(row["train_reward"]) >= 0 for row in rows)
    start, tuned = (torch.load(tmp_path / run / "last.pt", weights_only=True)["state_dict"] for run in ("xe", "scst"))
    assert not torch.equal(start["decoder.out.weight"], tuned["decoder.out.weight"])
