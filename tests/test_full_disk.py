"""A disk that fills while a command writes: one line naming the file and why, and nothing lost that was
whole before (the checkpoint before, the caption rows before)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import cli, small_disk, tiny_data

TRAIN = ["model.image_size=32", "model.decoder.hidden_dim=16", "model.decoder.embed_dim=8", "trainer.batch_size=8",
         "trainer.device=cpu", "trainer.num_workers=0", "show_examples=0", "metrics.meteor=false"]


def fill(disk: Path, leave: int) -> Path:
    """A file that takes the disk's room but ``leave`` bytes."""
    filler = disk / "filler"
    filler.write_bytes(b"\0" * (shutil.disk_usage(disk).free - leave))
    return filler


@pytest.mark.slow
def test_a_checkpoint_the_disk_has_no_room_for_is_one_line_and_the_one_before_is_kept(tmp_path):
    run = tmp_path / "run"
    first = cli("train", *tiny_data(tmp_path), *TRAIN, "trainer.max_steps=2", f"hydra.run.dir={run}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    room = sum(path.stat().st_size for path in run.rglob("*") if path.is_file())
    with small_disk(tmp_path / "disk", room + 2**20) as disk:
        shutil.copytree(run, disk / "run")
        before = {name: (disk / "run" / name).read_bytes() for name in ("last.pt", "model.pt")}
        resumed = cli("train", *tiny_data(tmp_path), *TRAIN, "trainer.max_steps=4", "trainer.resume=true",
                      f"hydra.run.dir={disk / 'run'}", cwd=tmp_path)
        assert resumed.returncode == 1, resumed.stderr
        last_line = resumed.stderr.strip().splitlines()[-1]
        assert last_line.startswith(f"error: {disk / 'run'}/")
        assert "could not be written (No space left on device, " in last_line
        assert last_line.endswith("free there); the file before it is kept"), last_line
        assert "Traceback" not in resumed.stderr
        assert {name: (disk / "run" / name).read_bytes() for name in before} == before
        assert not list((disk / "run").glob(".*.tmp"))


@pytest.mark.slow
def test_caption_rows_the_disk_has_no_room_for_are_one_line_the_rows_before_kept_and_resume_ends_the_job(
        trained, tmp_path):
    images = sorted((trained / "data").rglob("*.png"))
    checkpoint = trained / "run" / "model.pt"
    with small_disk(tmp_path / "disk", 64 * 2**10) as disk:
        output = disk / "captions.jsonl"
        filler = fill(disk, leave=4096)
        full = cli("caption", f"checkpoint={checkpoint}", f"input={trained / 'data'}", f"output={output}",
                   "device=cpu", f"hydra.run.dir={tmp_path / 'hydra'}", cwd=tmp_path)
        assert full.returncode == 1, full.stderr
        assert full.stderr.strip().splitlines()[-1].startswith(
            f"error: {output}: could not be written (No space left on device, ")
        assert full.stderr.strip().endswith("free there); the rows before are kept")
        assert "Traceback" not in full.stderr
        whole = output.read_bytes()[: output.read_bytes().rfind(b"\n") + 1]
        kept = [json.loads(line) for line in whole.splitlines()]
        assert 0 < len(kept) < len(images)

        filler.unlink()
        resumed = cli("caption", f"checkpoint={checkpoint}", f"input={trained / 'data'}", f"output={output}",
                      "resume=true", "device=cpu", f"hydra.run.dir={tmp_path / 'hydra'}", cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr
        assert f"resuming: {len(kept)} of {len(images)} files already in" in resumed.stderr
        rows = [json.loads(line) for line in output.read_text().splitlines()]
        assert rows[: len(kept)] == kept
        assert sorted(row["path"] for row in rows) == sorted(map(str, images))
