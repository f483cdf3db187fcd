"""The COCO recipes run as written on a tiny dataset in the Karpathy / COCO layout (JPEGs, split JSON)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import cli
from omegaconf import OmegaConf
from test_formats import make_karpathy

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("recipe, grid, attention", [("coco_show_tell", 1, 0), ("coco_attention", 7, 512)])
def test_a_coco_recipe_trains_selects_by_cider_and_decodes_with_beam_3(tmp_path, recipe, grid, attention,
                                                                      cache_home):
    data = make_karpathy(tmp_path / "coco")  # images/val2014/img_N.jpg, dataset_coco.json with restval
    run = tmp_path / "run"
    result = cli("train", f"experiment={recipe}", f"data.split_file={data / 'dataset_coco.json'}",
                 f"data.image_dir={data / 'images'}", "model.encoder.weights=null", "trainer.max_steps=2",
                 "trainer.batch_size=4", "trainer.num_workers=0", "trainer.device=cpu", "metrics.meteor=false",
                 "show_examples=0", f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "cache" / "resized_256").is_dir()  # the recipe's pre-resized copies
    assert result.stderr.count("wrote the feature cache") == 2  # the frozen epochs read cached features
    assert any((cache_home / "captioner" / "features").glob("*/features.npy"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"val_CIDEr", "CIDEr", "Bleu_4"} <= set(metrics) and metrics["step"] == 2
    payload = torch.load(run / "model.pt", weights_only=True)
    encoder, decoder = payload["model_args"]["encoder"], payload["model_args"]["decoder"]
    assert (encoder["name"], encoder["grid_size"], encoder["freeze"]) == ("resnet50", grid, True)
    assert (decoder["cell"], decoder["hidden_dim"], decoder["attention_dim"] if attention else 0) == (
        "lstm", 512, attention)
    assert payload["preprocess"]["image_size"] == 224 and payload["max_length"] == 16
    assert "<unk>" in payload["vocab"] and len(payload["vocab"]) < 60  # words seen fewer than 5 times left out
    config = OmegaConf.load(run / ".hydra" / "config.yaml")
    assert config.decode.beam_size == 3 and config.trainer.monitor == "val_CIDEr"
    assert config.trainer.finetune_after_epochs == 8 and config.model.encoder.weights is None


def test_the_scst_recipe_fine_tunes_a_coco_model(tmp_path):
    data = make_karpathy(tmp_path / "coco")
    common = [f"data.split_file={data / 'dataset_coco.json'}", f"data.image_dir={data / 'images'}",
              "model.encoder.weights=null", "trainer.max_steps=2", "trainer.batch_size=4", "trainer.num_workers=0",
              "trainer.device=cpu", "metrics.meteor=false", "show_examples=0"]
    first = cli("train", "experiment=coco_show_tell", *common, f"hydra.run.dir={tmp_path / 'xe'}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    missing = cli("train", "experiment=coco_show_tell_scst", *common, f"hydra.run.dir={tmp_path / 'none'}",
                  cwd=tmp_path)
    assert missing.returncode == 1 and missing.stderr.strip().splitlines()[-1] == (
        "error: trainer.objective=scst fine-tunes a trained model: give trainer.init_from=MODEL.pt")
    result = cli("train", "experiment=coco_show_tell_scst", f"trainer.init_from={tmp_path / 'xe' / 'model.pt'}",
                 *common, f"hydra.run.dir={tmp_path / 'scst'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "scst" / "metrics.json").read_text())
    assert metrics["step"] == 2 and "train_reward" in metrics and "CIDEr" in metrics
    start = torch.load(tmp_path / "xe" / "model.pt", weights_only=True)
    tuned = torch.load(tmp_path / "scst" / "model.pt", weights_only=True)
    assert tuned["vocab"] == start["vocab"] and tuned["model_args"] == start["model_args"]
