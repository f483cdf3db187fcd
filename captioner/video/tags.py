"""Tags from captions: their content words (stop words out), and how alike two captions are."""

from __future__ import annotations

from captioner.vocab import tokenize

# Function words and caption boilerplate ("there is", "a picture of"): never tags.
STOP_WORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below beneath
between both but by can could did do does doing down during each few for from further had has have having he
her here hers him his how i if in into is it its itself just me more most my no nor not of off on once only
or other our out over own picture image photo photograph shows showing same she should so some such than that
the their them then there these they this those through to too under until up very was we were what when
where which while who whom why will with would you your left right side next near top bottom front behind
""".split())


def content_words(caption: str) -> list[str]:
    """The caption's words that are not stop words, in order, each once."""
    return list(dict.fromkeys(w for w in tokenize(caption) if w not in STOP_WORDS))


def similarity(first: str, second: str) -> float:
    """Jaccard overlap of two captions' content words (1.0: the same words)."""
    a, b = set(content_words(first)), set(content_words(second))
    return len(a & b) / len(a | b) if a | b else 1.0
