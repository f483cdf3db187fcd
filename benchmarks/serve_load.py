"""captioner-serve under load: N concurrent HTTP clients on loopback, batching on and off, in one run.

    .venv/bin/python benchmarks/serve_load.py [--checkpoint outputs/demo/model.pt] [--requests 1000]
        [--clients 1 4 16 64] [--soak 10000] [--query beam_size=3]

Two servers run the same model: one with batching off (``batch_size=1``), one with ``--batch-size`` and
``--max-wait-ms``. For each number of clients, each server in turn gets ``--requests`` requests (an
image as the body, the photos of ../shared/media, else the synthetic test images), each client sending
its next as soon as its last is answered: requests/s, p50/p95/p99 latency, failures, the batch sizes
the server formed (from ``/health``) and its peak RSS. Then ``--soak`` requests at 16 clients against
the batching server, its RSS sampled every tenth of them: memory should stay flat.

The clients (httpx2 on asyncio, in this process) share the CPU with the server, as clients on the same
machine do; measure alone.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import httpx2

from captioner.devices import cpu_description

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media" / "photos"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """``captioner-serve`` in a subprocess."""

    def __init__(self, checkpoint: str, *overrides: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen([sys.executable, "-m", "captioner.cli.serve", f"checkpoint={checkpoint}",
                                         f"port={self.port}", *overrides], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/health", timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"captioner-serve {' '.join(overrides)} did not start")
                time.sleep(0.2)

    def memory_mb(self, field: str) -> float:
        """``VmRSS`` (now) or ``VmHWM`` (peak) of the server process, in MB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def batches(self) -> dict[int, int]:
        health = httpx2.get(f"{self.url}/health").json()
        return {int(size): count for size, count in health["batches"].items()}

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=60)


async def load(url: str, bodies: list[tuple[bytes, str]], requests: int, clients: int, query: str,
               on_progress=None) -> tuple[list[float], int, float]:
    """``requests`` requests from ``clients`` concurrent clients -> latencies (s), failures, seconds."""
    latencies, failures, sent = [], 0, 0
    limits = httpx2.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx2.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        async def one_client():
            nonlocal failures, sent
            while sent < requests:
                body, content_type = bodies[sent % len(bodies)]
                sent += 1
                started = time.perf_counter()
                try:
                    response = await client.post(f"/caption?{query}", content=body,
                                                 headers={"Content-Type": content_type})
                    ok = response.status_code == 200
                except httpx2.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - started)
                failures += not ok
                if on_progress:
                    on_progress(len(latencies))

        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        return latencies, failures, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def images() -> list[tuple[bytes, str]]:
    paths = sorted(p for p in MEDIA.glob("*") if p.suffix in (".png", ".jpg")) if MEDIA.is_dir() else []
    if not paths:
        from captioner.data.formats import split_records
        from captioner.synthetic.dataset import synthetic_dataset

        paths = [Path(r.path) for r in split_records(synthetic_dataset(), "test")[:16]]
    return [(p.read_bytes(), "image/jpeg" if p.suffix == ".jpg" else "image/png") for p in paths]


def main() -> None:
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # a background job: the servers must see Ctrl-C to stop
        signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="outputs/demo/model.pt")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--soak", type=int, default=10000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-wait-ms", type=float, default=10)
    parser.add_argument("--query", default="beam_size=3")
    args = parser.parse_args()
    bodies = images()
    print(f"{cpu_description()}; {len(bodies)} images "
          f"({sum(len(b) for b, _ in bodies) // len(bodies) // 1024} KB each on average); query {args.query!r}")
    servers = {"batching off (batch_size=1)": Server(args.checkpoint, "batch_size=1"),
               f"batching (batch_size={args.batch_size}, max_wait_ms={args.max_wait_ms:g})":
                   Server(args.checkpoint, f"batch_size={args.batch_size}", f"max_wait_ms={args.max_wait_ms}")}
    try:
        asyncio.run(load(next(iter(servers.values())).url, bodies, 50, 4, args.query))  # warm-up
        asyncio.run(load(list(servers.values())[1].url, bodies, 50, 4, args.query))
        print("\n| server | clients | requests/s | p50 ms | p95 ms | p99 ms | failed | images per batch | "
              "peak RSS MB |\n|---|---|---|---|---|---|---|---|---|")
        rates: dict[tuple[str, int], float] = {}
        for clients in args.clients:
            for name, server in servers.items():
                before = server.batches()
                latencies, failures, seconds = asyncio.run(load(server.url, bodies, args.requests, clients, args.query))
                formed = {size: count - before.get(size, 0) for size, count in server.batches().items()
                          if count > before.get(size, 0)}
                images_decoded = sum(size * count for size, count in formed.items())
                mean = images_decoded / max(1, sum(formed.values()))
                rates[name, clients] = len(latencies) / seconds
                print(f"| {name} | {clients} | {rates[name, clients]:.1f} | {1000 * percentile(latencies, 50):.0f} | "
                      f"{1000 * percentile(latencies, 95):.0f} | {1000 * percentile(latencies, 99):.0f} | {failures} | "
                      f"{mean:.1f} (largest {max(formed, default=0)}) | {server.memory_mb('VmHWM'):.0f} |", flush=True)
        off, on = servers
        for clients in args.clients:
            print(f"{clients} clients: batching gives {rates[on, clients] / rates[off, clients]:.2f}x the requests/s")
        if args.soak:
            server = servers[on]
            samples = [server.memory_mb("VmRSS")]
            step = max(1, args.soak // 10)
            marks = set(range(step, args.soak + 1, step))

            def sample(done: int) -> None:
                if done in marks:
                    samples.append(server.memory_mb("VmRSS"))

            latencies, failures, seconds = asyncio.run(load(server.url, bodies, args.soak, 16, args.query, sample))
            print(f"\nsoak: {args.soak} requests at 16 clients in {seconds:.0f} s, {failures} failed, "
                  f"p95 {1000 * percentile(latencies, 95):.0f} ms; server RSS every {step} requests (MB): "
                  + " ".join(f"{m:.0f}" for m in samples))
    finally:
        for server in servers.values():
            server.stop()


if __name__ == "__main__":
    main()
