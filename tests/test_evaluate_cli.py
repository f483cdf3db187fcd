"""captioner-evaluate and multirun summaries, end to end in a subprocess."""

from __future__ import annotations

import csv
import json

import pytest
from conftest import cli, tiny_data
from PIL import Image

pytestmark = pytest.mark.slow


def test_evaluate_a_model_on_the_synthetic_test_split(trained, tmp_path):
    out = tmp_path / "eval"
    result = cli("evaluate", f"checkpoint={trained / 'run' / 'model.pt'}", *tiny_data(trained), "decode.beam_size=3",
                 "device=cpu", f"hydra.run.dir={out}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    predictions = json.loads((out / "predictions.json").read_text())
    split = json.loads((trained / "data" / "dataset_synthetic.json").read_text())["images"]
    assert [p["image_id"] for p in predictions] == [e["imgid"] for e in split if e["split"] == "test"]
    assert all(set(p) == {"image_id", "caption"} and isinstance(p["caption"], str) for p in predictions)
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"Bleu_1", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "attribute_accuracy", "num_images"} <= set(metrics)
    assert metrics["num_images"] == 8
    assert "CIDEr" in result.stdout and "Bleu_4" in result.stdout  # the table


def test_evaluate_a_results_file_against_coco_references(media, tmp_path):
    out = tmp_path / "eval"
    result = cli("evaluate", f"predictions={media / 'coco' / 'fakecap_results_subset134.json'}",
                 f"references={media / 'coco' / 'captions_val2014_subset134.json'}", f"hydra.run.dir={out}",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_images"] == 134 and 0.4 < metrics["CIDEr"] < 0.7
    assert not (tmp_path / "data").exists()  # no dataset generated when none is needed


@pytest.mark.parametrize("overrides, message", [
    ([], "nothing to evaluate"),
    (["checkpoint=x.pt", "predictions=y.json"], "not both"),
    (["checkpoint=nope.pt"], "nope.pt: checkpoint not found"),
    (["predictions=p.json", "references=r.json"], "p.json: file not found"),
    (["checkpoint=x.pt", "decode.beam_size=0"], "decode.beam_size must be >= 1"),
    (["predictions=p.json", "references=r.json", "report=true"], "report=true shows each image beside its caption"),
])
def test_evaluate_errors_are_one_line(tmp_path, overrides, message):
    result = cli("evaluate", *overrides, f"hydra.run.dir={tmp_path / 'eval'}", cwd=tmp_path)
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()  # refused before generating any data


def read_summary(sweep_dir):
    with (sweep_dir / "summary.csv").open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]],
                         ids=["basic", "joblib"])
def test_decoding_sweep_ends_in_one_summary_table(trained, tmp_path, launcher):
    sweep = tmp_path / "sweep"
    result = cli("evaluate", "-m", f"checkpoint={trained / 'run' / 'model.pt'}", *tiny_data(trained),
                 "decode.beam_size=1,3", "decode.length_penalty=0,0.7", "metrics.meteor=false", "device=cpu",
                 f"hydra.sweep.dir={sweep}", *launcher, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = read_summary(sweep)
    assert len(rows) == 4
    assert list(rows[0])[:2] == ["decode.beam_size", "decode.length_penalty"]
    assert {(r["decode.beam_size"], r["decode.length_penalty"]) for r in rows} == {
        ("1", "0"), ("1", "0.7"), ("3", "0"), ("3", "0.7")}
    cider = [float(r["CIDEr"]) for r in rows]
    assert cider == sorted(cider, reverse=True)  # best CIDEr first
    assert len(list(sweep.glob("*decode.beam_size=3,decode.length_penalty=0.7*/metrics.json"))) == 1
    markdown = (sweep / "summary.md").read_text()
    assert "| decode.beam_size | decode.length_penalty |" in markdown and markdown.count("\n|") == 6
    assert f"`checkpoint={trained / 'run' / 'model.pt'}`" in markdown  # what every job shared


def test_a_failing_job_does_not_stop_the_sweep_and_is_listed(trained, tmp_path):
    sweep = tmp_path / "sweep"
    result = cli("evaluate", "-m", f"checkpoint={trained / 'run' / 'model.pt'}", *tiny_data(trained),
                 "decode.beam_size=0,1,2", "metrics.meteor=false", "device=cpu", f"hydra.sweep.dir={sweep}",
                 cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert sorted(r["decode.beam_size"] for r in read_summary(sweep)) == ["1", "2"]  # the jobs after it ran
    failure = "decode.beam_size=0: decode.beam_size must be >= 1, got 0"
    assert f"1 of 3 jobs failed:\n  {failure}" in result.stderr
    assert f"- `{failure.replace(': ', '`: ', 1)}" in (sweep / "summary.md").read_text()


def test_training_sweep_ends_in_one_summary_table(trained, tmp_path):
    sweep = tmp_path / "sweep"
    result = cli("train", "-m", *tiny_data(trained), "model.image_size=32", "model.decoder.hidden_dim=16",
                 "model.decoder.embed_dim=8", "trainer.max_steps=2", "trainer.batch_size=8", "trainer.device=cpu",
                 "model/decoder=lstm,gru", "metrics.meteor=false", "show_examples=0", f"hydra.sweep.dir={sweep}",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = read_summary(sweep)
    assert sorted(r["model/decoder"] for r in rows) == ["gru", "lstm"]
    assert {"CIDEr", "attribute_accuracy", "val_loss"} <= set(rows[0])
    cider = [float(r["val_CIDEr"]) for r in rows]
    assert cider == sorted(cider, reverse=True)  # best first by trainer.monitor (val_CIDEr, higher is better)
    assert "Best first by val_CIDEr (higher is better)." in (sweep / "summary.md").read_text()
    with Image.open(sweep / "summary.png") as picture:  # one bar per job
        assert picture.format == "PNG" and picture.height >= 150


def test_sweep_through_submitit_ends_in_one_summary_table(trained, tmp_path):
    """submitit_local runs each job in its own process, as submitit does on a SLURM cluster."""
    sweep = tmp_path / "sweep"
    result = cli("evaluate", "-m", "hydra/launcher=submitit_local", f"checkpoint={trained / 'run' / 'model.pt'}",
                 *tiny_data(trained), "decode.beam_size=1,2", "metrics.meteor=false", "device=cpu",
                 f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(r["decode.beam_size"] for r in read_summary(sweep)) == ["1", "2"]
