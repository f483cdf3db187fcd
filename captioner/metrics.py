"""Caption metrics: the coco-caption scores (BLEU, METEOR, ROUGE-L, CIDEr-D), through ``pycocoevalcap``."""

from __future__ import annotations

import functools
import re
import shutil
import sys
from collections.abc import Mapping, Sequence

from captioner.errors import CaptionerError

COCO_METRICS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")

# What pycocoevalcap's PTBTokenizer drops after tokenizing (its PUNCTUATIONS, with the brackets
# Stanford's tokenizer writes as -LRB- etc. and its quote tokens).
_PUNCTUATION = frozenset(["''", "'", "``", "`", ".", "?", "!", ",", ":", "-", "--", "...", ";", '"',
                          "(", ")", "[", "]", "{", "}"])
_CONTRACTION = re.compile(r"(?<=[a-z])(n't|'s|'re|'ve|'ll|'d|'m)\b")
_TOKEN = re.compile(r"n't|'[a-z]+|\d+(?:[,:.]\d+)+|[a-z0-9]+(?:[-./&'][a-z0-9]+)*|\.\.\.|--|\S")


def python_ptb_tokenize(text: str) -> str:
    """A Python stand-in for the Stanford PTB tokenizer (``-lowerCase``) plus the punctuation removal
    pycocoevalcap applies. Used only when Java is missing; see the README for how close it is."""
    text = _CONTRACTION.sub(r" \1", text.lower().replace("\n", " "))
    return " ".join(t for t in _TOKEN.findall(text) if t not in _PUNCTUATION)


@functools.cache
def java_available() -> bool:
    """Whether ``java`` is on the PATH; says once when it is not."""
    if shutil.which("java"):
        return True
    print("note: Java not found: captions are tokenized in Python (not the Stanford PTB tokenizer) and "
          "METEOR is skipped; install a Java runtime for the reference coco-caption scores", file=sys.stderr)
    return False


def coco_caption_metrics(references: Mapping[object, Sequence[str]], predictions: Mapping[object, str],
                         meteor: bool = True, spice: bool = False) -> dict[str, float]:
    """BLEU-1..4, METEOR, ROUGE-L and CIDEr-D over images keyed alike, exactly as coco-caption's
    ``COCOEvalCap.evaluate`` computes them (same tokenizer, scorers and corpus-level averaging).

    ``predictions`` holds one caption per image; every image needs references. METEOR and
    SPICE need Java (SPICE also downloads Stanford CoreNLP models on first use, so it is off by default).
    """
    return coco_caption_scores(references, predictions, meteor, spice)[0]


def coco_caption_scores(references: Mapping[object, Sequence[str]], predictions: Mapping[object, str],
                        meteor: bool = True, spice: bool = False
                        ) -> tuple[dict[str, float], dict[object, dict[str, float]]]:
    """:func:`coco_caption_metrics`, and each image's own BLEU-4 (coco-caption's sentence-level
    BLEU) and CIDEr-D (its score against the corpus's document frequencies), keyed as the predictions."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    missing = [image for image in predictions if not references.get(image)]
    if missing:
        raise CaptionerError(f"{len(missing)} predicted images have no reference captions (e.g. image {missing[0]})")
    if not predictions:
        raise CaptionerError("no predictions to score")
    gts = {image: list(references[image]) for image in predictions}
    res = {image: [caption] for image, caption in predictions.items()}
    if java_available():
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        tokenizer = PTBTokenizer()
        gts = tokenizer.tokenize({k: [{"caption": c} for c in v] for k, v in gts.items()})
        res = tokenizer.tokenize({k: [{"caption": c} for c in v] for k, v in res.items()})
    else:
        gts = {k: [python_ptb_tokenize(c) for c in v] for k, v in gts.items()}
        res = {k: [python_ptb_tokenize(c) for c in v] for k, v in res.items()}
    bleu, bleu_each = Bleu(4).compute_score(gts, res, verbose=0)
    scores = dict(zip(COCO_METRICS[:4], bleu))
    if meteor and java_available():
        from pycocoevalcap.meteor.meteor import Meteor

        scores["METEOR"], _ = Meteor().compute_score(gts, res)
    scores["ROUGE_L"], _ = Rouge().compute_score(gts, res)
    scores["CIDEr"], cider_each = Cider().compute_score(gts, res)
    if spice:
        scores["SPICE"] = _spice(gts, res)
    each = {image: {"Bleu_4": float(b), "CIDEr": float(c)}  # the scorers go through gts in its order
            for image, b, c in zip(gts, bleu_each[3], cider_each)}
    return {name: float(value) for name, value in scores.items()}, each


def _spice(gts: dict, res: dict) -> float:
    if not java_available():
        raise CaptionerError("metrics.spice=true needs Java (and, on first use, internet for Stanford CoreNLP models)")
    from pycocoevalcap.spice.spice import Spice

    try:
        score, _ = Spice().compute_score(gts, res)
    except Exception as error:  # a Java failure surfaces as CalledProcessError, missing models as others
        raise CaptionerError(f"SPICE failed ({type(error).__name__}: {error}); run without metrics.spice") from None
    return score

