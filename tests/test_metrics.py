"""The coco-caption metrics: equal to pycocoevalcap's own evaluation, with and without Java."""

import json

import pytest
from conftest import run_if

from captioner import metrics
from captioner.data.formats import read_coco_references, read_coco_results
from captioner.errors import CaptionerError
from captioner.evaluation import evaluate_files
from captioner.metrics import COCO_METRICS, coco_caption_metrics, python_ptb_tokenize

needs_java = run_if(java=True)


@pytest.fixture(scope="module")
def coco(media):
    references = media / "coco" / "captions_val2014_subset134.json"
    predictions = media / "coco" / "fakecap_results_subset134.json"
    return references, predictions


@pytest.fixture(scope="module")
def reference_scores(coco):
    """What coco-caption's COCOEvalCap reports for these files (SPICE left out: it downloads models)."""
    from pycocoevalcap import eval as coco_eval
    from pycocotools.coco import COCO

    class NoSpice:
        def compute_score(self, gts, res):
            return 0.0, [0.0] * len(gts)

        def method(self):
            return "SPICE"

    references, predictions = coco
    ground_truth = COCO(str(references))
    results = ground_truth.loadRes(str(predictions))
    original, coco_eval.Spice = coco_eval.Spice, NoSpice
    try:
        evaluator = coco_eval.COCOEvalCap(ground_truth, results)
        evaluator.params["image_id"] = results.getImgIds()
        evaluator.evaluate()
    finally:
        coco_eval.Spice = original
    return {k: v for k, v in evaluator.eval.items() if k != "SPICE"}


@needs_java
def test_scores_equal_coco_caption_evaluation(coco, reference_scores):
    references, predictions = coco
    scores = coco_caption_metrics(read_coco_references(references), read_coco_results(predictions))
    assert set(scores) == set(COCO_METRICS)
    for name in COCO_METRICS:
        assert scores[name] == pytest.approx(reference_scores[name], abs=1e-12), name
    assert 0.1 < scores["CIDEr"] < 2 and 0.1 < scores["Bleu_4"] < scores["Bleu_1"] < 1


@needs_java
def test_without_java_python_tokenizer_gives_the_same_scores_and_meteor_is_skipped(coco, reference_scores,
                                                                                    monkeypatch, capsys):
    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)
    metrics.java_available.cache_clear()
    try:
        references, predictions = coco
        refs, preds = read_coco_references(references), read_coco_results(predictions)
        scores = coco_caption_metrics(refs, preds)
        coco_caption_metrics(refs, preds)
    finally:
        metrics.java_available.cache_clear()
    assert "METEOR" not in scores
    for name in set(COCO_METRICS) - {"METEOR"}:
        assert scores[name] == pytest.approx(reference_scores[name], abs=1e-9), name
    assert capsys.readouterr().err.count("Java not found") == 1  # said once


@pytest.mark.parametrize("text, tokens", [
    ("A man's dog doesn't bark.", "a man 's dog does n't bark"),
    ("Two (2) cats, on a mat!", "two 2 cats on a mat"),
    ("A clock that reads 5:55, near 1,000 people", "a clock that reads 5:55 near 1,000 people"),
    ("Toothpaste,toothbrush and a t-shirt...", "toothpaste toothbrush and a t-shirt"),
    ('He said "hi" -- twice', "he said hi twice"),
])
def test_python_tokenizer_matches_the_ptb_tokenizer(text, tokens):
    assert python_ptb_tokenize(text) == tokens


def test_every_prediction_needs_references():
    with pytest.raises(CaptionerError, match="no reference captions"):
        coco_caption_metrics({1: ["a cat"]}, {1: "a cat", 2: "a dog"}, meteor=False)


def test_evaluate_files_writes_metrics(coco, tmp_path, reference_scores):
    references, predictions = coco
    scores = evaluate_files(predictions, references, tmp_path)
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written == scores and written["num_images"] == 134
    assert written["CIDEr"] == pytest.approx(reference_scores["CIDEr"], abs=1e-4)


def test_bad_results_files_are_named(tmp_path, coco):
    references, _ = coco
    cases = {
        "missing.json": None,
        "notjson.json": "{oops",
        "wrongshape.json": json.dumps({"image_id": 1}),
        "twice.json": json.dumps([{"image_id": 391895, "caption": "a"}, {"image_id": 391895, "caption": "b"}]),
        "unknown.json": json.dumps([{"image_id": -5, "caption": "a"}]),
    }
    for name, content in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_text(content)
        with pytest.raises(CaptionerError, match=name):
            evaluate_files(path, references, tmp_path)
