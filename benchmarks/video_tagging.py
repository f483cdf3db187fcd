"""Video tagging figures: shot F1 and segment accuracy on synthetic videos, cuts on real videos,
PySceneDetect side by side, speed on a 60 s 720p video and peak memory for 1 vs 10 minutes.

    .venv/bin/python benchmarks/video_tagging.py [--checkpoint outputs/demo/model.pt] [--skip-memory]

Needs the benchmark extras (``pip install -e ".[bench]"``: scenedetect, imageio-ffmpeg).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from captioner import Captioner
from captioner.synthetic.scoring import segment_attribute_accuracy
from captioner.synthetic.videos import synthetic_videos
from captioner.video.export import export_all
from captioner.video.frames import open_video, stream_frames
from captioner.video.scoring import boundary_f1, cut_times
from captioner.video.shots import ShotDetector
from captioner.video.tagger import VideoTagger

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "media" / "videos"
REAL_TRUTH = {"bikes.mp4": [30, 76, 137, 187, 242], "cockatoo_yuv420.mp4": [], "realshort.mp4": [],
              "vtest_h264_480x360.avi": []}


def our_cuts(path: Path) -> tuple[list[int], list[float], float]:
    started = time.perf_counter()
    capture, info = open_video(path)
    detector, cuts = ShotDetector(), []
    for frame in stream_frames(capture, info, 1.0, 0.0):
        cuts += detector.add(frame.index, frame.time, frame.image)
    cuts += detector.finish()
    return [i for i, _ in cuts], [t for _, t in cuts], time.perf_counter() - started


def scenedetect_cuts(path: Path, detector_name: str) -> tuple[list[int], list[float], float]:
    from scenedetect import AdaptiveDetector, ContentDetector, detect

    started = time.perf_counter()
    detector = AdaptiveDetector() if detector_name == "adaptive" else ContentDetector()
    scenes = detect(str(path), detector)
    cuts = [start for start, _ in scenes[1:]]
    return [c.get_frames() for c in cuts], [c.get_seconds() for c in cuts], time.perf_counter() - started


def shot_table(videos: list[Path]) -> None:
    print("\n## Shot detection: ours vs PySceneDetect (cut frames; F1 at 0.5 s where the truth is known)\n")
    print("| video | truth | ours | F1 | s | PySceneDetect adaptive | F1 | s | PySceneDetect content | F1 | s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for path in videos:
        if path.name in REAL_TRUTH:
            truth_frames = REAL_TRUTH[path.name]
            fps = open_video(path)[1].fps
            truth_times = [f / fps for f in truth_frames]
        else:
            shots = json.loads(path.with_suffix(".json").read_text())["shots"]
            truth_frames, truth_times = [s["start_frame"] for s in shots[1:]], cut_times(shots)
        cells = [path.name, _short(truth_frames)]
        for frames, times, seconds in (our_cuts(path), scenedetect_cuts(path, "adaptive"),
                                       scenedetect_cuts(path, "content")):
            cells += [_short(frames), f"{boundary_f1(times, truth_times, 0.5)['f1']:.2f}", f"{seconds:.2f}"]
        print("| " + " | ".join(cells) + " |")


def _short(frames: list[int]) -> str:
    return ",".join(map(str, frames)) if len(frames) <= 8 else f"{len(frames)} cuts"


def synthetic_accuracy(captioner: Captioner, videos: list[Path]) -> None:
    tagger = VideoTagger(captioner)
    f1s, right, segments = [], 0.0, 0
    for path in videos:
        truth = json.loads(path.with_suffix(".json").read_text())
        result = tagger.tag(path).result
        f1s.append(boundary_f1(cut_times(result["shots"]), cut_times(truth["shots"]), 0.5)["f1"])
        right += segment_attribute_accuracy(result["segments"], truth["shots"]) * len(result["segments"])
        segments += len(result["segments"])
    print(f"\n## Synthetic videos ({len(videos)}): shot-boundary F1 (0.5 s) mean {sum(f1s) / len(f1s):.3f}, "
          f"min {min(f1s):.3f}; segment attribute accuracy {right / segments:.3f} over {segments} segments")


def real_exports(captioner: Captioner) -> None:
    tagger = VideoTagger(captioner)
    with tempfile.TemporaryDirectory() as out:
        for path in sorted(REAL.iterdir()):
            written = export_all(tagger.tag(path), out, path.stem)
            size = sum(p.stat().st_size for p in written)
            print(f"{path.name}: wrote {', '.join(p.name for p in written)} ({size} bytes)")


def ffmpeg(*args: str) -> None:
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", *args], check=True)


def test_video(path: Path, seconds: int, size: str) -> Path:
    """An H.264 video of moving test patterns (``testsrc2``), 30 fps."""
    if not path.is_file():
        ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30:duration={seconds}", "-c:v", "libx264",
               "-preset", "veryfast", "-pix_fmt", "yuv420p", str(path))
    return path


def read_seconds(video: Path, convert: bool) -> float:
    """Seconds to decode every frame (``grab()``), and with ``convert`` also turn each into BGR (``retrieve()``)."""
    capture, _ = open_video(video)
    started = time.perf_counter()
    while capture.grab():
        if convert:
            capture.retrieve()
    capture.release()
    return time.perf_counter() - started


def speed(checkpoint: str, work: Path) -> None:
    video = test_video(work / "speed_720p_60s.mp4", 60, "1280x720")
    captioner = Captioner.load(checkpoint)
    tagger = VideoTagger(captioner)
    tagger.tag(test_video(work / "warmup.mp4", 2, "1280x720"))
    started = time.perf_counter()
    tagger.tag(video)
    in_process = time.perf_counter() - started
    decode_only, decode_convert = read_seconds(video, convert=False), read_seconds(video, convert=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "captioner.cli.tag", f"checkpoint={checkpoint}", f"video={video}",
                    f"out_dir={work / 'out'}"], check=True, capture_output=True)
    whole = time.perf_counter() - started
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, torchvision"], check=True)
    imports = time.perf_counter() - started
    print(f"\n## Speed: 60 s 1280x720 30 fps H.264, 1 sample/s\n\n"
          f"- decoding alone (grab every frame): {decode_only:.2f} s = {60 / decode_only:.1f}x real time\n"
          f"- decoding and converting every frame to BGR (what comparing every frame needs): {decode_convert:.2f} s = "
          f"{60 / decode_convert:.1f}x real time\n"
          f"- tagging in process (model loaded): {in_process:.2f} s = {60 / in_process:.1f}x real time\n"
          f"- whole `captioner-tag` command (Python start, imports, model load, exports): {whole:.2f} s = "
          f"{60 / whole:.1f}x real time\n"
          f"- of which the floor any command pays, `python -c 'import torch, torchvision'`: {imports:.2f} s "
          f"(20x real time is 3.00 s in all)")


def peak_memory(checkpoint: str, work: Path) -> None:
    print("\n## Peak memory (max RSS of a `captioner-tag` process), 640x360 30 fps H.264\n")
    for minutes in (1, 10):
        video = test_video(work / f"memory_{minutes}min.mp4", minutes * 60, "640x360")
        code = ("import resource, sys; from captioner.cli.tag import main; sys.argv = ['tag', *sys.argv[1:]]\n"
                "try:\n    main()\nexcept SystemExit:\n    pass\n"
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
        result = subprocess.run([sys.executable, "-c", code, f"checkpoint={checkpoint}", f"video={video}",
                                 f"out_dir={work / 'out'}"], check=True, capture_output=True, text=True)
        print(f"- {minutes} min: {int(result.stdout.strip().splitlines()[-1]) / 1024:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="outputs/demo/model.pt")
    parser.add_argument("--work", default="outputs/benchmarks/video", help="where test videos are made and kept")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    if not Path(args.checkpoint).is_file():
        raise SystemExit(f"{args.checkpoint}: not found; run `make demo` first or pass --checkpoint")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    captioner = Captioner.load(args.checkpoint)
    videos = synthetic_videos(work / "synthetic", count=5, num_shots=6)
    synthetic_accuracy(captioner, videos)
    print("\n## Real videos: every file produces all exports\n")
    real_exports(captioner)
    shot_table(sorted(REAL.iterdir()) + videos)
    speed(args.checkpoint, work)
    if not args.skip_memory:
        peak_memory(args.checkpoint, work)


if __name__ == "__main__":
    main()
