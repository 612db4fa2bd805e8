"""Resolution from images of point sources: isolated spot detection and 2D Gaussian fits.

The FWHM of a spot is that of an elliptical 2D Gaussian (axes along rows and columns)
plus a constant background, fitted by least squares to a window around the spot. The
reported ``fwhm_nm`` is the geometric mean of the two axes' FWHM.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, optimize
from skimage.feature import peak_local_max

from napari_nanoscopy.errors import NanoscopyError

SIGMA_TO_FWHM = 2 * np.sqrt(2 * np.log(2))
_DETECTION_SMOOTHING_NM = 40.0
_MERGE_DISTANCE_NM = 60.0


@dataclass(frozen=True)
class SpotFit:
    """A 2D Gaussian fitted to one spot; positions in pixels, widths in nm."""

    row: float
    col: float
    fwhm_row_nm: float
    fwhm_col_nm: float
    amplitude: float
    background: float

    @property
    def fwhm_nm(self) -> float:
        return float(np.sqrt(self.fwhm_row_nm * self.fwhm_col_nm))


def find_isolated_spots(
    image: np.ndarray,
    pixel_size_nm: float,
    *,
    min_separation_nm: float = 500.0,
    threshold: float | None = None,
    threshold_rel: float = 0.25,
) -> np.ndarray:
    """(row, col) pixel positions of local maxima with no other maximum closer than
    ``min_separation_nm`` and at least a quarter of that distance from the border.

    Maxima are taken on the image smoothed by a Gaussian of 40 nm sigma and at least 60 nm
    apart, so that photon noise on a broad spot does not split it into several maxima
    (spots closer than that are unresolved anyway). They must exceed ``threshold`` (image
    units), by default the median plus ``threshold_rel`` times the range from the median
    to the maximum.
    """
    image = _checked_image(image)
    pixel_size_nm = _checked_pixel_size(pixel_size_nm)
    if min_separation_nm <= 0:
        raise NanoscopyError(f"min_separation_nm must be positive; got {min_separation_nm}.")
    smooth = ndimage.gaussian_filter(image, _DETECTION_SMOOTHING_NM / pixel_size_nm)
    background = float(np.median(smooth))
    if threshold is None:
        threshold = background + threshold_rel * (float(smooth.max()) - background)
    merge_px = max(int(round(_MERGE_DISTANCE_NM / pixel_size_nm)), 1)
    maxima = peak_local_max(smooth, min_distance=merge_px, threshold_abs=threshold, exclude_border=False)
    if len(maxima) == 0:
        return np.empty((0, 2), int)
    separation_px = min_separation_nm / pixel_size_nm
    distances = np.hypot(*(maxima[:, None, :] - maxima[None, :, :]).transpose(2, 0, 1))
    np.fill_diagonal(distances, np.inf)
    border = separation_px / 4
    away_from_border = np.all((maxima >= border) & (maxima <= np.array(image.shape) - 1 - border), axis=1)
    return maxima[(distances.min(axis=1) >= separation_px) & away_from_border]


def fit_spot(image: np.ndarray, position, pixel_size_nm: float, half_window_px: int) -> SpotFit:
    """Fit a 2D Gaussian plus background to the window of ``half_window_px`` around
    ``position`` (row, col). Raises NanoscopyError when the fit does not converge."""
    image = _checked_image(image)
    pixel_size_nm = _checked_pixel_size(pixel_size_nm)
    row, col = (int(round(value)) for value in position)
    top, left = max(row - half_window_px, 0), max(col - half_window_px, 0)
    window = image[top: row + half_window_px + 1, left: col + half_window_px + 1]
    rows, cols = np.mgrid[: window.shape[0], : window.shape[1]].astype(float)

    def residuals(parameters):
        amplitude, centre_row, centre_col, sigma_row, sigma_col, background = parameters
        model = amplitude * np.exp(
            -((rows - centre_row) ** 2) / (2 * sigma_row**2)
            - ((cols - centre_col) ** 2) / (2 * sigma_col**2)
        ) + background
        return (model - window).ravel()

    background = float(np.percentile(window, 10))
    amplitude = max(float(window[row - top, col - left]) - background, 1e-6)
    size = max(window.shape)
    start = [amplitude, row - top, col - left, 2.0, 2.0, background]
    lower = [0.0, 0.0, 0.0, 0.3, 0.3, -np.inf]
    upper = [np.inf, window.shape[0] - 1, window.shape[1] - 1, size, size, np.inf]
    result = optimize.least_squares(residuals, start, bounds=(lower, upper), x_scale="jac")
    if not result.success or result.x[0] <= 0:
        raise NanoscopyError(
            f"The Gaussian fit around pixel ({row}, {col}) did not converge; check that a "
            "single bright spot lies there."
        )
    amplitude, centre_row, centre_col, sigma_row, sigma_col, background = result.x
    return SpotFit(
        row=float(top + centre_row),
        col=float(left + centre_col),
        fwhm_row_nm=float(SIGMA_TO_FWHM * sigma_row * pixel_size_nm),
        fwhm_col_nm=float(SIGMA_TO_FWHM * sigma_col * pixel_size_nm),
        amplitude=float(amplitude),
        background=float(background),
    )


def measure_spots(
    image: np.ndarray,
    pixel_size_nm: float,
    *,
    min_separation_nm: float = 500.0,
    threshold: float | None = None,
    max_axis_ratio: float = 1.4,
) -> list[SpotFit]:
    """Detect isolated spots and fit each on a window reaching halfway to any neighbour.

    Fits that fail, whose centre lands more than two pixels from the detected maximum, or
    whose long axis exceeds ``max_axis_ratio`` times the short one (two spots too close
    to be told apart at detection, or an aggregate) are left out. Single pySTED beads at
    the standard conditions stay below 1.1 (confocal) and 1.4 (STED).
    """
    positions = find_isolated_spots(
        image, pixel_size_nm, min_separation_nm=min_separation_nm, threshold=threshold
    )
    half_window = max(int(min_separation_nm / pixel_size_nm / 2), 3)
    fits = []
    for position in positions:
        try:
            fit = fit_spot(image, position, pixel_size_nm, half_window)
        except NanoscopyError:
            continue
        axis_ratio = max(fit.fwhm_row_nm, fit.fwhm_col_nm) / min(fit.fwhm_row_nm, fit.fwhm_col_nm)
        if np.hypot(fit.row - position[0], fit.col - position[1]) <= 2 and axis_ratio <= max_axis_ratio:
            fits.append(fit)
    return fits


def fwhm_of_point_source(image: np.ndarray, pixel_size_nm: float) -> float:
    """FWHM in nm of the single point source in ``image`` (a fit on the whole image,
    centred on its brightest smoothed pixel)."""
    image = _checked_image(image)
    pixel_size_nm = _checked_pixel_size(pixel_size_nm)
    smooth = ndimage.gaussian_filter(image, _DETECTION_SMOOTHING_NM / pixel_size_nm)
    if smooth.max() <= np.median(smooth):
        raise NanoscopyError("The image has no spot brighter than its background to measure.")
    peak = np.unravel_index(np.argmax(smooth), image.shape)
    return fit_spot(image, peak, pixel_size_nm, max(image.shape)).fwhm_nm


def _checked_image(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2 or min(image.shape) < 5 or image.dtype.kind not in "biuf":
        raise NanoscopyError(
            f"FWHM measurement needs a 2D numeric image of at least 5 x 5 pixels; got "
            f"dtype {image.dtype} and shape {image.shape}."
        )
    image = image.astype(float)
    if not np.all(np.isfinite(image)):
        raise NanoscopyError("The image contains NaN or infinite values; replace them first.")
    return image


def _checked_pixel_size(pixel_size_nm) -> float:
    if isinstance(pixel_size_nm, bool) or not isinstance(pixel_size_nm, (int, float, np.number)) \
            or not np.isfinite(pixel_size_nm) or pixel_size_nm <= 0:
        raise NanoscopyError(f"pixel_size_nm must be a positive number; got {pixel_size_nm!r}.")
    return float(pixel_size_nm)
