"""Which device to run on, and which mixed-precision type pays there."""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator
from pathlib import Path

import torch

from captioner.errors import CaptionerError


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when present), ``cpu`` or ``cuda``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise CaptionerError(f"device must be auto, cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise CaptionerError("device=cuda but no CUDA device is available; use device=auto or cpu")
    return torch.device(name)


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The mixed-precision type for this device, or None where it would not pay.

    On a CPU bf16 pays only where the CPU computes it natively (AVX-512 BF16 or AMX). oneDNN also
    reports bf16 as supported on AVX-512 CPUs without them, where it emulates it, slower than fp32
    (benchmarks/README.md, "inference_precision.py"), so the instructions themselves are asked for.
    """
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if native_cpu_bf16() else None


def native_cpu_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX-512 BF16 or AMX), not oneDNN's emulation of them."""
    asks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(ask is None for ask in asks):  # an older torch: oneDNN's own answer
        return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return any(ask() for ask in asks if ask is not None)


def cpu_description() -> str:
    """This machine's CPU model, cores and bf16 instructions, as every benchmark figure is stated with."""
    info = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in (info.read_text().splitlines() if info.is_file() else [])
             if line.startswith("model name")]
    model = names[0] if names else platform.processor() or platform.machine()
    return f"{model}, {os.cpu_count()} cores, bf16 instructions: {'yes' if native_cpu_bf16() else 'no'}"


@contextlib.contextmanager
def cpu_threads(count: int) -> Iterator[None]:
    """torch's CPU threads set to ``count`` for a while, then back to what they were."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
