"""captioner-train: train a captioner, then evaluate the best model on the test split (``captioner.train``)."""

from __future__ import annotations

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from captioner import distributed
from captioner.cli.common import data_scorers, instantiate_records, limit_threads_in_parallel_sweeps
from captioner.cli.config import typed, typed_arguments, user_errors
from captioner.cli.overrides import command
from captioner.decode_options import DecodeOptions
from captioner.devices import resolve_device
from captioner.models.decoder import Decoder
from captioner.models.encoder import Encoder
from captioner.recipe import train
from captioner.training_config import TrainerConfig


@command("train")
def main(cfg: DictConfig) -> None:
    with user_errors(sweeps=True):
        limit_threads_in_parallel_sweeps()
        settings = {  # checked before any data is generated or read
            "encoder": typed_arguments(Encoder.__init__, cfg.model.encoder, "model.encoder"),
            "decoder": typed_arguments(Decoder.__init__, cfg.model.decoder, "model.decoder"),
            "trainer": typed(TrainerConfig, cfg.trainer, "trainer"),
            "decode": typed(DecodeOptions, cfg.decode, "decode"),
            "scorers": data_scorers(cfg.data),
        }
        distributed.init(settings["trainer"].strategy, resolve_device(settings["trainer"].device))
        try:
            train(
                records=instantiate_records(cfg.data, once=True),
                out_dir=HydraConfig.get().runtime.output_dir,
                image_size=cfg.model.image_size,
                seed=cfg.seed,
                vocab_min_count=cfg.vocab.min_count,
                max_length=cfg.vocab.max_length,
                test_split=cfg.test_split,
                show_examples=cfg.show_examples,
                text_metrics=OmegaConf.to_container(cfg.metrics),
                **settings,
            )
        finally:
            distributed.shutdown()


if __name__ == "__main__":
    main()
