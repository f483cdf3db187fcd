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

import os
import pickle
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from queue import Queue

from captioner.video.analysis import AnalysisPlan, analyse_video
from captioner.video.frames import VideoError

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class AnalysisProcesses:
    """Child processes for the analysis pass, the next one started as soon as the current one has
    read its video: it has started Python and imported PyAV by the time the next video is asked for.
    A spare that is never used ends by itself when this process ends (its stdin closes);
    :meth:`close` ends it now."""

    def __init__(self):
        self.spare: subprocess.Popen | None = None

    def analyse(self, path: str | Path, plan: AnalysisPlan, lead: int = 128) -> Analysis:
        """The items of ``analyse_video(path, plan)``, computed by a child process that starts reading
        now; its VideoError is raised by the iteration. Close it when stopping early (an error, Ctrl-C):
        that ends the child."""
        child, self.spare = self.spare or _start(), None
        try:
            _ask(child, path, plan)
        except BrokenPipeError:  # the spare died (killed from outside): one more try with a new one
            child = _start()
            _ask(child, path, plan)
        return Analysis(child, path, lead, self._start_spare)

    def _start_spare(self) -> None:
        if self.spare is None:
            self.spare = _start()

    def close(self) -> None:
        if self.spare is not None:
            self.spare.kill()
            self.spare.wait()
            self.spare.stdin.close()
            self.spare.stdout.close()
            self.spare = None


def _start() -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_PACKAGE_ROOT, os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)


def _ask(child: subprocess.Popen, path: str | Path, plan: AnalysisPlan) -> None:
    pickle.dump((str(path), plan), child.stdin)
    child.stdin.close()


class Analysis:
    """One video's analysis items as they arrive from its child process: an iterator whose reader
    thread starts at once, so the child reads its video before the first item is asked for (a
    folder's next video is read while this process captions the current one's last pictures)."""

    def __init__(self, child: subprocess.Popen, path: str | Path, lead: int, when_read: Callable[[], None]):
        self.child, self.path, self.when_read = child, path, when_read
        self.items: Queue = Queue(maxsize=lead)
        self.reader = threading.Thread(target=_read, args=(child.stdout, self.items), name="video-analysis-reader",
                                       daemon=True)
        self.reader.start()
        self.ended = False

    def __iter__(self) -> Analysis:
        return self

    def __next__(self):
        if self.ended:
            raise StopIteration
        kind, value = self.items.get()
        if kind == "item":
            return value
        if kind not in ("done", "video_error"):  # a bug, or the child was killed: its exit code says which
            code = self.child.wait()
            self.close()
            raise RuntimeError(f"{self.path}: video analysis failed (exit code {code}): {value}")
        self.close()
        self.when_read()
        if kind == "video_error":
            raise VideoError(*value)
        raise StopIteration

    def close(self) -> None:
        """End the child (a no-op once it has exited; its pipe closes and the reader ends)."""
        if self.ended:
            return
        self.ended = True
        self.child.kill()
        self.child.wait()
        if sys.is_finalizing():  # an iterator left open until exit: the frozen reader may hold the pipe's lock
            return
        while self.reader.is_alive():
            while not self.items.empty():
                self.items.get_nowait()
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
        path, plan = pickle.load(sys.stdin.buffer)
    except EOFError:  # a spare that was not needed
        return
    try:
        for item in analyse_video(path, plan):
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
