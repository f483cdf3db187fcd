"""What the training and evaluation commands share: data records, scorers, threads in sweeps."""

from __future__ import annotations

import os

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from captioner import distributed
from captioner.data.formats import ImageRecord
from captioner.errors import CaptionerError
from captioner.evaluation import Scorer


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


def instantiate_records(data: DictConfig, once: bool = False) -> list[ImageRecord]:
    """The records a ``data=`` config's ``_target_`` builds (its ``scorers`` aside). ``once``: under
    DDP rank 0 builds them first (a generated dataset is made on first use), then the others read them."""
    node = {k: v for k, v in OmegaConf.to_container(data, resolve=True).items() if k != "scorers"}
    if not once:
        return _built(node)
    records = _built(node) if distributed.is_main() else None
    distributed.barrier()
    return records if records is not None else _built(node)


def _built(node: dict):
    """``instantiate(node)``, a user error (a missing file, a bad row) raised as itself: one line, not Hydra's
    four ("Error executing job ... Error in call to target ...")."""
    try:
        return instantiate(node)
    except InstantiationException as error:
        if isinstance(error.__cause__, CaptionerError):
            raise error.__cause__ from None
        raise


def data_scorers(data: DictConfig) -> list[Scorer]:
    """The dataset's own scorers: ``data.scorers``, a list of ``_target_`` nodes (none when absent)."""
    return [_built(node) for node in data.get("scorers") or ()]
