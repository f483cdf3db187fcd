"""captioner-caption: caption an image file, a folder of images or a glob."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from captioner.api import CaptionResult, Captioner
from captioner.cli.common import CONFIG_PATH, user_errors
from captioner.data.images import IMAGE_EXTENSIONS
from captioner.errors import CaptionerError
from captioner.io import atomic_open
from captioner.paths import expand_inputs


def run(checkpoint: str, input: str, output: str | None = None, beam_size: int = 1,
        batch_size: int = 32, device: str = "cpu") -> dict:
    """Print ``path<TAB>caption`` per image; unreadable files are reported and skipped."""
    if output is not None and Path(output).suffix.lower() not in (".json", ".csv"):
        raise CaptionerError(f"output={output}: must end in .json or .csv")
    paths = expand_inputs(input, IMAGE_EXTENSIONS)
    captioner = Captioner.load(checkpoint, device=device)
    results: list[CaptionResult] = []
    for result in captioner.caption_files(paths, beam_size=beam_size, batch_size=batch_size):
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
    rows = [{"path": r.path, "caption": r.caption, "error": r.error} for r in results]
    with atomic_open(path) as handle:
        if path.suffix.lower() == ".json":
            json.dump(rows, handle, indent=2)
            handle.write("\n")
        else:
            writer = csv.DictWriter(handle, fieldnames=["path", "caption", "error"])
            writer.writeheader()
            writer.writerows(rows)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="caption")
def main(cfg: DictConfig) -> None:
    with user_errors():
        counts = run(cfg.checkpoint, str(cfg.input), cfg.output, cfg.beam_size, cfg.batch_size, cfg.device)
    if counts["failed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
