"""Image resolution from a single image by decorrelation analysis (Descloux et al. 2019).

Descloux, Grußmayer & Radenovic, "Parameter-free image resolution estimation based on
decorrelation analysis", Nat. Methods 16, 918–924 (2019); the TCAN paper reports its
resolutions this way. The image's Fourier transform ``I(k)`` is cross-correlated with its
phase-only version ``In(k) = I(k) / |I(k)|`` restricted to a disk of radius ``r`` (in units of
the Nyquist frequency)::

    d(r) = Re sum_{|k| < r} I(k) conj(In(k)) / sqrt(sum |I(k)|^2 * sum_{|k| < r} |In(k)|^2)

``d(r)`` rises while the disk gains signal and falls once it gains mostly noise; the peak
position ``r0`` is the highest frequency with signal above noise. The same curve is computed
for ``I(k)`` high-pass filtered by Gaussians of decreasing width, which moves the peak out to
the highest frequency where any structure remains; the largest peak frequency ``kc`` (of
peaks at least 0.05 high) gives the resolution ``2 * pixel size / kc``. The steps and
constants (edge apodisation of 20 pixels, 50 radii, 10 filters, two refinements, peak
significance 0.001, minimum peak height 0.05) follow the authors' reference implementation (ImDecorr).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_nanoscopy.errors import NanoscopyError

N_RADII = 50
N_FILTERS = 10
APODIZATION_PX = 20
MIN_PEAK_AMPLITUDE = 0.05  # peaks lower than this are noise (Descloux et al.)
PEAK_SIGNIFICANCE = 0.001  # a peak must rise this much above the curve's minimum after it
MIN_SIDE = 32


@dataclass(frozen=True)
class DecorrelationResult:
    """A decorrelation-analysis resolution estimate."""

    resolution_nm: float | None  # None when no peak stands above noise
    cutoff: float  # kc, the highest significant peak position, in units of the Nyquist frequency
    amplitude: float  # the height of that peak (an SNR proxy)
    pixel_size_nm: float
    radii: np.ndarray  # r of the unfiltered curve
    curve: np.ndarray  # d(r) of the unfiltered image

    @property
    def resolution_px(self) -> float | None:
        return None if self.cutoff <= 0 else 2.0 / self.cutoff


def decorrelation_resolution(image, pixel_size_nm: float = 1.0) -> DecorrelationResult:
    """Estimate the resolution of a 2D image by decorrelation analysis.

    ``pixel_size_nm`` scales the result (1.0 gives it in pixels). A stack ``(N, Y, X)`` is
    refused: estimate each plane on its own. Returns ``resolution_nm = None`` when the image
    holds no structure above its noise (no significant peak).
    """
    image = _checked(image)
    if isinstance(pixel_size_nm, bool) or not np.isfinite(pixel_size_nm) or pixel_size_nm <= 0:
        raise NanoscopyError(f"pixel_size_nm must be a positive number; got {pixel_size_nm!r}.")
    spectrum, normalised, radius = _spectra(image)
    inside = radius < 1.0
    spectrum = np.where(inside, spectrum, 0)

    radii = np.linspace(0.0, 1.0, N_RADII)
    curve = _curve(spectrum, normalised, radius, radii)
    index0, amplitude0 = _peak(curve)
    cutoff0 = radii[index0]

    # The widest high-pass filter: a quarter of the image; the narrowest: 0.15 (ImDecorr's values).
    widest = 2.0 / cutoff0 if cutoff0 > 0 else max(image.shape) / 2.0
    widths = np.concatenate([[image.shape[0] / 4.0], np.exp(np.linspace(np.log(widest), np.log(0.15), N_FILTERS))])
    cutoffs, amplitudes = [], []
    search = radii
    for refinement in range(2):
        cutoffs_step, amplitudes_step = [], []
        for width in widths:
            filtered = spectrum * (1.0 - np.exp(-2.0 * width * width * radius * radius))
            index, amplitude = _peak(_curve(filtered, normalised, radius, search))
            cutoffs_step.append(float(search[index]))
            amplitudes_step.append(amplitude)
        cutoffs.extend(cutoffs_step)
        amplitudes.extend(amplitudes_step)
        if refinement == 0:
            # Refine between the filter with the highest peak frequency and the one with the
            # best compromise sqrt(frequency x amplitude), and the radii around that peak.
            by_cutoff = int(np.argmax(cutoffs_step))
            by_mean = int(np.argmax(np.sqrt(np.asarray(cutoffs_step) * np.asarray(amplitudes_step))))
            first, last = min(by_cutoff, by_mean), max(by_cutoff, by_mean)
            if first == 0:
                last = 0
            elif last == len(widths) - 1:
                last = len(widths) - 2
            widths = np.exp(np.linspace(np.log(widths[first]), np.log(widths[last + 1]), N_FILTERS + 2))[1:-1]
            peak = cutoffs_step[by_cutoff]
            search = np.linspace(max(peak - 0.05, 0.0), min(peak + 0.3, 1.0), N_RADII)
    cutoffs.append(cutoff0)
    amplitudes.append(amplitude0)
    cutoffs = np.asarray(cutoffs)
    amplitudes = np.asarray(amplitudes)
    significant = amplitudes >= MIN_PEAK_AMPLITUDE
    if not significant.any() or cutoffs[significant].max() <= 0:
        return DecorrelationResult(None, 0.0, 0.0, float(pixel_size_nm), radii, curve)
    best = int(np.argmax(np.where(significant, cutoffs, -1.0)))
    cutoff = float(cutoffs[best])
    return DecorrelationResult(
        resolution_nm=2.0 * float(pixel_size_nm) / cutoff,
        cutoff=cutoff,
        amplitude=float(amplitudes[best]),
        pixel_size_nm=float(pixel_size_nm),
        radii=radii,
        curve=curve,
    )


def _checked(image) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim != 2 or array.dtype.kind not in "biuf":
        raise NanoscopyError(
            f"Decorrelation analysis needs one 2D numeric image; got dtype {array.dtype} and shape {array.shape}. "
            "For a stack, analyse each plane."
        )
    if min(array.shape) < MIN_SIDE:
        raise NanoscopyError(
            f"Decorrelation analysis needs at least {MIN_SIDE}x{MIN_SIDE} pixels; the image is "
            f"{array.shape[0]}x{array.shape[1]}."
        )
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise NanoscopyError("The image contains NaN or infinite values; replace them before estimating its resolution.")
    if np.ptp(array) == 0:
        raise NanoscopyError("The image is constant, so it has no resolution to estimate; pick an image with structure.")
    return array


def _apodise(image: np.ndarray, border: int) -> np.ndarray:
    """Subtract the mean and taper the outer ``border`` pixels to zero with a cosine edge."""
    image = image - image.mean()
    out = image.copy()
    for axis, length in enumerate(image.shape):
        width = min(border, length // 4)
        if width < 1:
            continue
        ramp = np.sin(np.linspace(0.0, np.pi / 2, width, endpoint=False) + np.pi / (4 * width)) ** 2
        window = np.ones(length)
        window[:width] = ramp
        window[-width:] = ramp[::-1]
        shape = [1, 1]
        shape[axis] = length
        out *= window.reshape(shape)
    return out


def _spectra(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Fourier transform, its phase-only version and |k| in units of the Nyquist frequency."""
    spectrum = np.fft.fft2(_apodise(image, APODIZATION_PX))
    spectrum[0, 0] = 0  # the mean carries no resolution
    magnitude = np.abs(spectrum)
    with np.errstate(divide="ignore", invalid="ignore"):
        normalised = np.where(magnitude > 0, spectrum / magnitude, 0)
    ky = 2.0 * np.fft.fftfreq(image.shape[0])[:, None]
    kx = 2.0 * np.fft.fftfreq(image.shape[1])[None, :]
    return spectrum, normalised, np.sqrt(ky * ky + kx * kx)


def _curve(spectrum: np.ndarray, normalised: np.ndarray, radius: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """d(r) for every r in ``radii`` (one sort, then cumulative sums)."""
    energy = np.sqrt(np.sum(np.abs(spectrum) ** 2))
    if energy == 0:
        return np.zeros(len(radii))
    order = np.argsort(radius, axis=None)
    sorted_radius = radius.ravel()[order]
    cross = np.cumsum(np.real(spectrum.ravel()[order] * np.conj(normalised.ravel()[order])))
    weight = np.cumsum(np.abs(normalised.ravel()[order]) ** 2)
    counts = np.searchsorted(sorted_radius, radii, side="left")
    d = np.zeros(len(radii))
    has = counts > 0
    d[has] = cross[counts[has] - 1] / (energy * np.sqrt(np.maximum(weight[counts[has] - 1], 1e-300)))
    return d


def _peak(d: np.ndarray) -> tuple[int, float]:
    """Index and height of the curve's highest local maximum that is not its last point
    (ImDecorr's getDcorrMax): a maximum at the end is dropped unless it rises by at least
    PEAK_SIGNIFICANCE above the curve's minimum after it."""
    d = np.round(d, 12)
    t = d.copy()
    index = int(np.argmax(t))
    amplitude = float(t[index])
    while index == len(t) - 1:
        t = t[:-1]
        if len(t) == 0:
            return 0, 0.0
        index = int(np.argmax(t))
        amplitude = float(t[index])
        if t[index] - d[index:].min() > PEAK_SIGNIFICANCE:
            break
        t[index] = d[index:].min()
        index = len(t) - 1
    return index, amplitude
