"""The recipes at the size their users run them: COCO's vocabulary (9,487 words at min_count 5), 224 px, a 7x7 grid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import cli
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image

from captioner.api import Captioner
from captioner.cli.config import CONFIG_PATH
from captioner.models.decoder import head_settings
from captioner.models.model import CaptionModel
from captioner.vocab import SPECIALS, Vocabulary

COCO_WORDS = 9487
# Each recipe's bound: twice its paper's model with a ResNet-50 (Show and Tell ~37M; Show, Attend and
# Tell ~45M). The demo is of the Show and Tell family.
PAPER_PARAMETERS = {"coco_show_tell": 37e6, "coco_show_tell_scst": 37e6, "coco_attention": 45e6, "demo": 37e6}
RECIPES = sorted(path.stem for path in (Path(CONFIG_PATH) / "experiment").glob("*.yaml"))


def made_up_words(count: int) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(letters[n // 26 ** k % 26] for k in range(3)) + "x" for n in range(count)]


def recipe_model(recipe: str, vocab: Vocabulary) -> CaptionModel:
    with initialize_config_dir(config_dir=CONFIG_PATH, version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={recipe}", "model.encoder.weights=null"])
    encoder, decoder = (OmegaConf.to_container(node) for node in (cfg.model.encoder, cfg.model.decoder))
    if decoder.get("head", {}).get("words"):
        decoder["head"] = head_settings(decoder["head"], vocab)
    return CaptionModel(len(vocab), encoder, decoder)


def test_every_recipe_has_a_bound():
    assert set(RECIPES) == set(PAPER_PARAMETERS)


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_at_cocos_vocabulary_is_at_most_twice_its_papers_model(recipe):
    class_words = ["red", "green", "blue", "yellow", "purple", "violet", "white",
                   "circle", "disc", "square", "box", "triangle", "star", "cross"]
    vocab = Vocabulary(list(SPECIALS) + class_words + made_up_words(COCO_WORDS - len(SPECIALS) - len(class_words)))
    model = recipe_model(recipe, vocab)
    parameters = sum(p.numel() for p in model.parameters())
    weight_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert len(vocab) == COCO_WORDS
    assert parameters <= 2 * PAPER_PARAMETERS[recipe], f"{parameters / 1e6:.1f}M parameters"
    assert weight_bytes <= 2 * PAPER_PARAMETERS[recipe] * 4, f"{weight_bytes / 1e6:.0f} MB of weights"


def coco_vocabulary_karpathy(root: Path, train: int = 6) -> Path:
    """A Karpathy split file of 640x480 JPEGs whose training captions hold COCO's 9,487 words (with the
    specials) five times each, so that the recipes build their models at COCO's size."""
    rng = np.random.default_rng(0)
    words = made_up_words(COCO_WORDS - len(SPECIALS))
    per_caption = np.array_split(np.array(words * 5), train * 5)
    entries = []
    for i, split in enumerate(["train"] * train + ["val"] * 2 + ["test"] * 2):
        folder = root / "images" / "val2014"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        Image.fromarray(pixels).resize((640, 480), Image.Resampling.BICUBIC).save(folder / f"img_{i}.jpg")
        captions = ([" ".join(per_caption[i * 5 + k]) for k in range(5)] if split == "train"
                    else [" ".join(words[k * 7 : k * 7 + 9]) for k in range(5)])
        entries.append({"filepath": "val2014", "filename": f"img_{i}.jpg", "imgid": i, "cocoid": i, "split": split,
                        "sentences": [{"raw": c, "tokens": c.split()} for c in captions]})
    (root / "dataset_coco.json").write_text(json.dumps({"images": entries, "dataset": "coco"}))
    return root


@pytest.mark.slow
def test_a_real_size_step_of_each_coco_recipe_runs_and_its_model_captions(tmp_path):
    data = coco_vocabulary_karpathy(tmp_path / "coco")
    common = [f"data.split_file={data / 'dataset_coco.json'}", f"data.image_dir={data / 'images'}",
              "model.encoder.weights=null", "trainer.max_steps=1", "trainer.batch_size=2", "trainer.val_batch_size=2",
              "trainer.num_workers=0", "trainer.device=cpu", "metrics.meteor=false", "show_examples=0"]
    runs = {"coco_attention": [], "coco_show_tell": [],
            "coco_show_tell_scst": [f"trainer.init_from={tmp_path / 'coco_show_tell' / 'model.pt'}"]}
    for recipe, extra in runs.items():
        result = cli("train", f"experiment={recipe}", *common, *extra, f"hydra.run.dir={tmp_path / recipe}",
                     cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        model = tmp_path / recipe / "model.pt"
        payload = torch.load(model, weights_only=True)
        assert len(payload["vocab"]) == COCO_WORDS and json.loads((tmp_path / recipe / "metrics.json").read_text())
        parameters = sum(t.numel() for t in payload["state_dict"].values() if t.is_floating_point())
        assert parameters <= 2 * PAPER_PARAMETERS[recipe]
        captioner = Captioner.load(model)
        assert len(captioner.caption(data / "images" / "val2014" / "img_8.jpg", beam_size=3)) == 1
        (tmp_path / recipe / "last.pt").unlink()  # 0.3-0.7 GB at this size, and the disk is shared with the venv


@pytest.mark.slow
@pytest.mark.parametrize("command, recipe", [("train", "coco_attention"), ("extract", "coco_show_tell")])
def test_a_recipe_whose_data_is_missing_fails_in_one_line_naming_the_file(tmp_path, command, recipe):
    result = cli(command, f"experiment={recipe}", "model.encoder.weights=null", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["error: data/coco/dataset_coco.json: split file not found"]
