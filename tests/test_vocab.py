import pytest

from captioner.vocab import SPECIALS, Vocabulary, tokenize


def test_tokenize_lowercases_and_drops_punctuation():
    assert tokenize("A Red circle, left-of THE box!") == ["a", "red", "circle", "left", "of", "the", "box"]


def test_build_counts_and_orders_by_frequency():
    vocab = Vocabulary.build(["a red circle", "a blue circle", "a red box"], min_count=2)
    assert vocab.words[:4] == list(SPECIALS)
    assert vocab.words[4:] == ["a", "circle", "red"]  # blue and box seen once


def test_encode_decode_round_trip_and_unknown_words():
    vocab = Vocabulary.build(["a red circle above a blue box"])
    ids = vocab.encode("A red circle above a green box", max_length=20)
    assert ids[0] == vocab.bos and ids[-1] == vocab.eos
    assert vocab.decode(ids) == "a red circle above a <unk> box"
    assert vocab.decode(vocab.encode("a red circle above a blue box", 3)) == "a red circle"


def test_decode_stops_at_eos_and_skips_padding():
    vocab = Vocabulary.build(["a red circle"])
    ids = [vocab.bos, vocab.index["red"], vocab.pad, vocab.eos, vocab.index["circle"]]
    assert vocab.decode(ids) == "red"


def test_vocabulary_is_plain_list_and_rebuilds_identically():
    vocab = Vocabulary.build(["x y z", "y z", "z"])
    assert Vocabulary(list(vocab.words)).index == vocab.index
    with pytest.raises(ValueError):
        Vocabulary(["a", "b"])
