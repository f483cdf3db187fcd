"""What every entry point shares: where the configs live and how user errors are shown."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf.errors import OmegaConfBaseException

from captioner.errors import CaptionerError

CONFIG_PATH = str(Path(__file__).resolve().parents[2] / "conf")


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """User errors become one line on stderr and exit status 1 (HYDRA_FULL_ERROR=1: traceback)."""
    try:
        yield
    except (CaptionerError, OmegaConfBaseException) as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        sys.exit(1)


def limit_threads_in_parallel_sweeps() -> None:
    """Under ``hydra/launcher=joblib`` several jobs share the machine: give each its share of the
    cores, so that n jobs x all cores of threads do not oversubscribe the CPU."""
    hydra_config = HydraConfig.get()
    if hydra_config.mode != RunMode.MULTIRUN or "joblib" not in str(hydra_config.launcher.get("_target_", "")).lower():
        return
    cores = os.cpu_count() or 1
    jobs = hydra_config.launcher.n_jobs
    jobs = cores + 1 + jobs if jobs < 0 else jobs  # joblib: -1 means one per core
    torch.set_num_threads(max(1, cores // max(1, jobs)))
