"""Ctrl-C in training waits for the step (or the epoch's writing) under way, and stops at once elsewhere."""

from __future__ import annotations

import os
import signal

import pytest

from captioner.interrupts import StepBoundaries


def test_ctrl_c_inside_a_whole_block_is_raised_when_it_ends_and_at_once_outside():
    boundaries, finished = StepBoundaries(), []
    before = signal.getsignal(signal.SIGINT)
    with boundaries.installed():
        with pytest.raises(KeyboardInterrupt):
            with boundaries.whole():
                os.kill(os.getpid(), signal.SIGINT)
                with boundaries.whole():  # nested: raised only when the outermost block ends
                    pass
                finished.append("step")
        assert finished == ["step"]
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            finished.append("never")
        with boundaries.whole():  # nothing pending any more
            pass
    assert finished == ["step"] and signal.getsignal(signal.SIGINT) is before
