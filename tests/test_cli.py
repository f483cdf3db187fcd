"""End-to-end: the console scripts in a subprocess, on tiny synthetic data and real photos."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cli, tiny_data

pytestmark = pytest.mark.slow


def test_train_writes_outputs(trained):
    run_dir = trained / "run"
    for name in ("model.pt", "last.pt", "metrics.json", "training_curve.csv"):
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["step"] == 3 and 0 <= metrics["attribute_accuracy"] <= 1


def test_caption_folder_with_bad_files(trained, tmp_path):
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    images = sorted((trained / "data" / "images" / "test").glob("*.png"))[:3]
    shutil.copy(images[0], folder / "a.png")
    shutil.copy(images[1], folder / "nested" / "B.PNG")
    shutil.copy(images[2], folder / "c.png")
    (folder / "broken.jpg").write_text("not really a jpeg")
    (folder / "notes.txt").write_text("not an image, not even tried")
    out = tmp_path / "captions.json"
    result = cli("caption", f"checkpoint={trained / 'run' / 'model.pt'}", f"input={folder}", f"output={out}",
                 cwd=tmp_path)
    assert result.returncode == 1  # something failed: a non-zero exit, the rest captioned
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3 and all(len(line.split("\t")) == 2 and line.split("\t")[1] for line in lines)
    assert {Path(line.split("\t")[0]).name for line in lines} == {"a.png", "B.PNG", "c.png"}
    assert "broken.jpg: not an image Pillow can read" in result.stderr
    assert "1 of 4 files could not be captioned" in result.stderr and "Traceback" not in result.stderr
    rows = json.loads(out.read_text())
    assert len(rows) == 4 and sum(r["error"] is not None for r in rows) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["captions.json", "photos"]  # nothing else written


def test_caption_real_photos_in_several_modes(trained, media, tmp_path):
    out = tmp_path / "captions.csv"
    result = cli("caption", f"checkpoint={trained / 'run' / 'model.pt'}", f"input={media / 'photos'}",
                 f"output={out}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    photos = sorted(p.name for p in (media / "photos").iterdir() if p.suffix in (".png", ".jpg"))
    rows = list(csv.DictReader(out.open()))
    assert sorted(Path(r["path"]).name for r in rows) == photos and all(r["caption"] for r in rows)


def test_caption_glob(trained, tmp_path):
    pattern = str(trained / "data" / "images" / "val" / "00000[0-2].png")
    result = cli("caption", f"checkpoint={trained / 'run' / 'model.pt'}", f"input='{pattern}'", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) == 3


@pytest.mark.parametrize("name, content, message", [
    ("missing.png", None, "missing.png: no such file or folder"),
    ("empty.jpg", b"", "empty.jpg: empty file"),
    ("random.png", bytes(range(256)) * 8, "random.png: not an image Pillow can read"),
])
def test_single_bad_input_is_one_line_and_non_zero(trained, tmp_path, name, content, message):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    result = cli("caption", f"checkpoint={trained / 'run' / 'model.pt'}", f"input={tmp_path / name}", cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_checkpoint(tmp_path, trained):
    image = next((trained / "data" / "images" / "test").glob("*.png"))
    result = cli("caption", f"checkpoint={tmp_path / 'nope.pt'}", f"input={image}", cwd=tmp_path)
    assert result.returncode == 1 and "nope.pt: checkpoint not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_jsonl_output_survives_sigkill_and_resumes_to_the_uninterrupted_file(trained, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    images = sorted((trained / "data" / "images").rglob("*.png"))
    for i in range(300):
        shutil.copy(images[i % len(images)], folder / f"{i:04d}.png")
    (folder / "0007.png").write_text("broken")  # a failure is a row too, and is not retried
    command = [sys.executable, "-m", "captioner.cli.caption", f"checkpoint={trained / 'run' / 'model.pt'}",
               f"input={folder}", "batch_size=1", "decode.beam_size=6"]
    whole = tmp_path / "whole.jsonl"
    assert subprocess.run([*command, f"output={whole}"], capture_output=True, cwd=tmp_path).returncode == 1

    killed = tmp_path / "killed.jsonl"
    process = subprocess.Popen([*command, f"output={killed}"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline and (
            not killed.is_file() or killed.read_bytes().count(b"\n") < 20):
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    written = killed.read_bytes().count(b"\n")
    assert 20 <= written < 300, written  # killed mid-run
    with killed.open("ab") as handle:
        handle.write(b'{"path": "torn')  # as a kill in the middle of a line would leave it
    resumed = subprocess.run([*command, f"output={killed}", "resume=true"], capture_output=True, text=True,
                             cwd=tmp_path)
    assert resumed.returncode == 1 and f"resuming: {written} of 300 files already in" in resumed.stderr
    assert resumed.stdout.count("\n") == 300 - written  # only the rest was captioned
    assert killed.read_text() == whole.read_text()  # no row lost, none twice, the same order
    rows = [json.loads(line) for line in whole.read_text().splitlines()]
    assert len(rows) == 300 and [r["error"] is not None for r in rows].count(True) == 1


def test_resume_needs_a_jsonl_output(trained, tmp_path):
    result = cli("caption", f"checkpoint={trained / 'run' / 'model.pt'}", f"input={tmp_path}", "output=c.json",
                 "resume=true", cwd=tmp_path)
    assert result.returncode == 1 and "error: resume=true needs output=FILE.jsonl" in result.stderr


def test_file_names_that_are_not_utf8_are_captioned_into_every_output_and_resumed(attention_checkpoint, tiny_records,
                                                                                 tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    names = [os.fsdecode(b"caf\xe9.png"), "plain.png", os.fsdecode(b"z\xff\xfe.png")]  # bytes a Linux disk holds
    for name, record in zip(names, tiny_records):
        shutil.copy(record.path, folder / name)
    written = [os.fsdecode(b"caf\\udce9.png"), "plain.png", os.fsdecode(b"z\\udcff\\udcfe.png")]

    def caption(*overrides):
        return subprocess.run([sys.executable, "-m", "captioner.cli.caption", f"checkpoint={attention_checkpoint}",
                               f"input={folder}", *overrides], capture_output=True, cwd=tmp_path,
                              env=os.environ | {"PYTHONIOENCODING": "utf-8:strict"})  # a strict terminal

    for output in ("out.json", "out.csv", "out.jsonl"):
        result = caption(f"output={output}", "attention_dir=strips")
        assert result.returncode == 0, result.stderr.decode(errors="replace")
        printed = [Path(line.split(b"\t")[0].decode()).name for line in result.stdout.splitlines()]
        assert sorted(printed) == sorted(written)  # as the JSON outputs write the names
    rows = json.loads((tmp_path / "out.json").read_text())
    assert sorted(Path(row["path"]).name for row in rows) == sorted(names)  # JSON's \udcXX escapes read back
    assert sorted(Path(row["path"]).name for row in csv.DictReader((tmp_path / "out.csv").open())) == sorted(written)
    assert len(list((tmp_path / "strips").iterdir())) == 3
    resumed = caption("output=out.jsonl", "resume=true")
    assert resumed.returncode == 0 and b"3 of 3 files already in out.jsonl" in resumed.stderr
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 3


def many_images(trained, folder: Path, count: int = 300) -> Path:
    folder.mkdir()
    images = sorted((trained / "data" / "images").rglob("*.png"))
    for i in range(count):
        shutil.copy(images[i % len(images)], folder / f"{i:04d}.png")
    return folder


def test_ctrl_c_is_one_line_and_status_130_and_the_rows_written_stay_whole(trained, tmp_path):
    folder = many_images(trained, tmp_path / "many")
    output = tmp_path / "out.jsonl"
    model = trained / "run" / "model.pt"
    process = subprocess.Popen([sys.executable, "-m", "captioner.cli.caption", f"checkpoint={model}",
                                f"input={folder}", "batch_size=1", "decode.beam_size=6", f"output={output}"],
                               cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline and (
            not output.is_file() or output.read_bytes().count(b"\n") < 10):
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and stderr.strip().splitlines()[-1] == "interrupted"
    assert "Traceback" not in stderr
    rows = output.read_text().splitlines()
    assert 10 <= len(rows) < 300 and all(json.loads(row)["error"] is None for row in rows)  # whole rows


def test_a_reader_that_leaves_early_costs_no_traceback(trained, tmp_path):
    folder = many_images(trained, tmp_path / "many", 100)
    model = trained / "run" / "model.pt"
    process = subprocess.Popen([sys.executable, "-m", "captioner.cli.caption", f"checkpoint={model}",
                                f"input={folder}", "batch_size=1"], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    first = process.stdout.readline()  # as `| head -1` reads a line, then closes the pipe
    process.stdout.close()
    stderr = process.stderr.read().decode()
    process.wait(timeout=60)
    assert first.endswith(b"\n") and process.returncode == 1
    assert "Traceback" not in stderr and "Error" not in stderr


def test_folders_and_globs_follow_links_once_and_resume_knows_a_file_by_any_name(trained, tmp_path):
    folder = tmp_path / "photos"
    (folder / "inner").mkdir(parents=True)
    images = sorted((trained / "data" / "images").rglob("*.png"))[:3]
    for i, image in enumerate(images):
        shutil.copy(image, folder / "inner" / f"{i}.png")
    (folder / "inner" / "loop").symlink_to(folder)  # a link back up: a loop
    (tmp_path / "elsewhere").mkdir()
    shutil.copy(images[0], tmp_path / "elsewhere" / "linked.png")
    (folder / "more").symlink_to(tmp_path / "elsewhere")  # a linked folder: followed
    model = f"checkpoint={trained / 'run' / 'model.pt'}"
    by_folder = cli("caption", model, "input=photos", "output=first.jsonl", cwd=tmp_path)
    by_glob = cli("caption", model, "input='photos/**/*.png'", cwd=tmp_path)
    assert by_folder.returncode == 0 and by_glob.returncode == 0, by_folder.stderr + by_glob.stderr
    for result in (by_folder, by_glob):
        printed = sorted(line.split("\t")[0] for line in result.stdout.splitlines())
        assert len(printed) == 4 and [Path(p).name for p in printed] == ["0.png", "1.png", "2.png", "linked.png"]
    again = cli("caption", model, f"input={folder.resolve()}", "output=first.jsonl", "resume=true", cwd=tmp_path)
    assert again.returncode == 0 and "4 of 4 files already in first.jsonl" in again.stderr and not again.stdout


@pytest.mark.parametrize("content", [b"not json\n", b'{"caption": "no path"}\n', b'{"path": "caf\xe9"}\n'])
def test_resuming_from_a_file_this_command_did_not_write_is_one_line(trained, tmp_path, content):
    (tmp_path / "photo.png").write_bytes(next((trained / "data" / "images").rglob("*.png")).read_bytes())
    (tmp_path / "other.jsonl").write_bytes(content)
    result = cli("caption", f"checkpoint={trained / 'run' / 'model.pt'}", "input=photo.png", "output=other.jsonl",
                 "resume=true", cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [
        "error: other.jsonl: line 1 is not a JSON object with a 'path': not a file this command wrote"]
    assert (tmp_path / "other.jsonl").read_bytes() == content


def test_ctrl_c_in_training_saves_says_how_to_go_on_and_exits_130(trained, tmp_path):
    run = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "captioner.cli.train", *tiny_data(trained),
                                "model.image_size=32", "model.decoder.hidden_dim=16", "model.decoder.embed_dim=8",
                                "trainer.max_epochs=10000", "trainer.batch_size=8", "trainer.device=cpu",
                                f"hydra.run.dir={run}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline and not (run / "training_curve.csv").is_file():
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == (
        f"interrupted; saved {run / 'last.pt'}; continue with trainer.resume=true")
    assert "Traceback" not in stderr and (run / "last.pt").is_file()
