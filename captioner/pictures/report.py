"""The evaluation report: ``report.html`` beside ``metrics.json``, every image beside its caption.

One self-contained page (plain HTML, a little vanilla JS, no network: it works from ``file://``
offline) with the metrics on top and a row per image: its thumbnail (files in ``report_files/``),
the model's caption, the references, and its own CIDEr-D and BLEU-4; sortable and filterable,
worst CIDEr-D first, so the failures are what one sees first. Where the model attends, each row
links a strip of where it looked for each word. Everything taken from the data is HTML-escaped.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from PIL import Image

from captioner.data.formats import ImageRecord
from captioner.data.images import load_image
from captioner.io import atomic_open
from captioner.pictures.attention import write_attention_strip
from captioner.pictures.links import display_name, relative_href

if TYPE_CHECKING:
    from captioner.api import Captioner

REPORT, FILES = "report.html", "report_files"
THUMBNAIL = 160
STRIP_PANEL_HEIGHT = 112  # the report's attention strips: JPEG, smaller panels (a report may hold thousands)

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; margin: 0 0 .6em; }
table.metrics { border-collapse: collapse; margin-bottom: 1.2em; }
table.metrics td, table.metrics th { padding: 2px 12px 2px 0; text-align: left; }
table.metrics td.value { font-variant-numeric: tabular-nums; }
.controls { position: sticky; top: 0; background: #fff; padding: .5em 0; border-bottom: 1px solid #ddd; }
.controls button { margin-right: .3em; }
.controls button[data-active]:not([data-active=""]) { font-weight: bold; }
.controls button[data-active="asc"]::after { content: " \\2191"; }
.controls button[data-active="desc"]::after { content: " \\2193"; }
#filter { width: 24em; margin-left: 1em; }
table.images { border-collapse: collapse; width: 100%; }
table.images td { border-bottom: 1px solid #eee; padding: 6px 10px 6px 0; vertical-align: top; }
table.images img { max-width: 160px; max-height: 160px; display: block; }
td.caption { font-weight: 600; }
td.score { font-variant-numeric: tabular-nums; white-space: nowrap; }
ul.references { margin: 0; padding-left: 1.1em; color: #555; }
.file { color: #888; font-size: .9em; }
"""

_SCRIPT = """
const body = document.querySelector("table.images tbody");
const rows = Array.from(body.rows);
const state = {key: "cider", ascending: true};
function render() {
  const words = document.getElementById("filter").value.toLowerCase().split(/\\s+/).filter(Boolean);
  const sign = state.ascending ? 1 : -1;
  const sorted = rows.slice().sort((a, b) =>
    sign * (Number(a.dataset[state.key]) - Number(b.dataset[state.key])) || a.dataset.index - b.dataset.index);
  let shown = 0;
  for (const row of sorted) {
    row.hidden = !words.every(word => row.dataset.text.includes(word));
    shown += row.hidden ? 0 : 1;
    body.appendChild(row);
  }
  document.getElementById("count").textContent = shown + " of " + rows.length + " images";
  for (const button of document.querySelectorAll("button[data-sort]")) {
    button.dataset.active = button.dataset.sort === state.key ? (state.ascending ? "asc" : "desc") : "";
  }
}
for (const button of document.querySelectorAll("button[data-sort]")) {
  button.addEventListener("click", () => {
    state.ascending = button.dataset.sort === state.key ? !state.ascending : true;
    state.key = button.dataset.sort;
    render();
  });
}
document.getElementById("filter").addEventListener("input", render);
render();
"""


def write_report(out_dir: str | Path, metrics: dict, records: Sequence[ImageRecord], captions: Sequence[str],
                 scores: Sequence[dict], captioner: Captioner | None = None, batch_size: int = 64,
                 amp: bool = True) -> Path:
    """Write ``out_dir/report.html`` and its thumbnails (and attention strips when ``captioner``
    attends, in the precision ``amp`` says) under ``out_dir/report_files/``; -> the page's path."""
    out_dir = Path(out_dir)
    files = out_dir / FILES
    attends = captioner is not None and captioner.model.decoder.attention is not None
    for folder in ("images", "attention") if attends else ("images",):
        (files / folder).mkdir(parents=True, exist_ok=True)
    thumbnails, strips = [], []
    for start in range(0, len(records), batch_size):
        images = [load_image(r.path) for r in records[start : start + batch_size]]  # read once: thumbnail and strip
        names = [f"{start + i:05d}.jpg" for i in range(len(images))]
        thumbnails += [_write_thumbnail(files / "images" / name, image) for name, image in zip(names, images)]
        if attends:
            chosen = captions[start : start + len(images)]
            pixels = torch.stack([captioner.transform(image) for image in images])
            maps = captioner.attention_maps(pixels, chosen, amp)
            strips += [write_attention_strip(files / "attention" / name, image, caption, weights, STRIP_PANEL_HEIGHT)
                       for name, image, caption, weights in zip(names, images, chosen, maps)]
    rows = [_row(n, out_dir, record, caption, score, thumbnails[n], strips[n] if strips else None)
            for n, (record, caption, score) in enumerate(zip(records, captions, scores))]
    worst_first = sorted(range(len(rows)), key=lambda n: (scores[n].get("CIDEr", 0.0), n))
    page = out_dir / REPORT
    with atomic_open(page) as handle:
        handle.write(_page(metrics, len(records), [rows[n] for n in worst_first]))
    return page


def _write_thumbnail(path: Path, image: Image.Image) -> Path:
    scale = THUMBNAIL / max(image.size)  # small images are enlarged too: all rows look alike
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                         Image.Resampling.BICUBIC)
    with atomic_open(path, "wb") as handle:
        image.save(handle, format="JPEG", quality=85)
    return path


def _row(n: int, out_dir: Path, record: ImageRecord, caption: str, score: dict, thumbnail: Path,
         strip: Path | None) -> str:
    cider, bleu = score.get("CIDEr"), score.get("Bleu_4")
    searchable = " ".join([caption, *record.captions, Path(record.path).name]).lower()
    references = "".join(f"<li>{html.escape(c)}</li>" for c in record.captions)
    looked = f' <a href="{relative_href(out_dir, strip)}">where it looked</a>' if strip else ""
    return (f'<tr data-index="{n}" data-cider="{cider or 0.0}" data-bleu="{bleu or 0.0}" '
            f'data-text="{html.escape(searchable)}">'
            f'<td class="score">{n + 1}</td>'
            f'<td><a href="{relative_href(out_dir, Path(record.path))}"><img src="{relative_href(out_dir, thumbnail)}" '
            f'alt="{display_name(record.path)}" loading="lazy"></a></td>'
            f'<td class="caption">{html.escape(caption)}{looked}'
            f'<div class="file">{display_name(record.path)}</div></td>'
            f'<td><ul class="references">{references}</ul></td>'
            f'<td class="score">{_figure(cider)}</td><td class="score">{_figure(bleu)}</td></tr>')


def _page(metrics: dict, count: int, rows: list[str]) -> str:
    table = "".join(f'<tr><th>{html.escape(str(k))}</th><td class="value">{html.escape(_figure(v))}</td></tr>'
                    for k, v in metrics.items())
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Evaluation report: {count} images</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>Evaluation report: {count} images</h1>
<table class="metrics">{table}</table>
<div class="controls">
Sort by
<button type="button" data-sort="cider">CIDEr-D</button>
<button type="button" data-sort="bleu">BLEU-4</button>
<button type="button" data-sort="index">order in the split</button>
<input id="filter" type="search" placeholder="filter: words of the caption, references or file name">
<span id="count">{count} images</span>
</div>
<table class="images">
<thead><tr><th>#</th><th>image</th><th>caption</th><th>references</th><th>CIDEr-D</th><th>BLEU-4</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
</table>
<script>{_SCRIPT}</script>
</body>
</html>
"""


def _figure(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)

