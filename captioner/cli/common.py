"""What every entry point shares: where the configs live and how user errors are shown."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

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
