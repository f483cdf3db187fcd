"""Dynamic batching: requests that arrive together are captioned together, in one batched search.

Each request's images wait in a queue. One model thread takes the oldest request, then whatever else
arrives within ``max_wait_ms`` of it with the same decoding options, up to ``batch_size`` images, and
decodes them as one batch (the batch size and delay of TorchServe and Triton). It waits only while
other requests are on their way (``coming``: received, their images still being read), so a lone
request is decoded at once. A request whose client has left is dropped before its batch is decoded,
so it costs nothing else."""

from __future__ import annotations

import asyncio
import dataclasses
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from captioner.api import Candidate, Captioner
from captioner.decode_options import DecodeOptions


@dataclass
class Decoded:
    """One request's answer: per image, its captions best first with their log-probabilities, and where
    the model looked for each word of the best one (when asked for)."""

    candidates: list[list[Candidate]]
    attention: list[np.ndarray] | None = None


@dataclass
class _Job:
    pixels: torch.Tensor  # (n, 3, S, S), preprocessed
    options: DecodeOptions
    attention: bool
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    arrived: float


class Batcher:
    """The model thread and its queue; ``await batcher.submit(...)`` from the event loop."""

    def __init__(self, captioner: Captioner, batch_size: int = 16, max_wait_ms: float = 10.0,
                 coming: Callable[[], int] = lambda: 1):
        self.captioner = captioner
        self.batch_size = batch_size
        self.max_wait = max_wait_ms / 1000
        self.coming = coming  # requests received and not yet queued: worth waiting for
        self.batch_sizes: Counter[int] = Counter()  # images per decoded batch -> how many batches
        self.abandoned = 0  # requests dropped because their client left before their batch
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="captioner-batcher", daemon=True)
        self._thread.start()

    def submit(self, pixels: torch.Tensor, options: DecodeOptions, attention: bool = False) -> asyncio.Future:
        """Queue ``pixels`` (n, 3, S, S), from the event loop; the future is their :class:`Decoded`, decoded
        with whatever else is queued with these options. Cancel it (the client left) and the images are
        not decoded unless their batch has begun."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put(_Job(pixels, options, attention, future, loop, time.monotonic()))
        return future

    def close(self) -> None:
        """Stop the model thread after the requests already queued."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        held: deque[_Job | None] = deque()  # taken from the queue while gathering another kind's batch
        while True:
            first = held.popleft() if held else self._queue.get()
            if first is None:
                return
            self._decode(self._gather(first, held))

    def _gather(self, first: _Job, held: deque) -> list[_Job]:
        """``first`` and the requests of its kind held or arriving before its wait ends, up to the batch size."""
        batch, size = [first], len(first.pixels)
        for job in [j for j in held if j is not None and j.options == first.options]:
            if size + len(job.pixels) <= self.batch_size:
                held.remove(job)
                batch.append(job)
                size += len(job.pixels)
        deadline = first.arrived + self.max_wait
        while size < self.batch_size:
            wait = deadline - time.monotonic() if self.coming() else 0.0
            try:  # past the deadline, or nothing coming (timeout 0): still what is already queued
                job = self._queue.get(timeout=max(0.0, wait))
            except queue.Empty:
                break
            if job is not None and job.options == first.options and size + len(job.pixels) <= self.batch_size:
                batch.append(job)
                size += len(job.pixels)
            else:
                held.append(job)
                if job is None:
                    break
        return batch

    def _decode(self, batch: list[_Job]) -> None:
        live = [job for job in batch if not job.future.cancelled()]
        self.abandoned += len(batch) - len(live)
        if not live:
            return
        options = live[0].options
        try:
            pixels = torch.cat([job.pixels for job in live])
            attention = any(job.attention for job in live)  # the batch is encoded once either way
            results = [result.checked() for result in self.captioner.caption_results(
                pixels, len(pixels), attention=attention, **dataclasses.asdict(options))]
            self.batch_sizes[len(pixels)] += 1
            answers, start = [], 0
            for job in live:
                mine = results[start : start + len(job.pixels)]
                start += len(job.pixels)
                answers.append(Decoded([r.candidates for r in mine], [r.attention for r in mine] if job.attention
                                       else None))
        except Exception as error:  # noqa: BLE001 - the requests of this batch fail, the server goes on
            for job in live:
                job.loop.call_soon_threadsafe(_settle, job.future, None, error)
            return
        for job, answer in zip(live, answers):
            job.loop.call_soon_threadsafe(_settle, job.future, answer, None)


def _settle(future: asyncio.Future, answer: Decoded | None, error: BaseException | None) -> None:
    if not future.done():  # a client that left has cancelled it
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(answer)
