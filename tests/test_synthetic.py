import random

import numpy as np
import pytest

from captioner.synthetic.scenes import (
    NOVEL_COMBOS,
    Scene,
    caption_matches_scene,
    describe_scene,
    parse_caption,
    render_scene,
    sample_scene,
    scene_has_novel_combo,
)


def scene_and_image(key: str, novel: bool = False):
    rng = random.Random(key)
    scene = sample_scene(rng, novel=novel)
    return scene, np.asarray(render_scene(scene, 64, rng)), describe_scene(scene, rng)


def test_deterministic_by_seed():
    a, b = scene_and_image("7-train-3"), scene_and_image("7-train-3")
    assert a[0] == b[0] and np.array_equal(a[1], b[1]) and a[2] == b[2]
    assert scene_and_image("8-train-3")[0] != a[0]


@pytest.mark.parametrize("index", range(60))
def test_every_reference_caption_matches_its_scene(index):
    scene, image, captions = scene_and_image(f"0-train-{index}", novel=index % 5 == 0)
    assert image.shape == (64, 64, 3)
    assert 1 <= len(scene.objects) <= 3 and len(scene.relations) == len(scene.objects) - 1
    assert len(captions) == 5
    assert all(caption_matches_scene(c, scene) for c in captions), captions


def test_relations_agree_with_positions():
    for index in range(200):
        scene = sample_scene(random.Random(index))
        for subject, relation, anchor in scene.relations:
            s, a = scene.objects[subject], scene.objects[anchor]
            dx, dy = s.x - a.x, s.y - a.y
            expected = {"left": -dx, "right": dx, "above": -dy, "below": dy}[relation]
            assert expected > 0 and expected > abs(dy if relation in ("left", "right") else dx)


def test_novel_combos_only_when_asked():
    assert not any(scene_has_novel_combo(sample_scene(random.Random(i))) for i in range(300))
    assert all(scene_has_novel_combo(sample_scene(random.Random(i), novel=True)) for i in range(50))
    assert len(NOVEL_COMBOS) == 4


def test_parse_understands_synonyms_and_either_word_order():
    objects, relations = parse_caption("there is a tiny violet box to the right of a big red disc")
    assert objects == {("purple", "square"), ("red", "circle")}
    assert relations == {(("red", "circle"), "left", ("purple", "square"))}
    assert parse_caption("a red circle on the left of a purple square")[1] == relations


def test_wrong_colour_shape_or_relation_does_not_match():
    scene = Scene.from_json({"objects": [
        {"colour": "red", "shape": "circle", "size": "small", "x": 0.2, "y": 0.5},
        {"colour": "blue", "shape": "square", "size": "large", "x": 0.7, "y": 0.5}],
        "relations": [[0, "left", 1]]})
    assert caption_matches_scene("a red circle left of a blue box", scene)
    assert caption_matches_scene("a blue square to the right of a small red circle", scene)
    assert not caption_matches_scene("a red circle right of a blue box", scene)
    assert not caption_matches_scene("a green circle left of a blue box", scene)
    assert not caption_matches_scene("a red circle left of a blue star", scene)
    assert not caption_matches_scene("a red circle", scene)


def test_dataset_splits_and_generalisation_test(tiny_records):
    by_split = {s: [r for r in tiny_records if r.split == s] for s in ("train", "val", "test")}
    assert [len(v) for v in by_split.values()] == [48, 16, 20]

    def combos(record):
        return {(o["colour"], o["shape"]) for o in record.extra["attributes"]["objects"]}

    assert not any(combos(r) & NOVEL_COMBOS for r in by_split["train"])
    assert sum(bool(combos(r) & NOVEL_COMBOS) for r in by_split["val"]) == 2  # 15% of 16
    assert sum(bool(combos(r) & NOVEL_COMBOS) for r in by_split["test"]) == 3  # 15% of 20
    assert all(bool(combos(r) & NOVEL_COMBOS) == r.extra["attributes"]["novel"] for r in tiny_records)
    assert all(r.path.is_file() and len(r.captions) == 5 for r in tiny_records)


def test_dataset_is_reused_and_regenerated_when_settings_change(tiny_data_root, tiny_records):
    from captioner.synthetic.dataset import synthetic_dataset

    split_file = tiny_data_root / "dataset_synthetic.json"
    before = split_file.stat().st_mtime_ns
    again = synthetic_dataset(tiny_data_root, image_size=32, num_train=48, num_val=16, num_test=20, seed=3)
    assert split_file.stat().st_mtime_ns == before and [r.captions for r in again] == [r.captions for r in tiny_records]


def test_three_object_captions_name_the_anchor_first_and_refer_to_it():
    scene = Scene.from_json({"objects": [
        {"colour": "red", "shape": "circle", "size": "small", "x": 0.2, "y": 0.5},
        {"colour": "blue", "shape": "square", "size": "large", "x": 0.5, "y": 0.5},
        {"colour": "green", "shape": "star", "size": "small", "x": 0.5, "y": 0.8}],
        "relations": [[0, "left", 1], [2, "below", 1]]})
    assert caption_matches_scene("a blue square with a red circle left of it and a green star below it", scene)
    assert caption_matches_scene("there is a big blue box with a green star under it and a red disc to the left of it",
                                 scene)
    assert not caption_matches_scene("a red circle with a blue square right of it and a green star below it", scene)
    assert not caption_matches_scene("a blue square with a red circle left of it and a green star above it", scene)


def test_the_attribute_accuracy_scorer_splits_seen_and_held_out_pairs(tiny_records):
    from captioner.synthetic.scoring import AttributeAccuracy

    records = [r for r in tiny_records if r.split == "test"]
    novel = [bool(r.extra["attributes"]["novel"]) for r in records]
    assert any(novel) and not all(novel)
    right = [r.captions[0] for r in records]  # a reference names every object and relation right
    wrong = [c if n else "a red circle" for c, n in zip(right, novel)]  # every seen scene wrong
    assert AttributeAccuracy()(right, records) == {"attribute_accuracy": 1.0, "attribute_accuracy_seen": 1.0,
                                                   "attribute_accuracy_novel": 1.0}
    scores = AttributeAccuracy()(wrong, records)
    assert scores["attribute_accuracy_seen"] == 0.0 and scores["attribute_accuracy_novel"] == 1.0
    assert scores["attribute_accuracy"] == sum(novel) / len(records)
    plain = [r.__class__(r.image_id, r.path, r.captions, r.split) for r in records]  # no ground truth: real data
    assert AttributeAccuracy()(right, plain) == {}
