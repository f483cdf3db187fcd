"""captioner-caption: caption an image file, a folder of images or a glob."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from omegaconf import DictConfig

from captioner import distributed
from captioner.api import Captioner, CaptionResult
from captioner.cli.config import model_settings, typed, user_errors
from captioner.cli.overrides import command
from captioner.data.images import IMAGE_EXTENSIONS, load_image
from captioner.decode_options import DecodeOptions
from captioner.devices import resolve_device
from captioner.errors import CaptionerError
from captioner.io import JsonLines, atomic_open, check_writable, complete_jsonl_rows
from captioner.paths import expand_inputs
from captioner.pictures.attention import write_attention_strip


def run(checkpoint: str, input: str, output: str | None = None, decode: DecodeOptions = DecodeOptions(),
        batch_size: int = 32, device: str = "auto", resume: bool = False, num_workers: int | None = None,
        attention_dir: str | None = None, rerank: dict | None = None, head: dict | None = None) -> dict:
    """Print ``path<TAB>caption`` per image; unreadable files are reported and skipped.

    ``output``: ``.json`` or ``.csv``, written whole at the end, or ``.jsonl``, a row appended as
    each image is captioned (nothing accumulates in memory); ``resume`` then skips the files the
    ``.jsonl`` already holds, so a run killed at image 900,000 goes on from there. Under torchrun
    each process captions every world-th file and rank 0 writes them all, in input order.
    ``attention_dir``: a PNG per image of where the model looked for each word (attention models).
    ``rerank``, ``head``: as :meth:`Captioner.load` takes them.
    """
    suffix = Path(output).suffix.lower() if output is not None else None
    if output is not None and suffix not in (".json", ".csv", ".jsonl"):
        raise CaptionerError(f"output={output}: must end in .json, .csv or .jsonl")
    if batch_size < 1:
        raise CaptionerError(f"batch_size must be >= 1, got {batch_size}")
    if num_workers is not None and num_workers < 0:
        raise CaptionerError(f"num_workers must be >= 0 (null: picked from the cores), got {num_workers}")
    if resume and suffix != ".jsonl":
        raise CaptionerError("resume=true needs output=FILE.jsonl, whose rows are written as they are made")
    paths = expand_inputs(input, IMAGE_EXTENSIONS)
    if output is not None:  # before any work: a run's captions are never lost at its end
        check_writable(output, paths)
        if suffix == ".jsonl" and not resume and Path(output).is_file() and Path(output).stat().st_size:
            raise CaptionerError(f"{output}: already holds captions; resume=true goes on from it, "
                                 "or give another output")
    _, _, torch_device = distributed.init_if_launched(resolve_device(device))
    try:
        captioner = Captioner.load(checkpoint, torch_device, rerank=rerank, head=head)
        if attention_dir is not None:
            captioner.check_attention()  # before anything is read or written
        # rank 0 alone reads (and may repair) the output; every process then captions its share of the rest
        earlier = (complete_jsonl_rows(output, "path") if resume else []) if distributed.is_main() else []
        done = {os.path.realpath(str(row["path"])) for row in earlier}  # the same file however it was named
        todo = distributed.broadcast_from_main([path for path in paths if os.path.realpath(path) not in done])
        mine = captioner.caption_results(distributed.share(todo), batch_size, num_workers,
                                         attention=attention_dir is not None, **asdict(decode))
        results = distributed.in_input_order(mine, len(todo), batch_size)
        if not distributed.is_main():
            for _ in results:  # every round of gathering takes every process
                pass
            return {"captioned": 0, "failed": 0, "skipped": 0}
        return _write(results, output, resume, paths, todo, earlier, attention_dir)
    finally:
        distributed.shutdown()


def _write(results, output: str | None, resume: bool, paths: list[Path], todo: list[Path],
           earlier: list[dict], attention_dir: str | None = None) -> dict:
    """Print and write the results as they come (and their attention strips); -> the counts."""
    suffix = Path(output).suffix.lower() if output is not None else None
    if resume:
        print(f"resuming: {len(paths) - len(todo)} of {len(paths)} files already in {output}", file=sys.stderr)
    stream = JsonLines(output, append=resume) if suffix == ".jsonl" else None
    kept: list[CaptionResult] = []  # for a .json or .csv written at the end
    failed: list[CaptionResult] = []
    try:
        for result in results:
            if result.attention is not None:
                result.attention_strip = str(write_attention_strip(
                    strip_path(attention_dir, result.path), load_image(result.path), result.caption, result.attention))
            if stream is not None:
                stream.write(result_row(result))
            elif output is not None:
                kept.append(result)
            if result.error:
                failed.append(result)
                print(f"error: {result.path}: {result.error}", file=sys.stderr)
            else:
                print(f"{result.path}\t{result.caption}", flush=True)
    finally:
        if stream is not None:
            stream.close()
    if output is not None and stream is None:
        write_results(Path(output), kept)
    if failed and len(todo) > 1:
        print(f"{len(failed)} of {len(todo)} files could not be captioned:", file=sys.stderr)
        for result in failed:
            print(f"  {result.path}: {result.error}", file=sys.stderr)
    failed_earlier = sum(row["error"] is not None for row in earlier)  # the exit status is the whole run's
    return {"captioned": len(todo) - len(failed), "failed": len(failed) + failed_earlier,
            "skipped": len(paths) - len(todo)}


def result_row(result: CaptionResult) -> dict:
    """One output row: every field, with all candidates when decode.num_captions > 1 and the attention
    strip's path when one was drawn."""
    row = {"path": result.path, "caption": result.caption, "log_prob": result.log_prob, "error": result.error}
    if result.candidates and len(result.candidates) > 1:
        row["candidates"] = [{"caption": c, "log_prob": lp} for c, lp in result.candidates]
    if result.attention_strip is not None:
        row["attention"] = result.attention_strip
    return row


def strip_path(folder: str, image: str) -> Path:
    """``folder/STEM-HASH.png``: the image's name, made unique by its full path (the same on resume)."""
    digest = hashlib.sha1(os.fsencode(Path(image).resolve())).hexdigest()[:8]  # any name the disk holds
    return Path(folder) / f"{Path(image).stem}-{digest}.png"


def write_results(path: Path, results: list[CaptionResult]) -> None:
    """JSON: every field (``result_row``); CSV: the best caption. A file name that is not UTF-8 is written
    with each undecodable byte as ``\\udcXX`` (Python's surrogateescape), in JSON by its escapes, in CSV as text."""
    with atomic_open(path, errors="backslashreplace") as handle:
        if path.suffix.lower() == ".json":
            json.dump([result_row(r) for r in results], handle, indent=2)
            handle.write("\n")
        else:
            fields = ["path", "caption", "log_prob", "error"]
            writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(result_row(r) for r in results)


@command("caption")
def main(cfg: DictConfig) -> None:
    with user_errors():
        counts = run(cfg.checkpoint, str(cfg.input), cfg.output, typed(DecodeOptions, cfg.decode, "decode"),
                     cfg.batch_size, cfg.device, cfg.resume, cfg.num_workers, cfg.attention_dir, **model_settings(cfg))
    if counts["failed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
