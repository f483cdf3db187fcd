"""Errors a user can act on: the CLIs print them as one line, without a traceback."""


class CaptionerError(Exception):
    """A problem with the user's input, data, config or checkpoint (not a bug)."""


class ImageError(CaptionerError):
    """An image file that cannot be read; the message names the file and the reason."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class Interrupted(CaptionerError):
    """Ctrl-C after the work so far was saved; the message says where and how to go on (exit status 130)."""
