"""Argument checks shared by the simulation modules; each failure is a NanoscopyError."""

from __future__ import annotations

import numpy as np

from napari_nanoscopy.errors import NanoscopyError

MIN_SIZE = 64
MAX_SIZE = 2048


def rng_from_seed(seed) -> np.random.Generator:
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError):
        raise NanoscopyError(
            f"seed must be a non-negative integer, a numpy Generator or None; got {seed!r}."
        ) from None


def checked_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not MIN_SIZE <= size <= MAX_SIZE:
        raise NanoscopyError(
            f"size must be a whole number of pixels from {MIN_SIZE} to {MAX_SIZE}; got {size!r}."
        )
    return int(size)


def checked_count(name: str, value, low: int, high: int | None = None) -> int:
    is_whole = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not (is_whole and value >= low and (high is None or value <= high)):
        bound = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise NanoscopyError(f"{name} must be a whole number {bound}; got {value!r}.")
    return int(value)


def checked_datamap(datamap: np.ndarray, writable: bool = False) -> np.ndarray:
    """The datamap as int32 molecule counts."""
    if (not isinstance(datamap, np.ndarray) or datamap.ndim != 2 or min(datamap.shape) < 1
            or datamap.dtype.kind not in "biuf"):
        raise NanoscopyError(
            "A datamap must be a 2D numeric numpy array of molecule counts per pixel; got "
            f"{type(datamap).__name__} of dtype {getattr(datamap, 'dtype', None)} and shape "
            f"{getattr(datamap, 'shape', None)}."
        )
    if not np.all(np.isfinite(datamap)) or np.any(datamap < 0):
        raise NanoscopyError(
            "A datamap holds molecule counts, which must be finite and non-negative; "
            "clip or fix the array before acquiring it."
        )
    if not np.array_equal(datamap, np.round(datamap)):
        raise NanoscopyError(
            "A datamap holds whole molecule counts per pixel; round it (or draw it with "
            "numpy's poisson) before acquiring it."
        )
    if writable and not datamap.flags.writeable:
        raise NanoscopyError(
            "Bleaching removes molecules from the datamap in place, but this array is "
            "read-only; pass a writable copy."
        )
    return datamap.astype(np.int32)
