"""The uncertainty layer's estimator, its candidates, and how well each predicts the error.

The shipped uncertainty is the Monte-Carlo dropout spread *pooled over a neighbourhood of about
the STED resolution*: ``sqrt(G * std**2)``, the per-pixel variance of the samples averaged under a
Gaussian ``G`` of :data:`POOLING_SIGMA_MODEL_PX` pixels at the model's pixel size (30 nm for the
bundled 20 nm models, a 70 nm FWHM), then the square root. Why pooled: ten samples estimate a
pixel's spread only to about 25 %, and a structure the network places wrongly is wrong over a
resolution element, not one pixel. It was chosen by ``benchmarks/uncertainty.py``: on the held-out
simulations of every bundled model with dropout it found the 10 % worst pixels (AUROC) better
than the restored intensity, against the simulated STED target and against the noise-free STED,
and better than the raw per-pixel spread, the spread relative to the local signal and the task
network's spread; test-time augmentation did better for the nanodomain models against the
noise-free STED only, at the cost of eight more passes (figures in docs/models.md).

The measures: :func:`worst_pixel_auroc` (how well a predictor ranks the pixels whose absolute
error is among the largest ``fraction`` of the image above the others) and
:func:`spearman` (rank correlation of predictor and absolute error over every pixel).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage, stats

from .errors import NanoscopyError

POOLING_SIGMA_MODEL_PX = 1.5
ESTIMATOR = (f"Monte-Carlo dropout standard deviation pooled over a Gaussian neighbourhood "
             f"(sigma {POOLING_SIGMA_MODEL_PX:g} px at the model's pixel size): sqrt(gaussian(std^2))")
WORST_FRACTION = 0.1
# Test-time augmentation: the eight rotations and mirror images of the square's symmetry group.
DIHEDRAL = tuple((turns, flip) for turns in range(4) for flip in (False, True))


def pooled_spread(std: np.ndarray | None, sigma_px: float) -> np.ndarray | None:
    """The shipped uncertainty: ``sqrt(gaussian(std**2, sigma_px))`` over the last two axes (Y, X).

    ``std`` is the per-pixel Monte-Carlo standard deviation (any leading axes); ``sigma_px`` the
    Gaussian's sigma in ``std``'s pixels. A spread of zero everywhere stays zero; None stays None.
    """
    if std is None:
        return None
    if not (np.isfinite(sigma_px) and sigma_px >= 0):
        raise NanoscopyError(f"The pooling sigma must be a finite number of pixels >= 0, not {sigma_px!r}.")
    variance = np.square(std, dtype=np.float32)
    sigmas = (0,) * (std.ndim - 2) + (sigma_px, sigma_px)
    pooled = ndimage.gaussian_filter(variance, sigmas, mode="reflect", output=variance)
    np.maximum(pooled, 0.0, out=pooled)  # the filter's rounding may dip below zero next to zeros
    return np.sqrt(pooled, out=pooled)


def pooling_sigma(zoom: float) -> float:
    """:data:`POOLING_SIGMA_MODEL_PX` in pixels of an image whose pixels are ``zoom`` model pixels wide."""
    return POOLING_SIGMA_MODEL_PX / zoom


# --- candidates the measurement compares --------------------------------------------------------


def relative_spread(std: np.ndarray, mean: np.ndarray, sigma_px: float = 3.0, floor: float = 0.05) -> np.ndarray:
    """The spread over the local signal: ``std / (local |mean - median| + floor * its maximum)``."""
    signal = ndimage.gaussian_filter(np.abs(mean - np.median(mean)).astype(np.float64), sigma_px)
    return (std / (signal + floor * signal.max() + 1e-12)).astype(np.float32)


def augmentation_spread(restore: Callable[[np.ndarray], np.ndarray], image: np.ndarray) -> np.ndarray:
    """The standard deviation of ``restore`` over the eight rotations and mirror images of ``image``.

    ``restore`` maps an image (its last two axes Y, X) to one output on the same grid; every output
    is turned back before the spread is taken.
    """
    outputs = []
    for turns, flip in DIHEDRAL:
        turned = np.rot90(image, turns, axes=(-2, -1))
        output = restore(np.ascontiguousarray(turned[..., ::-1] if flip else turned))
        outputs.append(np.rot90(output[..., ::-1] if flip else output, -turns, axes=(-2, -1)))
    return np.std(outputs, axis=0, ddof=1).astype(np.float32)


def task_spread(task_samples: np.ndarray) -> np.ndarray:
    """The task network's spread: the std over samples (axis 0), summed over its channels (axis 1)."""
    return task_samples.std(axis=0, ddof=1).sum(axis=0).astype(np.float32)


# --- the measures -------------------------------------------------------------------------------


def _checked(predictor: np.ndarray, error: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    predictor, error = np.asarray(predictor, np.float64), np.asarray(error, np.float64)
    if predictor.shape != error.shape:
        raise NanoscopyError(f"The predictor has shape {predictor.shape} but the error {error.shape}; "
                             "give both on the same pixel grid.")
    if not (np.isfinite(predictor).all() and np.isfinite(error).all()):
        raise NanoscopyError("The predictor or the error has NaN or infinite pixels; give finite arrays.")
    return predictor.ravel(), error.ravel()


def worst_pixel_auroc(predictor: np.ndarray, error: np.ndarray, fraction: float = WORST_FRACTION) -> float:
    """The area under the ROC curve of ``predictor`` for finding the ``fraction`` of pixels with the
    largest ``error``: the chance that a random worst pixel scores above a random other one
    (ties count half). 0.5 is chance, 1 a perfect ranking."""
    predictor, error = _checked(predictor, error)
    if not 0 < fraction < 1:
        raise NanoscopyError(f"The fraction of worst pixels must be between 0 and 1, not {fraction!r}.")
    worst = error >= np.quantile(error, 1 - fraction)
    positives = int(worst.sum())
    negatives = worst.size - positives
    if positives == 0 or negatives == 0:
        raise NanoscopyError("The error is the same at every pixel, so no pixels are worse than others; "
                             "measure on an image the model restores imperfectly.")
    ranks = stats.rankdata(predictor)
    return float((ranks[worst].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def spearman(predictor: np.ndarray, error: np.ndarray) -> float:
    """The Spearman rank correlation of ``predictor`` and ``error`` over every pixel (NaN when either is constant)."""
    predictor, error = _checked(predictor, error)
    if np.ptp(predictor) == 0 or np.ptp(error) == 0:
        return float("nan")
    return float(stats.spearmanr(predictor, error)[0])
