"""Reading a video once, as a stream: the frames shot detection compares and the frames to caption.

Frames are chosen by their presentation time (``CAP_PROP_POS_MSEC``), not their index, so
variable-frame-rate files come out right; frames nobody needs are only ``grab()``-ed (decoded,
never converted to BGR). Nothing is kept: memory does not grow with the video's length.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from queue import Full, Queue

import cv2
import numpy as np

from captioner.errors import CaptionerError

# FFmpeg's own messages ("moov atom not found", h264 decode errors) would bury our one-line
# errors; OpenCV reads this when it first opens a video. Set it to 24 to see them again.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv",
                              ".ts", ".3gp", ".ogv"})
_EPSILON = 1e-6  # seconds: a frame whose time is a hair before a sampling point still counts


class VideoError(CaptionerError):
    """A video that cannot be read; the message names the file and the reason."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


@dataclass(frozen=True)
class VideoInfo:
    path: str
    fps: float  # the container's average rate (frames are timed by their own timestamps)
    header_frames: int  # what the header claims: can be 0 or wrong, used only for progress
    header_seconds: float


@dataclass
class Frame:
    index: int  # position in decoding order, from 0
    time: float  # presentation time in seconds
    image: np.ndarray  # (H, W, 3) BGR uint8
    analyse: bool  # due for shot detection
    sample: bool  # due for captioning


def open_video(path: str | Path) -> tuple[cv2.VideoCapture, VideoInfo]:
    """An opened capture (rotation metadata applied) and what its header says; VideoError otherwise.

    Frame sizes are taken from the decoded frames, not from here (the header's ignore rotation)."""
    path = Path(path)
    if not path.exists():
        raise VideoError(path, "no such file")
    if not path.is_file():
        raise VideoError(path, "not a file")
    if path.stat().st_size == 0:
        raise VideoError(path, "empty file")
    log_level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # our one line says why, not OpenCV's warnings
    try:
        capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    finally:
        cv2.utils.logging.setLogLevel(log_level)
    if not capture.isOpened():
        raise VideoError(path, "no video stream OpenCV can decode (not a video, audio only, or damaged)")
    capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)  # frames come out upright (tested with a 90-degree file)
    fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
    frames = max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
    info = VideoInfo(str(path), fps, frames, frames / fps if fps > 0 else 0.0)
    return capture, info


def stream_frames(capture: cv2.VideoCapture, info: VideoInfo, every_seconds: float,
                  analyse_every_seconds: float) -> Iterator[Frame]:
    """One pass: the frames due for captioning (one per ``every_seconds``) or for shot detection
    (one per ``analyse_every_seconds``, 0: every frame), in order. Others are grabbed, not converted."""
    next_sample = next_analysis = 0.0
    index = -1
    previous_time = -1.0
    while capture.grab():
        index += 1
        time = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        if time <= previous_time:  # a missing or repeated timestamp: step by the average rate
            time = previous_time + (1.0 / info.fps if info.fps > 0 else 0.04)
        previous_time = time
        analyse = time + _EPSILON >= next_analysis
        sample = time + _EPSILON >= next_sample
        if not (analyse or sample):
            continue
        ok, image = capture.retrieve()
        if not ok or image is None:
            continue
        if analyse:
            next_analysis = _next_point(time, analyse_every_seconds)
        if sample:
            next_sample = _next_point(time, every_seconds)
        yield Frame(index, time, image, analyse, sample)
    if index < 0:
        raise VideoError(info.path, "no frames could be decoded (empty or damaged video)")
    if info.header_seconds > 1.0 and previous_time < 0.5 * info.header_seconds:  # a wrong header is rarely 2x off
        raise VideoError(info.path, f"truncated or damaged: frames stop at {previous_time:.1f} s of the "
                                    f"{info.header_seconds:.1f} s its header declares")


def _next_point(time: float, step: float) -> float:
    """The first multiple of ``step`` after ``time`` (no drift when frames are sparse or irregular)."""
    return (int((time + _EPSILON) / step) + 1) * step if step > 0 else 0.0


_END = object()


def read_ahead(frames: Iterator[Frame], size: int = 4) -> Iterator[Frame]:
    """The same frames (and errors), read by a thread while the caller works on the previous ones.

    OpenCV releases the GIL while it decodes and converts, so decoding overlaps with shot detection
    and captioning. At most ``size`` frames wait: memory stays flat. Close the returned generator
    before releasing the capture (the thread is joined then).
    """
    queue: Queue = Queue(maxsize=size)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                queue.put(item, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def produce() -> None:
        try:
            for frame in frames:
                if not put(frame):
                    return
            put(_END)
        except BaseException as error:  # handed to the caller's thread, raised there
            put(error)

    thread = threading.Thread(target=produce, name="video-reader", daemon=True)
    thread.start()
    try:
        while (item := queue.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
