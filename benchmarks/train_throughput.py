"""Training throughput (images/s) on the synthetic data, demo model, for the data-loading settings.

    .venv/bin/python benchmarks/train_throughput.py [--steps 60] [--images 640]

Each setting trains the demo recipe's model (``conf/experiment/demo.yaml``, composed with Hydra)
for ``--steps`` optimizer steps from scratch (the same seed) on the first ``--images`` training
images and reports the images per second of the training loop (validation excluded). A small
``--images`` makes the steps span several epochs, so the in-memory image cache is measured warm
as it is for most of a real run.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from captioner.api import Captioner
from captioner.cli.config import CONFIG_PATH, typed
from captioner.data.formats import split_records
from captioner.data.transforms import Preprocess
from captioner.models.decoder import head_settings
from captioner.models.model import CaptionModel
from captioner.synthetic.dataset import synthetic_dataset
from captioner.synthetic.scoring import AttributeAccuracy
from captioner.training import Trainer
from captioner.training_config import TrainerConfig
from captioner.vocab import Vocabulary

# trainer settings changed from the demo's; "decoder" changes the model's decoder settings
SETTINGS = {
    "demo (5 captions per image per step, the reverse decoder on 1, images cached, weights averaged, no workers, "
    "bf16, channels-last)": {},
    "no reverse decoder (forward only)": {"decoder": {"bidirectional": False}},
    "the reverse decoder on all 5 captions": {"reverse_captions_per_image": "all"},
    "images decoded every epoch (no cache)": {"cache_images": False},
    "no moving average of the weights": {"ema_decay": 0.0},
    "one caption per image per epoch": {"captions_per_image": "one"},
    "1 DataLoader worker (no cache)": {"num_workers": 1, "cache_images": False},
    "fp32 (no autocast)": {"amp": False},
    "no channels-last": {"channels_last": False},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--images", type=int, default=640, help="training images (steps span several epochs)")
    args = parser.parse_args()
    with initialize_config_dir(config_dir=CONFIG_PATH, version_base="1.3"):
        cfg = compose("train", overrides=["experiment=demo", "trainer.device=cpu"])
    demo = typed(TrainerConfig, cfg.trainer, "trainer")
    encoder, decoder = (OmegaConf.to_container(node) for node in (cfg.model.encoder, cfg.model.decoder))
    records = synthetic_dataset()
    train, val = split_records(records, "train")[: args.images], split_records(records, "val")[:32]
    vocab = Vocabulary.build(c for r in train for c in r.captions)
    decoder["head"] = head_settings(decoder["head"], vocab)
    print(f"{args.steps} steps of batch {demo.batch_size} over {len(train)} images, "
          f"{torch.get_num_threads()} threads\n")
    print("| setting | images/s |\n|---|---|")
    for name, change in SETTINGS.items():
        change = dict(change)
        torch.manual_seed(0)
        model = CaptionModel(len(vocab), encoder, decoder | change.pop("decoder", {}))
        config = dataclasses.replace(demo, max_steps=args.steps, **change)
        with tempfile.TemporaryDirectory() as out:
            captioner = Captioner(model, vocab, Preprocess(cfg.model.image_size))
            metrics = Trainer(captioner, train, val, config, out, scorers=[AttributeAccuracy()]).fit()
        print(f"| {name} | {metrics['train_images_per_second']:.0f} |")


if __name__ == "__main__":
    main()
