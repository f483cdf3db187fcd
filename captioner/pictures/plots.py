"""Training plots with matplotlib (its object API on the Agg canvas: no GUI, no global pyplot state).

matplotlib is imported inside the functions, so that ``import captioner`` stays light for the
commands that never plot.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from captioner.io import atomic_open


def training_curve_png(path: str | Path, curve: Sequence[dict], monitor: str, mode: str = "max") -> None:
    """Train and val loss per epoch beside the monitored validation figure, its best epoch marked."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.4), dpi=100, layout="constrained")
    losses, monitored = figure.subplots(1, 2)
    epochs = [row["epoch"] for row in curve]
    for key, label in (("train_loss", "train loss"), ("val_loss", "val loss")):
        losses.plot(epochs, [row[key] for row in curve], marker="o", label=label)
    losses.set(xlabel="epoch", ylabel="cross-entropy per word", title="loss")
    losses.legend()
    values = [row[monitor] for row in curve if monitor in row]
    if values:
        best = (max if mode == "max" else min)(range(len(values)), key=values.__getitem__)
        monitored.plot(epochs[: len(values)], values, marker="o", color="tab:green")
        monitored.plot([epochs[best]], [values[best]], marker="*", markersize=16, color="tab:red",
                       label=f"model.pt: epoch {epochs[best]}, {values[best]:.4g}")
        monitored.legend()
    monitored.set(xlabel="epoch", title=f"{monitor} ({'higher' if mode == 'max' else 'lower'} is better)")
    for axes in (losses, monitored):
        axes.grid(alpha=0.3)
        axes.xaxis.get_major_locator().set_params(integer=True)
    _save(figure, path)


def summary_png(path: str | Path, labels: Sequence[str], values: Sequence[float], metric: str) -> None:
    """One horizontal bar per job (labelled by its overrides), best on top, as the summary table orders them."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 1.2 + 0.4 * len(labels)), dpi=100, layout="constrained")
    axes = figure.subplots()
    positions = list(range(len(labels)))[::-1]  # the first row on top
    bars = axes.barh(positions, values, color="tab:blue")
    axes.bar_label(bars, labels=[f"{v:.4g}" for v in values], padding=3)
    axes.set_yticks(positions, labels=labels)
    axes.set(xlabel=metric, title=f"{metric} per job")
    axes.margins(x=0.15)
    _save(figure, path)


def _save(figure, path: str | Path) -> None:
    with atomic_open(path, "wb") as handle:
        figure.savefig(handle, format="png")
