"""captioner-extract: encode the train and val images once with a frozen encoder, into the feature
cache that ``captioner-train ... trainer.feature_cache=true`` then reads (``captioner.recipe.extract_features``).

It takes captioner-train's settings (``experiment=...``, ``model.encoder.*``, ``trainer.amp``,
``trainer.feature_cache_dir``), so the cache it makes is the one that training looks for.
"""

from __future__ import annotations

from omegaconf import DictConfig

from captioner import distributed
from captioner.cli.common import instantiate_records
from captioner.cli.config import typed, typed_arguments, user_errors
from captioner.cli.overrides import command
from captioner.devices import resolve_device
from captioner.models.encoder import Encoder
from captioner.recipe import extract_features
from captioner.training_config import TrainerConfig


@command("extract")
def main(cfg: DictConfig) -> None:
    with user_errors():
        encoder = typed_arguments(Encoder.__init__, cfg.model.encoder, "model.encoder")
        trainer = typed(TrainerConfig, cfg.trainer, "trainer")
        distributed.init_if_launched(resolve_device(trainer.device))  # under torchrun: split the images
        try:
            extract_features(instantiate_records(cfg.data, once=True), encoder, trainer, cfg.model.image_size,
                             cfg.seed, list(cfg.splits), cfg.chunk_rows)
        finally:
            distributed.shutdown()


if __name__ == "__main__":
    main()
