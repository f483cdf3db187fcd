"""Links between the files a page and its pictures are made of."""

from __future__ import annotations

import html
import os
from pathlib import Path
from urllib.parse import quote


def relative_href(folder: str | Path, target: str | Path) -> str:
    """An HTML-escaped, URL-quoted link from a page in ``folder`` to ``target``: relative, so the page
    can be moved together with what it links to, or served as it is."""
    return html.escape(quote(os.path.relpath(os.path.abspath(target), os.path.abspath(folder))))
