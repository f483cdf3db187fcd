"""Every primary config composes, and what it names can be built."""

from pathlib import Path

import pytest
from conftest import run_if
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from captioner.cli.common import data_scorers, instantiate_records
from captioner.cli.config import CONFIG_PATH
from captioner.models.decoder import head_settings
from captioner.models.model import CaptionModel
from captioner.synthetic.scenes import COLOUR_WORDS, SHAPE_WORDS
from captioner.synthetic.scoring import AttributeAccuracy
from captioner.training_config import TrainerConfig
from captioner.vocab import Vocabulary

PRIMARY = sorted(p.stem for p in Path(CONFIG_PATH).glob("*.yaml"))


def compose_config(name: str, overrides=()):
    with initialize_config_dir(config_dir=CONFIG_PATH, version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides), return_hydra_config=True)


@pytest.mark.parametrize("name", PRIMARY)
def test_primary_config_composes(name):
    cfg = compose_config(name)
    assert cfg.hydra.job.chdir is False
    OmegaConf.to_container(cfg, resolve=False)


DEMO_WORDS = [sum(COLOUR_WORDS.values(), []), sum(SHAPE_WORDS.values(), [])]


@pytest.mark.parametrize("overrides", [[], ["experiment=demo"]])
def test_train_config_builds_trainer_and_every_decoder_cell(overrides):
    vocab = Vocabulary.build([" ".join(sum(DEMO_WORDS, []))])
    for cell in ("lstm", "gru", "rnn"):
        cfg = compose_config("train", [*overrides, f"model/decoder={cell}"])
        TrainerConfig(**cfg.trainer)
        decoder = OmegaConf.to_container(cfg.model.decoder)
        decoder["head"] = head_settings(decoder["head"], vocab)  # as training does
        model = CaptionModel(len(vocab), OmegaConf.to_container(cfg.model.encoder), decoder)
        assert model.args["decoder"]["cell"] == cell


def test_the_decoder_head_is_plain_unless_chosen_and_the_demo_names_the_synthetic_words():
    assert OmegaConf.to_container(compose_config("train").model.decoder.head) == {"name": "plain"}
    head = compose_config("train", ["experiment=demo"]).model.decoder.head
    assert head.name == "word_classes" and OmegaConf.to_container(head.words) == DEMO_WORDS
    assert head.pointer and head.logit_adjustment
    chosen = compose_config("train", ["model/decoder/head=word_classes"]).model.decoder.head
    assert chosen.name == "word_classes" and list(chosen.words) == []


def test_data_target_instantiates_with_its_scorers(tmp_path):
    cfg = compose_config("train", [f"data.root={tmp_path / 'syn'}", "data.num_train=6", "data.num_val=2",
                                   "data.num_test=2", "data.image_size=16"])
    records = instantiate_records(cfg.data)
    assert len(records) == 10 and (tmp_path / "syn" / "dataset_synthetic.json").is_file()
    assert [type(s) for s in data_scorers(cfg.data)] == [AttributeAccuracy]


@pytest.mark.parametrize("name", ["coco", "csv", "flickr8k", "karpathy"])
def test_real_data_configs_bring_no_scorers(name):
    assert data_scorers(compose_config("train", [f"data={name}"]).data) == []


def test_interactive_commands_do_not_litter_the_working_dir():
    cfg = compose_config("caption")
    assert cfg.hydra.run.dir == "." and cfg.hydra.output_subdir is None


@pytest.mark.parametrize("name", ["caption", "evaluate", "train"])
def test_decode_group_builds_decode_options_and_summary_callback_resolves(name):
    from hydra.utils import get_class

    from captioner.decode_options import DecodeOptions

    cfg = compose_config(name, ["decode.beam_size=3", "decode.length_penalty=0.7"])
    assert DecodeOptions(**cfg.decode) == DecodeOptions(beam_size=3, length_penalty=0.7)
    for callback in cfg.hydra.callbacks.values():
        get_class(callback._target_)


@run_if(submitit=True)
def test_slurm_launcher_config_extends_submitit():
    cfg = compose_config("train", ["hydra/launcher=slurm", "hydra.launcher.partition=gpu"])
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.max_num_timeout) == ("gpu", 1, 3)
