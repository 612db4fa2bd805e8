"""Image-quality and mask-overlap metrics for restored nanoscopy images.

Every function takes numpy arrays and never modifies them. Images are 2D ``(Y, X)`` or
stacks ``(N, Y, X)``; a stack scores as the mean of its images' scores, each image scored
exactly as it would be on its own (including its own data range when none is given).
The two arrays must have the same shape.

``data_range`` (the span of possible intensities, used by PSNR and the SSIM family) defaults
to the reference image's ``max - min``. scikit-image instead guesses it from the dtype
(or, for SSIM of float images, refuses to guess); its documentation recommends
``max - min`` for float images, which is what this module does for every dtype.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

from napari_nanoscopy.errors import NanoscopyError

__all__ = ["MS_SSIM_WEIGHTS", "dice", "iou", "ms_ssim", "nrmse", "psnr", "ssim"]

# SSIM stabilising constants and window of Wang et al. 2004: a gaussian of sigma 1.5
# truncated at 3.5 sigma (an 11x11 window), as scikit-image's ``gaussian_weights=True``.
_K1 = 0.01
_K2 = 0.03
_GAUSSIAN_SIGMA = 1.5
_GAUSSIAN_TRUNCATE = 3.5
_WINDOW_RADIUS = int(_GAUSSIAN_TRUNCATE * _GAUSSIAN_SIGMA + 0.5)
_WINDOW_SIZE = 2 * _WINDOW_RADIUS + 1

# Per-scale exponents, finest scale first (Wang, Simoncelli & Bovik 2003).
MS_SSIM_WEIGHTS: dict[int, tuple[float, ...]] = {
    1: (1.0,),
    3: (0.2096, 0.4659, 0.3245),
    5: (0.0448, 0.2856, 0.3001, 0.2363, 0.1333),
}

_NRMSE_NORMALIZATIONS = ("euclidean", "min-max", "mean")


def psnr(reference, image, data_range=None) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range**2 / MSE)``.

    ``data_range`` defaults to the reference's ``max - min``. Identical images give ``inf``.
    Matches ``skimage.metrics.peak_signal_noise_ratio`` given the same ``data_range``.
    """
    references, images = _as_image_stacks(reference, image)

    def score(reference_image, test_image):
        span = _resolve_data_range(reference_image, data_range)
        mean_squared_error = np.mean((reference_image - test_image) ** 2)
        if mean_squared_error == 0:
            return np.inf
        return 10 * np.log10(span**2 / mean_squared_error)

    return _mean_over_images(score, references, images)


def ssim(reference, image, data_range=None) -> float:
    """Structural similarity (Wang et al. 2004) with the standard gaussian window.

    The window is a gaussian of sigma 1.5 (11x11); statistics use population covariance and
    the 5-pixel border the window cannot cover is left out of the mean. ``data_range``
    defaults to the reference's ``max - min``. Images must be at least 11x11 pixels.
    Matches ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=...)``.
    """
    references, images = _as_image_stacks(reference, image)
    _require_min_side(references.shape, _WINDOW_SIZE, "SSIM")

    def score(reference_image, test_image):
        span = _resolve_data_range(reference_image, data_range)
        luminance, contrast_structure = _ssim_maps(reference_image, test_image, span)
        return np.mean(luminance * contrast_structure)

    return _mean_over_images(score, references, images)


def ms_ssim(reference, image, data_range=None, scales=5) -> float:
    """Multi-scale structural similarity (Wang, Simoncelli & Bovik 2003).

    Contrast-structure is measured at every scale and luminance only at the coarsest; each
    scale is the previous one 2x average-pooled (an odd last row/column is dropped). The
    per-scale terms are raised to :data:`MS_SSIM_WEIGHTS` ``[scales]`` (``scales`` is 1, 3
    or 5) and multiplied. Negative terms (anti-correlated structure) count as 0, as in
    TensorFlow's ``ssim_multiscale``, because fractional powers of them are undefined; so
    ``scales=1`` equals :func:`ssim` clipped at 0. The window and constants are those of
    :func:`ssim`, with ``data_range`` (default: the reference's ``max - min``) fixed across
    scales. The smaller image side must be at least ``11 * 2**(scales - 1)`` pixels.
    """
    if scales not in MS_SSIM_WEIGHTS:
        raise NanoscopyError(
            f"MS-SSIM supports 1, 3 or 5 scales, got {scales!r}; pass scales=1, 3 or 5."
        )
    weights = MS_SSIM_WEIGHTS[scales]
    references, images = _as_image_stacks(reference, image)
    _require_min_side(
        references.shape, _WINDOW_SIZE * 2 ** (scales - 1), f"{scales}-scale MS-SSIM"
    )

    def score(reference_image, test_image):
        span = _resolve_data_range(reference_image, data_range)
        similarity = 1.0
        for weight in weights[:-1]:
            _, contrast_structure = _ssim_maps(reference_image, test_image, span)
            similarity *= max(np.mean(contrast_structure), 0.0) ** weight
            reference_image = _average_pool_2x(reference_image)
            test_image = _average_pool_2x(test_image)
        luminance, contrast_structure = _ssim_maps(reference_image, test_image, span)
        return similarity * max(np.mean(luminance * contrast_structure), 0.0) ** weights[-1]

    return _mean_over_images(score, references, images)


def nrmse(reference, image, normalization="euclidean") -> float:
    """Root-mean-square error divided by a property of the reference.

    ``normalization`` is ``"euclidean"`` (root mean square of the reference),
    ``"min-max"`` (its ``max - min``) or ``"mean"`` (its mean). Matches
    ``skimage.metrics.normalized_root_mse``.
    """
    if normalization not in _NRMSE_NORMALIZATIONS:
        raise NanoscopyError(
            f"Unknown NRMSE normalization {normalization!r}; "
            f"use one of {', '.join(repr(name) for name in _NRMSE_NORMALIZATIONS)}."
        )
    references, images = _as_image_stacks(reference, image)

    def score(reference_image, test_image):
        if normalization == "euclidean":
            denominator = np.sqrt(np.mean(reference_image**2))
        elif normalization == "min-max":
            denominator = np.ptp(reference_image)
        else:
            denominator = np.mean(reference_image)
        if denominator == 0:
            raise NanoscopyError(
                f"The reference's {normalization} normalization is zero, so NRMSE is "
                "undefined; choose another normalization or check the reference image."
            )
        return np.sqrt(np.mean((reference_image - test_image) ** 2)) / denominator

    return _mean_over_images(score, references, images)


def dice(a, b) -> float:
    """Dice coefficient ``2 |A & B| / (|A| + |B|)`` of two masks.

    Boolean masks or label images; every non-zero pixel is foreground. Two empty masks
    agree perfectly and score 1.0. A stack ``(N, Y, X)`` scores as the mean over images.
    """
    masks_a, masks_b = _as_mask_stacks(a, b)

    def score(mask_a, mask_b):
        total = np.count_nonzero(mask_a) + np.count_nonzero(mask_b)
        if total == 0:
            return 1.0
        return 2 * np.count_nonzero(mask_a & mask_b) / total

    return _mean_over_images(score, masks_a, masks_b)


def iou(a, b) -> float:
    """Intersection over union (Jaccard index) ``|A & B| / |A | B|`` of two masks.

    Boolean masks or label images; every non-zero pixel is foreground. Two empty masks
    agree perfectly and score 1.0. A stack ``(N, Y, X)`` scores as the mean over images.
    For a single image, ``dice == 2 * iou / (1 + iou)``.
    """
    masks_a, masks_b = _as_mask_stacks(a, b)

    def score(mask_a, mask_b):
        union = np.count_nonzero(mask_a | mask_b)
        if union == 0:
            return 1.0
        return np.count_nonzero(mask_a & mask_b) / union

    return _mean_over_images(score, masks_a, masks_b)


def _as_image_stacks(reference, image) -> tuple[np.ndarray, np.ndarray]:
    """Validate a pair of images and return them as float64 ``(N, Y, X)`` stacks."""
    reference, image = _matching_pair(reference, image, "reference", "image")
    for name, array in (("reference", reference), ("image", image)):
        if array.dtype.kind not in "biuf":
            raise NanoscopyError(
                f"The {name} has dtype {array.dtype}, which is not a real number type; "
                "pass numeric image arrays."
            )
    reference = np.asarray(reference, dtype=np.float64)
    image = np.asarray(image, dtype=np.float64)
    return _as_stack(reference), _as_stack(image)


def _as_mask_stacks(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Validate a pair of masks and return their foregrounds as boolean ``(N, Y, X)`` stacks."""
    a, b = _matching_pair(a, b, "first mask", "second mask")
    return _as_stack(a != 0), _as_stack(b != 0)


def _matching_pair(first, second, first_name, second_name) -> tuple[np.ndarray, np.ndarray]:
    first = np.asarray(first)
    second = np.asarray(second)
    if first.shape != second.shape:
        raise NanoscopyError(
            f"The {first_name} has shape {first.shape} but the {second_name} has shape "
            f"{second.shape}; compare arrays of the same shape."
        )
    if first.ndim not in (2, 3) or first.size == 0:
        raise NanoscopyError(
            f"Expected a non-empty 2D image (Y, X) or stack (N, Y, X), got shape "
            f"{first.shape}; pass one image or a stack of images."
        )
    return first, second


def _as_stack(array: np.ndarray) -> np.ndarray:
    return array[np.newaxis] if array.ndim == 2 else array


def _mean_over_images(score: Callable, firsts: np.ndarray, seconds: np.ndarray) -> float:
    return float(np.mean([score(first, second) for first, second in zip(firsts, seconds)]))


def _resolve_data_range(reference_image: np.ndarray, data_range) -> float:
    if data_range is None:
        span = float(np.ptp(reference_image))
        if span == 0:
            raise NanoscopyError(
                "The reference image is constant, so its data range (max - min) is zero; "
                "pass data_range explicitly, e.g. the intensity span of the detector."
            )
        return span
    if not np.isfinite(data_range) or data_range <= 0:
        raise NanoscopyError(
            f"data_range must be a positive finite number, got {data_range!r}; "
            "pass the span of possible intensities."
        )
    return float(data_range)


def _require_min_side(stack_shape: tuple[int, ...], min_side: int, metric_name: str) -> None:
    if min(stack_shape[-2:]) < min_side:
        raise NanoscopyError(
            f"{metric_name} needs images of at least {min_side}x{min_side} pixels, got "
            f"{stack_shape[-2]}x{stack_shape[-1]}; use larger images or fewer scales."
        )


def _ssim_maps(
    reference_image: np.ndarray, test_image: np.ndarray, data_range: float
) -> tuple[np.ndarray, np.ndarray]:
    """Luminance and contrast-structure maps, without the border the window cannot cover."""

    def local_mean(array):
        return ndimage.gaussian_filter(
            array, _GAUSSIAN_SIGMA, mode="reflect", truncate=_GAUSSIAN_TRUNCATE
        )

    mean_reference = local_mean(reference_image)
    mean_test = local_mean(test_image)
    variance_reference = local_mean(reference_image * reference_image) - mean_reference**2
    variance_test = local_mean(test_image * test_image) - mean_test**2
    covariance = local_mean(reference_image * test_image) - mean_reference * mean_test

    c1 = (_K1 * data_range) ** 2
    c2 = (_K2 * data_range) ** 2
    luminance = (2 * mean_reference * mean_test + c1) / (mean_reference**2 + mean_test**2 + c1)
    contrast_structure = (2 * covariance + c2) / (variance_reference + variance_test + c2)

    inner = (slice(_WINDOW_RADIUS, -_WINDOW_RADIUS),) * 2
    return luminance[inner], contrast_structure[inner]


def _average_pool_2x(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[0] // 2, image.shape[1] // 2
    blocks = image[: 2 * height, : 2 * width].reshape(height, 2, width, 2)
    return blocks.mean(axis=(1, 3))
