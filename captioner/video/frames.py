"""Reading a video once, as a stream, with PyAV (FFmpeg): every frame decoded, few converted, none at full size.

Shot detection compares small images and captioning reads thumbnails, so a frame is turned into
RGB only at the size it is needed, by one swscale call that scales and converts together
(``VideoFrame.to_ndarray(width=..., height=...)``); frames nobody needs are decoded, never
converted. Frames are timed by their presentation timestamps, so variable-frame-rate files come
out right, and turned upright by their display rotation. Nothing is kept: memory does not grow
with the video's length.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from captioner.errors import CaptionerError

VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv",
                              ".ts", ".3gp", ".ogv"})
EPSILON = 1e-6  # seconds: a frame whose time is a hair before a sampling point still counts


class VideoError(CaptionerError):
    """A video that cannot be read; the message names the file and the reason."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason

    def __reduce__(self):  # crosses the process boundary with its two arguments (background.py)
        return VideoError, (self.path, self.reason)


@dataclass(frozen=True)
class VideoInfo:
    path: str
    fps: float  # the container's average rate (frames are timed by their own timestamps)
    header_frames: int  # what the header claims: can be 0 or wrong, used only for progress
    header_seconds: float


@dataclass
class DecodedFrame:
    index: int  # position in presentation order, from 0
    time: float  # presentation time in seconds, from the stream's start
    frame: av.VideoFrame  # decoded, not converted: ``pictures`` converts it at the sizes asked for


def open_video(path: str | Path) -> tuple[av.container.InputContainer, VideoInfo]:
    """An opened container with its video stream set up for fast decoding, and what its header says;
    VideoError otherwise."""
    path = Path(path)
    if not path.exists():
        raise VideoError(path, "no such file")
    if not path.is_file():
        raise VideoError(path, "not a file")
    if path.stat().st_size == 0:
        raise VideoError(path, "empty file")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, UnicodeDecodeError):
        raise VideoError(path, "no video stream FFmpeg can decode (not a video, or damaged)") from None
    if not container.streams.video:
        container.close()
        raise VideoError(path, "no video stream (audio only, or not a video)")
    if not any(_moving(stream) for stream in container.streams.video):
        container.close()
        raise VideoError(path, "no video stream, only a cover picture (an audio file)")
    stream = video_stream(container)
    # frame and slice threads, one per usable core (analysis.py may give fewer): FFmpeg's own choice
    # (cores + 1), and slice threads alone, both decoded slower (benchmarks/README.md, "Video tagging")
    stream.thread_type = "AUTO"
    stream.codec_context.thread_count = min(usable_cores(), 16)
    rate = stream.average_rate or stream.guessed_rate
    fps = float(rate) if rate else 0.0
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    else:
        seconds = container.duration / av.time_base if container.duration else 0.0
    frames = stream.frames or (round(seconds * fps) if fps else 0)
    return container, VideoInfo(str(path), fps, frames, seconds)


def video_stream(container: av.container.InputContainer) -> av.VideoStream:
    """The first stream of moving pictures: an audio file's cover art is a video stream of one picture."""
    return next(stream for stream in container.streams.video if _moving(stream))


def _moving(stream: av.VideoStream) -> bool:
    return not stream.disposition & av.stream.Disposition.attached_pic


def usable_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def decoded_frames(container: av.container.InputContainer, info: VideoInfo) -> Iterator[DecodedFrame]:
    """Every frame in presentation order with its time; a stream that breaks off ends there.

    VideoError if no frame decodes, or if frames stop before half of what the header declares
    (a truncated file: a wrong header is rarely 2x off)."""
    stream = video_stream(container)
    start, time_base = _clock(stream)
    ticks, per_second = time_base.numerator, time_base.denominator  # int / int: exact, and no Fraction a frame
    step = 1.0 / info.fps if info.fps > 0 else 0.04
    index, previous_time = -1, -1.0
    try:
        for frame in container.decode(stream):
            index += 1
            time = (frame.pts - start) * ticks / per_second if frame.pts is not None else -1.0
            if time <= previous_time:  # a missing or repeated timestamp: step by the average rate
                time = previous_time + step
            previous_time = time
            yield DecodedFrame(index, time, frame)
    except av.FFmpegError:
        pass  # damaged from here on: what decoded so far stands, judged below like a short file
    if index < 0:
        raise VideoError(info.path, "no frames could be decoded (empty or damaged video)")
    if info.header_seconds > 1.0 and previous_time < 0.5 * info.header_seconds:
        raise VideoError(info.path, f"truncated or damaged: frames stop at {previous_time:.1f} s of the "
                                    f"{info.header_seconds:.1f} s its header declares")


def seek(container: av.container.InputContainer, info: VideoInfo, seconds: float) -> Iterator[DecodedFrame]:
    """The frames from the keyframe at or before ``seconds`` on (indices counted from there); from the
    start where the container cannot seek there."""
    stream = video_stream(container)
    start, time_base = _clock(stream)
    try:
        container.seek(start + int((seconds + EPSILON) / time_base), stream=stream, backward=True)
        frames = decoded_frames(container, info)
        first = next(frames)
    except (av.FFmpegError, VideoError, StopIteration):
        first = None
    if first is None or first.time > seconds + EPSILON:
        container.seek(start, stream=stream, backward=True)
        frames = decoded_frames(container, info)
    else:
        yield first
    yield from frames


def keyframe_near(container: av.container.InputContainer, seconds: float) -> float | None:
    """The time of the keyframe nearest ``seconds`` (the nearest before or after), by two seeks that
    read one packet each; None if the container cannot seek."""
    stream = video_stream(container)
    start, time_base = _clock(stream)
    found = []
    for backward in (True, False):
        try:
            container.seek(start + int(seconds / time_base), stream=stream, backward=backward)
            packet = next((p for p in container.demux(stream) if p.pts is not None), None)
        except av.FFmpegError:
            return None
        if packet is not None and packet.is_keyframe:
            found.append(float((packet.pts - start) * time_base))
    return min(found, key=lambda time: abs(time - seconds)) if found else None


def _clock(stream: av.video.stream.VideoStream) -> tuple[int, Fraction]:
    """The stream's first timestamp and its time base (a common one where the file gives none)."""
    return stream.start_time or 0, stream.time_base or Fraction(1, 90000)


def upright_size(frame: av.VideoFrame) -> tuple[int, int]:
    """(height, width) as the frame is shown, its display rotation applied."""
    return (frame.width, frame.height) if frame.rotation % 180 else (frame.height, frame.width)


def picture(frame: av.VideoFrame, width: int, interpolation: str = "AREA", upscale: bool = False,
            scaler: VideoReformatter | None = None) -> np.ndarray:
    """The frame upright as (H, W, 3) RGB, ``width`` wide (aspect kept; never wider than the frame
    unless ``upscale``), scaled and converted in one single-threaded swscale call (its default
    threading was slower for such small images). ``scaler``: one kept for frames of one size and format
    keeps its swscale context, which a frame's own builds anew on each call (benchmarks/README.md,
    "Video tagging")."""
    height, full_width = upright_size(frame)
    if full_width <= width and not upscale:
        width = full_width
    height = max(1, round(height * width / full_width))
    turns = (frame.rotation // 90) % 4
    coded = (width, height) if turns % 2 == 0 else (height, width)
    scaled = (scaler or VideoReformatter()).reformat(frame, coded[0], coded[1], "rgb24", interpolation=interpolation,
                                                    threads=1)
    image = scaled.to_ndarray()
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image
