"""The training loop: an objective's steps with Adam, clipping and a warmup + cosine schedule, validation
each epoch, checkpoints, resumable.

The loop knows no objective: teacher forcing or self-critical training (``trainer.objective``) is a part
with one contract (:mod:`captioner.objectives`). ``model.pt`` is the model of the epoch best by the
monitored validation figure (:mod:`captioner.validation`). With ``feature_cache=True`` a frozen encoder's
features are computed once and the epochs read them (:mod:`captioner.training_data`), until
``finetune_after_epochs`` unfreezes the encoder and images come back. With ``ema_decay > 0`` validation
and ``model.pt`` use an exponential moving average of the weights (Polyak averaging, as timm's
ModelEmaV2; here torch's ``swa_utils``), which the steps never touch.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from captioner import distributed
from captioner.api import Captioner
from captioner.data.dataset import EpochSampler
from captioner.data.formats import ImageRecord
from captioner.devices import autocast_dtype, resolve_device
from captioner.errors import CaptionerError, Interrupted
from captioner.evaluation import Scorer
from captioner.interrupts import StepBoundaries
from captioner.objectives import TeacherForcing
from captioner.run_state import LAST, resume, save_last
from captioner.scst import SelfCritical, training_reward
from captioner.tensorboard_log import TENSORBOARD_DIR, TensorBoardLog
from captioner.training_config import TrainerConfig
from captioner.training_curve import write_curve
from captioner.training_data import TrainingData, feature_extraction
from captioner.validation import Validation

BEST = "model.pt"


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
        self.rank, self.world, self.device = distributed.init(config.strategy, resolve_device(config.device))
        model = captioner.model
        self._check(model)
        model.to(self.device)
        if config.channels_last:
            model.to(memory_format=torch.channels_last)
        captioner.device = self.device
        self.self_critical = config.objective == "scst"
        if self.self_critical:
            reward = training_reward(train_records, captioner.vocab, captioner.max_length)
            objective = SelfCritical(model, reward, captioner.vocab, config.scst, captioner.max_length)
        else:
            objective = TeacherForcing(model, captioner.vocab.pad, config.word_loss_weight,
                                       config.reverse_captions_per_image == "one")
        # DDP averages the objective's gradients over the processes; a self-critical step leaves the word head unused
        self.objective = objective if self.world == 1 else DistributedDataParallel(
            objective, device_ids=[self.device.index] if self.device.type == "cuda" else None,
            find_unused_parameters=self.self_critical)
        self.data = TrainingData(captioner, train_records, val_records, seed, config)
        self.validation = Validation(val_records, scorers, config.val_max_images, seed, config.monitor,
                                     config.monitor_mode, config.val_meteor, config.amp, config.val_batch_size,
                                     config.num_workers)
        self.steps_per_epoch = math.ceil(len(train_records) // self.world * self.world / config.batch_size)
        self.total_steps = config.max_epochs * self.steps_per_epoch
        if config.max_steps is not None:
            self.total_steps = min(self.total_steps, config.max_steps)
        encoder_ids = {id(p) for p in model.encoder.parameters()}
        self.optimizer = torch.optim.Adam(
            [{"params": model.encoder.parameters(), "lr": config.encoder_lr or config.lr},
             {"params": [p for p in model.parameters() if id(p) not in encoder_ids], "lr": config.lr}],
            weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, partial(warmup_cosine, warmup_steps=config.warmup_steps, total_steps=self.total_steps))
        amp_dtype = autocast_dtype(self.device) if config.amp else None
        self.autocast = partial(torch.autocast, self.device.type, dtype=amp_dtype, enabled=amp_dtype is not None)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=amp_dtype == torch.float16)
        self.averaged = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
                         if config.ema_decay else None)
        # what validation scores and model.pt holds: the averaged weights when there are any
        self.scored = (Captioner(self.averaged.module, captioner.vocab, captioner.preprocess, self.device,
                                 captioner.max_length, config.channels_last) if self.averaged else captioner)
        self.step = self.epoch = self.batch_in_epoch = 0
        self.best_score: float | None = None  # the monitored figure, negated for mode min: higher is better
        self.curve: list[dict] = []
        self.sample_rewards: list[float] = []  # self-critical steps: the samples' mean reward, this epoch
        self.log: TensorBoardLog | None = None  # trainer.tensorboard, rank 0: set by fit()
        self.boundaries = StepBoundaries()  # Ctrl-C waits for the step under way

    def _check(self, model: nn.Module) -> None:
        """What the settings cannot do with this model or this many processes."""
        config = self.config
        if config.batch_size % self.world:
            raise CaptionerError(f"trainer.batch_size={config.batch_size} must divide over {self.world} processes")
        if self.world > 1 and model.encoder.frozen and config.finetune_after_epochs is not None:
            raise CaptionerError("trainer.finetune_after_epochs with a frozen encoder is not supported with ddp yet")
        if config.feature_cache and not model.encoder.frozen:
            raise CaptionerError("trainer.feature_cache=true caches a frozen encoder's features: "
                                 "set model.encoder.freeze=true")

    def fit(self) -> dict:
        """Train until ``max_epochs`` or ``max_steps``; -> the last epoch's figures and the training rate."""
        if self.config.resume:
            resume(self)
        if self.config.tensorboard and self.rank == 0:
            self.log = TensorBoardLog(self.out_dir / TENSORBOARD_DIR, resumed_step=self.step or None)
        if self.config.feature_cache and self.captioner.model.encoder.frozen:
            self.data.cache_features(self.config.feature_cache_dir, feature_extraction(self.config, self.device))
        started, images_seen, loop_seconds = time.perf_counter(), 0, 0.0
        try:
            with self.boundaries.installed():
                while self.epoch < self.config.max_epochs and self.step < self.total_steps:
                    epoch_started = time.perf_counter()
                    train_loss, count = self._train_epoch()
                    loop_seconds += time.perf_counter() - epoch_started
                    images_seen += count
                    self._end_of_epoch(train_loss)
        except KeyboardInterrupt:
            save_last(self)
            raise Interrupted(f"interrupted; saved {self.out_dir / LAST}; continue with trainer.resume=true") from None
        finally:
            if self.log:
                self.log.close()
        summary = {k: v for k, v in (self.curve[-1] if self.curve else {}).items() if k not in ("epoch", "lr")}
        return summary | {"train_seconds": round(time.perf_counter() - started, 1),
                          # the training steps' rate: validation and checkpoints not counted
                          "train_images_per_second": round(images_seen / loop_seconds, 1) if loop_seconds else 0.0}

    def _train_epoch(self) -> tuple[float, int]:
        self._unfreeze_when_due()
        self.captioner.model.train(not self.self_critical)  # self-critical steps sample from the eval-mode model
        dataset = self.data.splits()[0]
        dataset.epoch = self.epoch
        sampler = EpochSampler(len(dataset), self.seed, self.epoch,
                               start=self.batch_in_epoch * self.config.batch_size, rank=self.rank, world=self.world)
        steps = min(self.steps_per_epoch, self.batch_in_epoch + self.total_steps - self.step)  # max_steps may end it
        bar = tqdm(total=steps, initial=self.batch_in_epoch, file=sys.stderr, unit="step",
                   desc=f"epoch {self.epoch + 1}/{self.config.max_epochs}", dynamic_ncols=True, disable=self.rank > 0,
                   mininterval=0.1 if sys.stderr.isatty() else 15)  # a log file gets a line every 15 s, not 10 a second
        total_loss, images, self.sample_rewards = 0.0, 0, []
        with bar:
            for pixels, *captions in self.data.loader(dataset, self.config.batch_size // self.world, sampler):
                with self.boundaries.whole():
                    figures = self._step(pixels, *captions)
                    self.sample_rewards += [figures["reward"]] if "reward" in figures else []
                    loss = distributed.mean_across_processes(figures["loss"], self.device)
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
                        save_last(self)
                if self.step >= self.total_steps:
                    break
        if self.batch_in_epoch >= self.steps_per_epoch:
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        return total_loss / max(1, images), images

    def _unfreeze_when_due(self) -> None:
        encoder, finetune_from = self.captioner.model.encoder, self.config.finetune_after_epochs
        if encoder.frozen and finetune_from is not None and self.epoch >= finetune_from:
            encoder.unfreeze()
            if self.rank == 0:
                encoder_lr = self.config.encoder_lr or self.config.lr
                print(f"fine-tuning the encoder from epoch {self.epoch + 1} (lr {encoder_lr})", file=sys.stderr)

    def _step(self, pixels: torch.Tensor, tokens: torch.Tensor, image_index: torch.Tensor,
              word_targets: torch.Tensor) -> dict:
        """One optimizer step on the objective; -> its figures."""
        pixels, tokens, image_index, word_targets = (
            t.to(self.device, non_blocking=True) for t in (pixels, tokens, image_index, word_targets))
        if self.config.channels_last and pixels.dim() == 4:  # not cached features (B, F)
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        with self.autocast():
            loss, figures = self.objective(pixels, tokens, image_index, word_targets, self.step)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        nn.utils.clip_grad_norm_(self.captioner.model.parameters(), self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.averaged:
            self.averaged.update_parameters(self.captioner.model)
        return figures

    def validate(self) -> dict:
        """The validation figures of the model ``model.pt`` would hold now."""
        val_dataset = self.data.splits()[1]
        return self.validation(self.scored, val_dataset, self.data.loader(val_dataset, self.config.val_batch_size),
                               self.autocast)

    def _end_of_epoch(self, train_loss: float) -> None:
        """Validate and write checkpoints and the curve (rank 0; the other processes wait)."""
        if self.rank == 0:
            row = {"step": self.step, "epoch": self.epoch, "lr": float(f"{self.scheduler.get_last_lr()[-1]:.3g}"),
                   "train_loss": round(train_loss, 4)}
            if self.sample_rewards:  # self-critical: train_loss is the policy loss, this the samples' mean CIDEr-D
                row["train_reward"] = round(sum(self.sample_rewards) / len(self.sample_rewards), 4)
            self.curve.append(row | self.validate())
            if self.log:
                self.log.epoch(self.curve[-1])
            score = self.validation.score(self.curve[-1])
            with self.boundaries.whole():
                if self.best_score is None or score > self.best_score:
                    self.best_score = score
                    self.scored.save(self.out_dir / BEST, step=self.step)
                save_last(self)
                write_curve(self.out_dir, self.curve, self.config.monitor, self.config.monitor_mode)
        distributed.barrier()
