"""One pass over a video's frames: find its shots and choose the frames to caption.

What comes out, in order: the :class:`VideoInfo`, then :class:`Picture` (a frame to caption, as a
thumbnail) and :class:`Cut` items as they are decided, then :class:`End`. A picture is taken
every ``every_seconds``; a shot that no such picture falls in (shorter than the step) gets one of
its own, the middle of the candidates kept for the last seconds. Nothing else leaves the pass, so
it can run in another process (:mod:`.background`) and hand over a few items per second of video.

A long video can be read in parts, each by its own process (:func:`part_handovers`): on 2 cores
two single-threaded decoders beside each other read 720p H.264 1.45x faster than one decoder on
two threads (benchmarks/README.md, "Video tagging"). Part ``k`` owns the frames timed in
``[handovers[k - 1], handovers[k])``: it hands over the pictures taken at them and the cuts
decided at them. Each part begins at a keyframe ``warm_up_seconds`` before its handover and runs
the same pass from there, so by the handover its state (the last frames compared, the last cut,
the pictures and candidates of the last seconds) is the state a single pass has at that time; a
part that is not the last reads on until the cuts before its end are decided, and ends with a
:class:`PartEnd`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from captioner.video.frames import (
    EPSILON,
    DecodedFrame,
    VideoInfo,
    decoded_frames,
    keyframe_near,
    open_video,
    picture,
    seek,
    upright_size,
    usable_cores,
    video_stream,
)
from captioner.video.shots import ANALYSIS_WIDTH, ShotDetector, ShotOptions

# Frames kept as keyframe candidates for shots shorter than the sampling step: one per this many
# seconds, and every frame that may start a shot, so that each shot has one. They are kept decoded
# and converted only if chosen (rarely), those of the last (every_seconds + 1) seconds, at most
# CANDIDATES_KEPT (a decoded 4K frame is large; fast motion makes many frames "may start a shot").
CANDIDATE_SECONDS = 0.25
CANDIDATES_KEPT = 16


@dataclass(frozen=True)
class AnalysisPlan:
    every_seconds: float = 1.0  # a picture to caption per this many seconds (by timestamp)
    analyse_every_seconds: float = 0.0  # frames compared for cuts (0: every frame)
    thumbnail_width: int = 320  # pixels: the pictures handed over
    shots: ShotOptions = field(default_factory=ShotOptions)
    processes: int = 1  # processes that may read one video at once, each a part of it
    part_seconds: float = 20.0  # parts are at least this long (shorter videos are read in one)

    def warm_up_seconds(self, fps: float) -> float:
        """How far back a part starts reading: what the pass keeps (pictures and candidates of the last
        ``every_seconds`` + 1 s, the last cut for ``min_shot_seconds``, ``window`` compared frames either
        side), and half a second to spare."""
        frame_step = self.analyse_every_seconds or (1.0 / fps if fps > 0 else 0.04)
        return self.every_seconds + 1.0 + self.shots.min_shot_seconds + (self.shots.window + 1) * frame_step + 0.5


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
class Parts:
    handovers: tuple[float, ...]  # seconds at which part k + 1 takes over from part k; () when read in one


@dataclass(frozen=True)
class PartEnd:
    frames: int  # the frames this part owns: the next part's frame indices continue from here


@dataclass(frozen=True)
class End:
    last_index: int
    duration: float  # the last frame's time and one frame's length
    size: tuple[int, int]  # (height, width) of the frames as shown


def analyse_video(path: str | Path, plan: AnalysisPlan, part: int = 0, handovers: tuple[float, ...] | None = None,
                  beside_another: bool = False) -> Iterator[VideoInfo | Parts | Picture | Cut | PartEnd | End]:
    """The items of one video (see the module); VideoError for a file that cannot be read.

    With ``plan.processes`` > 1 and no ``handovers`` given, the :class:`Parts` it is to be read in follow
    the VideoInfo and the items are those of part 0; with ``handovers``, those of ``part``. A part's
    frame indices count from its first frame (its pictures before that, negative). The cores are shared
    by the parts read at once (``beside_another``: another video is being read too)."""
    container, info = open_video(path)
    try:
        yield info
        if handovers is None and plan.processes > 1:
            handovers = part_handovers(path, info, plan, beside_another)
            yield Parts(handovers)
        handovers = handovers or ()
        at_once = plan.processes if beside_another else min(len(handovers) + 1, plan.processes)
        video_stream(container).codec_context.thread_count = max(1, min(usable_cores() // at_once, 16))
        start = handovers[part - 1] if part > 0 else -math.inf
        end = handovers[part] if part < len(handovers) else math.inf
        frames = seek(container, info, start - plan.warm_up_seconds(info.fps)) if part > 0 else \
            decoded_frames(container, info)
        yield from _Pass(plan, start, end).run(frames, info)
    finally:
        container.close()


def part_handovers(path: str | Path, info: VideoInfo, plan: AnalysisPlan,
                   beside_another: bool = False) -> tuple[float, ...]:
    """Where the parts of a video meet: as many parts as ``plan.processes``, each at least
    ``plan.part_seconds`` long, and more (a multiple of the processes) where a part would be over three
    times that (a part waiting its turn keeps its items: bounded). Each part starts reading at a
    keyframe, ``warm_up_seconds`` before its handover; the keyframes are those nearest the points that
    give every part the same seconds to read, its warm-up included. () if the video is short, or its
    keyframes cannot be found, or if it is no longer than the longest part and another video is read
    beside it: the two keep the cores busy without the parts' warm-up."""
    seconds, longest_part = info.header_seconds, 3 * plan.part_seconds
    count = min(plan.processes, int(seconds // plan.part_seconds))
    if count < 2 or (beside_another and seconds <= longest_part):
        return ()
    count *= math.ceil(seconds / (count * longest_part))
    warm_up = plan.warm_up_seconds(info.fps)
    try:  # its own container: the one the part reads stays at the start
        container = av.open(str(path))
    except av.FFmpegError:
        return ()
    try:
        keyframes = [keyframe_near(container, (seconds - warm_up) * k / count) for k in range(1, count)]
    finally:
        container.close()
    handovers = [keyframe + warm_up for keyframe in keyframes if keyframe is not None]
    spaced = all(b - a >= 0.5 * plan.part_seconds for a, b in zip([0.0, *handovers], [*handovers, seconds]))
    return tuple(handovers) if len(handovers) == count - 1 and spaced else ()


def next_point(time: float, step: float) -> float:
    """The first multiple of ``step`` after ``time`` (no drift when frames are sparse or irregular)."""
    return (int((time + EPSILON) / step) + 1) * step if step > 0 else 0.0


class _Pass:
    """The pass over the frames of ``[start, end)`` and the seconds before it: everything is computed as
    in one pass over the whole video, and what is decided outside the range is not handed over."""

    def __init__(self, plan: AnalysisPlan, start: float = -math.inf, end: float = math.inf):
        self.plan, self.start, self.end = plan, start, end
        self.detector = ShotDetector(plan.shots)
        self.candidates: deque[DecodedFrame] = deque(maxlen=CANDIDATES_KEPT)  # for shots without a picture
        self.picture_times: deque[float] = deque()  # of the pictures taken in the last seconds
        self.shot_start = 0.0
        self.first_owned: int | None = 0 if start == -math.inf else None  # the index of the first frame from start
        self.compared_scaler, self.picture_scaler = VideoReformatter(), VideoReformatter()

    def owns(self, time: float) -> bool:
        return self.start <= time < self.end

    def run(self, frames: Iterator[DecodedFrame], info: VideoInfo) -> Iterator[Picture | Cut | PartEnd | End]:
        plan = self.plan
        next_picture = next_analysis = next_candidate = 0.0
        compared_after_end, end_index = 0, None
        for decoded in frames:
            time = decoded.time
            if self.first_owned is None and time >= self.start:
                self.first_owned = decoded.index
            if time >= self.end:
                end_index = decoded.index if end_index is None else end_index
                if compared_after_end > plan.shots.window:  # every cut before the end is decided
                    break
            if time + EPSILON >= next_picture:
                next_picture = next_point(time, plan.every_seconds)
                self.picture_times.append(time)
                if self.owns(time):
                    yield self._picture(decoded)
            if time + EPSILON >= next_analysis:
                next_analysis = next_point(time, plan.analyse_every_seconds)
                compared_after_end += time >= self.end
                small = picture(decoded.frame, ANALYSIS_WIDTH, "FAST_BILINEAR", upscale=True,
                                scaler=self.compared_scaler)
                cuts = self.detector.add(decoded.index, time, small)
                if time + EPSILON >= next_candidate or self.detector.may_cut():
                    next_candidate = next_point(time, CANDIDATE_SECONDS)
                    self.candidates.append(decoded)
                self._forget_before(time - plan.every_seconds - 1.0)
                for index, cut_time in cuts:
                    yield from self._cut(index, cut_time)
        if end_index is not None:  # the next part goes on from there (and ends the video if it ends here)
            yield PartEnd(end_index - self.first_owned)
            return
        if self.first_owned is None:  # the video ended before this part: the part before ended it
            return
        for index, cut_time in self.detector.finish():
            yield from self._cut(index, cut_time)
        last = decoded  # decoded_frames raised if there was none
        duration = last.time + (1.0 / info.fps if info.fps > 0 else 0.0)
        yield from self._close_shot(duration + EPSILON)  # the last frame belongs to the last shot
        yield End(last.index - self.first_owned, duration, upright_size(last.frame))

    def _picture(self, decoded: DecodedFrame, short_shot: bool = False) -> Picture:
        image = picture(decoded.frame, self.plan.thumbnail_width, scaler=self.picture_scaler)
        return Picture(decoded.index - self.first_owned, decoded.time, image, short_shot)

    def _cut(self, index: int, time: float) -> Iterator[Picture | Cut]:
        """A cut decided: the shot before it closes (with a picture of its own if none fell in it)."""
        yield from self._close_shot(time)
        if self.owns(time):
            yield Cut(index - self.first_owned, time)

    def _close_shot(self, end: float) -> Iterator[Picture]:
        """The shot [shot_start, end) is complete: a picture of its own if none fell in it."""
        start, self.shot_start = self.shot_start, end
        if any(start <= t < end for t in self.picture_times):
            return
        inside = [c for c in self.candidates if start <= c.time < end]
        if inside and self.owns(end):  # the part that decides the cut hands the picture over
            yield self._picture(inside[len(inside) // 2], short_shot=True)

    def _forget_before(self, time: float) -> None:
        while self.candidates and self.candidates[0].time < time:
            self.candidates.popleft()
        while self.picture_times and self.picture_times[0] < time:
            self.picture_times.popleft()
