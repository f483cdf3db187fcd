"""Tag a video: sample frames, find shots, caption keyframes in batches, merge into segments and tags.

The frames are read, compared for cuts and chosen for captioning in one pass by a child process
(:mod:`captioner.video.analysis`, :mod:`.background`); this process captions what it hands over,
in batches, and builds shots, segments and tags. Memory stays flat with the video's length: what
is kept per second of video is one caption and a few numbers, plus one thumbnail per shot for the
contact sheet (and at most ``SHOT_THUMBNAILS`` for the shot still open).
"""

from __future__ import annotations

import bisect
import math
import sys
from collections import Counter
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from tqdm import tqdm

from captioner.decode_options import DecodeOptions
from captioner.errors import CaptionerError
from captioner.video.analysis import AnalysisPlan, Cut, End, Picture
from captioner.video.background import AnalysisProcesses
from captioner.video.frames import VideoInfo, usable_cores
from captioner.video.shots import ShotOptions
from captioner.video.tags import content_words, similarity

if TYPE_CHECKING:
    from captioner.api import Captioner

SCHEMA_VERSION = 1
# Thumbnails kept for the open shot, candidates for its keyframe. A longer shot keeps every 2nd,
# 4th ... sample's: its keyframe is then the kept sample nearest its middle. Without this bound a
# single-shot video holds a thumbnail per sample, and memory grows with its length.
SHOT_THUMBNAILS = 32
# torch's threads while pictures are captioned: the analysis process decodes on the other cores.
# Both on all cores oversubscribe the CPU (benchmarks/README.md, "Video tagging").
CAPTION_THREADS = max(1, usable_cores() // 2)


@dataclass(frozen=True)
class TagOptions:
    """The ``video`` config group."""

    every_seconds: float = 1.0  # one captioned sample per this many seconds
    shot_detect_fps: float = 0.0  # frames per second compared for cuts (0: every frame)
    merge_similarity: float = 0.6  # consecutive captions of a shot this alike (content words) merge
    batch_size: int = 16  # keyframes captioned together
    thumbnail_width: int = 320  # pixels, keyframes kept for the contact sheet
    shots: ShotOptions = field(default_factory=ShotOptions)
    processes: int = 0  # processes reading videos at once, a long video in parts (0: one per usable core)

    def __post_init__(self):
        checks = [(self.processes >= 0, f"video.processes must be >= 0 (0: one per usable core), got {self.processes}"),
                  (math.isfinite(self.every_seconds) and self.every_seconds > 0,
                   f"video.every_seconds must be a number > 0, got {self.every_seconds}"),
                  (math.isfinite(self.shot_detect_fps) and self.shot_detect_fps >= 0,
                   f"video.shot_detect_fps must be a number >= 0 (0: every frame), got {self.shot_detect_fps}"),
                  (self.batch_size >= 1, f"video.batch_size must be >= 1, got {self.batch_size}"),
                  (self.thumbnail_width >= 1, f"video.thumbnail_width must be >= 1, got {self.thumbnail_width}")]
        for ok, message in checks:
            if not ok:
                raise CaptionerError(message)

    def analysis_plan(self) -> AnalysisPlan:
        analyse_every = 1.0 / self.shot_detect_fps if self.shot_detect_fps > 0 else 0.0
        return AnalysisPlan(self.every_seconds, analyse_every, self.thumbnail_width, self.shots,
                            processes=self.processes or usable_cores())


@dataclass
class Sample:
    time: float
    frame: int
    thumbnail: np.ndarray | None = None  # RGB, until the shot's keyframe is chosen
    caption: str = ""


@dataclass
class TaggedVideo:
    result: dict  # the JSON document (schema in the README)
    keyframes: list[dict]  # per shot: start, caption, thumbnail (RGB), for the contact sheet


class VideoTagger:
    """Tags videos with one :class:`Captioner` (the same object the CLI and API caption images with);
    ``decode`` takes the decoding options as the Captioner's methods do (``beam_size=3`` ...).

    ``captioner`` may also be a Future of one (the command loads the model while the first video is
    read): pictures wait for it, the reading does not."""

    def __init__(self, captioner: Captioner | Future, options: TagOptions = TagOptions(), **decode):
        self.captioner, self.options = captioner, options
        self.decode = asdict(DecodeOptions(**decode))  # checked once, here
        self.processes = AnalysisProcesses()

    def close(self) -> None:
        """End the analysis process kept ready for the next video (it also ends with this process)."""
        self.processes.close()

    def __enter__(self) -> VideoTagger:
        return self

    def __exit__(self, *error) -> None:
        self.close()

    def model(self, wait: bool) -> Captioner | None:
        """The captioner; None while a Future of it is not done, unless ``wait``."""
        if isinstance(self.captioner, Future):
            return self.captioner.result() if wait or self.captioner.done() else None
        return self.captioner

    def tag(self, path: str | Path, progress: bool = False, then: str | Path | None = None) -> TaggedVideo:
        """``then``: the video to be tagged next, if any: it starts being read while this one ends."""
        items = self.processes.analyse(path, self.options.analysis_plan(), then=then)
        try:
            run = _Run(self, next(items))
            bar = tqdm(total=int(run.info.header_seconds) or None, unit="s", desc=Path(path).name, file=sys.stderr,
                       disable=not progress, mininterval=0.1 if sys.stderr.isatty() else 15)
            with bar:
                for item in items:
                    run.add(item)
                    if isinstance(item, End):  # done: the bar ends full, though the last second may be short
                        bar.update((bar.total or bar.n) - bar.n)
                    elif int(item.time) > bar.n:  # whole seconds of video done
                        bar.total = max(bar.total or 0, int(item.time)) if bar.total else None
                        bar.update(int(item.time) - bar.n)
        finally:
            items.close()  # stops the reading process if tagging stopped early
        return run.finish()


def tag_video(captioner: Captioner, path: str | Path, options: TagOptions = TagOptions(), **decode) -> dict:
    """The tags of one video as a JSON-able dict: shots, segments with captions and tags, video tags."""
    with VideoTagger(captioner, options, **decode) as tagger:
        return tagger.tag(path).result


class _Run:
    """The state of tagging one video."""

    def __init__(self, tagger: VideoTagger, info: VideoInfo):
        self.tagger, self.info, self.options = tagger, info, tagger.options
        self.cuts: list[tuple[int, float]] = []  # first frame and time of every shot after the first
        self.samples: list[Sample] = []
        self.keyframes: list[Sample | None] = []  # one per closed shot
        self.open_shot: list[Sample] = []  # the samples since the last cut
        self.thumbnail_stride = 1  # the open shot keeps the thumbnails of every stride-th sample
        self.to_caption: list[tuple[Sample, np.ndarray]] = []  # its picture: the sample may drop its thumbnail
        self.end: End | None = None

    def add(self, item: Picture | Cut | End) -> None:
        if isinstance(item, Cut):
            self._close_shot((item.index, item.time))
        elif isinstance(item, End):
            self.end = item
        elif item.short_shot:  # the keyframe of the shot the next cut closes, older than the newest samples
            sample = Sample(item.time, item.index, item.image)
            bisect.insort(self.samples, sample, key=lambda s: s.time)
            self._caption_later(sample)
        else:
            sample = Sample(item.time, item.index, item.image)
            self.samples.append(sample)
            self._caption_later(sample)
            self.open_shot.append(sample)
            self._thin_thumbnails()

    def _thin_thumbnails(self) -> None:
        """The open shot keeps the thumbnails at positions 0, stride, 2 * stride ...: at most SHOT_THUMBNAILS."""
        newest = len(self.open_shot) - 1
        if newest % self.thumbnail_stride:
            self.open_shot[-1].thumbnail = None
        elif newest // self.thumbnail_stride >= SHOT_THUMBNAILS:
            self.thumbnail_stride *= 2  # drop the odd multiples of the old stride
            for sample in self.open_shot[self.thumbnail_stride // 2 :: self.thumbnail_stride]:
                sample.thumbnail = None

    def _close_shot(self, cut: tuple[int, float]) -> None:
        """The shot before ``cut`` is complete: choose its keyframe."""
        start = self.cuts[-1][1] if self.cuts else 0.0
        self.cuts.append(cut)
        inside = self._samples_in(start, cut[1])
        middle = (len(inside) - 1) // 2
        candidates = [i for i, sample in enumerate(inside) if sample.thumbnail is not None]
        keyframe = inside[min(candidates or [middle], key=lambda i: abs(i - middle))] if inside else None
        for sample in inside:  # only the keyframe keeps its thumbnail: the middle sample, or the nearest kept
            if sample is not keyframe:
                sample.thumbnail = None
        self.keyframes.append(keyframe)
        # samples taken after the cut but before it was decided open the next shot (one that lost its
        # thumbnail to a long shot's thinning is left off the contact sheet if it is all the shot has)
        self.open_shot = [s for s in self.open_shot if s.time >= cut[1]]
        self.thumbnail_stride = 1

    def _samples_in(self, start: float, end: float) -> list[Sample]:
        """The samples with start <= time < end, in time order, searched from the newest (shots close in order)."""
        found = []
        for sample in reversed(self.samples):
            if sample.time < start:
                break
            if sample.time < end:
                found.append(sample)
        return found[::-1]

    def _caption_later(self, sample: Sample) -> None:
        self.to_caption.append((sample, sample.thumbnail))
        if len(self.to_caption) >= self.options.batch_size:
            self._caption_pending(wait=False)

    def _caption_pending(self, wait: bool) -> None:
        """Caption the waiting samples, unless the model is still loading (and not ``wait``)."""
        captioner = self.tagger.model(wait)
        if self.to_caption and captioner is not None:
            from captioner.devices import cpu_threads  # torch is loaded by now: the captioner is

            images = [Image.fromarray(image) for _, image in self.to_caption]
            with cpu_threads(CAPTION_THREADS):
                captions = captioner.caption(images, batch_size=len(images), **self.tagger.decode)
            for (sample, _), caption in zip(self.to_caption, captions):
                sample.caption = caption
            self.to_caption = []

    def finish(self) -> TaggedVideo:
        end = self.end
        self._close_shot((end.last_index + 1, end.duration))
        self.cuts.pop()  # the end of the video is not a cut
        self._caption_pending(wait=True)
        shots = self._shots(end)
        segments, keyframes = [], []
        for number, (shot, keyframe) in enumerate(zip(shots, self.keyframes)):
            if keyframe is None:  # cannot happen: every shot gets a picture; keep the shot, no caption
                shot["keyframe"] = None
                continue
            inside = self._samples_in(shot["start"], shot["end"])
            shot["keyframe"] = {"time": round(keyframe.time, 3), "frame": keyframe.frame, "caption": keyframe.caption}
            keyframes.append({"shot": number, "time": keyframe.time, "caption": keyframe.caption,
                              "thumbnail": keyframe.thumbnail})
            segments += self._segments(number, shot, inside)
        result = {
            "version": SCHEMA_VERSION,
            "video": self.info.path,
            "duration": round(end.duration, 3),
            "fps": round(self.info.fps, 3),
            "width": end.size[1],
            "height": end.size[0],
            "frames": end.last_index + 1,
            "every_seconds": self.options.every_seconds,
            "shots": shots,
            "segments": segments,
            "tags": video_tags(segments),
            "samples": [{"time": round(s.time, 3), "frame": s.frame, "caption": s.caption} for s in self.samples],
        }
        return TaggedVideo(result, keyframes)

    def _shots(self, end: End) -> list[dict]:
        starts = [(0, 0.0), *self.cuts]
        ends = [(index - 1, time) for index, time in self.cuts] + [(end.last_index, end.duration)]
        return [{"start": round(start, 3), "end": round(end, 3), "start_frame": first, "end_frame": last}
                for (first, start), (last, end) in zip(starts, ends)]

    def _segments(self, shot_number: int, shot: dict, samples: list[Sample]) -> list[dict]:
        """Runs of consecutive samples with (near-)same captions; each covers until the next starts."""
        runs: list[list[Sample]] = []
        for sample in samples:
            if runs and similarity(runs[-1][-1].caption, sample.caption) >= self.options.merge_similarity:
                runs[-1].append(sample)
            else:
                runs.append([sample])
        starts = [shot["start"]] + [run[0].time for run in runs[1:]]
        ends = starts[1:] + [shot["end"]]
        segments = []
        for run, start, end in zip(runs, starts, ends):
            caption = Counter(s.caption for s in run).most_common(1)[0][0]
            segments.append({"start": round(start, 3), "end": round(end, 3), "start_timecode": timecode(start),
                             "end_timecode": timecode(end), "shot": shot_number, "caption": caption,
                             "tags": content_words(caption)})
        return segments


def video_tags(segments: list[dict]) -> list[dict]:
    """Every tag with the seconds of video its segments cover, most covered first."""
    seconds: Counter[str] = Counter()
    for segment in segments:
        for tag in segment["tags"]:
            seconds[tag] += segment["end"] - segment["start"]
    most_covered_first = sorted(seconds.items(), key=lambda kv: (-kv[1], kv[0]))
    return [{"tag": tag, "seconds": round(total, 3)} for tag, total in most_covered_first]


def timecode(seconds: float, separator: str = ".") -> str:
    """``HH:MM:SS.mmm`` (``separator=","`` for SRT)."""
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"

