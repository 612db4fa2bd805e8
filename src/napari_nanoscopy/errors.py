"""The one exception type for problems a user can cause and fix, and cancellation of long work."""


class NanoscopyError(Exception):
    """Raised for bad input, a wrong model, a missing file or a bad parameter.

    The message is a full sentence that says what was wrong and what to do about it;
    front ends show it as it is (a CLI line, a napari notification).
    """


class Cancelled(Exception):
    """Raised when a long operation stops because the caller asked it to."""


class StepCounter:
    """Called before each step of a long job: raises :class:`Cancelled` once ``should_cancel()`` says so
    ("``what`` cancelled."), then reports ``progress(done, total)``."""

    def __init__(self, total: int, progress=None, should_cancel=None, what: str = "Restoration"):
        self.total, self.progress, self.should_cancel, self.what = total, progress, should_cancel, what
        self.done = 0

    def __call__(self) -> None:
        if self.should_cancel is not None and self.should_cancel():
            raise Cancelled(f"{self.what} cancelled.")
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)
