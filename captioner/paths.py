"""Expanding a user's input (a file, a folder or a glob) into the files to process."""

from __future__ import annotations

import glob
from pathlib import Path

from captioner.errors import CaptionerError


def expand_inputs(spec: str | Path, extensions: frozenset[str]) -> list[Path]:
    """A file as given; a folder's files with these extensions (recursive, any case); a glob's matches.

    A single file is returned even with another extension, so that reading it can say why
    it fails. Raises CaptionerError when nothing is found.
    """
    spec = str(spec)
    path = Path(spec).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
        if not found:
            raise CaptionerError(f"{path}: no files with extension {', '.join(sorted(extensions))} in this folder")
        return found
    if glob.has_magic(spec):
        found = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        if not found:
            raise CaptionerError(f"{spec}: no files match this pattern")
        return found
    raise CaptionerError(f"{spec}: no such file or folder")
