"""The training loop: teacher forcing, Adam, clipping, warmup + cosine schedule, resumable.

``model.pt`` is the model of the epoch whose validation figure named by ``monitor`` was best
(as Lightning's ``ModelCheckpoint(monitor=..., mode=...)``; by default CIDEr-D, what captioning
papers select by). Validation computes the teacher-forced loss on the whole split, and greedy
captions of up to ``val_max_images`` of its images (a seeded subset, the same every epoch)
scored with the coco-caption metrics and the dataset's own scorers.

With ``feature_cache=True`` a frozen encoder's grid features are computed once
(:mod:`captioner.feature_cache`) and the epochs read them instead of images, until
``finetune_after_epochs`` unfreezes the encoder and images come back.

With ``objective="scst"`` the steps are self-critical training on CIDEr-D instead of teacher
forcing (:mod:`captioner.scst`), typically from a trained model (``init_from``).

With ``ema_decay > 0`` validation and ``model.pt`` use an exponential moving average of the
weights (Polyak averaging, as timm's ModelEmaV2; here torch's ``swa_utils``), which the steps never
touch; its cost and gain: benchmarks/README.md, "The demo recipe".
"""

from __future__ import annotations

import csv
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from tqdm import tqdm

from captioner import distributed
from captioner.api import Captioner
from captioner.checkpoint import load_checkpoint
from captioner.data.dataset import CaptionDataset, EpochSampler, collate_captions
from captioner.data.formats import ImageRecord
from captioner.decode_options import DecodeOptions
from captioner.devices import autocast_dtype, resolve_device
from captioner.errors import CaptionerError, Interrupted
from captioner.evaluation import Scorer, caption_records, score_captions
from captioner.feature_cache import Extraction, cached_features
from captioner.io import atomic_open
from captioner.models.model import reverse_captions
from captioner.pictures.plots import training_curve_png
from captioner.rewards import CiderD
from captioner.scst import ScstConfig, SelfCritical, caption_words
from captioner.tensorboard_log import TENSORBOARD_DIR, TensorBoardLog

LAST, BEST, CURVE, CURVE_PLOT = "last.pt", "model.pt", "training_curve.csv", "training_curve.png"


@dataclass
class TrainerConfig:
    device: str = "auto"  # auto | cpu | cuda
    max_epochs: int = 10
    max_steps: int | None = None  # stop after this many optimizer steps (smoke runs)
    batch_size: int = 32
    lr: float = 3e-3
    encoder_lr: float | None = None  # the encoder's own learning rate (None: lr)
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    warmup_steps: int = 100
    checkpoint_every_steps: int = 500
    resume: bool = False
    num_workers: int = 0
    cache_images: bool = False  # keep preprocessed images in memory after their first decode (num_workers 0)
    amp: bool = True  # mixed precision: bf16 (or fp16) on CUDA, bf16 on CPUs with native bf16
    channels_last: bool = True  # conv memory layout (faster with autocast; benchmarks/README.md)
    val_batch_size: int = 128
    captions_per_image: str = "all"  # all: every reference per image and step; one: one per epoch
    reverse_captions_per_image: str = "all"  # a bidirectional decoder's reverse half: all its captions, or one
    word_loss_weight: float = 1.0  # auxiliary loss: predict the captions' words from the image (0: off)
    strategy: str = "single"  # single | ddp (under torchrun; batch_size is then the global batch)
    finetune_after_epochs: int | None = None  # a frozen encoder (model.encoder.freeze) trains from this epoch on
    ema_decay: float = 0.0  # > 0: validate and keep an exponential moving average of the weights
    monitor: str = "val_CIDEr"  # the validation figure that chooses model.pt: val_loss, val_CIDEr, val_Bleu_4 ...
    monitor_mode: str = "max"  # min | max: whether lower or higher is better
    val_max_images: int = 5000  # validation images captioned and scored each epoch (0: the loss alone)
    val_meteor: bool = False  # METEOR in validation too (a Java process each epoch)
    feature_cache: bool = False  # a frozen encoder runs once per image; the epochs read its cached features
    feature_cache_dir: str | None = None  # where caches live (None: $XDG_CACHE_HOME/captioner/features)
    tensorboard: bool = False  # also write the curve, learning rates and images/s as TensorBoard event files
    objective: str = "xe"  # xe: teacher forcing (cross-entropy) | scst: self-critical training on CIDEr-D
    init_from: str | None = None  # a model.pt whose model, vocabulary and preprocessing this run starts from
    scst: ScstConfig = field(default_factory=ScstConfig)

    def __post_init__(self):
        if self.monitor_mode not in ("min", "max"):
            raise CaptionerError(f"trainer.monitor_mode must be min or max, got {self.monitor_mode!r}")
        if self.objective not in ("xe", "scst"):
            raise CaptionerError(f"trainer.objective must be xe or scst, got {self.objective!r}")
        if self.reverse_captions_per_image not in ("all", "one"):
            raise CaptionerError("trainer.reverse_captions_per_image must be all or one, "
                                 f"got {self.reverse_captions_per_image!r}")
        if self.objective == "scst" and not self.init_from:
            raise CaptionerError("trainer.objective=scst fine-tunes a trained model: give trainer.init_from=MODEL.pt")


def seeded_subset(size: int, count: int, seed: int) -> list[int]:
    """Up to ``count`` of the indices ``0 .. size - 1``, drawn by ``seed``, in order (all when fewer)."""
    if count >= size:
        return list(range(size))
    return sorted(random.Random(f"validation-{seed}").sample(range(size), max(0, count)))


def one_caption_per_image(image_index: torch.Tensor, images: int, step: int) -> torch.Tensor:
    """Rows of a batch whose rows ``image_index`` assigns to ``images`` images (an image's rows consecutive):
    one per image, each image's captions taken in turn as ``step`` advances. No random numbers: a resumed
    run takes the same rows."""
    counts = torch.bincount(image_index, minlength=images)
    starts = counts.cumsum(0) - counts
    turn = (step + torch.arange(images, device=image_index.device)) % counts.clamp(min=1)
    return (starts + turn)[counts > 0]


def feature_extraction(config: TrainerConfig, device: torch.device) -> Extraction:
    """How training computes a feature cache: in the precision and layout its steps would run the encoder."""
    return Extraction(autocast_dtype(device) if config.amp else None, config.channels_last, config.val_batch_size,
                      config.num_workers)


def warmup_cosine(step: int, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate factor: linear warmup, then cosine decay to 5% of the peak."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))


class Trainer:
    """Trains ``captioner.model`` in place; writes last.pt, model.pt and the curve to ``out_dir``."""

    def __init__(self, captioner: Captioner, train_records: list[ImageRecord], val_records: list[ImageRecord],
                 config: TrainerConfig, out_dir: str | Path, seed: int = 0, scorers: Sequence[Scorer] = ()):
        self.captioner, self.config, self.out_dir, self.seed = captioner, config, Path(out_dir), seed
        self.scorers = list(scorers)
        if config.monitor != "val_loss" and config.val_max_images <= 0:
            raise CaptionerError(f"trainer.monitor={config.monitor}: with trainer.val_max_images="
                                 f"{config.val_max_images} validation reports only val_loss")
        self.val_captioned = seeded_subset(len(val_records), config.val_max_images, seed)
        self.val_records = val_records
        self.rank, self.world, self.device = distributed.init(config.strategy, resolve_device(config.device))
        if config.batch_size % self.world:
            raise CaptionerError(f"trainer.batch_size={config.batch_size} must divide over {self.world} processes")
        captioner.model.to(self.device)
        if config.channels_last:
            captioner.model.to(memory_format=torch.channels_last)
        captioner.device = self.device
        if self.world > 1 and captioner.model.encoder.frozen and config.finetune_after_epochs is not None:
            raise CaptionerError("trainer.finetune_after_epochs with a frozen encoder is not supported with ddp yet")
        self.reward = self._reward(train_records) if config.objective == "scst" else None
        # what the training steps run through (the model, or its self-critical loss): DDP averages its gradients
        # over the processes; a self-critical step leaves the word head unused
        trained = captioner.model if self.reward is None else SelfCritical(
            captioner.model, self.reward, captioner.vocab, config.scst, captioner.max_length)
        self.model = trained if self.world == 1 else DistributedDataParallel(
            trained, device_ids=[self.device.index] if self.device.type == "cuda" else None,
            find_unused_parameters=self.reward is not None)
        if config.cache_images and config.num_workers:
            raise CaptionerError("trainer.cache_images needs trainer.num_workers=0: "
                                 "a worker's cache is lost when the worker ends with its epoch")
        if config.feature_cache and not captioner.model.encoder.frozen:
            raise CaptionerError("trainer.feature_cache=true caches a frozen encoder's features: "
                                 "set model.encoder.freeze=true")
        self.image_datasets = tuple(
            CaptionDataset(r, captioner.vocab, captioner.transform, captioner.max_length, seed,
                           config.captions_per_image, config.cache_images)
            for r in (train_records, val_records))
        self.feature_datasets: tuple[CaptionDataset, CaptionDataset] | None = None  # set by fit()
        self.bidirectional = captioner.model.decoder.reverse is not None
        self.sample_rewards: list[float] = []  # self-critical steps: the samples' mean reward, this epoch
        self.steps_per_epoch = math.ceil(len(train_records) // self.world * self.world / config.batch_size)
        self.total_steps = config.max_epochs * self.steps_per_epoch
        if config.max_steps is not None:
            self.total_steps = min(self.total_steps, config.max_steps)
        encoder_ids = {id(p) for p in captioner.model.encoder.parameters()}
        others = [p for p in captioner.model.parameters() if id(p) not in encoder_ids]
        self.optimizer = torch.optim.Adam(
            [{"params": captioner.model.encoder.parameters(), "lr": config.encoder_lr or config.lr},
             {"params": others, "lr": config.lr}], weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, partial(warmup_cosine, warmup_steps=config.warmup_steps, total_steps=self.total_steps))
        amp_dtype = autocast_dtype(self.device) if config.amp else None
        self.autocast = partial(torch.autocast, self.device.type, dtype=amp_dtype, enabled=amp_dtype is not None)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=amp_dtype == torch.float16)
        self.loss_fn = nn.CrossEntropyLoss(ignore_index=captioner.vocab.pad)
        self.averaged = (AveragedModel(captioner.model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay),
                                       use_buffers=True) if config.ema_decay else None)
        # what validation scores and model.pt holds: the averaged weights when there are any
        self.scored = (Captioner(self.averaged.module, captioner.vocab, captioner.preprocess, self.device,
                                 captioner.max_length, config.channels_last) if self.averaged else captioner)
        self.step = self.epoch = self.batch_in_epoch = 0
        self.best_score: float | None = None  # the monitored figure, negated for mode min: higher is better
        self.curve: list[dict] = []
        self.log: TensorBoardLog | None = None  # trainer.tensorboard, rank 0: set by fit()

    # --- the loop --------------------------------------------------------------------------

    def fit(self) -> dict:
        if self.config.resume:
            self._resume()
        if self.config.tensorboard and self.rank == 0:
            self.log = TensorBoardLog(self.out_dir / TENSORBOARD_DIR, resumed_step=self.step or None)
        if self.config.feature_cache and self.captioner.model.encoder.frozen:
            self.feature_datasets = tuple(self._features_dataset(d) for d in self.image_datasets)
        started = time.perf_counter()
        images_seen, loop_seconds = 0, 0.0
        try:
            while self.epoch < self.config.max_epochs and self.step < self.total_steps:
                epoch_started = time.perf_counter()
                train_loss, count = self._train_epoch()
                loop_seconds += time.perf_counter() - epoch_started
                images_seen += count
                self._end_of_epoch(train_loss)
        except KeyboardInterrupt:
            self._save_last()
            raise Interrupted(
                f"interrupted; saved {self.out_dir / LAST}; continue with trainer.resume=true") from None
        finally:
            if self.log:
                self.log.close()
        seconds = time.perf_counter() - started
        summary = {k: v for k, v in (self.curve[-1] if self.curve else {}).items() if k not in ("epoch", "lr")}
        return summary | {"train_seconds": round(seconds, 1),
                          # the training steps' rate: validation and checkpoints not counted
                          "train_images_per_second": round(images_seen / loop_seconds, 1) if loop_seconds else 0.0}

    def _train_epoch(self) -> tuple[float, int]:
        encoder = self.captioner.model.encoder
        finetune_from = self.config.finetune_after_epochs
        if encoder.frozen and finetune_from is not None and self.epoch >= finetune_from:
            encoder.unfreeze()
            if self.rank == 0:
                encoder_lr = self.config.encoder_lr or self.config.lr
                print(f"fine-tuning the encoder from epoch {self.epoch + 1} (lr {encoder_lr})", file=sys.stderr)
        self.captioner.model.train(self.reward is None)  # self-critical steps sample from the eval-mode model
        dataset = self._datasets()[0]
        dataset.epoch = self.epoch
        sampler = EpochSampler(len(dataset), self.seed, self.epoch,
                               start=self.batch_in_epoch * self.config.batch_size, rank=self.rank, world=self.world)
        loader = self._loader(dataset, sampler)
        steps = min(self.steps_per_epoch, self.batch_in_epoch + self.total_steps - self.step)  # max_steps may end it
        bar = tqdm(total=steps, initial=self.batch_in_epoch, file=sys.stderr, unit="step",
                   desc=f"epoch {self.epoch + 1}/{self.config.max_epochs}", dynamic_ncols=True, disable=self.rank > 0,
                   mininterval=0.1 if sys.stderr.isatty() else 15)  # a log file gets a line every 15 s, not 10 a second
        total_loss, images = 0.0, 0
        step = self._train_step if self.reward is None else self._self_critical_step
        self.sample_rewards = []
        with bar:
            for pixels, *captions in loader:
                loss = distributed.mean_across_processes(step(pixels, *captions), self.device)
                total_loss += loss * len(pixels) * self.world
                images += len(pixels) * self.world
                self.step += 1
                self.batch_in_epoch += 1
                bar.update()
                elapsed = bar.format_dict["elapsed"]
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{self.scheduler.get_last_lr()[-1]:.1e}",
                                img_s=f"{images / elapsed:.0f}" if elapsed else "-")
                if self.log:
                    rates = dict(zip(("encoder", "decoder"), self.scheduler.get_last_lr()))
                    self.log.step(self.step, loss, rates, images / elapsed if elapsed else 0.0)
                if self.step % self.config.checkpoint_every_steps == 0:
                    self._save_last()
                if self.step >= self.total_steps:
                    break
        if self.batch_in_epoch >= self.steps_per_epoch:
            self.epoch += 1
            self.batch_in_epoch = 0
        return total_loss / max(1, images), images

    def _train_step(self, pixels: torch.Tensor, tokens: torch.Tensor, image_index: torch.Tensor,
                    word_targets: torch.Tensor) -> float:
        pixels, tokens, image_index, word_targets = (
            t.to(self.device, non_blocking=True) for t in (pixels, tokens, image_index, word_targets))
        if self.config.channels_last and pixels.dim() == 4:  # not cached features (B, F)
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        backwards = reverse_index = None
        if self.bidirectional:
            one = self.config.reverse_captions_per_image == "one"
            rows = one_caption_per_image(image_index, len(pixels), self.step) if one else slice(None)
            backwards, reverse_index = reverse_captions(tokens[rows], self.captioner.vocab.pad), image_index[rows]
        with self.autocast():
            # tokens (N, T): <bos> w1 .. wn <eos> <pad>..; logits (N, T-1, V); word_logits (B, V)
            out = self.model(pixels, tokens[:, :-1], image_index, None if backwards is None else backwards[:, :-1],
                             reverse_index)
            caption_loss = self.loss_fn(out.logits.flatten(0, 1).float(), tokens[:, 1:].flatten())
            # summed over the vocabulary, averaged over images
            word_loss = nn.functional.binary_cross_entropy_with_logits(
                out.word_logits.float(), word_targets, reduction="sum") / len(pixels)
            loss = caption_loss + self.config.word_loss_weight * word_loss
            if out.reverse_logits is not None:  # the reverse decoder learns the captions read backwards, as much
                loss = loss + self.loss_fn(out.reverse_logits.flatten(0, 1).float(), backwards[:, 1:].flatten())
        self._optimize(loss)
        return caption_loss.item()

    def _self_critical_step(self, pixels: torch.Tensor, tokens: torch.Tensor, image_index: torch.Tensor,
                            _word_targets: torch.Tensor) -> float:
        """One self-critical step; the references of each image are its captions in the batch."""
        pixels = pixels.to(self.device, non_blocking=True)
        if self.config.channels_last and pixels.dim() == 4:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        references: list[list[list[int]]] = [[] for _ in range(len(pixels))]
        for row, image in zip(tokens.tolist(), image_index.tolist()):
            references[image].append(caption_words(row, self.captioner.vocab))
        with self.autocast():
            loss, figures = self.model(pixels, references)
        self._optimize(loss)
        self.sample_rewards.append(figures["reward"])
        return loss.item()

    def _optimize(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        nn.utils.clip_grad_norm_(self.captioner.model.parameters(), self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.averaged:
            self.averaged.update_parameters(self.captioner.model)

    def _reward(self, train_records: list[ImageRecord]) -> CiderD:
        """CIDEr-D with the document frequencies of the training references (as the model reads them)."""
        if self.config.captions_per_image != "all":
            raise CaptionerError("trainer.objective=scst scores samples against every reference of the image: "
                                 "set trainer.captions_per_image=all")
        vocab, length = self.captioner.vocab, self.captioner.max_length
        return CiderD([[caption_words(vocab.encode(c, length), vocab) for c in r.captions] for r in train_records])

    def _datasets(self) -> tuple[CaptionDataset, CaptionDataset]:
        """Train and val data: cached features while the encoder is frozen and they exist, else images."""
        frozen = self.captioner.model.encoder.frozen
        return self.feature_datasets if self.feature_datasets and frozen else self.image_datasets

    def _features_dataset(self, images: CaptionDataset) -> CaptionDataset:
        rows = cached_features(self.captioner.model.encoder, self.captioner.preprocess,
                               [r.path for r in images.records], self.config.feature_cache_dir,
                               feature_extraction(self.config, self.device))
        return images.with_features(rows)

    def _loader(self, dataset, sampler=None) -> DataLoader:
        batch_size = self.config.batch_size // self.world if sampler else self.config.val_batch_size
        return DataLoader(dataset, batch_size=batch_size,
                          sampler=sampler, collate_fn=partial(collate_captions, pad=self.captioner.vocab.pad),
                          num_workers=self.config.num_workers, pin_memory=self.device.type == "cuda",
                          generator=torch.Generator())  # its own seed draw: the global RNG (dropout) stays resumable

    # --- validation and checkpoints --------------------------------------------------------

    def _end_of_epoch(self, train_loss: float) -> None:
        """Validate and write checkpoints and the curve (rank 0; the other processes wait)."""
        if self.rank > 0:
            distributed.barrier()
            return
        row = {"step": self.step, "epoch": self.epoch, "lr": float(f"{self.scheduler.get_last_lr()[-1]:.3g}"),
               "train_loss": round(train_loss, 4)}
        if self.sample_rewards:  # self-critical: train_loss is the policy loss, this the samples' mean CIDEr-D
            row["train_reward"] = round(sum(self.sample_rewards) / len(self.sample_rewards), 4)
        row |= self.validate()
        self.curve.append(row)
        if self.log:
            self.log.epoch(row)
        print("  " + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
              file=sys.stderr)
        score = self._monitored(row)
        if self.best_score is None or score > self.best_score:
            self.best_score = score
            self.scored.save(self.out_dir / BEST, step=self.step)
        self._save_last()
        with atomic_open(self.out_dir / CURVE) as handle:
            writer = csv.DictWriter(handle, fieldnames=list(self.curve[-1]))
            writer.writeheader()
            writer.writerows(self.curve)
        training_curve_png(self.out_dir / CURVE_PLOT, self.curve, self.config.monitor, self.config.monitor_mode)
        distributed.barrier()

    def _monitored(self, row: dict) -> float:
        name = self.config.monitor
        if name not in row:
            reported = ", ".join(k for k in row if k.startswith("val_"))
            raise CaptionerError(f"trainer.monitor={name}: validation reports {reported}")
        return row[name] if self.config.monitor_mode == "max" else -row[name]

    @torch.no_grad()
    def validate(self) -> dict:
        """Teacher-forced loss on the validation split; the coco-caption metrics and the scorers' figures on
        greedy captions of its captioned subset."""
        model = self.scored.model.eval()
        val_dataset = self._datasets()[1]
        total, count = 0.0, 0
        for pixels, tokens, image_index, _ in self._loader(val_dataset):
            pixels, tokens = pixels.to(self.device), tokens.to(self.device)
            with self.autocast():
                logits = model(pixels, tokens[:, :-1], image_index.to(self.device)).logits  # (N, T-1, V)
            targets = tokens[:, 1:]  # (B, T-1)
            words = (targets != self.captioner.vocab.pad).sum().item()
            total += self.loss_fn(logits.flatten(0, 1).float(), targets.flatten()).item() * words
            count += words
        scores = {}
        if self.val_captioned:
            records = [self.val_records[i] for i in self.val_captioned]
            scores = score_captions(self._val_captions(val_dataset, records), records,
                                    {"meteor": self.config.val_meteor}, self.scorers)
        return {"val_loss": round(total / max(1, count), 4)} | {f"val_{k}": round(v, 4) for k, v in scores.items()}

    def _val_captions(self, val_dataset: CaptionDataset, records: list[ImageRecord]) -> list[str]:
        """Greedy captions of the captioned subset: from its cached features when validation reads them."""
        size = self.config.val_batch_size
        if val_dataset.features is None:
            return caption_records(self.scored, records, DecodeOptions(amp=self.config.amp), size,
                                   self.config.num_workers)
        chosen, rows = self.val_captioned, val_dataset.features
        return [caption for start in range(0, len(chosen), size) for caption in
                self.scored.caption_tensors(torch.stack([rows[i] for i in chosen[start : start + size]]),
                                            amp=self.config.amp)]

    def _save_last(self) -> None:
        if self.rank > 0:
            return
        self.captioner.save(
            self.out_dir / LAST, step=self.step,
            trainer={"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "best_score": self.best_score,
                     "curve": self.curve},
            optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(),
            **({"averaged": self.averaged.state_dict()} if self.averaged else {}),
            rng={"torch": torch.get_rng_state(),
                 "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
        )

    def _resume(self) -> None:
        path = self.out_dir / LAST
        if not path.is_file():
            print(f"trainer.resume: no {path} yet, starting from scratch", file=sys.stderr)
            return
        payload = load_checkpoint(path, map_location=self.device)
        if payload["vocab"] != self.captioner.vocab.words or payload["model_args"] != self.captioner.model.args:
            raise CaptionerError(f"{path}: was trained with another model or vocabulary; use a new run dir")
        self.captioner.model.load_state_dict(payload["state_dict"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.scaler.load_state_dict(payload["scaler"])
        if self.averaged:
            if "averaged" not in payload:
                raise CaptionerError(f"{path}: was trained without trainer.ema_decay; use a new run dir")
            self.averaged.load_state_dict(payload["averaged"])
        torch.set_rng_state(payload["rng"]["torch"].cpu())
        if payload["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in payload["rng"]["cuda"]])
        state = payload["trainer"]
        self.step, self.epoch, self.batch_in_epoch = payload["step"], state["epoch"], state["batch_in_epoch"]
        self.best_score, self.curve = state["best_score"], list(state["curve"])
        if self.rank == 0:
            print(f"resumed from {path} at step {self.step}", file=sys.stderr)
