"""Ctrl-C in training lands between steps: a step (and the writing of an epoch's files) runs to its end
before the interrupt is raised, so ``last.pt`` holds whole steps and no write or import is cut halfway
(a C extension interrupted while it initialises can abort the interpreter before anything is saved).
Everywhere else, validation included, Ctrl-C stops at once."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class StepBoundaries:
    """Defers SIGINT while inside :meth:`whole`; :meth:`installed` puts the handler in place for a block."""

    def __init__(self):
        self.depth = 0
        self.pending = False

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """The handler for the block (only the main thread receives signals; elsewhere nothing changes)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, self._interrupted)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    @contextlib.contextmanager
    def whole(self) -> Iterator[None]:
        """A block that Ctrl-C does not cut: an interrupt that came meanwhile is raised when it ends."""
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        if not self.depth and self.pending:
            self.pending = False
            raise KeyboardInterrupt

    def _interrupted(self, signum, frame) -> None:
        if not self.depth:
            raise KeyboardInterrupt
        self.pending = True
