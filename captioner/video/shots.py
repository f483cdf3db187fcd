"""Streaming shot-boundary detection on downscaled frames.

Each analysed frame is reduced to a small HSV image; its *content change* is the mean absolute
difference to the previous one (as PySceneDetect's ContentDetector). A cut is a change that is
both large (``min_change``) and much larger than the changes around it (``ratio`` times the mean
of ``window`` changes before and after, as its AdaptiveDetector): camera or object motion raises
every change in a stretch, a cut is one spike. Cuts closer than ``min_shot_seconds`` are dropped.
The decision for a frame waits for ``window`` more frames; nothing older is kept.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

ANALYSIS_WIDTH = 64  # pixels: enough for colour layout, cheap to compare


@dataclass(frozen=True)
class ShotOptions:
    min_change: float = 12.0  # mean |HSV difference| (0-255) a cut needs at least
    ratio: float = 3.0  # ... and this many times the surrounding frames' mean change
    window: int = 2  # frames on each side the ratio looks at
    min_shot_seconds: float = 0.5


class ShotDetector:
    """Feed frames in order with :meth:`add`; it returns the cuts it has become sure of."""

    def __init__(self, options: ShotOptions = ShotOptions()):
        self.options = options
        self.previous: np.ndarray | None = None
        self.pending: deque[tuple[int, float, float]] = deque()  # (frame index, time, change) not yet decided
        self.decided: deque[float] = deque(maxlen=options.window)  # the changes just before the pending ones
        self.last_cut_time = 0.0

    def add(self, index: int, time: float, image: np.ndarray) -> list[tuple[int, float]]:
        """A BGR frame -> the cuts ``(first frame index of the new shot, its time)`` now decided."""
        small = downscale_hsv(image)
        if self.previous is not None and self.previous.shape == small.shape:
            self.pending.append((index, time, float(cv2.absdiff(small, self.previous).mean())))
        self.previous = small
        return self._decide(final=False)

    def finish(self) -> list[tuple[int, float]]:
        """The cuts still pending at the end of the video."""
        return self._decide(final=True)

    def _decide(self, final: bool) -> list[tuple[int, float]]:
        options, cuts = self.options, []
        while len(self.pending) > options.window or (final and self.pending):
            index, time, change = self.pending.popleft()
            around = [*self.decided, *(c for _, _, c in itertools.islice(self.pending, options.window))]
            baseline = sum(around) / len(around) if around else 0.0
            if (change >= options.min_change and change >= options.ratio * baseline
                    and time - self.last_cut_time >= options.min_shot_seconds):
                cuts.append((index, time))
                self.last_cut_time = time
            self.decided.append(change)
        return cuts


def downscale_hsv(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) BGR -> a small HSV image (width ANALYSIS_WIDTH, aspect kept)."""
    height, width = image.shape[:2]
    size = (ANALYSIS_WIDTH, max(1, round(ANALYSIS_WIDTH * height / width)))
    return cv2.cvtColor(cv2.resize(image, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2HSV)
