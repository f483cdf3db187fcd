"""Caption metrics."""

from __future__ import annotations

from captioner.data.synthetic import Scene, caption_matches_scene


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
