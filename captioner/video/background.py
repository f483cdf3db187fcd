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
from collections.abc import Callable, Iterator
from pathlib import Path
from queue import Queue

from captioner.video.analysis import AnalysisPlan, analyse_video
from captioner.video.frames import VideoError

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class AnalysisProcesses:
    """Child processes for the analysis pass, the next one started as soon as the current one has
    read its video: it has started Python and imported PyAV by the time the next video is asked for,
    and its start-up overlaps the captioning of the current one's last pictures. A spare that is never
    used ends by itself when this process ends (its stdin closes); :meth:`close` ends it now."""

    def __init__(self):
        self.spare: subprocess.Popen | None = None

    def analyse(self, path: str | Path, plan: AnalysisPlan, lead: int = 128) -> Iterator:
        """The items of ``analyse_video(path, plan)``, computed by a child process; its VideoError is
        raised here. Closing the generator early (an error, Ctrl-C) stops the child."""
        child, self.spare = self.spare or _start(), None
        try:
            _ask(child, path, plan)
        except BrokenPipeError:  # the spare died (killed from outside): one more try with a new one
            child = _start()
            _ask(child, path, plan)
        return _items(child, path, lead, self._start_spare)

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


def _items(child: subprocess.Popen, path: str | Path, lead: int, when_read: Callable[[], None]) -> Iterator:
    items: Queue = Queue(maxsize=lead)
    reader = threading.Thread(target=_read, args=(child.stdout, items), name="video-analysis-reader", daemon=True)
    reader.start()
    try:
        while True:
            kind, value = items.get()
            if kind == "item":
                yield value
            elif kind == "done":
                when_read()
                return
            elif kind == "video_error":
                when_read()
                raise VideoError(*value)
            else:
                raise RuntimeError(f"{path}: video analysis failed (exit code {child.wait()}): {value}")
    finally:
        child.kill()  # no-op once it has exited; its pipe closes and the reader ends
        child.wait()
        if sys.is_finalizing():  # an iterator left open until exit: the frozen reader may hold the pipe's lock
            return
        while reader.is_alive():
            while not items.empty():
                items.get_nowait()
            reader.join(timeout=0.05)
        child.stdout.close()


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
