"""Inference precision and layout: images/s of encoders and of captioning, fp32 vs autocast, and what
autocast changes in the demo model's test captions.

    .venv/bin/python benchmarks/inference_precision.py [--checkpoint outputs/demo/model.pt] [--rounds 3]

1. resnet50 and mobilenet_v3_small at 224 px (batch 32, random weights: speed does not depend on them):
   images/s in fp32 and in bf16 autocast, each contiguous and channels-last, interleaved round by round.
2. The demo model captioning its test split (beam 3, as ``make demo`` evaluates): images/s and the test
   figures (attribute accuracy, CIDEr-D) in fp32 and in bf16 autocast, and the captions that differ.

Autocast is forced here even where ``decode.amp`` would not use it (a CPU without bf16 instructions,
where oneDNN emulates bf16), to show why it does not.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from captioner import api
from captioner.api import Captioner
from captioner.data.formats import split_records
from captioner.data.images import load_image
from captioner.devices import autocast_dtype, native_cpu_bf16
from captioner.evaluation import score_captions
from captioner.models.encoder import Encoder
from captioner.synthetic.dataset import synthetic_dataset
from captioner.synthetic.scoring import AttributeAccuracy

SETTINGS = {"fp32": (False, False), "fp32 channels-last": (False, True), "bf16 autocast": (True, False),
            "bf16 autocast channels-last": (True, True)}


def encoder_rates(name: str, rounds: int, batch: int = 32) -> dict[str, float]:
    encoder = Encoder(name, grid_size=1).eval()
    pixels = torch.randn(batch, 3, 224, 224)
    best: dict[str, float] = {}
    for _ in range(rounds):
        for setting, (amp, channels_last) in SETTINGS.items():
            layout = torch.channels_last if channels_last else torch.contiguous_format
            encoder.to(memory_format=layout)
            inputs = pixels.contiguous(memory_format=layout)
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                encoder(inputs[:4])  # warm-up of this setting's kernels
                started = time.perf_counter()
                encoder(inputs)
            best[setting] = max(best.get(setting, 0.0), batch / (time.perf_counter() - started))
    return best


def demo_captions(checkpoint: Path, rounds: int) -> None:
    records = split_records(synthetic_dataset(), "test")
    captioner = Captioner.load(checkpoint)
    pixels = torch.stack([captioner.transform(load_image(r.path)) for r in records])
    results, rates = {}, {}
    for _ in range(rounds):
        for setting, (amp, channels_last) in SETTINGS.items():
            layout = torch.channels_last if channels_last else torch.contiguous_format
            captioner.model.to(memory_format=layout)
            captioner.channels_last = channels_last
            api.autocast_dtype = (lambda device: torch.bfloat16) if amp else autocast_dtype  # forced, or the device's
            started = time.perf_counter()
            captions = [c for start in range(0, len(pixels), 64)
                        for c in captioner.caption(pixels[start : start + 64], 64, beam_size=3, amp=True)]
            rates[setting] = max(rates.get(setting, 0.0), len(pixels) / (time.perf_counter() - started))
            results[setting] = captions
    print(f"\ndemo model {checkpoint}, {len(records)} test images, beam 3 (images already decoded):")
    print("| setting | images/s | attribute accuracy | CIDEr-D |\n|---|---|---|---|")
    for setting, captions in results.items():
        scores = score_captions(captions, records, {"meteor": False}, [AttributeAccuracy()])
        print(f"| {setting} | {rates[setting]:.0f} | {scores['attribute_accuracy']:.4f} | {scores['CIDEr']:.4f} |")
    differ = [(r.path.name, a, b) for r, a, b in zip(records, results["fp32"], results["bf16 autocast"]) if a != b]
    print(f"\n{len(differ)} of {len(records)} captions differ between fp32 and bf16 autocast; the first ten:")
    for name, a, b in differ[:10]:
        print(f"  {name}: fp32 '{a}' | bf16 '{b}'")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("outputs/demo/model.pt"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, bf16 instructions: {native_cpu_bf16()}")
    print("| encoder, 224 px, batch 32 | " + " | ".join(SETTINGS) + " |\n|---|" + "---|" * len(SETTINGS))
    for name in ("resnet50", "mobilenet_v3_small"):
        rates = encoder_rates(name, args.rounds)
        print(f"| {name} | " + " | ".join(f"{rates[s]:.1f}" for s in SETTINGS) + " |", flush=True)
    if args.checkpoint.is_file():
        demo_captions(args.checkpoint, args.rounds)
    else:
        print(f"no {args.checkpoint}: make demo first for the demo model's figures")


if __name__ == "__main__":
    main()
