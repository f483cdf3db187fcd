"""One table for a Hydra multirun: each job's overrides and metrics, best first by ``rank_by``.

Every job writes ``metrics.json`` in its own dir; ``on_multirun_end`` runs once in the main
process after all jobs (``on_job_end`` would run inside joblib/submitit workers), collects them
and writes ``summary.csv``, ``summary.md`` and ``summary.png`` (the ranking figure per job) into the sweep dir.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from captioner.cli.config import FAILED
from captioner.io import atomic_open
from captioner.pictures.plots import summary_png


class SummaryCallback(Callback):
    """``rank_by``: the metric that orders the rows (training sweeps: ``trainer.monitor``), ``mode``: max or min."""

    def __init__(self, rank_by: str = "CIDEr", mode: str = "max"):
        self.rank_by, self.mode = rank_by, mode

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """The summary of the jobs that finished; the failed ones listed after it, and exit status 1."""
        sweep_dir = Path(config.hydra.sweep.dir)
        rows, failures = collect_jobs(sweep_dir), collect_jobs(sweep_dir, FAILED)
        if rows:
            write_summary(sweep_dir, rows, self.rank_by, self.mode, failures)
            print(f"summary of {len(rows)} jobs: {sweep_dir / 'summary.md'}", file=sys.stderr)
        else:
            print(f"summary: no metrics.json under {sweep_dir}", file=sys.stderr)
        if failures:
            print(f"{len(failures)} of {len(rows) + len(failures)} jobs failed:", file=sys.stderr)
            for row in failures:
                print(f"  {_overrides(row, varying_keys(rows + failures))}: {row['metrics']['error']}",
                      file=sys.stderr)
            sys.exit(1)


def collect_jobs(sweep_dir: Path, name: str = "metrics.json") -> list[dict]:
    """One row per job dir holding ``name`` (metrics.json, or failed.json for the jobs that failed):
    ``{"overrides": {...}, "metrics": {...}}``."""
    rows = []
    for metrics_file in sorted(sweep_dir.rglob(name)):
        overrides_file = metrics_file.parent / ".hydra" / "overrides.yaml"
        overrides = OmegaConf.load(overrides_file) if overrides_file.is_file() else []
        rows.append({"overrides": dict(item.split("=", 1) for item in overrides),
                     "metrics": json.loads(metrics_file.read_text(encoding="utf-8"))})
    return rows


def varying_keys(rows: list[dict]) -> list[str]:
    """The overrides that differ between the jobs (all of them for one job)."""
    keys = list(dict.fromkeys(k for row in rows for k in row["overrides"]))
    return [k for k in keys if len({row["overrides"].get(k) for row in rows}) > 1] if len(rows) > 1 else keys


def _overrides(row: dict, keys: list[str]) -> str:
    return " ".join(f"{k}={row['overrides'].get(k, '')}" for k in keys) or "(no overrides)"


def summary_table(rows: list[dict], rank_by: str = "CIDEr", mode: str = "max"
                  ) -> tuple[list[str], list[list], dict[str, str]]:
    """Columns (the overrides that differ between jobs, then the metrics), rows best first by ``rank_by``
    (as they came when no job reports it; jobs without it last), and the overrides every job shares."""
    keys = list(dict.fromkeys(k for row in rows for k in row["overrides"]))
    varying = varying_keys(rows)
    shared = {k: rows[0]["overrides"][k] for k in keys if k not in varying}
    metrics = list(dict.fromkeys(k for row in rows for k in row["metrics"]))
    if rank_by in metrics:
        sign = 1.0 if mode == "max" else -1.0
        rows = sorted(rows, key=lambda row: -sign * float(row["metrics"].get(rank_by, sign * float("-inf"))))
    table = [[row["overrides"].get(k, "") for k in varying] + [row["metrics"].get(m, "") for m in metrics]
             for row in rows]
    return varying + metrics, table, shared


def write_summary(sweep_dir: Path, rows: list[dict], rank_by: str = "CIDEr", mode: str = "max",
                  failures: list[dict] = ()) -> None:
    columns, table, shared = summary_table(rows, rank_by, mode)
    with atomic_open(sweep_dir / "summary.csv") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(table)
    better = "higher" if mode == "max" else "lower"
    lines = [f"# Sweep summary: {sweep_dir.name}", "", f"Best first by {rank_by} ({better} is better).", ""]
    if shared:
        lines += ["Same in every job: " + ", ".join(f"`{k}={v}`" for k, v in shared.items()), ""]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in table]
    if failures:
        keys = varying_keys(rows + list(failures))
        lines += ["", f"Failed ({len(failures)}):", ""] + [f"- `{_overrides(row, keys)}`: {row['metrics']['error']}"
                                                          for row in failures]
    with atomic_open(sweep_dir / "summary.md") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines[2:]), file=sys.stderr)
    if rank_by in columns:
        varying = columns[: len(columns) - len({k for row in rows for k in row["metrics"]})]
        ranked = [(", ".join(f"{k}={v}" for k, v in zip(varying, row)) or f"job {n + 1}", row[columns.index(rank_by)])
                  for n, row in enumerate(table)]
        ranked = [(label, value) for label, value in ranked if isinstance(value, (int, float))]
        summary_png(sweep_dir / "summary.png", [label for label, _ in ranked], [value for _, value in ranked], rank_by)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"  # scores to 4 places, seconds and rates to 1
    return str(value)
