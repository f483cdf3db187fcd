"""Where the configs live, how a config node becomes checked arguments, and how user errors are shown.

Imports neither torch nor the models: ``captioner-tag`` starts decoding before those load."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
import sys
import typing
from collections.abc import Callable, Iterator
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException, ValidationError

from captioner.errors import CaptionerError, Interrupted
from captioner.io import write_json


def _config_dir() -> Path:
    """``conf/`` beside the package in a checkout (editable install); ``captioner/conf`` in a wheel."""
    package = Path(__file__).resolve().parents[1]
    packaged = package / "conf"
    return packaged if packaged.is_dir() else package.parent / "conf"


CONFIG_PATH = str(_config_dir())


def model_settings(cfg: DictConfig) -> dict:
    """The ``rerank`` and ``head`` config groups, as :meth:`Captioner.load` takes them."""
    return {"rerank": OmegaConf.to_container(cfg.rerank), "head": OmegaConf.to_container(cfg.head)}


TRACEBACKS = "CAPTIONER_TRACEBACKS"  # HYDRA_FULL_ERROR as the user set it (the commands set it for Hydra)


def tracebacks_asked() -> bool:
    """Whether the user asked for tracebacks instead of one-line errors (``HYDRA_FULL_ERROR=1``)."""
    return os.environ.get(TRACEBACKS, os.environ.get("HYDRA_FULL_ERROR")) == "1"


FAILED = "failed.json"  # a sweep job's user error, in its dir: the sweep goes on, its summary lists it


@contextlib.contextmanager
def user_errors(sweeps: bool = False) -> Iterator[None]:
    """User errors become one line on stderr and exit status 1 (HYDRA_FULL_ERROR=1: traceback); Ctrl-C
    is "interrupted" and 130, a closed pipe a quiet exit 1. ``sweeps``: in a multirun a job's user error is
    written to its dir (``failed.json``) and the sweep goes on to the next job. Printing
    never fails on a file name: where the streams' encoding is strict, what it cannot encode is written
    as a backslash escape (a name that is not UTF-8 as ``\\udcXX``, as in the JSON outputs)."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        yield
    except Interrupted as error:  # Ctrl-C in training: the message says what was saved
        _end_progress_bars()
        print(error, file=sys.stderr)
        sys.exit(130)
    except (CaptionerError, OmegaConfBaseException) as error:
        if tracebacks_asked():
            raise
        line = str(error).splitlines()[0]
        print(f"error: {line}", file=sys.stderr)
        if not (sweeps and _recorded_in_sweep(line)):
            sys.exit(1)
    except KeyboardInterrupt:  # Ctrl-C: what was written is whole (atomic files, JSON lines cut between rows)
        _end_progress_bars()
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # the reader left (`| head`): quietly, and no complaint when stdout is flushed at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


def _end_progress_bars() -> None:
    """Close the progress bars still drawn, so that a message after them starts on its own line."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(tqdm.tqdm, "_instances", ())) if tqdm else ():
        bar.close()


def _recorded_in_sweep(error: str) -> bool:
    """In a multirun job: ``error`` written to the job's ``failed.json`` (-> True); else False."""
    job = HydraConfig.get() if HydraConfig.initialized() else None
    if job is None or job.mode != RunMode.MULTIRUN:
        return False
    write_json(Path(job.runtime.output_dir) / FAILED, {"error": error})
    return True


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
