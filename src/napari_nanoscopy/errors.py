"""The one exception type for problems a user can cause and fix."""


class NanoscopyError(Exception):
    """Raised for bad input, a wrong model, a missing file or a bad parameter.

    The message is a full sentence that says what was wrong and what to do about it;
    front ends show it as it is (a CLI line, a napari notification).
    """


class Cancelled(Exception):
    """Raised when a long operation stops because the caller asked it to."""
