"""Video tagging figures, one run: shot F1 and segment accuracy on synthetic videos, cuts on real videos
beside PySceneDetect's, speed against the decoding floor, the command's start-up, and peak memory.

    .venv/bin/python benchmarks/video_tagging.py [--checkpoint outputs/demo/model.pt] [--skip-memory]

The speed file is 60 s of 1280x720 30 fps H.264 made from the real clips in ../shared/media/videos
(cuts, camera and crowd motion; each clip's frames played at 30 fps, none repeated); the 10-minute
file is it ten times over. Needs the benchmark extras (``pip install -e ".[bench]"``: scenedetect,
imageio-ffmpeg).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2

from captioner import Captioner
from captioner.devices import cpu_description
from captioner.synthetic.scoring import segment_attribute_accuracy
from captioner.synthetic.videos import synthetic_videos
from captioner.video.analysis import AnalysisPlan, Cut, analyse_video
from captioner.video.frames import decoded_frames, open_video, usable_cores
from captioner.video.scoring import boundary_f1, cut_times
from captioner.video.tagger import TagOptions, VideoTagger

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "media" / "videos"
REAL_TRUTH = {"bikes.mp4": [30, 76, 137, 187, 242], "cockatoo_yuv420.mp4": [], "realshort.mp4": [],
              "vtest_h264_480x360.avi": []}
# bikes (its first 242 frames: cuts at 30, 76, 137, 187), cockatoo (280), vtest (756), bikes, cockatoo
SPEED_PARTS = [("bikes.mp4", 242), ("cockatoo_yuv420.mp4", 280), ("vtest_h264_480x360.avi", 756),
               ("bikes.mp4", 242), ("cockatoo_yuv420.mp4", 280)]
SPEED_TRUTH = [30, 76, 137, 187, 242, 522, 1278, 1308, 1354, 1415, 1465, 1520]
SPEED_SECONDS = 60.0


def ffmpeg(*args: str) -> None:
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", *args], check=True)


def speed_video(work: Path) -> Path:
    path = work / "real_720p_60s.mp4"
    if not path.is_file():
        inputs, chains = [], []
        for number, (name, frames) in enumerate(SPEED_PARTS):
            inputs += ["-i", str(REAL / name)]
            chains.append(f"[{number}:v]trim=end_frame={frames},setpts=N/30/TB,scale=1280:720,setsar=1,"
                          f"format=yuv420p[v{number}]")
        graph = ";".join(chains) + ";" + "".join(f"[v{n}]" for n in range(len(SPEED_PARTS))) + \
            f"concat=n={len(SPEED_PARTS)}:v=1:a=0[out]"
        ffmpeg(*inputs, "-filter_complex", graph, "-map", "[out]", "-r", "30", "-c:v", "libx264", "-preset",
               "veryfast", "-pix_fmt", "yuv420p", str(path))
    return path


def repeated_video(source: Path, times: int) -> Path:
    path = source.with_name(f"{source.stem}_x{times}.mp4")
    if not path.is_file():
        listing = source.with_name("concat.txt")
        listing.write_text(f"file '{source.name}'\n" * times)
        ffmpeg("-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", str(path))
    return path


def folder_of(source: Path, count: int) -> Path:
    folder = source.parent / f"folder_{count}"
    folder.mkdir(exist_ok=True)
    for number in range(count):
        link = folder / f"clip_{number:02d}.mp4"
        if not link.exists():
            link.symlink_to(source.resolve())
    return folder


def our_cuts(path: Path) -> tuple[list[int], list[float], float]:
    started = time.perf_counter()
    cuts = [item for item in analyse_video(path, AnalysisPlan()) if isinstance(item, Cut)]
    return [c.index for c in cuts], [c.time for c in cuts], time.perf_counter() - started


def scenedetect_cuts(path: Path, detector_name: str, backend: str) -> tuple[list[int], list[float], float]:
    """PySceneDetect's detector with its defaults (auto downscale: 720p is read at 1/5)."""
    from scenedetect import AdaptiveDetector, ContentDetector, SceneManager
    from scenedetect import open_video as scenedetect_open

    started = time.perf_counter()
    manager = SceneManager()
    manager.add_detector(AdaptiveDetector() if detector_name == "adaptive" else ContentDetector())
    manager.detect_scenes(scenedetect_open(str(path), backend=backend))
    cuts = [start for start, _ in manager.get_scene_list()[1:]]
    return [c.frame_num for c in cuts], [c.seconds for c in cuts], time.perf_counter() - started


def shot_table(videos: dict[Path, list[int]]) -> None:
    print("\n## Shot detection: ours vs PySceneDetect 0.7 (cut frames; F1 at 0.5 s; seconds)\n")
    backends = {}
    speed = next(path for path in videos if path.name.startswith("real_720p"))
    for detector in ("adaptive", "content"):  # its fastest backend, chosen on the speed file
        seconds = {b: scenedetect_cuts(speed, detector, b)[2] for b in ("opencv", "pyav")}
        backends[detector] = min(seconds, key=seconds.get)
        print(f"- PySceneDetect {detector} on {speed.name}: " +
              ", ".join(f"{b} backend {s:.2f} s" for b, s in seconds.items()))
    print("\n| video | truth | ours | F1 | s | PySceneDetect adaptive | F1 | s | PySceneDetect content | F1 | s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for path, truth in videos.items():
        fps = open_video(path)[1].fps
        truth_times = [f / fps for f in truth]
        cells = [path.name, _short(truth)]
        for frames, times, seconds in (our_cuts(path), scenedetect_cuts(path, "adaptive", backends["adaptive"]),
                                       scenedetect_cuts(path, "content", backends["content"])):
            cells += [_short(frames), f"{boundary_f1(times, truth_times, 0.5)['f1']:.2f}", f"{seconds:.2f}"]
        print("| " + " | ".join(cells) + " |")


def _short(frames: list[int]) -> str:
    return ",".join(map(str, frames)) if len(frames) <= 12 else f"{len(frames)} cuts"


def synthetic_accuracy(captioner: Captioner, videos: list[Path]) -> None:
    f1s, right, segments = [], 0.0, 0
    with VideoTagger(captioner) as tagger:
        for path in videos:
            truth = json.loads(path.with_suffix(".json").read_text())
            result = tagger.tag(path).result
            f1s.append(boundary_f1(cut_times(result["shots"]), cut_times(truth["shots"]), 0.5)["f1"])
            right += segment_attribute_accuracy(result["segments"], truth["shots"]) * len(result["segments"])
            segments += len(result["segments"])
    print(f"\n## Synthetic videos ({len(videos)}): shot-boundary F1 (0.5 s) mean {sum(f1s) / len(f1s):.3f}, "
          f"min {min(f1s):.3f}; segment attribute accuracy {right / segments:.3f} over {segments} segments")


def decode_floor(video: Path) -> tuple[float, float]:
    """Seconds to decode every frame, converting none: PyAV as the tagger opens it, and OpenCV's grab()."""
    started = time.perf_counter()
    container, info = open_video(video)
    for _ in decoded_frames(container, info):
        pass
    container.close()
    pyav = time.perf_counter() - started
    capture = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
    started = time.perf_counter()
    while capture.grab():
        pass
    capture.release()
    return pyav, time.perf_counter() - started


DECODE_PART = """
import sys
from captioner.video.analysis import AnalysisPlan
from captioner.video.frames import decoded_frames, open_video, seek
part, handovers = int(sys.argv[2]), tuple(map(float, sys.argv[3:]))
container, info = open_video(sys.argv[1])
container.streams.video[0].codec_context.thread_count = 1
start = handovers[part - 1] - AnalysisPlan().warm_up_seconds(info.fps) if part else 0.0
end = handovers[part] if part < len(handovers) else float("inf")
for frame in seek(container, info, start) if part else decoded_frames(container, info):
    if frame.time >= end:
        break
"""


def decode_floor_in_parts(video: Path) -> float:
    """Seconds to decode every frame as the tagger reads the video: its parts at once, one thread each."""
    plan = AnalysisPlan(processes=usable_cores())
    items = analyse_video(video, plan)
    next(items)
    handovers = next(items).handovers
    items.close()
    started = time.perf_counter()
    children = [subprocess.Popen([sys.executable, "-c", DECODE_PART, str(video), str(part), *map(str, handovers)])
                for part in range(len(handovers) + 1)]
    for child in children:
        child.wait()
    return time.perf_counter() - started


def command_seconds(checkpoint: str, video: Path, out: Path, *overrides: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "captioner.cli.tag", f"checkpoint={checkpoint}", f"video={video}",
                    f"out_dir={out}", *overrides], check=True, capture_output=True)
    return time.perf_counter() - started


FIRST_PICTURE = """
import sys, time
started = time.perf_counter()
from captioner.video.background import AnalysisProcesses
analyse = AnalysisProcesses.analyse
def timed(self, *args, **kwargs):
    for number, item in enumerate(analyse(self, *args, **kwargs)):
        if number == 1:
            print(f"first picture {time.perf_counter() - started:.3f}", file=sys.stderr)
        yield item
AnalysisProcesses.analyse = timed
from captioner.cli.tag import main
sys.argv = ["captioner-tag", *sys.argv[1:]]
main()
"""


def startup(checkpoint: str, video: Path, out: Path) -> tuple[float, float]:
    """``captioner-tag --help`` seconds, and the seconds from start to the first picture handed over."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "captioner.cli.tag", "--help"], check=True, capture_output=True)
    help_seconds = time.perf_counter() - started
    result = subprocess.run([sys.executable, "-c", FIRST_PICTURE, f"checkpoint={checkpoint}", f"video={video}",
                             f"out_dir={out}"], check=True, capture_output=True, text=True)
    return help_seconds, float(re.search(r"first picture ([0-9.]+)", result.stderr).group(1))


def in_process_seconds(captioner: Captioner, video: Path, processes: int) -> float:
    with VideoTagger(captioner, TagOptions(processes=processes)) as tagger:
        tagger.tag(video)  # warm: the model's first batch, the page cache, the analysis processes
        started = time.perf_counter()
        tagger.tag(video)
        return time.perf_counter() - started


def speed(checkpoint: str, work: Path, repeats: int) -> None:
    """Each figure as the tagger runs by default (a process per core, long videos in parts, the next
    video read while one ends) and with one process per video (``video.processes=1``), interleaved."""
    video = speed_video(work)
    long, folder, out = repeated_video(video, 10), folder_of(video, 10), work / "out"
    captioner = Captioner.load(checkpoint)
    rows: dict[str, list[float]] = {}
    for _ in range(repeats):
        for processes in (0, 1):
            one = [] if processes == 0 else ["video.processes=1"]
            label = "" if processes == 0 else ", one process per video"
            for what, seconds in [
                (f"tagging in process (model loaded){label}", in_process_seconds(captioner, video, processes)),
                (f"whole `captioner-tag` command, the 60 s file{label}", command_seconds(checkpoint, video, out, *one)),
                (f"whole `captioner-tag` command, the 10-minute file{label}",
                 command_seconds(checkpoint, long, out, *one) / 10),
                (f"whole `captioner-tag` command, a folder of ten 60 s files{label}",
                 command_seconds(checkpoint, folder, out, *one) / 10),
            ]:
                rows.setdefault(what, []).append(seconds)
    floors = [decode_floor(video) for _ in range(repeats)]
    rows["decoding alone, PyAV as the tagger opens it, one process (best)"] = [min(f[0] for f in floors)]
    rows["decoding alone, OpenCV `grab()` (best)"] = [min(f[1] for f in floors)]
    rows["decoding alone, in the tagger's parts at once, a thread each (best)"] = [
        min(decode_floor_in_parts(video) for _ in range(repeats))]
    help_seconds, first_picture = startup(checkpoint, video, out)
    print(f"\n## Speed: {video.name} (60 s, 1280x720, 30 fps, H.264), 1 picture/s; medians of {repeats} runs, "
          f"seconds per 60 s of video\n")
    print("| what | seconds | x real time | runs |\n|---|---|---|---|")
    for what, seconds in sorted(rows.items(), key=lambda row: not row[0].startswith("decoding")):
        median = statistics.median(seconds)
        print(f"| {what} | {median:.2f} | {SPEED_SECONDS / median:.1f} | {', '.join(f'{s:.2f}' for s in seconds)} |")
    print(f"\nStart-up: `captioner-tag --help` {help_seconds:.2f} s; the first picture handed over "
          f"{first_picture:.2f} s after the command starts.")


MAX_RSS = """
import resource, sys
from captioner.cli.tag import _main, video_path_shorthand
sys.argv = video_path_shorthand(["captioner-tag", *sys.argv[1:]])
try:
    _main()
except SystemExit:
    pass
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

CHILD_MAX_RSS = """
import pickle, resource, subprocess, sys
from captioner.video.analysis import AnalysisPlan
request = pickle.dumps((sys.argv[1], AnalysisPlan(), 0, None, False))
subprocess.run([sys.executable, "-m", "captioner.video.background"], input=request, stdout=subprocess.DEVNULL,
               check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_memory(checkpoint: str, work: Path) -> None:
    """Peak RSS of the command's own process, and of an analysis process run on its own (measured from
    the command, a child's figure would count the parent's pages it shares between fork and exec)."""
    print("\n## Peak memory (max RSS): the `captioner-tag` process, and the analysis process on its own\n")
    video = speed_video(work)
    for label, path in (("60 s", video), ("10 min", repeated_video(video, 10))):
        command = subprocess.run([sys.executable, "-c", MAX_RSS, f"checkpoint={checkpoint}", f"video={path}",
                                  f"out_dir={work / 'out'}"], check=True, capture_output=True, text=True)
        child = subprocess.run([sys.executable, "-c", CHILD_MAX_RSS, str(path)], check=True, capture_output=True,
                               text=True)
        print(f"- {label}: command {int(command.stdout.split()[-1]) / 1024:.0f} MiB, analysis process "
              f"{int(child.stdout.split()[-1]) / 1024:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="outputs/demo/model.pt")
    parser.add_argument("--work", default="outputs/benchmarks/video", help="where test videos are made and kept")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    if not Path(args.checkpoint).is_file():
        raise SystemExit(f"{args.checkpoint}: not found; run `make demo` first or pass --checkpoint")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print(f"CPU: {cpu_description()}")
    videos = synthetic_videos(work / "synthetic", count=5, num_shots=6)
    synthetic_accuracy(Captioner.load(args.checkpoint), videos)
    truths = {path: REAL_TRUTH[path.name] for path in sorted(REAL.iterdir()) if path.name in REAL_TRUTH}
    truths[speed_video(work)] = SPEED_TRUTH
    for path in videos:
        truths[path] = [s["start_frame"] for s in json.loads(path.with_suffix(".json").read_text())["shots"][1:]]
    shot_table(truths)
    speed(args.checkpoint, work, args.repeats)
    if not args.skip_memory:
        peak_memory(args.checkpoint, work)


if __name__ == "__main__":
    main()
