"""One pass over a video's frames: find its shots and choose the frames to caption.

What comes out, in order: the :class:`VideoInfo`, then :class:`Picture` (a frame to caption, as a
thumbnail) and :class:`Cut` items as they are decided, then :class:`End`. A picture is taken
every ``every_seconds``; a shot that no such picture falls in (shorter than the step) gets one of
its own, the middle of the candidates kept for the last seconds. Nothing else leaves the pass, so
it can run in another process (:mod:`.background`) and hand over a few items per second of video.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from captioner.video.frames import EPSILON, DecodedFrame, VideoInfo, decoded_frames, open_video, picture, upright_size
from captioner.video.shots import ANALYSIS_WIDTH, ShotDetector, ShotOptions

# Frames kept as keyframe candidates for shots shorter than the sampling step: one per this many
# seconds, and every frame that may start a shot, so that each shot has one. They are kept decoded
# and converted only if chosen (rarely), those of the last (every_seconds + 1) seconds, at most
# CANDIDATES_KEPT (a decoded 4K frame is 12 MB; fast motion makes many frames "may start a shot").
CANDIDATE_SECONDS = 0.25
CANDIDATES_KEPT = 16


@dataclass(frozen=True)
class AnalysisPlan:
    every_seconds: float = 1.0  # a picture to caption per this many seconds (by timestamp)
    analyse_every_seconds: float = 0.0  # frames compared for cuts (0: every frame)
    thumbnail_width: int = 320  # pixels: the pictures handed over
    shots: ShotOptions = field(default_factory=ShotOptions)


@dataclass
class Picture:
    index: int
    time: float
    image: np.ndarray  # RGB, upright, at most ``thumbnail_width`` wide
    short_shot: bool = False  # the keyframe of a shot no regular picture fell in


@dataclass(frozen=True)
class Cut:
    index: int  # the first frame of the new shot
    time: float


@dataclass(frozen=True)
class End:
    last_index: int
    duration: float  # the last frame's time and one frame's length
    size: tuple[int, int]  # (height, width) of the frames as shown


def analyse_video(path: str | Path, plan: AnalysisPlan) -> Iterator[VideoInfo | Picture | Cut | End]:
    """The items of one video (see the module); VideoError for a file that cannot be read."""
    container, info = open_video(path)
    try:
        yield info
        yield from _Pass(plan).run(decoded_frames(container, info), info)
    finally:
        container.close()


def next_point(time: float, step: float) -> float:
    """The first multiple of ``step`` after ``time`` (no drift when frames are sparse or irregular)."""
    return (int((time + EPSILON) / step) + 1) * step if step > 0 else 0.0


class _Pass:
    def __init__(self, plan: AnalysisPlan):
        self.plan = plan
        self.detector = ShotDetector(plan.shots)
        self.candidates: deque[DecodedFrame] = deque(maxlen=CANDIDATES_KEPT)  # for shots without a picture
        self.picture_times: deque[float] = deque()  # of the pictures handed over in the last seconds
        self.shot_start = 0.0

    def run(self, frames: Iterator[DecodedFrame], info: VideoInfo) -> Iterator[Picture | Cut | End]:
        plan = self.plan
        next_picture = next_analysis = next_candidate = 0.0
        for decoded in frames:
            time = decoded.time
            if time + EPSILON >= next_picture:
                next_picture = next_point(time, plan.every_seconds)
                self.picture_times.append(time)
                yield Picture(decoded.index, time, picture(decoded.frame, plan.thumbnail_width))
            if time + EPSILON >= next_analysis:
                next_analysis = next_point(time, plan.analyse_every_seconds)
                small = picture(decoded.frame, ANALYSIS_WIDTH, "FAST_BILINEAR", upscale=True)
                cuts = self.detector.add(decoded.index, time, small)
                if time + EPSILON >= next_candidate or self.detector.may_cut():
                    next_candidate = next_point(time, CANDIDATE_SECONDS)
                    self.candidates.append(decoded)
                self._forget_before(time - plan.every_seconds - 1.0)
                for index, cut_time in cuts:
                    yield from self._close_shot(cut_time)
                    yield Cut(index, cut_time)
        for index, cut_time in self.detector.finish():
            yield from self._close_shot(cut_time)
            yield Cut(index, cut_time)
        last = decoded  # decoded_frames raised if there was none
        duration = last.time + (1.0 / info.fps if info.fps > 0 else 0.0)
        yield from self._close_shot(duration + EPSILON)  # the last frame belongs to the last shot
        yield End(last.index, duration, upright_size(last.frame))

    def _close_shot(self, end: float) -> Iterator[Picture]:
        """The shot [shot_start, end) is complete: a picture of its own if none fell in it."""
        start, self.shot_start = self.shot_start, end
        if any(start <= t < end for t in self.picture_times):
            return
        inside = [c for c in self.candidates if start <= c.time < end]
        if inside:
            middle = inside[len(inside) // 2]
            yield Picture(middle.index, middle.time, picture(middle.frame, self.plan.thumbnail_width), short_shot=True)

    def _forget_before(self, time: float) -> None:
        while self.candidates and self.candidates[0].time < time:
            self.candidates.popleft()
        while self.picture_times and self.picture_times[0] < time:
            self.picture_times.popleft()
