"""Inference at the hardware's precision: autocast where the device is fast at bf16/fp16, fp32 elsewhere."""

from __future__ import annotations

import pytest
import torch

from captioner import devices
from captioner.api import Captioner
from captioner.data.formats import split_records


@pytest.mark.parametrize("avx512_bf16, amx, expected", [(False, False, None), (True, False, torch.bfloat16),
                                                       (False, True, torch.bfloat16)])
def test_a_cpu_autocasts_only_with_bf16_instructions(monkeypatch, avx512_bf16, amx, expected):
    # oneDNN says bf16 is supported on any AVX-512 CPU (it emulates it there, 2-3x slower than fp32)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    assert devices.autocast_dtype(torch.device("cpu")) == expected


def bf16_everywhere(monkeypatch):
    monkeypatch.setattr("captioner.api.autocast_dtype", lambda device: torch.bfloat16)


def test_autocast_captions_match_fp32_and_amp_false_is_fp32(attention_checkpoint, tiny_records, monkeypatch):
    images = [r.path for r in split_records(tiny_records, "test")]
    captioner = Captioner.load(attention_checkpoint)
    fp32 = captioner.caption_candidates(images, beam_size=3)
    seen = []
    convolution = next(m for m in captioner.model.modules() if isinstance(m, torch.nn.Conv2d))
    convolution.register_forward_hook(lambda _m, _i, output: seen.append(output.dtype))
    bf16_everywhere(monkeypatch)
    autocast = captioner.caption_candidates(images, beam_size=3)
    turned_off = captioner.caption_candidates(images, beam_size=3, amp=False)
    assert seen[0] == torch.bfloat16 and seen[-1] == torch.float32  # autocast ran, then amp=False did not
    assert turned_off == fp32
    same = [a[0][0] == b[0][0] for a, b in zip(autocast, fp32)]
    assert sum(same) >= 0.8 * len(same), f"{sum(same)} of {len(same)} captions as in fp32"
    for a, b in zip(autocast, fp32):
        if a[0][0] == b[0][0]:
            assert a[0][1] == pytest.approx(b[0][1], rel=0.01)  # the same caption, nearly the same log-probability


def test_attention_maps_follow_the_decoding_precision(attention_checkpoint, tiny_records, monkeypatch):
    images = [r.path for r in split_records(tiny_records, "test")][:4]
    captioner = Captioner.load(attention_checkpoint)
    bf16_everywhere(monkeypatch)
    results = list(captioner.caption_results(images, attention=True))
    fp32 = list(captioner.caption_results(images, attention=True, amp=False))
    for a, b in zip(results, fp32):
        assert a.attention.dtype == b.attention.dtype and a.attention.shape[1:] == (2, 2)
        assert abs(a.attention.sum(axis=(1, 2)) - 1).max() < 1e-3


def test_a_loaded_model_runs_channels_last(tiny_checkpoint):
    convolution = next(m for m in Captioner.load(tiny_checkpoint).model.modules() if isinstance(m, torch.nn.Conv2d))
    assert convolution.weight.is_contiguous(memory_format=torch.channels_last)
    plain = next(m for m in Captioner.load(tiny_checkpoint, channels_last=False).model.modules()
                 if isinstance(m, torch.nn.Conv2d))
    assert plain.weight.is_contiguous()
