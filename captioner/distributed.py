"""Multi-process training with PyTorch DDP, one process per device, launched by ``torchrun``.

Gloo on CPU, NCCL on CUDA. Only rank 0 writes files and logs; the others train and wait.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from captioner.errors import CaptionerError

STRATEGIES = ("single", "ddp")


def init(strategy: str, device: torch.device) -> tuple[int, int, torch.device]:
    """Join the process group for ``strategy="ddp"`` (once); -> (rank, world size, this process's device)."""
    if strategy not in STRATEGIES:
        raise CaptionerError(f"trainer.strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if strategy == "single":
        return 0, 1, device
    if "RANK" not in os.environ:
        raise CaptionerError("trainer.strategy=ddp runs under torchrun: torchrun --standalone --nproc_per_node=N "
                             "-m captioner.cli.train trainer.strategy=ddp ...")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    return dist.get_rank(), dist.get_world_size(), device


def is_main() -> bool:
    """True in a single process and in rank 0: the one process that writes files and logs."""
    return not dist.is_initialized() or dist.get_rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def mean_across_processes(value: float, device: torch.device) -> float:
    """The mean of a number over all processes (itself in a single process)."""
    if not dist.is_initialized():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.item() / dist.get_world_size()


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
