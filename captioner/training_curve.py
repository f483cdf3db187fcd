"""The training curve: one row of figures per epoch, printed and written as CSV and as a picture."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from captioner.io import atomic_open
from captioner.pictures.plots import training_curve_png

CURVE, CURVE_PLOT = "training_curve.csv", "training_curve.png"


def write_curve(out_dir: Path, rows: list[dict], monitor: str, monitor_mode: str) -> None:
    """Print the last row; write every row to ``training_curve.csv`` and draw ``training_curve.png``."""
    print("  " + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rows[-1].items()),
          file=sys.stderr)
    with atomic_open(out_dir / CURVE) as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[-1]))
        writer.writeheader()
        writer.writerows(rows)
    training_curve_png(out_dir / CURVE_PLOT, rows, monitor, monitor_mode)
