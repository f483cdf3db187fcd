"""Streaming shot-boundary detection on small frames.

Each analysed frame comes ``ANALYSIS_WIDTH`` pixels wide (scaled as it is converted, :mod:`.frames`)
and is compared in HSV; its *content change* is the mean absolute
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
        self.change = 0.0  # the newest frame's change: one this large may start a shot

    def add(self, index: int, time: float, image: np.ndarray) -> list[tuple[int, float]]:
        """An RGB frame ``ANALYSIS_WIDTH`` wide -> the cuts ``(first frame index of the new shot, its time)``
        now decided."""
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
        self.change = 0.0
        if self.previous is not None and self.previous.shape == hsv.shape:
            self.change = cv2.norm(hsv, self.previous, cv2.NORM_L1) / hsv.size  # the mean |difference|
            self.pending.append((index, time, self.change))
        self.previous = hsv
        return self._decide(final=False)

    def may_cut(self) -> bool:
        """Whether the newest frame changed enough to start a shot (decided ``window`` frames later)."""
        return self.change >= self.options.min_change

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

