"""How good a tagging is against ground truth: shot-boundary F1 and segment attribute accuracy."""

from __future__ import annotations

from captioner.data.synthetic import Scene, caption_matches_scene


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


def segment_attribute_accuracy(segments: list[dict], truth_shots: list[dict]) -> float:
    """Fraction of segments whose caption is right for the true shot at the segment's middle."""
    if not segments:
        return 0.0
    right = 0
    for segment in segments:
        middle = (segment["start"] + segment["end"]) / 2
        shot = next((s for s in truth_shots if s["start"] <= middle < s["end"]), truth_shots[-1])
        right += caption_matches_scene(segment["caption"], Scene.from_json(shot["scene"]))
    return right / len(segments)
