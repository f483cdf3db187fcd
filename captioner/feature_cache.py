"""A feature cache for frozen encoders: every image encoded once into one memory-mapped (N, F) fp16 file.

A frozen backbone gives an image the same features every epoch; training reads them back instead of
running it (the time per epoch: benchmarks/README.md, "feature_cache.py"). The peers write one file
per image (ruotianluo/ImageCaptioning.pytorch, ~200 GB for COCO's attention features, then bound by
file-system I/O); here rows of one ``.npy`` file in the images' order, read through a memory map.

A cache is a folder named by a digest of everything that changes its features: the encoder's
architecture and cut, its backbone's tensors, the preprocessing, the precision it ran in and the
image list (each file's path, size and modification time), so a stale cache is never read. Rows
are written in chunks, each recorded with its CRC-32 once it is on disk: an interrupted extraction
goes on from the chunks it finished, under torchrun each process encodes its share of them, and a
cache whose file is truncated or whose bytes no longer match is rebuilt with a one-line note.
The conv memory layout is not in the digest: it changes features far below fp16's resolution.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock
from tqdm import tqdm

from captioner import distributed
from captioner.data.loading import load_images
from captioner.data.transforms import Preprocess
from captioner.errors import CaptionerError, ImageError
from captioner.io import JsonLines, complete_jsonl_rows, size_text, write_json
from captioner.models.encoder import Encoder

FEATURES, SETTINGS, COMPLETE = "features.npy", "settings.json", "complete.json"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/captioner/features`` (``~/.cache/captioner/features``): shared by runs."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "captioner" / "features"


@dataclass
class Extraction:
    """How features are computed (on the encoder's device): autocast dtype (None: fp32), conv layout,
    batch, loader processes (None: picked from the cores), and the rows written and checksummed together."""

    autocast: torch.dtype | None = None
    channels_last: bool = False
    batch_size: int = 64
    num_workers: int | None = None
    chunk_rows: int = 1024


class FeatureRows:
    """The rows of a features file as float32 tensors (F,). The memory map is opened on first use in
    each process: a DataLoader worker gets the path, not a copy of the array."""

    def __init__(self, path: Path):
        self.path = path
        self._array: np.ndarray | None = None

    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r")
        return self._array

    def __len__(self) -> int:
        return len(self.array())

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(self.array()[index].astype(np.float32))

    def __getstate__(self) -> dict:
        return {"path": self.path, "_array": None}


def cached_features(encoder: Encoder, preprocess: Preprocess, paths: Sequence[str | Path],
                    cache_dir: str | Path | None = None, extraction: Extraction = Extraction()) -> FeatureRows:
    """The grid features of ``paths`` (:meth:`Encoder.grid_features`), read from the cache in
    ``cache_dir`` (None: :func:`default_cache_dir`) or extracted into it first, the missing chunks only.

    Under torchrun every process calls it: each encodes its share of the missing chunks, rank 0
    checks and completes the cache. A second job asking for the same cache waits for the first.
    """
    if not encoder.frozen:
        raise CaptionerError("a feature cache holds a frozen encoder's features: set model.encoder.freeze=true")
    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    folder = root / cache_key(encoder, preprocess, paths, extraction.autocast)
    if distributed.is_main():
        root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder) + ".lock") if distributed.is_main() else contextlib.nullcontext()
    with lock:
        pending = distributed.broadcast_from_main(_prepare(folder, encoder, preprocess, paths, extraction)
                                                  if distributed.is_main() else None)
        if pending is not None:
            _extract(folder, encoder, preprocess, paths, distributed.share(pending), extraction)
            distributed.barrier()
            if distributed.is_main():
                _complete(folder, len(paths), extraction.chunk_rows)
            distributed.barrier()
    return FeatureRows(folder / FEATURES)


def cache_key(encoder: Encoder, preprocess: Preprocess, paths: Sequence[str | Path],
              autocast: torch.dtype | None) -> str:
    """A digest of everything that changes the features: never the same for other settings or images."""
    digest = hashlib.sha256(json.dumps({"encoder": encoder.identity, "preprocess": preprocess.to_dict(),
                                        "precision": str(autocast or torch.float32)}, sort_keys=True).encode())
    for name, tensor in encoder.body.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError:
            raise ImageError(path, "no such file") from None
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def _prepare(folder: Path, encoder: Encoder, preprocess: Preprocess, paths: Sequence, extraction: Extraction
             ) -> list[int]:
    """Rank 0: check a complete cache (rebuild it when damaged) or create/continue a partial one ->
    the chunks still to encode (None: the cache is complete)."""
    rows, chunk_rows = len(paths), extraction.chunk_rows
    if (folder / COMPLETE).is_file():
        damage = _damage(folder, json.loads((folder / COMPLETE).read_text()), rows, encoder.feature_dim)
        if damage is None:
            print(f"reading cached features: {folder}", file=sys.stderr)
            return None
        print(f"note: feature cache {folder} is damaged ({damage}); rebuilding it", file=sys.stderr)
        shutil.rmtree(folder)
    if (folder / SETTINGS).is_file() and json.loads((folder / SETTINGS).read_text())["chunk_rows"] != chunk_rows:
        shutil.rmtree(folder)  # chunks of another size: their records do not apply
    if not (folder / FEATURES).is_file():
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / SETTINGS, {"encoder": encoder.identity, "preprocess": preprocess.to_dict(),
                                       "precision": str(extraction.autocast or torch.float32), "images": rows,
                                       "feature_dim": encoder.feature_dim, "chunk_rows": chunk_rows,
                                       "first_image": str(paths[0]) if rows else None})
        np.lib.format.open_memmap(folder / FEATURES, mode="w+", dtype=np.float16,
                                  shape=(rows, encoder.feature_dim))  # sparse until written
    done = _verified_chunks(folder, rows, chunk_rows)
    pending = [c for c in range(_chunks(rows, chunk_rows)) if c not in done]
    needed = sum(_chunk_size(c, rows, chunk_rows) for c in pending) * encoder.feature_dim * 2
    free = shutil.disk_usage(folder).free
    if needed > free:  # before hours of encoding: the file takes room only as its chunks are written
        raise CaptionerError(f"{folder}: the feature cache needs {size_text(needed)} more for {rows} images, "
                             f"{size_text(free)} free there (trainer.feature_cache_dir= puts it on another disk)")
    print(f"extracting features of {rows} images into {folder}"
          + (f" (going on: {len(done)} of {len(done) + len(pending)} chunks done)" if done else ""), file=sys.stderr)
    return pending


def _extract(folder: Path, encoder: Encoder, preprocess: Preprocess, paths: Sequence, chunks: list[int],
             extraction: Extraction) -> None:
    """Encode ``chunks`` (this process's share) and write each, then record its checksum."""
    rows, chunk_rows = len(paths), extraction.chunk_rows
    mine = [i for c in chunks for i in range(c * chunk_rows, min(rows, (c + 1) * chunk_rows))]
    offset = np.load(folder / FEATURES, mmap_mode="r").offset
    row_bytes = encoder.feature_dim * 2
    record = JsonLines(folder / f"chunks-{distributed.rank()}.jsonl", append=True)
    body_device = next(encoder.parameters()).device
    buffer: list[np.ndarray] = []
    bar = tqdm(total=len(mine), unit="img", desc="extracting features", file=sys.stderr, dynamic_ncols=True,
               disable=not distributed.is_main(), mininterval=0.1 if sys.stderr.isatty() else 15)
    pending_chunks = iter(chunks)
    chunk = next(pending_chunks, None)
    with record, bar, open(folder / FEATURES, "r+b") as handle:
        for batch in load_images([paths[i] for i in mine], preprocess.transform(), extraction.batch_size,
                                 extraction.num_workers, pin_memory=body_device.type == "cuda"):
            batch.raise_first_error()
            buffer.append(_encode(encoder, batch.pixels.to(body_device), extraction))
            bar.update(len(batch.paths))
            while chunk is not None and sum(len(b) for b in buffer) >= _chunk_size(chunk, rows, chunk_rows):
                size = _chunk_size(chunk, rows, chunk_rows)
                joined = np.concatenate(buffer)
                data, buffer = joined[:size], [joined[size:]]
                os.pwrite(handle.fileno(), data.tobytes(), offset + chunk * chunk_rows * row_bytes)
                os.fdatasync(handle.fileno())
                record.write({"chunk": chunk, "crc": zlib.crc32(data.tobytes())})
                chunk = next(pending_chunks, None)


@torch.inference_mode()
def _encode(encoder: Encoder, pixels: torch.Tensor, extraction: Extraction) -> np.ndarray:
    if extraction.channels_last:
        pixels = pixels.contiguous(memory_format=torch.channels_last)
    with torch.autocast(pixels.device.type, dtype=extraction.autocast, enabled=extraction.autocast is not None):
        features = encoder.grid_features(pixels).float().cpu().numpy()
    half = features.astype(np.float16)
    if not np.isfinite(half).all():
        raise CaptionerError(f"encoder features exceed fp16's range (max {np.abs(features).max():.3g}); "
                             "train without trainer.feature_cache")
    return half


def _complete(folder: Path, rows: int, chunk_rows: int) -> None:
    """Rank 0, after every process finished: every chunk on disk matches a recorded checksum -> complete.json."""
    crc = _file_crcs(folder, rows, chunk_rows)
    recorded = _recorded(folder)
    missing = [c for c, value in enumerate(crc) if value not in recorded.get(c, ())]
    if missing:
        raise CaptionerError(f"{folder}: chunks {missing[:5]} were not written as recorded; run again")
    write_json(folder / COMPLETE, {"rows": rows, "chunk_rows": chunk_rows, "crc": crc})
    size = (folder / FEATURES).stat().st_size
    print(f"wrote the feature cache {folder} ({rows} images, {size_text(size)})", file=sys.stderr)


def _damage(folder: Path, complete: dict, rows: int, dim: int) -> str | None:
    """Why a complete cache cannot be read (None when it can): its file's shape or bytes."""
    try:
        array = np.load(folder / FEATURES, mmap_mode="r")
    except (OSError, ValueError) as error:
        return f"{FEATURES}: {error}"
    if array.shape != (rows, dim) or array.dtype != np.float16:
        return f"{FEATURES} holds {array.dtype} {array.shape}, not float16 {(rows, dim)}"
    found = _file_crcs(folder, rows, complete["chunk_rows"])
    bad = [c for c, (value, wanted) in enumerate(zip(found, complete["crc"])) if value != wanted]
    return f"chunk {bad[0]} of {len(found)} does not match its checksum" if bad else None


def _verified_chunks(folder: Path, rows: int, chunk_rows: int) -> set[int]:
    """The chunks of a partial cache whose bytes on disk match a recorded checksum."""
    recorded = _recorded(folder)
    if not recorded:
        return set()
    crc = _file_crcs(folder, rows, chunk_rows, only=set(recorded))
    return {c for c, value in crc.items() if value in recorded[c]}


def _recorded(folder: Path) -> dict[int, set[int]]:
    recorded: dict[int, set[int]] = {}
    for path in sorted(folder.glob("chunks-*.jsonl")):
        for row in complete_jsonl_rows(path, "chunk"):
            recorded.setdefault(row["chunk"], set()).add(row["crc"])
    return recorded


def _file_crcs(folder: Path, rows: int, chunk_rows: int, only: set[int] | None = None):
    """CRC-32 of each chunk's bytes in the file (a list; a dict for ``only`` those chunks)."""
    array = np.load(folder / FEATURES, mmap_mode="r")
    chunks = range(_chunks(rows, chunk_rows)) if only is None else sorted(only)
    found = {c: zlib.crc32(np.ascontiguousarray(array[c * chunk_rows : (c + 1) * chunk_rows])) for c in chunks}
    return list(found.values()) if only is None else found


def _chunks(rows: int, chunk_rows: int) -> int:
    return -(-rows // chunk_rows)


def _chunk_size(chunk: int, rows: int, chunk_rows: int) -> int:
    return min(rows, (chunk + 1) * chunk_rows) - chunk * chunk_rows
