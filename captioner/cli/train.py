"""captioner-train: train a captioner, then evaluate the best model on the test split."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from captioner import distributed
from captioner.api import Captioner
from captioner.cli.common import CONFIG_PATH, limit_threads_in_parallel_sweeps, typed, typed_arguments, user_errors
from captioner.data.formats import ImageRecord, split_records
from captioner.decoding import DecodeOptions
from captioner.devices import resolve_device
from captioner.errors import CaptionerError
from captioner.evaluation import evaluate_records
from captioner.io import write_json
from captioner.models.captioner import CaptionModel
from captioner.models.decoder import Decoder, class_bigram_log_prior
from captioner.models.encoder import Encoder, encoder_preprocess
from captioner.training import BEST, Trainer, TrainerConfig
from captioner.vocab import Vocabulary


def run(records: list[ImageRecord], out_dir: str | Path, encoder: dict, decoder: dict, trainer: TrainerConfig,
        image_size: int | None = 64, word_classes: list[list[str]] = (), class_logit_adjustment: bool = False,
        seed: int = 0, vocab_min_count: int = 1, max_length: int = 30, test_split: str | None = "test",
        show_examples: int = 0, decode: DecodeOptions = DecodeOptions(), text_metrics: dict | None = None) -> dict:
    """Train on the train split, select on val, score the best model on ``test_split``; write metrics.json.

    ``word_classes`` are groups of words (the decoder's ``word_classes``, as words);
    ``class_logit_adjustment`` trains with the training captions' bigram prior within them
    (``Decoder.set_class_prior``).
    The test split is captioned with ``decode`` and scored with the coco-caption metrics
    (``text_metrics``: their options) and, on synthetic data, attribute accuracy.
    """
    if class_logit_adjustment and not word_classes:
        raise CaptionerError("model.class_logit_adjustment needs model.word_classes: it adjusts their logits")
    out_dir = Path(out_dir)
    random.seed(seed)
    torch.manual_seed(seed)
    train_records, val_records = split_records(records, "train"), split_records(records, "val")
    vocab = Vocabulary.build((c for r in train_records for c in r.captions), min_count=vocab_min_count)
    if word_classes:
        decoder = {**decoder, "word_classes": word_class_ids(vocab, word_classes)}
    model = CaptionModel(len(vocab), encoder, decoder)
    if class_logit_adjustment:
        captions = (vocab.encode(c, max_length) for r in train_records for c in r.captions)
        model.decoder.set_class_prior(class_bigram_log_prior(captions, len(vocab), decoder["word_classes"]))
    preprocess = encoder_preprocess(encoder["name"], encoder.get("weights"), image_size)
    captioner = Captioner(model, vocab, preprocess, max_length=max_length)
    if distributed.is_main():
        print(f"training on {len(train_records)} images, validating on {len(val_records)}; vocabulary of "
              f"{len(vocab)} words; {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters; writing to "
              f"{out_dir}", file=sys.stderr)
    metrics = Trainer(captioner, train_records, val_records, trainer, out_dir, seed).fit()
    if not distributed.is_main():  # rank 0 evaluates and writes
        return metrics
    if test_split:
        test_records = split_records(records, test_split)
        best = Captioner.load(out_dir / BEST, device=captioner.device)
        scores, captions = evaluate_records(best, test_records, decode, trainer.val_batch_size, text_metrics or {})
        metrics |= {k: round(v, 4) for k, v in scores.items()}
        print_examples(test_records, captions, show_examples)
        print(f"{test_split}: " + "  ".join(f"{k}={v:.4f}" for k, v in scores.items()), file=sys.stderr)
    write_json(out_dir / "metrics.json", metrics)
    return metrics


def word_class_ids(vocab: Vocabulary, groups: list[list[str]]) -> list[list[int]]:
    """The vocabulary ids of ``model.word_classes``; a word the training captions never use is an error."""
    missing = [word for group in groups for word in group if word not in vocab.index]
    if missing:
        raise CaptionerError(f"model.word_classes: {missing[0]!r} is not in the training captions' vocabulary")
    return [[vocab.index[word] for word in group] for group in groups]


def print_examples(records: list[ImageRecord], captions: list[str], count: int) -> None:
    """``count`` images spread evenly over the split, with the model's caption and a reference."""
    if count <= 0:
        return
    stride = max(1, len(records) // count)
    for record, caption in list(zip(records, captions))[::stride][:count]:
        print(f"{record.path}\n  model:     {caption}\n  reference: {record.captions[0]}", file=sys.stderr)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def main(cfg: DictConfig) -> None:
    with user_errors():
        limit_threads_in_parallel_sweeps()
        settings = {  # checked before any data is generated or read
            "encoder": typed_arguments(Encoder.__init__, cfg.model.encoder, "model.encoder"),
            "decoder": typed_arguments(Decoder.__init__, cfg.model.decoder, "model.decoder"),
            "trainer": typed(TrainerConfig, cfg.trainer, "trainer"),
            "decode": typed(DecodeOptions, cfg.decode, "decode"),
        }
        distributed.init(settings["trainer"].strategy, resolve_device(settings["trainer"].device))
        try:
            run(records=instantiate_once(cfg.data), **run_arguments(cfg), **settings)
        finally:
            distributed.shutdown()


def run_arguments(cfg: DictConfig) -> dict:
    """run()'s other arguments, from the config."""
    return dict(
        out_dir=HydraConfig.get().runtime.output_dir,
        image_size=cfg.model.image_size,
        word_classes=OmegaConf.to_container(cfg.model.word_classes),
        class_logit_adjustment=cfg.model.class_logit_adjustment,
        seed=cfg.seed,
        vocab_min_count=cfg.vocab.min_count,
        max_length=cfg.vocab.max_length,
        test_split=cfg.test_split,
        show_examples=cfg.show_examples,
        text_metrics=OmegaConf.to_container(cfg.metrics),
    )


def instantiate_once(data: DictConfig) -> list[ImageRecord]:
    """Rank 0 builds the dataset first (the synthetic one is generated on first use); then the others read it."""
    records = instantiate(data) if distributed.is_main() else None
    distributed.barrier()
    return records if records is not None else instantiate(data)


if __name__ == "__main__":
    main()
