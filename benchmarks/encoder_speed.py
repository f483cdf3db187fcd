"""Training throughput (images/s, forward + backward + Adam step) of encoders on this machine.

    python benchmarks/encoder_speed.py [--size 64] [--batch 32] resnet18 resnet18:layer3 shufflenet_v2_x1_0

An argument NAME:STAGE cuts the backbone after STAGE. Compare ratios within one run.
"""

from __future__ import annotations

import argparse
import time

import torch

from captioner.models.encoder import Encoder


def images_per_second(name: str, stage: str | None, size: int, batch: int, steps: int = 5) -> float:
    encoder = Encoder(name, grid_size=2, stage=stage).train()
    optimizer = torch.optim.Adam(encoder.parameters())
    images = torch.randn(batch, 3, size, size)
    for step in range(steps + 1):
        if step == 1:  # the first step warms up allocators and kernels
            started = time.perf_counter()
        encoder(images).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    return batch * steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("encoders", nargs="*", default=["resnet18", "resnet18:layer3", "shufflenet_v2_x1_0",
                                                        "mobilenet_v3_small", "regnet_x_400mf"])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.size} px, batch {args.batch}")
    for spec in args.encoders:
        name, _, stage = spec.partition(":")
        print(f"{spec:28s} {images_per_second(name, stage or None, args.size, args.batch):8.1f} images/s")


if __name__ == "__main__":
    main()
