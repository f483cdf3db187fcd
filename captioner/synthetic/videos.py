"""Synthetic videos: shots of synthetic scenes whose objects drift, joined by hard cuts, with ground truth.

Each shot is one scene (as in the image dataset, rendered at the same 64 px and scaled up with
nearest-neighbour, so a model trained on the images sees the same pixels); all its objects move
together, so the scene's relations stay true for the whole shot. ``VIDEO.json`` beside
``VIDEO.webm`` holds the shots (frames and seconds), each shot's scene and reference captions.

WebM (VP8, which OpenCV's FFmpeg writes) rather than MPEG-4 Part 2: browsers play it, so the
video page of a synthetic video works; cuts and captions are found as in mp4v files
(benchmarks/README.md, "Pictures and pages").
"""

from __future__ import annotations

import os
import random
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from captioner.errors import CaptionerError
from captioner.io import atomic_open, write_json
from captioner.synthetic.scenes import SIZES, Scene, describe_scene, render_scene, sample_scene

SCENE_SIZE = 64  # pixels: the size the image dataset is rendered at


def make_video(path: str | Path, seed: int = 0, num_shots: int = 5, shot_seconds: tuple[float, float] = (2.0, 4.0),
               fps: float = 10.0, frame_size: tuple[int, int] = (192, 192), max_drift: float = 0.15) -> dict:
    """Write a synthetic video and its ground truth (``path`` with ``.json``); returns the ground truth."""
    path = Path(path)
    rng = random.Random(f"video-{seed}")
    width, height = frame_size
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp{path.suffix}")
    writer = cv2.VideoWriter(str(temp), cv2.VideoWriter_fourcc(*"VP80"), fps, (width, height))
    if not writer.isOpened():
        raise CaptionerError(f"{path}: OpenCV cannot write VP8 (WebM) video here")
    shots, frame = [], 0
    try:
        for _ in range(num_shots):
            scene = sample_scene(rng)
            frames = max(2, round(rng.uniform(*shot_seconds) * fps))
            start_shift, end_shift = _drift(scene, rng, max_drift)
            background_seed = rng.getrandbits(32)
            for i in range(frames):
                progress = i / (frames - 1)
                shift = tuple(a + (b - a) * progress for a, b in zip(start_shift, end_shift))
                image = render_scene(_moved(scene, shift), SCENE_SIZE, random.Random(background_seed))
                bgr = cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2BGR)
                writer.write(cv2.resize(bgr, (width, height), interpolation=cv2.INTER_NEAREST))
            shots.append({"start_frame": frame, "end_frame": frame + frames - 1, "start": round(frame / fps, 4),
                          "end": round((frame + frames) / fps, 4), "scene": scene.to_json(),
                          "captions": describe_scene(scene, rng)})
            frame += frames
    except BaseException:
        writer.release()
        temp.unlink(missing_ok=True)
        raise
    writer.release()
    with atomic_open(path, "wb") as handle:  # fsync + rename, as every output
        handle.write(temp.read_bytes())
    os.unlink(temp)
    truth = {"video": path.name, "fps": fps, "frames": frame, "width": width, "height": height, "shots": shots}
    write_json(path.with_suffix(".json"), truth)
    return truth


def synthetic_videos(root: str | Path = "data/synthetic_videos", count: int = 3, seed: int = 0,
                     **settings) -> list[Path]:
    """``count`` videos under ``root`` (made on first use, reused after); their paths."""
    root = Path(root)
    paths = [root / f"video_{seed + i:03d}.webm" for i in range(count)]
    for index, path in enumerate(paths):
        if not (path.is_file() and path.with_suffix(".json").is_file()):
            make_video(path, seed=seed + index, **settings)
    return paths


def _drift(scene: Scene, rng: random.Random, max_drift: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """Start and end offsets of the whole layout that keep every object inside the frame."""
    radius = {o: SIZES[o.size] for o in scene.objects}
    low_x = -min(o.x - radius[o] for o in scene.objects)
    high_x = 1 - max(o.x + radius[o] for o in scene.objects)
    low_y = -min(o.y - radius[o] for o in scene.objects)
    high_y = 1 - max(o.y + radius[o] for o in scene.objects)

    def point() -> tuple[float, float]:
        return (rng.uniform(max(low_x, -max_drift / 2), min(high_x, max_drift / 2)),
                rng.uniform(max(low_y, -max_drift / 2), min(high_y, max_drift / 2)))

    return point(), point()


def _moved(scene: Scene, shift: tuple[float, float]) -> Scene:
    objects = tuple(replace(o, x=o.x + shift[0], y=o.y + shift[1]) for o in scene.objects)
    return Scene(objects, scene.relations)


if __name__ == "__main__":  # python -m captioner.synthetic.videos [ROOT] [COUNT]: make them, print their paths
    import sys

    root = sys.argv[1] if len(sys.argv) > 1 else "data/synthetic_videos"
    for made in synthetic_videos(root, count=int(sys.argv[2]) if len(sys.argv) > 2 else 3):
        print(made)
