"""Expanding a user's input (a file, a folder or a glob) into the files to process, and naming their outputs."""

from __future__ import annotations

import glob
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from captioner.errors import CaptionerError


def expand_inputs(spec: str | Path, extensions: frozenset[str]) -> list[Path]:
    """A file as given; a folder's files with these extensions (recursive, any case); a glob's matches.

    A single file is returned even with another extension, so that reading it can say why
    it fails. Folders and globs follow symbolic links the same way, each file once: one reached
    twice (a link to it, a link loop) is kept where it is first met. Raises CaptionerError when
    nothing is found.
    """
    spec = str(spec)
    if not spec.strip():  # Path("") is the current folder: everything under it would be read
        raise CaptionerError("the input is empty: give a file, a folder or a quoted glob")
    path = Path(spec).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        found = _walk(path, extensions)
        if not found:
            raise CaptionerError(f"{path}: no files with extension {', '.join(sorted(extensions))} in this folder")
        return found
    if glob.has_magic(spec):
        found = _once(Path(p) for p in sorted(glob.glob(str(path), recursive=True)) if Path(p).is_file())
        if not found:
            raise CaptionerError(f"{spec}: no files match this pattern")
        return found
    raise CaptionerError(f"{spec}: no such file or folder")


def _walk(folder: Path, extensions: frozenset[str]) -> list[Path]:
    """The files under ``folder`` with these extensions, sorted, through links to folders (each real folder
    read once), a file reached twice kept where it comes first. A file's real path is its real folder's
    plus its name unless it is itself a link: no path is resolved per file."""
    found, seen = [], set()
    pending = [folder]
    while pending:
        current = pending.pop()
        real = os.path.realpath(current)
        if real in seen:  # a link back up, or a second link to a folder already read
            continue
        seen.add(real)
        try:
            entries = list(os.scandir(current))
        except OSError:  # unreadable: skipped, as a walk of the tree skips it
            continue
        for entry in entries:
            if entry.is_dir():
                pending.append(Path(entry.path))
            elif entry.is_file() and os.path.splitext(entry.name)[1].lower() in extensions:
                key = os.path.realpath(entry.path) if entry.is_symlink() else os.path.join(real, entry.name)
                found.append((Path(entry.path), key))
    kept, keys = [], set()
    for path, key in sorted(found):
        if key not in keys:
            keys.add(key)
            kept.append(path)
    return kept


def _once(paths) -> list[Path]:
    """``paths`` without a file met before under another name (by its real path), in order."""
    kept, seen = [], set()
    for path in paths:
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            kept.append(path)
    return kept


def output_names(paths: Sequence[Path]) -> list[Path]:
    """A unique, stable name (without extension) for each input's outputs: its path relative to the
    folder all the inputs are in, so ``a/same.mp4`` and ``b/same.mp4`` become ``a/same`` and ``b/same``;
    where two inputs of one folder share a stem (``clip.mp4``, ``clip.mkv``) their names keep the extension."""
    absolute = [Path(os.path.abspath(p)) for p in paths]
    root = Path(os.path.commonpath([p.parent for p in absolute])) if absolute else Path()
    relative = [p.relative_to(root) for p in absolute]
    stems = Counter(r.with_suffix("") for r in relative)
    return [r if stems[r.with_suffix("")] > 1 else r.with_suffix("") for r in relative]
