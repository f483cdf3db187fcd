"""A run's state in ``last.pt``: the weights and the optimizer, schedule, scaler, moving average, random
number generators and the loop's position, so that ``trainer.resume=true`` goes on as if never stopped
(tested: the same weights as an uninterrupted run)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import torch

from captioner.checkpoint import load_checkpoint
from captioner.errors import CaptionerError

if TYPE_CHECKING:
    from captioner.training import Trainer

LAST = "last.pt"


def save_last(trainer: Trainer) -> None:
    """Write the run's state to ``last.pt`` (rank 0), atomically."""
    if trainer.rank > 0:
        return
    trainer.captioner.save(
        trainer.out_dir / LAST, step=trainer.step,
        trainer={"epoch": trainer.epoch, "batch_in_epoch": trainer.batch_in_epoch, "best_score": trainer.best_score,
                 "curve": trainer.curve},
        optimizer=trainer.optimizer.state_dict(), scheduler=trainer.scheduler.state_dict(),
        scaler=trainer.scaler.state_dict(), **({"averaged": trainer.averaged.state_dict()} if trainer.averaged else {}),
        rng={"torch": torch.get_rng_state(),
             "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []})


def resume(trainer: Trainer) -> None:
    """Set ``trainer`` to the state in its ``last.pt``, if there is one."""
    path = trainer.out_dir / LAST
    if not path.is_file():
        print(f"trainer.resume: no {path} yet, starting from scratch", file=sys.stderr)
        return
    payload = load_checkpoint(path, map_location=trainer.device)
    if payload["vocab"] != trainer.captioner.vocab.words or payload["model_args"] != trainer.captioner.model.args:
        raise CaptionerError(f"{path}: was trained with another model or vocabulary; use a new run dir")
    if trainer.averaged and "averaged" not in payload:
        raise CaptionerError(f"{path}: was trained without trainer.ema_decay; use a new run dir")
    trainer.captioner.model.load_state_dict(payload["state_dict"])
    for part in ("optimizer", "scheduler", "scaler", *(["averaged"] if trainer.averaged else [])):
        getattr(trainer, part).load_state_dict(payload[part])
    torch.set_rng_state(payload["rng"]["torch"].cpu())
    if payload["rng"]["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in payload["rng"]["cuda"]])
    state = payload["trainer"]
    trainer.step, trainer.epoch, trainer.batch_in_epoch = payload["step"], state["epoch"], state["batch_in_epoch"]
    trainer.best_score, trainer.curve = state["best_score"], list(state["curve"])
    if trainer.rank == 0:
        print(f"resumed from {path} at step {trainer.step}", file=sys.stderr)
