"""captioner-caption: caption an image file, a folder of images or a glob."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import asdict
from pathlib import Path

import hydra
from omegaconf import DictConfig

from captioner.api import Captioner, CaptionResult
from captioner.cli.common import CONFIG_PATH, typed, user_errors
from captioner.data.images import IMAGE_EXTENSIONS
from captioner.decoding import DecodeOptions
from captioner.devices import resolve_device
from captioner.errors import CaptionerError
from captioner.io import atomic_open
from captioner.paths import expand_inputs


def run(checkpoint: str, input: str, output: str | None = None, decode: DecodeOptions = DecodeOptions(),
        batch_size: int = 32, device: str = "cpu") -> dict:
    """Print ``path<TAB>caption`` per image; unreadable files are reported and skipped."""
    if output is not None and Path(output).suffix.lower() not in (".json", ".csv"):
        raise CaptionerError(f"output={output}: must end in .json or .csv")
    paths = expand_inputs(input, IMAGE_EXTENSIONS)
    captioner = Captioner.load(checkpoint, device=resolve_device(device))
    results: list[CaptionResult] = []
    for result in captioner.caption_files(paths, batch_size, **asdict(decode)):
        results.append(result)
        if result.error:
            print(f"error: {result.path}: {result.error}", file=sys.stderr)
        else:
            print(f"{result.path}\t{result.caption}", flush=True)
    failed = [r for r in results if r.error]
    if output is not None:
        write_results(Path(output), results)
    if failed and len(results) > 1:
        print(f"{len(failed)} of {len(results)} files could not be captioned:", file=sys.stderr)
        for result in failed:
            print(f"  {result.path}: {result.error}", file=sys.stderr)
    return {"captioned": len(results) - len(failed), "failed": len(failed)}


def write_results(path: Path, results: list[CaptionResult]) -> None:
    """JSON: every field, with all candidates when decode.num_captions > 1; CSV: the best caption."""
    rows = [{"path": r.path, "caption": r.caption, "log_prob": r.log_prob, "error": r.error} for r in results]
    with atomic_open(path) as handle:
        if path.suffix.lower() == ".json":
            for row, result in zip(rows, results):
                if result.candidates and len(result.candidates) > 1:
                    row["candidates"] = [{"caption": c, "log_prob": lp} for c, lp in result.candidates]
            json.dump(rows, handle, indent=2)
            handle.write("\n")
        else:
            fields = list(rows[0]) if rows else ["path", "caption", "log_prob", "error"]
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="caption")
def main(cfg: DictConfig) -> None:
    with user_errors():
        counts = run(cfg.checkpoint, str(cfg.input), cfg.output, typed(DecodeOptions, cfg.decode, "decode"),
                     cfg.batch_size, cfg.device)
    if counts["failed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
