"""Disparity between Monte-Carlo samples, superpixel reduction and the variability score.

These are the measurements the TA-GAN live loop decides with:

- :func:`disparity_map`: how much N synthetic samples disagree, per pixel — the mean
  Horn–Schunck flow magnitude between consecutive samples (the paper's choice) or the
  per-pixel standard deviation (the cheaper measure the paper suggests);
- :func:`superpixel_means` / :func:`best_patch`: that map averaged over square superpixels
  (100 px in the paper), superpixels overlapping the central ROI left out, and the
  superpixel with the largest mean disparity chosen as the STED patch;
- :func:`variability_score`: the share of high-variability pixels among the foreground of N
  binarised segmentations (pixels with 3–8 positive votes of 10 are high-variability, pixels
  with no vote are background; a full STED is triggered above 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_nanoscopy.analysis.optical_flow import (
    DEFAULT_ALPHA,
    DEFAULT_ITERATIONS,
    flow_magnitude,
    horn_schunck_pairs,
)
from napari_nanoscopy.errors import NanoscopyError

DISPARITY_METHODS = ("optical-flow", "std")
# A pixel is low-variability when at least 80 % of the samples agree on it. The paper counts
# 1–2 (no fibres) and 9–10 (fibres) positive votes of 10 as low, 3–8 as high: high means
# LOW_FRACTION * N < votes < HIGH_FRACTION * N.
LOW_FRACTION = 0.2
HIGH_FRACTION = 0.9


def _checked_stack(samples, what: str) -> np.ndarray:
    stack = np.asarray(samples)
    if stack.ndim != 3 or stack.shape[0] < 2 or min(stack.shape[1:]) < 2:
        raise NanoscopyError(
            f"{what} needs a (samples, Y, X) stack of at least 2 images; got shape {stack.shape}."
        )
    return stack


def disparity_map(
    samples,
    method: str = "optical-flow",
    *,
    alpha: float = DEFAULT_ALPHA,
    iterations: int = DEFAULT_ITERATIONS,
    threads: int | None = None,
) -> np.ndarray:
    """Per-pixel disagreement (Y, X) between the Monte-Carlo samples of a (N, Y, X) stack.

    ``"optical-flow"``: mean over the N-1 consecutive pairs of the Horn–Schunck displacement
    length (TA-GAN live loop); ``"std"``: standard deviation over the samples (ddof 1).
    """
    stack = _checked_stack(samples, "The disparity between samples")
    if method == "optical-flow":
        return flow_magnitude(horn_schunck_pairs(stack, alpha, iterations, threads)).mean(axis=0)
    if method == "std":
        return stack.astype(np.float64).std(axis=0, ddof=1).astype(np.float32)
    raise NanoscopyError(f"The disparity method must be one of {', '.join(DISPARITY_METHODS)}; got {method!r}.")


def central_roi(shape: tuple[int, int], size: int) -> tuple[int, int, int, int]:
    """``(y0, x0, height, width)`` of the centred ``size`` x ``size`` ROI of a field of ``shape``."""
    height, width = (int(n) for n in shape)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 1 <= size <= min(height, width):
        raise NanoscopyError(
            f"The ROI size must be a whole number of pixels from 1 to {min(height, width)} for a "
            f"{height}x{width} field; got {size!r}."
        )
    return (height - size) // 2, (width - size) // 2, int(size), int(size)


@dataclass(frozen=True)
class Superpixels:
    """Mean disparity per superpixel; ``means`` is NaN where a superpixel is excluded."""

    means: np.ndarray  # (rows, cols) float64
    size: int  # superpixel side in pixels

    def region(self, row: int, col: int) -> tuple[int, int, int, int]:
        return row * self.size, col * self.size, self.size, self.size


def superpixel_means(disparity, size: int, exclude: tuple[int, int, int, int] | None = None) -> Superpixels:
    """Average ``disparity`` (Y, X) over ``size`` x ``size`` superpixels.

    Only whole superpixels count (a remainder strip at the bottom or right is left out).
    Superpixels overlapping ``exclude`` (``y0, x0, height, width``, e.g. the central ROI)
    get NaN, so that the STED patch is taken outside the region being monitored.
    """
    array = np.asarray(disparity, dtype=np.float64)
    if array.ndim != 2:
        raise NanoscopyError(f"A disparity map is a 2D (Y, X) array; got shape {array.shape}.")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 1 <= size <= min(array.shape):
        raise NanoscopyError(
            f"The superpixel size must be a whole number of pixels from 1 to {min(array.shape)}; got {size!r}."
        )
    rows, cols = array.shape[0] // size, array.shape[1] // size
    means = array[: rows * size, : cols * size].reshape(rows, size, cols, size).mean(axis=(1, 3))
    if exclude is not None:
        y0, x0, height, width = exclude
        for row in range(rows):
            for col in range(cols):
                top, left = row * size, col * size
                if top < y0 + height and y0 < top + size and left < x0 + width and x0 < left + size:
                    means[row, col] = np.nan
    return Superpixels(means, int(size))


def best_patch(disparity, size: int, exclude: tuple[int, int, int, int] | None = None) -> tuple[int, int, int, int]:
    """``(y0, x0, size, size)`` of the superpixel with the largest mean disparity outside ``exclude``.

    Ties go to the first superpixel in row-major order.
    """
    superpixels = superpixel_means(disparity, size, exclude)
    means = superpixels.means
    if np.all(np.isnan(means)):
        raise NanoscopyError(
            f"Every {size}-px superpixel overlaps the central ROI, so there is no place for the STED patch; "
            "use a smaller patch or ROI, or a larger field of view."
        )
    row, col = np.unravel_index(int(np.nanargmax(means)), means.shape)
    return superpixels.region(int(row), int(col))


@dataclass(frozen=True)
class VariabilityScore:
    score: float  # high-variability share of the foreground (0 when there is no foreground)
    votes: np.ndarray  # (Y, X) number of samples voting for the class
    high: np.ndarray  # (Y, X) bool, high-variability pixels
    foreground: int  # pixels with at least one vote


def variability_score(segmentations, low: float = LOW_FRACTION, high: float = HIGH_FRACTION) -> VariabilityScore:
    """The TA-GAN variability score of N binarised segmentations (N, Y, X) of one class.

    Votes are summed per pixel; pixels with no vote are background and ignored; a pixel is
    high-variability when ``low * N < votes < high * N`` (3–8 of 10 with the defaults, as in
    the paper). The score is the high-variability share of the foreground.
    """
    stack = np.asarray(segmentations)
    if stack.ndim != 3 or stack.shape[0] < 2:
        raise NanoscopyError(
            f"The variability score needs a (samples, Y, X) stack of at least 2 segmentations; got shape {stack.shape}."
        )
    if not 0 <= low < high <= 1:
        raise NanoscopyError(f"The variability fractions must satisfy 0 <= low < high <= 1; got low={low}, high={high}.")
    n = stack.shape[0]
    votes = np.count_nonzero(stack, axis=0)
    foreground = int(np.count_nonzero(votes))
    is_high = (votes > low * n) & (votes < high * n)
    score = float(np.count_nonzero(is_high) / foreground) if foreground else 0.0
    return VariabilityScore(score, votes.astype(np.int32), is_high, foreground)
