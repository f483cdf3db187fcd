"""Scores against the synthetic ground truth: a dataset scorer for images and one for video segments."""

from __future__ import annotations

from captioner.data.formats import ImageRecord
from captioner.synthetic.scenes import Scene, caption_matches_scene


def attribute_accuracy(captions: list[str], attributes: list[dict]) -> float:
    """Fraction of captions naming every object (colour and shape) and relation right.

    ``attributes`` are synthetic scenes' ground truth (``Scene.to_json()``); synonyms and
    either word order ("A left of B" / "B right of A") count as right.
    """
    if len(captions) != len(attributes):
        raise ValueError(f"{len(captions)} captions for {len(attributes)} scenes")
    if not captions:
        return 0.0
    right = sum(caption_matches_scene(c, Scene.from_json(a)) for c, a in zip(captions, attributes))
    return right / len(captions)


class AttributeAccuracy:
    """The synthetic data's own scorer (``data.scorers``): attribute accuracy overall, and on the
    scenes with colour-shape pairs seen in training and never seen (``seen`` / ``novel``)."""

    def __call__(self, captions: list[str], records: list[ImageRecord]) -> dict[str, float]:
        truth = [r.extra.get("attributes") for r in records]
        if not records or any(t is None for t in truth):
            return {}
        scores = {"attribute_accuracy": attribute_accuracy(captions, truth)}
        for name, wanted in (("seen", False), ("novel", True)):
            chosen = [(c, t) for c, t in zip(captions, truth) if bool(t.get("novel")) == wanted]
            if chosen and any(t.get("novel") for t in truth):
                scores[f"attribute_accuracy_{name}"] = attribute_accuracy(*map(list, zip(*chosen)))
        return scores


def segment_attribute_accuracy(segments: list[dict], truth_shots: list[dict]) -> float:
    """Fraction of video segments whose caption is right for the true shot at the segment's middle."""
    if not segments:
        return 0.0
    right = 0
    for segment in segments:
        middle = (segment["start"] + segment["end"]) / 2
        shot = next((s for s in truth_shots if s["start"] <= middle < s["end"]), truth_shots[-1])
        right += caption_matches_scene(segment["caption"], Scene.from_json(shot["scene"]))
    return right / len(segments)
