from dataclasses import replace
from functools import partial

import pytest
import torch

from captioner.data.dataset import CaptionDataset, EpochSampler, collate_captions
from captioner.data.transforms import Preprocess
from captioner.errors import ImageError
from captioner.vocab import Vocabulary


def dataset(records, mode):
    vocab = Vocabulary.build(c for r in records for c in r.captions)
    dataset = CaptionDataset(records, vocab, Preprocess(32).transform(), max_length=30, seed=1,
                             captions_per_image=mode)
    return dataset, vocab


def test_all_captions_share_one_image_and_word_targets_are_fractions(tiny_records):
    data, vocab = dataset(tiny_records[:3], "all")
    image, tokens, targets = data[0]
    assert image.shape == (3, 32, 32) and len(tokens) == 5
    word = vocab.index[tiny_records[0].captions[0].split()[1]]
    expected = sum(word in t.tolist() for t in tokens) / 5
    assert targets[word].item() == expected and 0 < expected <= 1
    assert targets[[vocab.pad, vocab.bos, vocab.eos]].sum() == 0
    images, padded, image_index, word_targets = collate_captions([data[0], data[1]], pad=vocab.pad)
    assert images.shape == (2, 3, 32, 32) and padded.shape[0] == 10 and word_targets.shape == (2, len(vocab))
    assert image_index.tolist() == [0] * 5 + [1] * 5


def test_one_caption_per_epoch_is_deterministic_and_varies(tiny_records):
    data, _ = dataset(tiny_records[:20], "one")
    first = [data[i][1][0].tolist() for i in range(20)]
    assert first == [data[i][1][0].tolist() for i in range(20)]
    data.epoch = 1
    assert first != [data[i][1][0].tolist() for i in range(20)]


def test_epoch_sampler_resumes_mid_epoch():
    full = list(EpochSampler(10, seed=3, epoch=2))
    assert sorted(full) == list(range(10)) and list(EpochSampler(10, seed=3, epoch=2, start=4)) == full[4:]
    assert full != list(EpochSampler(10, seed=3, epoch=3))
    assert torch.equal(torch.tensor(full), torch.tensor(list(EpochSampler(10, seed=3, epoch=2))))


def test_cached_images_are_decoded_once_and_equal_the_uncached(tiny_records, monkeypatch):
    import captioner.data.loading as loading_module

    decodes = []
    real_load = loading_module.load_image
    monkeypatch.setattr(loading_module, "load_image", lambda path: decodes.append(path) or real_load(path))
    vocab = Vocabulary.build(c for r in tiny_records for c in r.captions)
    make = partial(CaptionDataset, tiny_records[:4], vocab, Preprocess(32).transform(), 30)
    cached, uncached = make(cache_images=True), make()
    for _ in range(2):  # two epochs
        for i in range(4):
            assert torch.equal(cached[i][0], uncached[i][0])
    assert len(decodes) == 4 + 8  # the cached dataset once per image, the other every time


def test_an_unreadable_training_image_stops_training_naming_it(tiny_records, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not a picture")
    vocab = Vocabulary.build(c for r in tiny_records for c in r.captions)
    dataset = CaptionDataset([tiny_records[0], replace(tiny_records[1], path=bad)], vocab, Preprocess(32).transform(),
                             30)
    assert dataset[0][0].shape == (3, 32, 32)
    with pytest.raises(ImageError, match=f"{bad}: not an image Pillow can read"):
        dataset[1]
