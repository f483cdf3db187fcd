"""Pretrained encoders without internet: a clear error, or weights from a pre-filled torch hub cache;
their preprocessing; freezing and fine-tuning after N epochs."""

from __future__ import annotations

from pathlib import Path
from urllib.error import URLError
from urllib.parse import urlparse

import pytest
import torch
import torchvision
from conftest import TINY_DECODER, tiny_trainer

from captioner.errors import CaptionerError
from captioner.models.encoder import Encoder, encoder_preprocess, pretrained_weights
from captioner.models.model import CaptionModel
from captioner.training import Trainer


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub" / "checkpoints"


def test_offline_without_cache_says_where_to_put_the_weights(hub_cache, monkeypatch):
    def offline(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(CaptionerError) as error:
        Encoder("resnet18", weights="DEFAULT")
    message = str(error.value)
    assert "cannot load the resnet18 weights IMAGENET1K_V1 (URLError" in message
    assert str(hub_cache / "resnet18-f37072fd.pth") in message and "model.encoder.weights=null" in message


def test_weights_come_from_a_prefilled_cache(hub_cache, monkeypatch):
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("tried to download"))
    torch.manual_seed(7)
    saved = torchvision.models.resnet18().state_dict()  # stands in for the ImageNet file, same format
    weights = pretrained_weights("resnet18", "DEFAULT")
    hub_cache.mkdir(parents=True)
    torch.save(saved, hub_cache / Path(urlparse(weights.url).path).name)
    encoder = Encoder("resnet18", weights="DEFAULT", stage="layer2")
    assert torch.equal(encoder.body.conv1.weight, saved["conv1.weight"])
    assert torch.equal(encoder.body.state_dict()["layer2.0.conv1.weight"], saved["layer2.0.conv1.weight"])


def test_unknown_weights_name_lists_the_valid_ones():
    message = "encoder resnet18 has no weights 'IMAGENET9K'; choose DEFAULT or one of: IMAGENET1K_V1"
    with pytest.raises(CaptionerError, match=message):
        pretrained_weights("resnet18", "IMAGENET9K")


def test_pretrained_preprocessing_is_the_weights_own():
    weights = torchvision.models.MobileNet_V3_Small_Weights.DEFAULT.transforms()
    preprocess = encoder_preprocess("mobilenet_v3_small", "DEFAULT", None)
    assert (preprocess.image_size, preprocess.mean, preprocess.std) == (224, tuple(weights.mean), tuple(weights.std))
    assert encoder_preprocess("mobilenet_v3_small", "DEFAULT", 160).image_size == 160
    assert encoder_preprocess("resnet18", None, 64).image_size == 64


def test_frozen_encoder_trains_only_after_the_fine_tuning_epoch(tiny_records, tmp_path):
    from captioner.api import Captioner
    from captioner.data.transforms import Preprocess
    from captioner.vocab import Vocabulary

    train = [r for r in tiny_records if r.split == "train"]
    vocab = Vocabulary.build(c for r in train for c in r.captions)
    encoder = {"name": "resnet18", "stage": "layer1", "grid_size": 2, "freeze": True}
    model = CaptionModel(len(vocab), encoder, TINY_DECODER)
    backbone = {k: v.clone() for k, v in model.encoder.body.state_dict().items()}
    head = model.decoder.out.weight.clone()
    trainer = Trainer(Captioner(model, vocab, Preprocess(32)), train, [r for r in tiny_records if r.split == "val"],
                      tiny_trainer(max_epochs=1, finetune_after_epochs=1, amp=False), tmp_path)
    trainer.fit()  # epoch 1: frozen, BatchNorm statistics too
    assert all(torch.equal(v, backbone[k]) for k, v in model.encoder.body.state_dict().items())
    assert not torch.equal(model.decoder.out.weight, head)
    trainer.config.max_epochs = 2
    trainer.total_steps *= 2
    trainer.fit()  # epoch 2: fine-tuned
    assert not model.encoder.frozen
    assert not torch.equal(model.encoder.body.conv1.weight, backbone["conv1.weight"])
