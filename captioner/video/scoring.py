"""How good a tagging's shots are against true cut times: boundary precision, recall and F1."""

from __future__ import annotations


def boundary_f1(predicted: list[float], truth: list[float], tolerance: float) -> dict[str, float]:
    """Precision, recall and F1 of cut times, each true cut matched at most once within ``tolerance``."""
    unmatched = sorted(truth)
    hits = 0
    for cut in sorted(predicted):
        nearest = min(unmatched, key=lambda t: abs(t - cut), default=None)
        if nearest is not None and abs(nearest - cut) <= tolerance:
            unmatched.remove(nearest)
            hits += 1
    precision = hits / len(predicted) if predicted else 1.0
    recall = hits / len(truth) if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def cut_times(shots: list[dict]) -> list[float]:
    """The start of every shot after the first."""
    return [shot["start"] for shot in shots[1:]]
