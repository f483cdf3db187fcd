"""What every entry point shares: where the configs live and how user errors are shown."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
import sys
import typing
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException, ValidationError

from captioner import distributed
from captioner.data.formats import ImageRecord
from captioner.errors import CaptionerError
from captioner.evaluation import Scorer


def _config_dir() -> Path:
    """``conf/`` beside the package in a checkout (editable install); ``captioner/conf`` in a wheel."""
    package = Path(__file__).resolve().parents[1]
    packaged = package / "conf"
    return packaged if packaged.is_dir() else package.parent / "conf"


CONFIG_PATH = str(_config_dir())


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


def instantiate_records(data: DictConfig, once: bool = False) -> list[ImageRecord]:
    """The records a ``data=`` config's ``_target_`` builds (its ``scorers`` aside). ``once``: under
    DDP rank 0 builds them first (a generated dataset is made on first use), then the others read them."""
    node = {k: v for k, v in OmegaConf.to_container(data, resolve=True).items() if k != "scorers"}
    if not once:
        return instantiate(node)
    records = instantiate(node) if distributed.is_main() else None
    distributed.barrier()
    return records if records is not None else instantiate(node)


def data_scorers(data: DictConfig) -> list[Scorer]:
    """The dataset's own scorers: ``data.scorers``, a list of ``_target_`` nodes (none when absent)."""
    return [instantiate(node) for node in data.get("scorers") or ()]


def typed(cls: type, node: DictConfig | dict, key: str):
    """A dataclass built from a config node with OmegaConf's type checks, so that a wrong type in an
    override (``trainer.max_epochs=abc``) is one line naming the key, not a traceback later."""
    schema = _writable(OmegaConf.structured(cls))  # frozen dataclasses give read-only nodes, which refuse a merge
    try:
        return OmegaConf.to_object(OmegaConf.merge(schema, node))
    except ValidationError as error:
        raise CaptionerError(f"{key}.{error.full_key}: {str(error).splitlines()[0]}") from None


def typed_arguments(function: Callable, node: DictConfig | dict, key: str) -> dict:
    """Keyword arguments from a config node, checked against ``function``'s annotated parameters
    (the model constructors: their signatures are the schema, no second copy of it)."""
    hints = typing.get_type_hints(function)
    parameters = inspect.signature(function).parameters
    unknown = [name for name in node if name not in parameters]
    if unknown:
        valid = ", ".join(k for k in parameters if k != "self")
        raise CaptionerError(f"{key}.{unknown[0]}: not a setting; valid: {valid}")
    fields = [(name, hints[name], dataclasses.field(default=parameters[name].default)) for name in node]
    return dataclasses.asdict(typed(dataclasses.make_dataclass(key.replace(".", "_"), fields), node, key))


def _writable(node: DictConfig) -> DictConfig:
    node._set_flag("readonly", False)
    for key in node:
        child = node._get_node(key)
        child._set_flag("readonly", False)
        if isinstance(child, DictConfig):
            _writable(child)
    return node
