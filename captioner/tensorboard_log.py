"""A long run watched live: the training figures as TensorBoard event files (``trainer.tensorboard=true``).

Every figure of ``training_curve.csv`` once per epoch, and the training loss, each parameter group's
learning rate and the images per second every few steps, written by TensorBoard's own writer (the
optional ``tensorboard`` package: ``pip install 'captioner[tensorboard]'``). A resumed run drops what
the interrupted one wrote after the step it resumes from, so the curves do not fold back.
"""

from __future__ import annotations

from pathlib import Path

from captioner.errors import CaptionerError

TENSORBOARD_DIR = "tensorboard"


class TensorBoardLog:
    """Scalars for TensorBoard in ``folder`` (``tensorboard --logdir`` on it or a parent)."""

    def __init__(self, folder: str | Path, resumed_step: int | None = None, every_steps: int = 10):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise CaptionerError("trainer.tensorboard=true needs the tensorboard package: "
                                 "pip install 'captioner[tensorboard]' (or pip install tensorboard)") from None
        self.writer = SummaryWriter(str(folder), purge_step=resumed_step)
        self.every_steps = every_steps

    def step(self, step: int, loss: float, learning_rates: dict[str, float], images_per_second: float) -> None:
        """One optimizer step's figures (written every ``every_steps`` steps)."""
        if step % self.every_steps:
            return
        self.writer.add_scalar("train/step_loss", loss, step)
        self.writer.add_scalar("train/images_per_second", images_per_second, step)
        for group, rate in learning_rates.items():
            self.writer.add_scalar(f"lr/{group}", rate, step)

    def epoch(self, row: dict) -> None:
        """A row of the training curve: every number in it, at its step (``val_CIDEr`` as ``val/CIDEr``)."""
        for name, value in row.items():
            if name != "step" and isinstance(value, (int, float)):
                self.writer.add_scalar(name.replace("_", "/", 1), value, row["step"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
