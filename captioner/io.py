"""Safe file writing: atomic files (a reader never sees a half-written output or checkpoint) and
JSON lines that a crash cuts only between rows; a write the disk has no room for is one CaptionerError
naming the file and what was kept."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from captioner.errors import CaptionerError


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", errors: str = "strict") -> Iterator[IO]:
    """Write to a temporary file beside ``path``, fsync it, then rename it over ``path`` (text: UTF-8,
    ``errors`` as :func:`open` takes them)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        text = {"encoding": "utf-8", "newline": "", "errors": errors}
        with os.fdopen(fd, mode, **({} if "b" in mode else text)) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(temp_name, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        full = storage_full(error, path)
        if full is None:
            raise
        kept = "the file before it is kept" if path.exists() else "nothing was written"
        raise CaptionerError(f"{path}: could not be written ({full}); {kept}") from error


# A write refused for want of room: the disk is full, a quota is reached or the file is over the size limit.
STORAGE_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def storage_full(error: BaseException, path: Path) -> str | None:
    """Why writing ``path`` failed for want of room (with the room left on its disk), or None for any other
    error. torch.save reports its writer's OSError as a RuntimeError raised while handling it."""
    cause = error if isinstance(error, OSError) else error.__context__
    if not isinstance(cause, OSError) or cause.errno not in STORAGE_FULL:
        return None
    if cause.errno == errno.EFBIG:  # a limit on one file's size, not the disk
        return cause.strerror
    return f"{cause.strerror}, {size_text(shutil.disk_usage(path.parent).free)} free there"


def size_text(size: int) -> str:
    """A size in bytes for messages: "1.2 GiB", "3.4 MiB", "5 KiB" (1000 of a unit is shown in the next one)."""
    if size >= 1000 * 2**20:
        return f"{size / 2**30:.1f} GiB"
    return f"{size / 2**20:.1f} MiB" if size >= 1000 * 2**10 else f"{size / 2**10:.0f} KiB"


def check_writable(path: str | Path, inputs: Sequence[Path] = ()) -> None:
    """Before any work is done, and writing nothing: ``path`` can be written (its folder, or the nearest
    one of its folders that exists, is a writable folder), is not a folder and is none of ``inputs``;
    else one CaptionerError naming it and why."""
    path = Path(path)
    existing = next(folder for folder in path.absolute().parents if folder.exists())
    if not existing.is_dir():
        raise CaptionerError(f"{path}: cannot be written there ({existing} is not a folder)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CaptionerError(f"{path}: cannot be written there ({existing} is not writable)")
    if path.is_dir():
        raise CaptionerError(f"{path}: is a folder; give a file name")
    if path.exists() and any(os.path.samefile(p, path) for p in inputs if Path(p).name == path.name):
        raise CaptionerError(f"{path}: is one of the inputs; give another output")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | Path, data) -> None:
    with atomic_open(path) as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")


def complete_jsonl_rows(path: str | Path, required: str) -> list[dict]:
    """The rows of a JSON-lines file that a killed writer may have left: each complete line's object.
    A torn last line (no newline at its end) is cut off the file, so appending goes on after the last
    whole row. A line that is not a JSON object with the field ``required`` is a CaptionerError naming
    the file and the line (a file of something else is never appended to)."""
    path = Path(path)
    if not path.is_file():
        return []
    data = path.read_bytes()
    whole = data[: data.rfind(b"\n") + 1]
    if len(whole) < len(data):
        with path.open("r+b") as handle:
            handle.truncate(len(whole))
    rows = []
    for number, line in enumerate(whole.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            row = None
        if not isinstance(row, dict) or required not in row:
            raise CaptionerError(f"{path}: line {number} is not a JSON object with a {required!r}: not a file "
                                 "this command wrote")
        rows.append(row)
    return rows


class JsonLines:
    """Appends one JSON object a line, each flushed when written: a crash loses at most the line being written."""

    def __init__(self, path: str | Path, append: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = self.path.open("a" if append else "w", encoding="utf-8")
        self.broken = False

    def write(self, row: dict) -> None:
        with self._room():
            self.handle.write(json.dumps(row) + "\n")
            self.handle.flush()

    def close(self) -> None:
        if self.broken:  # the buffer holds what could not be written: closing would try again
            with contextlib.suppress(OSError):
                self.handle.close()
            return
        with self._room():
            self.handle.flush()
            os.fsync(self.handle.fileno())
        self.handle.close()

    @contextlib.contextmanager
    def _room(self) -> Iterator[None]:
        """A write the disk has no room for -> CaptionerError; the rows before are whole (a torn last line is
        cut when the file is read again)."""
        try:
            yield
        except OSError as error:
            self.broken = True
            full = storage_full(error, self.path)
            if full is None:
                raise
            raise CaptionerError(f"{self.path}: could not be written ({full}); the rows before are kept") from error

    def __enter__(self) -> JsonLines:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
