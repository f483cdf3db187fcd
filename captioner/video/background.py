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
    """Child processes for the analysis pass, each kept for the next part or video once it has read one:
    a child's start (Python, PyAV, numpy) is paid once per command, not once per part. A video long
    enough is read in parts (:func:`~captioner.video.analysis.part_handovers`), up to ``plan.processes``
    of them at once, and their items are merged here into those of one pass. An idle child ends by
    itself when this process ends (its stdin closes); :meth:`close` ends it now."""

    def __init__(self):
        self.idle: list[subprocess.Popen] = []  # children that have read their part, waiting for the next
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
                for last in reading[0]:  # to its end: the child is then free for the next part
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
        request = (str(path), plan, part, handovers, beside_another)
        while self.idle:
            child = self.idle.pop()
            try:
                _ask(child, request)
                break
            except BrokenPipeError:  # it died (killed from outside): the next, or a new one
                _end(child)
        else:
            child = _start()
            _ask(child, request)
        return _Items(child, path, lead, lambda: self._keep(child, plan.processes))

    def _keep(self, child: subprocess.Popen, most: int) -> None:
        """A child that has read its part waits for the next one (at most ``most`` wait)."""
        if len(self.idle) < most:
            self.idle.append(child)
        else:
            _end(child)

    def close(self) -> None:
        if self.early is not None:
            self.early[2].close()
            self.early = None
        while self.idle:
            _end(self.idle.pop())


def _shifted(item, offset: int):
    """The item with its frame index counted from the video's first frame, not its part's."""
    if offset == 0 or not isinstance(item, (Picture, Cut, End)):
        return item
    if isinstance(item, End):
        return dataclasses.replace(item, last_index=item.last_index + offset)
    return dataclasses.replace(item, index=item.index + offset)


def _start() -> subprocess.Popen:
    # the pass does no linear algebra: OpenBLAS's threads would only cost the child's start CPU time
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [_PACKAGE_ROOT, os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)


def _ask(child: subprocess.Popen, request: tuple) -> None:
    pickle.dump(request, child.stdin)
    child.stdin.flush()


def _end(child: subprocess.Popen) -> None:
    """Kill the child and close its pipes (a no-op for the exit code if it has ended already)."""
    child.kill()
    child.wait()
    for pipe in (child.stdin, child.stdout):
        try:
            pipe.close()
        except OSError:  # a request still buffered for a child that is gone
            pass


class _Items:
    """What one child process sends for one part, unpickled by a thread into a queue of at most ``lead``.
    Once the part is read, ``when_read`` is called: the child is free for the next request."""

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
        if kind in ("done", "video_error"):  # the child has read its part and waits for the next request
            self.closed = True
            self.reader.join()
            self.when_read()
            if kind == "done":
                raise StopIteration
            raise VideoError(*value)
        self.child.wait(timeout=10)  # a bug or a crash: the child has ended, its exit code is part of the message
        self.close()
        raise RuntimeError(f"{self.path}: video analysis failed (exit code {self.child.returncode}): {value}")

    def close(self) -> None:
        """End the child if it is still reading this part (a no-op once the part is read); the reader ends."""
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
        _end(self.child)


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
    """Serve requests until stdin closes: the items of each, then one message that ends it."""
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write into the pipe
    while True:
        try:
            path, plan, part, handovers, beside_another = pickle.load(sys.stdin.buffer)
        except EOFError:  # the parent is done with this child, or has ended
            return
        try:
            for item in analyse_video(path, plan, part, handovers, beside_another):
                pickle.dump(("item", item), out, protocol=pickle.HIGHEST_PROTOCOL)
                out.flush()
            message = ("done", None)
        except VideoError as error:
            message = ("video_error", (error.path, error.reason))
        except Exception as error:  # a bug: the parent raises it with this traceback, and this child ends
            message = ("failed", f"{error!r}\n{traceback.format_exc()}")
        pickle.dump(message, out)
        out.flush()
        if message[0] == "failed":
            return


if __name__ == "__main__":
    try:
        _child()
    except (BrokenPipeError, KeyboardInterrupt):  # the parent stopped listening
        sys.exit(1)
