"""Several processes, one per device, launched by ``torchrun``: training with PyTorch DDP, and
captioning with the inputs split across the processes.

Gloo on CPU, NCCL on CUDA. Only rank 0 writes files and logs; the others work and wait.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice

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


def rank() -> int:
    """This process's rank (0 in a single process)."""
    return dist.get_rank() if dist.is_initialized() else 0


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


def init_if_launched(device: torch.device) -> tuple[int, int, torch.device]:
    """Under torchrun (``RANK`` set) join the process group, as training does; otherwise a single process."""
    return init("ddp" if "RANK" in os.environ else "single", device)


def broadcast_from_main(value):
    """Rank 0's ``value`` in every process (the value itself in a single process)."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def share(items: Sequence) -> Sequence:
    """This process's share of ``items``: every world-th from its rank on (all of them in a single process)."""
    return items[dist.get_rank() :: dist.get_world_size()] if dist.is_initialized() else items


def in_input_order(results: Iterable, count: int, chunk: int) -> Iterator:
    """Every process's results for its :func:`share` of ``count`` items -> on rank 0 all results in
    the items' order, gathered ``chunk`` per process at a time so that nothing piles up; nothing
    on the other ranks (which must still drive the iterator: each round is a collective call)."""
    results = iter(results)
    if not dist.is_initialized():
        yield from results
        return
    world, rank = dist.get_world_size(), dist.get_rank()
    for _ in range(math.ceil(math.ceil(count / world) / chunk)):
        gathered = [None] * world if rank == 0 else None
        dist.gather_object(list(islice(results, chunk)), gathered, dst=0)
        if rank == 0:
            for k in range(max(len(part) for part in gathered)):  # share r holds items r, r + world, ...
                yield from (part[k] for part in gathered if k < len(part))
