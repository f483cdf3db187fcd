"""Links between the files a page and its pictures are made of."""

from __future__ import annotations

import html
import os
from pathlib import Path
from urllib.parse import quote


def relative_href(folder: str | Path, target: str | Path) -> str:
    """An HTML-escaped, URL-quoted link from a page in ``folder`` to ``target``: relative, so the page
    can be moved together with what it links to, or served as it is. Quoted from the name's bytes, so a
    name that is not UTF-8 links to its file."""
    return html.escape(quote(os.fsencode(os.path.relpath(os.path.abspath(target), os.path.abspath(folder)))))


def display_name(path: str | Path) -> str:
    """A file's name as a page shows it, HTML-escaped: bytes that are not UTF-8 shown as U+FFFD."""
    return html.escape(os.fsencode(Path(path).name).decode("utf-8", "replace"))
