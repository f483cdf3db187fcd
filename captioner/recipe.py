"""Training as a library call: ``captioner.train(records, out_dir, ...)`` is what ``captioner-train`` runs;
``extract_features(records, ...)`` what ``captioner-extract`` runs.

Builds the vocabulary from the training captions, the model and its preprocessing, trains on the
train split, selects ``model.pt`` on val (``trainer.monitor``), then scores it on the test split
with the coco-caption metrics and the dataset's own scorers, and writes ``metrics.json``.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch

from captioner import distributed
from captioner.api import Captioner
from captioner.data.formats import ImageRecord, split_records
from captioner.decode_options import DecodeOptions
from captioner.devices import resolve_device
from captioner.evaluation import Scorer, evaluate_records
from captioner.feature_cache import FeatureRows, cached_features
from captioner.io import write_json
from captioner.models.decoder import head_settings
from captioner.models.encoder import Encoder, encoder_preprocess
from captioner.models.model import CaptionModel
from captioner.training import BEST, Trainer
from captioner.training_config import TrainerConfig
from captioner.training_data import feature_extraction
from captioner.vocab import Vocabulary


def train(records: list[ImageRecord], out_dir: str | Path, encoder: dict, decoder: dict,
          trainer: TrainerConfig = TrainerConfig(), image_size: int | None = 64, seed: int = 0,
          vocab_min_count: int = 1, max_length: int = 30, test_split: str | None = "test", show_examples: int = 0,
          decode: DecodeOptions = DecodeOptions(), text_metrics: dict | None = None,
          scorers: Sequence[Scorer] = ()) -> dict:
    """Train on the train split, select on val, score the best model on ``test_split``; write metrics.json.

    ``encoder`` and ``decoder`` are the keyword arguments of
    :class:`~captioner.models.encoder.Encoder` and :class:`~captioner.models.decoder.Decoder`; a
    word-class head names its classes' words (``decoder["head"]["words"]``); ``trainer.init_from``
    starts from a trained model instead (its own settings and vocabulary). The test split is
    captioned with ``decode`` and scored with the coco-caption metrics (``text_metrics``: their
    options) and ``scorers``, which validation reports too. Returns the metrics.
    """
    out_dir = Path(out_dir)
    random.seed(seed)
    torch.manual_seed(seed)
    train_records, val_records = split_records(records, "train"), split_records(records, "val")
    if trainer.init_from:  # its model, vocabulary and preprocessing: the model settings given here do not apply
        captioner = Captioner.load(trainer.init_from, channels_last=trainer.channels_last)
        vocab, model, max_length = captioner.vocab, captioner.model, captioner.max_length
    else:
        vocab = Vocabulary.build((c for r in train_records for c in r.captions), min_count=vocab_min_count)
        if decoder.get("head"):
            decoder = {**decoder, "head": head_settings(decoder["head"], vocab)}
        model = CaptionModel(len(vocab), encoder, decoder)
        preprocess = encoder_preprocess(encoder["name"], encoder.get("weights"), image_size)
        captioner = Captioner(model, vocab, preprocess, max_length=max_length, channels_last=trainer.channels_last)
    model.decoder.fit_head(vocab.encode(c, max_length) for r in train_records for c in r.captions)
    if distributed.is_main():
        print(f"training on {len(train_records)} images, validating on {len(val_records)}; vocabulary of "
              f"{len(vocab)} words; {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters; writing to "
              f"{out_dir}", file=sys.stderr)
    metrics = Trainer(captioner, train_records, val_records, trainer, out_dir, seed, scorers).fit()
    if not distributed.is_main():  # rank 0 evaluates and writes
        return metrics
    if test_split:
        test_records = split_records(records, test_split)
        best = Captioner.load(out_dir / BEST, device=captioner.device)
        scores, captions = evaluate_records(best, test_records, decode, trainer.val_batch_size, text_metrics or {},
                                            scorers, trainer.num_workers)
        metrics |= {k: round(v, 4) for k, v in scores.items()}
        print_examples(test_records, captions, show_examples)
        print(f"{test_split}: " + "  ".join(f"{k}={v:.4f}" for k, v in scores.items()), file=sys.stderr)
    write_json(out_dir / "metrics.json", metrics)
    return metrics


def print_examples(records: list[ImageRecord], captions: list[str], count: int) -> None:
    """``count`` images spread evenly over the split, with the model's caption and a reference."""
    if count <= 0:
        return
    stride = max(1, len(records) // count)
    for record, caption in list(zip(records, captions))[::stride][:count]:
        print(f"{record.path}\n  model:     {caption}\n  reference: {record.captions[0]}", file=sys.stderr)


def extract_features(records: list[ImageRecord], encoder: dict, trainer: TrainerConfig = TrainerConfig(),
                     image_size: int | None = 64, seed: int = 0, splits: Sequence[str] = ("train", "val"),
                     chunk_rows: int = 1024) -> dict[str, FeatureRows]:
    """Make ahead the feature caches that :func:`train` with ``trainer.feature_cache=True`` reads (e.g.
    on more GPUs under torchrun, each process encoding its share): the frozen encoder is built as
    training builds it (the same seed gives the same weights), in the trainer's precision. Images are
    written and checksummed ``chunk_rows`` at a time: the most an interruption loses per process."""
    _, _, device = distributed.init_if_launched(resolve_device(trainer.device))
    torch.manual_seed(seed)
    model = Encoder(**encoder).to(device)
    if trainer.channels_last:
        model.to(memory_format=torch.channels_last)
    preprocess = encoder_preprocess(encoder["name"], encoder.get("weights"), image_size)
    return {split: cached_features(model, preprocess, [r.path for r in split_records(records, split)],
                                   trainer.feature_cache_dir,
                                   replace(feature_extraction(trainer, device), chunk_rows=chunk_rows))
            for split in splits}
