"""Plausible ranges for the numbers a user gives, and the checks every front end shares.

The command line, the Python API, the widgets and the model cards all pass their numbers
through these checks before any heavy work, so a malformed value (a string, NaN, infinity, a
seed that overflows, a pixel size in the wrong unit) becomes one NanoscopyError sentence that
names the value, its range and what to do, instead of a hang, a huge allocation or a traceback.
No torch here: the readers use it too.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

from .errors import NanoscopyError

# Lateral pixel sizes, nm. Nanoscopy images have 5-100 nm pixels and confocal or wide-field
# ones up to about 1 um; below 0.1 nm (an atom) or above 100 um (a tenth of a millimetre) a
# value is a unit mistake (metres, um taken as nm, a screen dpi), not a microscope's pixel.
PIXEL_SIZE_RANGE_NM = (0.1, 100_000.0)
# An image is resampled to the model's pixel size by at most this factor either way (a 20 nm
# model on 320 nm pixels already sees nothing it was trained on) ...
MAX_ZOOM = 16.0
# ... and to at most this many pixels per plane (a 16384 x 16384 plane, 1 GiB in float32 per
# channel): the resampled copy is held in memory.
MAX_RESAMPLED_PIXELS = 1 << 28
MAX_SAMPLES = 1000  # Monte-Carlo samples per restoration (the papers use 10-20)
MAX_SEED = 2**63 - 1  # seeds are non-negative 64-bit integers (numpy, torch, derived block seeds)
MAX_TILE = 1 << 16  # tile and block sides, pixels
MAX_WORKERS = 256  # processes of an embedded dask cluster


def check_int(name: str, value, low: int = 1, high: int | None = None, remedy: str = "") -> int:
    """``value`` as an int, or NanoscopyError unless it is a whole number in [low, high] (no upper bound: None).

    Integral floats (``1e3``) are accepted; booleans, strings, fractions, NaN and infinity are not.
    """
    whole = (isinstance(value, Integral) and not isinstance(value, bool)) or (
        isinstance(value, float) and math.isfinite(value) and value.is_integer()
    )
    if not whole or value < low or (high is not None and value > high):
        bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"
        remedy = f"; {remedy}." if remedy else "."  # spelled out: bmz_export copies this function on its own
        raise NanoscopyError(f"{name} must be a whole number {bounds}, not {value!r}{remedy}")
    return int(value)


def check_real(name: str, value, low: float, high: float, remedy: str = "") -> float:
    """``value`` as a float, or NanoscopyError unless it is a finite number in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or not low <= value <= high:
        raise NanoscopyError(f"{name} must be a number from {low:g} to {high:g}, not {value!r}{_then(remedy)}")
    return float(value)


def check_pixel_size(value, where: str = "The pixel size",
                     remedy: str = "give the image's pixel size in nanometres") -> float:
    """A lateral pixel size in nm within :data:`PIXEL_SIZE_RANGE_NM` (``where`` names its origin)."""
    low, high = PIXEL_SIZE_RANGE_NM
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or not low <= value <= high:
        shown = f"{value:g} nm" if isinstance(value, Real) and not isinstance(value, bool) else repr(value)
        raise NanoscopyError(
            f"{where} is {shown}, outside the {low:g}-{high:g} nm of a microscope image's pixels; {remedy}."
        )
    return float(value)


def check_seed(seed) -> int | None:
    """A seed: None, or a whole number from 0 to :data:`MAX_SEED`."""
    if seed is None:
        return None
    return check_int("The seed", seed, 0, MAX_SEED, "pick another seed or none")


def check_samples(samples) -> int:
    return check_int("The number of Monte-Carlo samples", samples, 1, MAX_SAMPLES,
                     "10 to 20 give a good uncertainty map")


def check_percentiles(low, high, where: str) -> tuple[float, float]:
    """Normalisation percentiles: numbers in [0, 100] with low < high."""
    low = check_real(f"{where} low percentile", low, 0.0, 100.0)
    high = check_real(f"{where} high percentile", high, 0.0, 100.0)
    if not low < high:
        raise NanoscopyError(f"{where} low percentile ({low:g}) must be below its high percentile ({high:g}).")
    return low, high


def available_memory() -> int | None:
    """Bytes of host memory available now (Linux /proc/meminfo, else psutil), or None if unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def _then(remedy: str) -> str:
    return f"; {remedy}." if remedy else "."
