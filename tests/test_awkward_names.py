"""A folder of images and videos with random awkward names (bytes that are not UTF-8, spaces, quotes, ``=``,
``,``, letters beyond ASCII, a leading ``-``, the same stem in several folders), captioned into JSON, CSV
and JSON lines and tagged, then interrupted and resumed: every input has exactly one row or one set of
outputs, no traceback, and running again changes nothing."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from captioner.synthetic.videos import synthetic_videos

pytestmark = pytest.mark.slow

PIECES = [bytes([b]) for b in range(0x80, 0x100)] + [
    b" ", b"'", b'"', b"=", b",", b"#", b"[1]", b"{x}", b"$HOME", "é".encode(), "日本".encode(), b"pic", b"a"]
FOLDERS = [b"", b"a", b"b \xe9", b"-c", "d=1,2 'q'".encode()]


def awkward(rng: random.Random) -> bytes:
    name = b"".join(rng.choice(PIECES) for _ in range(rng.randint(1, 4)))
    return (b"-" if rng.random() < 0.2 else b"") + name


def place(root: bytes, names: list[bytes], sources: list[Path]) -> list[bytes]:
    """Copies of ``sources`` (in turn) at ``root/name``; the paths written, as bytes."""
    paths = []
    for index, name in enumerate(names):
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(sources[index % len(sources)], "rb") as source, open(path, "wb") as target:
            target.write(source.read())
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def awkward_folder(trained, tmp_path_factory) -> tuple[Path, list[bytes], list[bytes]]:
    """30 images (large enough that captioning them takes a few seconds) and 6 videos, with their paths."""
    work = tmp_path_factory.mktemp("awkward")
    rng = random.Random(7)
    sources = []
    for index, image in enumerate(sorted((trained / "data" / "images").rglob("*.png"))[:4]):
        large = Image.open(image).convert("RGB").resize((1600, 1600))
        for suffix in (".png", ".jpg"):
            sources.append(work / f"source{index}{suffix}")
            large.save(sources[-1])
    image_names = [b"same.png", b"a/same.png", b"b \xe9/same.png", b"same.jpg", b"-rf.png", b"=,'\".png"]
    while len(image_names) < 30:
        name = os.path.join(rng.choice(FOLDERS), awkward(rng) + rng.choice([b".png", b".PNG", b".jpg"]))
        if name not in image_names:
            image_names.append(name)
    root = os.fsencode(work / "inputs")
    images = place(root, image_names, [s for s in sources if s.suffix == ".png"])
    for path in images:  # a .jpg holds a JPEG
        if path.lower().endswith(b".jpg"):
            Image.open(path).convert("RGB").save(path, format="JPEG")
    clip = synthetic_videos(work / "videos", count=1, num_shots=3, shot_seconds=(1.5, 1.5))[0]
    video_names = [b"clip.webm", b"clip.mkv", b"a/clip.webm", b"b \xe9/clip.webm", b"-c/\xff '=,.webm",
                   "d=1,2 'q'/日本.webm".encode()]
    videos = place(root, video_names, [clip])
    return Path(os.fsdecode(root)), images, videos


def command(module: str, checkpoint: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", f"captioner.cli.{module}", f"checkpoint={checkpoint}", *overrides]


def finish(process: subprocess.Popen) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=600)
    assert "Traceback" not in stderr, stderr
    return process.returncode, stderr


def interrupt_when(process: subprocess.Popen, ready) -> None:
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline and not ready():
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)


def run(arguments: list[str], cwd: Path) -> str:
    result = subprocess.run(arguments, cwd=cwd, capture_output=True, text=True, errors="surrogateescape",
                            env=os.environ | {"PYTHONIOENCODING": "utf-8:strict"}, timeout=600)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    return result.stderr


def snapshot(folder: Path) -> dict[bytes, tuple[bytes, int]]:
    """Every file under ``folder``: its bytes and modification time."""
    found = {}
    for directory, _, files in os.walk(os.fsencode(folder)):
        for name in files:
            path = os.path.join(directory, name)
            with open(path, "rb") as handle:
                found[path] = (handle.read(), os.stat(path).st_mtime_ns)
    return found


def as_text(path: bytes) -> str:
    """A name as the CSV writes it: what is not UTF-8 as ``\\udcXX``."""
    return os.fsdecode(path).encode("utf-8", "backslashreplace").decode()


def test_awkward_names_are_captioned_once_each_into_every_output_and_resumed(awkward_folder, trained, tmp_path):
    root, images, _ = awkward_folder
    model = trained / "run" / "model.pt"
    for output in ("out.json", "out.csv"):
        run(command("caption", model, f"input={root}", f"output={output}"), tmp_path)
        first = (tmp_path / output).read_bytes()
        run(command("caption", model, f"input={root}", f"output={output}"), tmp_path)
        assert (tmp_path / output).read_bytes() == first  # again: the same file
    rows = json.loads((tmp_path / "out.json").read_text())
    assert sorted(os.fsencode(row["path"]) for row in rows) == sorted(images)
    assert all(row["error"] is None and row["caption"] for row in rows)
    with (tmp_path / "out.csv").open(newline="", encoding="utf-8") as handle:
        assert sorted(row["path"] for row in csv.DictReader(handle)) == sorted(map(as_text, images))

    jsonl = ["batch_size=1", "num_workers=0"]
    run(command("caption", model, f"input={root}", "output=whole.jsonl", *jsonl), tmp_path)
    interrupted = subprocess.Popen(command("caption", model, f"input={root}", "output=parts.jsonl", *jsonl),
                                   cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    parts = tmp_path / "parts.jsonl"
    interrupt_when(interrupted, lambda: parts.is_file() and parts.read_bytes().count(b"\n") >= 3)
    status, stderr = finish(interrupted)
    assert status == 130 and stderr.strip().splitlines()[-1] == "interrupted"
    assert 3 <= parts.read_bytes().count(b"\n") < 30
    run(command("caption", model, f"input={root}", "output=parts.jsonl", "resume=true", *jsonl), tmp_path)
    assert parts.read_bytes() == (tmp_path / "whole.jsonl").read_bytes()  # as if never interrupted
    again = run(command("caption", model, f"input={root}", "output=parts.jsonl", "resume=true", *jsonl), tmp_path)
    assert "30 of 30 files already in parts.jsonl" in again
    assert parts.read_bytes() == (tmp_path / "whole.jsonl").read_bytes()


def test_awkward_videos_get_one_set_of_outputs_each_and_resume_goes_on(awkward_folder, trained, tmp_path):
    root, _, videos = awkward_folder
    model = trained / "run" / "model.pt"
    out = tmp_path / "tags"
    interrupted = subprocess.Popen(command("tag", model, f"video={root}", f"out_dir={out}"),
                                   cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    interrupt_when(interrupted, lambda: out.is_dir() and any(out.rglob("*.html")))
    status, stderr = finish(interrupted)
    assert status == 130 and stderr.strip().splitlines()[-1] == "interrupted", stderr
    done = len(list(out.rglob("*.html")))
    assert 1 <= done < len(videos)
    resumed = run(command("tag", model, f"video={root}", f"out_dir={out}", "resume=true"), tmp_path)
    assert f"resume: {done} of {len(videos)} videos already tagged" in resumed
    pages = sorted(out.rglob("*.html"))
    assert len(pages) == len(videos)
    tagged = sorted(os.fsencode(json.loads(page.with_suffix(".json").read_text())["video"]) for page in pages)
    assert tagged == sorted(videos)  # each video once: no outputs overwrote another's
    before = snapshot(out)
    again = run(command("tag", model, f"video={root}", f"out_dir={out}", "resume=true"), tmp_path)
    assert f"resume: {len(videos)} of {len(videos)} videos already tagged" in again
    assert snapshot(out) == before
