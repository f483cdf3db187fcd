"""CUDA paths: mixed precision with the grad scaler, channels-last autocast, beam search and resume on a GPU.

Marked ``gpu``: they run where CUDA is present and skip with a reason elsewhere (``pytest -m gpu``).
"""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_DECODER, TINY_ENCODER, interrupted_at_step, run_if, tiny_trainer

from captioner import Captioner
from captioner.checkpoint import load_checkpoint
from captioner.recipe import train
from captioner.training import Trainer

pytestmark = [pytest.mark.gpu, run_if(cuda=True)]

ATTENDING = TINY_DECODER | {"attention_dim": 8, "word_prior": True, "image_input_dim": 4,
                            "head": {"name": "word_classes", "words": [["red", "blue"], ["circle", "square"]],
                                     "pointer": True, "logit_adjustment": True}}


def test_fp16_autocast_step_with_the_grad_scaler(tiny_records, tmp_path, monkeypatch):
    monkeypatch.setattr("captioner.training.autocast_dtype", lambda device: torch.float16)  # even where bf16 is there
    steps = []
    real = Trainer._step

    def record(self, *args):
        steps.append((self.autocast().fast_dtype, self.scaler.is_enabled()))
        return real(self, *args)

    monkeypatch.setattr(Trainer, "_step", record)
    metrics = train(tiny_records, tmp_path, TINY_ENCODER, ATTENDING, tiny_trainer(device="cuda", max_steps=3),
                    image_size=32, test_split=None)
    assert steps and all(step == (torch.float16, True) for step in steps)
    assert torch.isfinite(torch.tensor(metrics["val_loss"]))
    payload = load_checkpoint(tmp_path / "last.pt")
    assert payload["scaler"]["scale"] > 0 and all(torch.isfinite(t).all() for t in payload["state_dict"].values())


def test_channels_last_autocast_step_trains_on_cuda(tiny_records, tmp_path):
    train(tiny_records, tmp_path, TINY_ENCODER, ATTENDING, tiny_trainer(device="cuda", max_steps=2, channels_last=True),
          image_size=32, test_split=None)
    before = Captioner.load(tmp_path / "model.pt").model.state_dict()
    assert all(torch.isfinite(t).all() for t in before.values())


def test_beam_search_on_cuda_gives_the_cpu_captions(tiny_records, tmp_path):
    train(tiny_records, tmp_path, TINY_ENCODER, ATTENDING, tiny_trainer(device="cpu", max_steps=6, amp=False),
          image_size=32, test_split=None)
    images = [r.path for r in tiny_records[:16]]
    on_cpu = Captioner.load(tmp_path / "model.pt").caption_candidates(images, beam_size=3, num_captions=2)
    on_gpu = Captioner.load(tmp_path / "model.pt", device="cuda").caption_candidates(images, beam_size=3,
                                                                                     num_captions=2)
    assert [[c for c, _ in image] for image in on_gpu] == [[c for c, _ in image] for image in on_cpu]
    assert torch.allclose(torch.tensor([[lp for _, lp in i] for i in on_gpu]),
                          torch.tensor([[lp for _, lp in i] for i in on_cpu]), atol=1e-3)


def test_resume_on_cuda_ends_with_the_uninterrupted_weights(tiny_records, tmp_path):
    settings = {"device": "cuda", "max_epochs": 2, "checkpoint_every_steps": 4, "amp": False}

    def run(out, **extra):
        torch.manual_seed(0)
        train(tiny_records, out, TINY_ENCODER, TINY_DECODER | {"dropout": 0.3, "num_layers": 2},
              tiny_trainer(**settings | extra), image_size=32, test_split=None)
        return load_checkpoint(out / "last.pt")

    whole = run(tmp_path / "whole")
    with interrupted_at_step(), pytest.raises(Exception, match="interrupted"):
        run(tmp_path / "cut")
    resumed = run(tmp_path / "cut", resume=True)
    assert resumed["step"] == whole["step"] == 12
    for name, tensor in whole["state_dict"].items():
        # CUDA's embedding backward adds with atomics, in no fixed order: equal up to rounding
        assert torch.allclose(resumed["state_dict"][name], tensor, atol=1e-4), name


def test_captioning_on_cuda_autocasts_and_matches_fp32(attention_checkpoint, tiny_records):
    images = [r.path for r in tiny_records if r.split == "test"]
    captioner = Captioner.load(attention_checkpoint, device="cuda")
    seen = []
    convolution = next(m for m in captioner.model.modules() if isinstance(m, torch.nn.Conv2d))
    convolution.register_forward_hook(lambda _m, _i, output: seen.append(output.dtype))
    fast = captioner.caption(images, beam_size=3)
    exact = captioner.caption(images, beam_size=3, amp=False)
    assert seen[0] in (torch.bfloat16, torch.float16) and seen[-1] == torch.float32
    assert sum(a == b for a, b in zip(fast, exact)) >= 0.8 * len(images)
