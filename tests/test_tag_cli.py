"""captioner-tag end to end in a subprocess: a folder with a bad file, a single bad file, real videos."""

from __future__ import annotations

import json

import pytest
from conftest import cli

from captioner.synthetic.videos import synthetic_videos

pytestmark = pytest.mark.slow


def test_tag_folder_with_a_bad_file(trained, tmp_path):
    folder = tmp_path / "videos"
    good = synthetic_videos(folder, count=1, num_shots=3, shot_seconds=(1.0, 1.5))[0]
    (folder / "broken.mp4").write_text("not a video")
    out = tmp_path / "out"
    result = cli("tag", f"checkpoint={trained / 'run' / 'model.pt'}", f"video={folder}", f"out_dir={out}", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"error: {folder / 'broken.mp4'}: no video stream" in result.stderr
    assert "1 of 2 videos could not be tagged" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["video_000.chapters.vtt", "video_000.html", "video_000.json",
                                                      "video_000.srt", "video_000.vtt", "video_000_files",
                                                      "video_000_sheet.jpg"]
    tagged = json.loads((out / "video_000.json").read_text())
    truth = json.loads(good.with_suffix(".json").read_text())
    assert [s["start_frame"] for s in tagged["shots"]] == [s["start_frame"] for s in truth["shots"]]
    assert f"{good}: " in result.stdout and "3 shots" in result.stdout


def test_tag_single_bad_video_is_one_line(trained, tmp_path):
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"\x00" * 4096)
    result = cli("tag", f"checkpoint={trained / 'run' / 'model.pt'}", f"video={bad}", f"out_dir={tmp_path / 'out'}",
                 cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [
        f"error: {bad}: no video stream FFmpeg can decode (not a video, or damaged)"]
    assert not (tmp_path / "out").exists()


def test_tag_every_real_video_with_a_glob(trained, media, tmp_path):
    folder = tmp_path / "real"
    folder.mkdir()
    for video in (media / "videos").iterdir():
        (folder / video.name).symlink_to(video)
    result = cli("tag", f"checkpoint={trained / 'run' / 'model.pt'}", f"video='{folder}/*'", "out_dir=out",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for video in (media / "videos").iterdir():
        for suffix in (".json", ".vtt", ".srt", "_sheet.jpg", ".chapters.vtt", ".html"):
            assert (tmp_path / "out" / f"{video.stem}{suffix}").stat().st_size > 0
    assert "bikes.mp4: 100%" in result.stderr  # each video's progress bar ends full
    bikes = json.loads((tmp_path / "out" / "bikes.json").read_text())
    assert [s["start_frame"] for s in bikes["shots"]] == [0, 30, 76, 137, 187, 242]


def test_tag_with_a_bad_checkpoint_is_one_line_and_writes_nothing(tmp_path):
    (video,) = synthetic_videos(tmp_path / "videos", count=1, num_shots=2)
    bad = tmp_path / "model.pt"
    bad.write_text("not a checkpoint")
    result = cli("tag", f"checkpoint={bad}", f"video={video}", f"out_dir={tmp_path / 'out'}", cwd=tmp_path)
    errors = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith(video.name)]
    assert result.returncode == 1 and len(errors) == 1 and errors[0].startswith(f"error: {bad}: "), result.stderr
    assert not (tmp_path / "out").exists()


def test_videos_of_the_same_name_get_outputs_of_their_own(trained, tmp_path):
    (video,) = synthetic_videos(tmp_path / "made", count=1, num_shots=2, shot_seconds=(1.0, 1.5))
    folder = tmp_path / "videos"
    for name in ("a/same.webm", "b/same.webm", "clip.webm", "clip.mkv"):  # a WebM is Matroska: FFmpeg reads both
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(video.read_bytes())
    out = tmp_path / "out"
    result = cli("tag", f"checkpoint={trained / 'run' / 'model.pt'}", f"video={folder}", f"out_dir={out}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for name in ("a/same", "b/same", "clip.webm", "clip.mkv"):
        tagged = json.loads((out / f"{name}.json").read_text())
        assert tagged["video"].endswith(name if "." in name else f"{name}.webm")
        assert (out / f"{name}.html").is_file() and any((out / f"{name}_files").iterdir())
    assert result.stdout.count("  wrote ") == 4
