"""The analysis pass (:mod:`.analysis`) in child processes, their items handed over through pipes.

Decoding and shot detection then run beside the model: in the command, while ``torch`` imports and
the model loads (the child imports neither: ``python -m captioner.video.background`` is a fresh,
light interpreter), and later while frames are captioned. A thread could not do this: the import
holds the GIL, and the pass needs it between frames (benchmarks/README.md, "Video tagging"). A
plain subprocess rather than ``multiprocessing``: nothing of the caller's ``__main__`` is imported
again, so a script without an ``if __name__ == "__main__"`` guard works too. At most ``lead``
items wait: memory stays flat however long the video, and the child pauses when captioning falls
behind.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import subprocess
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from queue import Queue

from captioner.video.analysis import AnalysisPlan, Cut, End, PartEnd, Picture, analyse_video
from captioner.video.frames import VideoError

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class AnalysisProcesses:
    """Child processes for the analysis pass, the next one started as soon as one has read its part: it
    has started Python and imported PyAV by the time the next part or video is asked for. A video long
    enough is read in parts (:func:`~captioner.video.analysis.part_handovers`), up to ``plan.processes``
    of them at once, and their items are merged here into those of one pass. A spare that is never used
    ends by itself when this process ends (its stdin closes); :meth:`close` ends it now."""

    def __init__(self):
        self.spares: list[subprocess.Popen] = []
        self.early: tuple[str, AnalysisPlan, _Items] | None = None  # the next video's first part, already reading

    def analyse(self, path: str | Path, plan: AnalysisPlan, lead: int = 128,
                then: str | Path | None = None) -> Iterator:
        """The items of ``analyse_video(path, plan)`` over the whole video, computed by child processes
        (VideoInfo, Picture, Cut ..., End); their VideoError is raised here. Closing the generator early
        (an error, Ctrl-C) stops them. ``then``: the video to be analysed next, whose first part starts
        reading as soon as this one's last part has started and a process is free."""
        reading: deque[_Items] = deque()  # the parts being read, in order
        beside_another = then is not None
        try:
            reading.append(self._early_part(path, plan) or self._read_part(path, plan, lead, beside_another))
            yield next(reading[0])  # the VideoInfo
            handovers = next(reading[0]).handovers if plan.processes > 1 else ()
            parts, offset = len(handovers) + 1, 0
            for part in range(parts):
                while len(reading) < plan.processes and part + len(reading) < parts:
                    reading.append(self._read_part(path, plan, lead, beside_another, part + len(reading), handovers))
                    next(reading[-1])  # its VideoInfo, the same
                if then is not None and self.early is None and len(reading) < plan.processes:
                    self.early = (str(then), plan, self._read_part(then, plan, lead, beside_another=True))
                last = None
                for last in reading[0]:  # to its end: the child's last message starts a spare
                    if not isinstance(last, PartEnd):
                        yield _shifted(last, offset)
                if isinstance(last, End):  # the video ends in this part: the parts after it are not read
                    return
                if not isinstance(last, PartEnd):
                    raise RuntimeError(f"{path}: part {part} of the video analysis ended without its end")
                offset += last.frames
                reading.popleft()
        finally:
            for items in reading:
                items.close()

    def _early_part(self, path: str | Path, plan: AnalysisPlan) -> _Items | None:
        """The first part of this video if it is already reading (a different one is ended)."""
        early, self.early = self.early, None
        if early is not None and early[:2] == (str(path), plan):
            return early[2]
        if early is not None:
            early[2].close()
        return None

    def _read_part(self, path: str | Path, plan: AnalysisPlan, lead: int, beside_another: bool, part: int = 0,
                   handovers: tuple[float, ...] | None = None) -> _Items:
        child = self.spares.pop() if self.spares else _start()
        request = (str(path), plan, part, handovers, beside_another)
        try:
            _ask(child, request)
        except BrokenPipeError:  # the spare died (killed from outside): one more try with a new one
            child = _start()
            _ask(child, request)
        return _Items(child, path, lead, lambda: self._start_spare(plan.processes))

    def _start_spare(self, most: int) -> None:
        if len(self.spares) < most:
            self.spares.append(_start())

    def close(self) -> None:
        if self.early is not None:
            self.early[2].close()
            self.early = None
        while self.spares:
            spare = self.spares.pop()
            spare.kill()
            spare.wait()
            spare.stdin.close()
            spare.stdout.close()


def _shifted(item, offset: int):
    """The item with its frame index counted from the video's first frame, not its part's."""
    if offset == 0 or not isinstance(item, (Picture, Cut, End)):
        return item
    if isinstance(item, End):
        return dataclasses.replace(item, last_index=item.last_index + offset)
    return dataclasses.replace(item, index=item.index + offset)


def _start() -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_PACKAGE_ROOT, os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)


def _ask(child: subprocess.Popen, request: tuple) -> None:
    pickle.dump(request, child.stdin)
    child.stdin.close()


class _Items:
    """What one child process sends, unpickled by a thread into a queue of at most ``lead``."""

    def __init__(self, child: subprocess.Popen, path: str | Path, lead: int, when_read: Callable[[], None]):
        self.child, self.path, self.when_read = child, path, when_read
        self.queue: Queue = Queue(maxsize=lead)
        self.reader = threading.Thread(target=_read, args=(child.stdout, self.queue), name="video-analysis-reader",
                                       daemon=True)
        self.reader.start()
        self.closed = False

    def __iter__(self) -> _Items:
        return self

    def __next__(self):
        if self.closed:
            raise StopIteration
        kind, value = self.queue.get()
        if kind == "item":
            return value
        if kind not in ("done", "video_error"):  # a bug or a crash: its exit code is part of the message
            self.child.wait(timeout=10)
        self.close()
        if kind == "done":
            self.when_read()
            raise StopIteration
        if kind == "video_error":
            self.when_read()
            raise VideoError(*value)
        raise RuntimeError(f"{self.path}: video analysis failed (exit code {self.child.returncode}): {value}")

    def close(self) -> None:
        """End the child (a no-op once it has exited); its pipe closes and the reader ends."""
        if self.closed:
            return
        self.closed = True
        self.child.kill()
        self.child.wait()
        if sys.is_finalizing():  # left open until exit: the frozen reader may hold the pipe's lock
            return
        while self.reader.is_alive():
            while not self.queue.empty():
                self.queue.get_nowait()
            self.reader.join(timeout=0.05)
        self.child.stdout.close()


def _read(stream, items: Queue) -> None:
    """Unpickle the child's messages into the queue (blocks when ``lead`` are waiting) until it ends."""
    try:
        while True:
            message = pickle.load(stream)
            items.put(message)
            if message[0] != "item":
                return
    except (EOFError, OSError, pickle.UnpicklingError):
        items.put(("crashed", "the process ended without finishing"))


def _child() -> None:
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write into the pipe
    try:
        path, plan, part, handovers, beside_another = pickle.load(sys.stdin.buffer)
    except EOFError:  # a spare that was not needed
        return
    try:
        for item in analyse_video(path, plan, part, handovers, beside_another):
            pickle.dump(("item", item), out, protocol=pickle.HIGHEST_PROTOCOL)
            out.flush()
        message = ("done", None)
    except VideoError as error:
        message = ("video_error", (error.path, error.reason))
    except Exception as error:  # a bug: the parent raises it with this traceback
        message = ("failed", f"{error!r}\n{traceback.format_exc()}")
    try:
        pickle.dump(message, out)
        out.flush()
    except BrokenPipeError:  # the parent stopped listening
        pass


if __name__ == "__main__":
    try:
        _child()
    except (BrokenPipeError, KeyboardInterrupt):
        sys.exit(1)
