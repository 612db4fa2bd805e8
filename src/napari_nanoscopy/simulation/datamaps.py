"""pySTED datamaps derived from real STED images, and the example datamaps pySTED ships.

A real STED image ``I`` (photon counts) is modelled as pySTED would acquire it:
``I ~ Poisson(K * D + b)``, where ``K`` is the noise-free pySTED image of one molecule under
the acquisition conditions (counts per molecule; the excitation saturation and depletion are
in it, and pySTED's signal is linear in the number of molecules), ``D`` the datamap (molecules
per pixel) and ``b`` pySTED's detector background (counts per pixel). ``D`` is the
Richardson-Lucy estimate under that Poisson model, with the background in the model rather
than subtracted (no clipping bias) and zero padding outside the field as pySTED scans it.
Richardson-Lucy keeps the total flux, so imaging ``D`` with pySTED gives back the real photon
level. Stopping early is its regularisation: :data:`DEFAULT_ITERATIONS` (30) restore the
structure to the STED PSF's resolution without turning photon noise into bright single-pixel
molecules. On synthetic F-actin imaged by pySTED (known answer) the derived map's correlation
with the truth plateaus from 10 to 30 iterations and falls beyond; stopping by the discrepancy
principle (``iterations=None``) stops earlier and matched the real images' resolution less
well (docs/simulation.md).

pySTED's examples (``pysted/data/examples/{factin,psd95,tubulin}/*.npy``) are 224 x 224 float
maps scaled to a maximum of 1; pySTED's own code (``pysted.data.loader.DatamapLoader``) stores
no pixel size and no molecule count with them. They are read as they ship and multiplied by
:data:`EXAMPLE_MOLECULES` (molecules at the map's maximum), at 20 nm pixels: the pixel of
every pySTED acquisition example and of the FLClab STED images they were drawn from.
"""

from __future__ import annotations

import copy
import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from scipy import signal

from napari_nanoscopy.errors import NanoscopyError
from napari_nanoscopy.simulation.conditions import STANDARD_CONDITIONS, acquire, build_microscope

EXAMPLE_NAMES = ("factin", "psd95", "tubulin")
EXAMPLE_PIXEL_SIZE_NM = 20.0
# Molecules at an example's maximum (the F-actin and tubulin examples sit at it from their 99.9th
# percentile up): the median 99.9th percentile (16.4, 16.9, 26.0 molecules) of the datamaps
# derived, 30 iterations, from the axonal F-actin STED images actin_1-3 of STEDActinFCN.
EXAMPLE_MOLECULES = 17.0
DEFAULT_ITERATIONS = 30
MAX_ITERATIONS = 500
MIN_SIDE = 16
_KERNEL_RADIUS_NM = 500.0  # the STED PSF is below 1e-4 of its peak beyond this
_MAX_KERNEL_SIDE = 129


@dataclass(frozen=True)
class DerivedDatamap:
    """A datamap derived from a real image, with the facts of its derivation."""

    datamap: np.ndarray  # float32 molecules per pixel
    info: dict[str, Any]  # JSON-ready: pixel size, background, iterations, photon totals


def conditions_at(conditions: Mapping[str, Any], pixel_size_nm: float) -> dict[str, Any]:
    """A copy of ``conditions`` whose pixel size is ``pixel_size_nm`` (the datamap's)."""
    adjusted = copy.deepcopy(dict(conditions))
    adjusted["pixelsize"] = float(pixel_size_nm) * 1e-9
    build_microscope(adjusted)  # refuses incomplete conditions before any work
    return adjusted


def detector_background(conditions: Mapping[str, Any]) -> float:
    """pySTED's mean detector background, counts per pixel (rate x gate x pulse rate x dwell time)."""
    microscope = build_microscope(conditions)
    detector = microscope.detector
    rate = microscope.sted.rate
    per_second = detector.background + detector.darkcount
    return float(per_second * detector.det_width * rate * float(conditions["pdt"]))


def imaging_kernel(conditions: Mapping[str, Any] = STANDARD_CONDITIONS, *, sted: bool = True) -> np.ndarray:
    """The noise-free pySTED image of one molecule (counts per molecule), centred, float64."""
    return _kernel_from_json(json.dumps(conditions, sort_keys=True), sted).copy()


@functools.lru_cache(maxsize=4)
def _kernel_from_json(conditions_json: str, sted: bool) -> np.ndarray:
    conditions = json.loads(conditions_json)
    noise_free = copy.deepcopy(conditions)
    noise_free["detector"] = {**conditions["detector"], "noise": False, "background": 0.0}
    pixel_nm = conditions["pixelsize"] * 1e9
    radius = min(math.ceil(_KERNEL_RADIUS_NM / pixel_nm), _MAX_KERNEL_SIDE // 2)
    molecules = 1000  # many, so pySTED's float32 rounding stays far below the kernel's tail
    point = np.zeros((2 * radius + 1, 2 * radius + 1), np.int32)
    point[radius, radius] = molecules
    kernel = acquire(point, noise_free, sted=sted, rng=1).astype(np.float64) / molecules
    kernel.setflags(write=False)
    return kernel


def derive_datamap(
    image: np.ndarray,
    pixel_size_nm: float,
    conditions: Mapping[str, Any] = STANDARD_CONDITIONS,
    *,
    iterations: int | None = DEFAULT_ITERATIONS,
) -> DerivedDatamap:
    """Derive the datamap (molecules per pixel) whose pySTED STED image under ``conditions``
    at ``pixel_size_nm`` reproduces ``image`` (photon counts); see the module docstring.
    ``iterations=None`` stops Richardson-Lucy by the discrepancy principle."""
    counts = checked_counts(image, "The STED image")
    if iterations is not None and (isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer))
                                   or not 1 <= iterations <= MAX_ITERATIONS):
        raise NanoscopyError(
            f"The number of Richardson-Lucy iterations must be a whole number from 1 to {MAX_ITERATIONS}; "
            f"got {iterations!r}; leave it out to stop by the discrepancy principle."
        )
    conditions = conditions_at(conditions, pixel_size_nm)
    kernel = imaging_kernel(conditions, sted=True)
    background = detector_background(conditions)
    molecules, iterations_run = richardson_lucy(counts, kernel, background, iterations)
    info = {
        "pixel_size_nm": float(pixel_size_nm),
        "method": "Richardson-Lucy, Poisson model with pySTED's detector background, STED kernel of the conditions",
        "iterations": iterations_run,
        "stopping": "discrepancy principle" if iterations is None else "fixed",
        "detector_background_counts": background,
        "counts_per_molecule": float(kernel.sum()),
        "image_counts_total": float(counts.sum()),
        "molecules_total": float(molecules.sum()),
    }
    return DerivedDatamap(molecules.astype(np.float32), info)


def richardson_lucy(counts: np.ndarray, kernel: np.ndarray, background: float,
                    iterations: int | None = None) -> tuple[np.ndarray, int]:
    """Richardson-Lucy for ``counts ~ Poisson(kernel * x + background)``, zero padding outside.

    Starts from a flat map of the image's mean flux; each step keeps the total flux. With
    ``iterations=None`` it stops by the discrepancy principle: as soon as the model's Poisson
    deviance from the counts falls to what Poisson noise alone gives (its expectation, summed
    over the pixels), since further steps would fit the noise. Returns ``(x, iterations run)``.
    """
    flipped = kernel[::-1, ::-1]
    sensitivity = np.maximum(signal.fftconvolve(np.ones_like(counts), flipped, mode="same"), 1e-12)
    flux = max(float(counts.mean()) - background, 1e-6)
    estimate = np.full(counts.shape, flux / kernel.sum())
    limit = MAX_ITERATIONS if iterations is None else iterations
    for done in range(limit):
        model = np.maximum(signal.fftconvolve(estimate, kernel, mode="same"), 0.0) + background
        if iterations is None and poisson_deviance(counts, model).sum() <= expected_deviance(model).sum():
            return estimate, done
        ratio = counts / np.maximum(model, 1e-12)
        estimate = estimate * signal.fftconvolve(ratio, flipped, mode="same") / sensitivity
        estimate = np.maximum(estimate, 0.0)  # FFT round-off can leave -1e-17
    return estimate, limit


def poisson_deviance(counts: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Per-pixel Poisson deviance 2 [k log(k / m) - (k - m)] of counts k from means m."""
    safe = np.where(counts > 0, counts, 1.0)
    return 2.0 * (np.where(counts > 0, counts * np.log(safe / mean), 0.0) - (counts - mean))


def expected_deviance(mean: np.ndarray) -> np.ndarray:
    """The expected Poisson deviance of a count drawn with mean m (about 1 for m >> 1, less below)."""
    grid, table = _expected_deviance_table()
    return np.interp(np.log(np.clip(mean, grid[0], grid[-1])), np.log(grid), table)


@functools.lru_cache(maxsize=1)
def _expected_deviance_table() -> tuple[np.ndarray, np.ndarray]:
    from scipy import stats

    grid = np.geomspace(1e-3, 1e4, 300)
    table = np.empty_like(grid)
    for i, mean in enumerate(grid):
        k = np.arange(int(mean + 12 * math.sqrt(mean) + 30), dtype=np.float64)
        table[i] = float((stats.poisson.pmf(k, mean) * poisson_deviance(k, np.full_like(k, mean))).sum())
    return grid, table


def reimage(
    datamap: np.ndarray,
    conditions: Mapping[str, Any] = STANDARD_CONDITIONS,
    *,
    sted: bool = True,
    rng=None,
) -> np.ndarray:
    """Image a float datamap with pySTED: molecules are whole, so each pixel's count is
    rounded up with a probability equal to its fraction (the expected count is kept)."""
    rng = np.random.default_rng(rng)
    molecules = whole_molecules(datamap, rng)
    return acquire(molecules, conditions, sted=sted, rng=rng)


def whole_molecules(datamap: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Stochastic rounding of molecules per pixel to whole counts, keeping their expectation."""
    floor = np.floor(datamap)
    return (floor + (rng.random(datamap.shape) < datamap - floor)).astype(np.int32)


def checked_counts(image, what: str) -> np.ndarray:
    """A real image as float64 counts: 2D, finite, non-negative, not empty or flat."""
    array = np.asarray(image)
    if array.dtype.kind not in "biuf" or array.ndim != 2:
        raise NanoscopyError(
            f"{what} must be one 2D plane of counts; got shape {array.shape} of dtype {array.dtype}. "
            "Give a single-channel 2D image (split stacks and channels first)."
        )
    if min(array.shape) < MIN_SIDE:
        raise NanoscopyError(
            f"{what} is {array.shape[0]} x {array.shape[1]} pixels, too small to deconvolve; give images "
            f"of at least {MIN_SIDE} x {MIN_SIDE} pixels."
        )
    counts = array.astype(np.float64)
    if not np.all(np.isfinite(counts)):
        raise NanoscopyError(f"{what} holds NaN or infinite values; give the raw photon counts of the acquisition.")
    if counts.min() < 0:
        raise NanoscopyError(
            f"{what} holds negative values (down to {counts.min():g}); give raw photon counts, not a "
            "background-subtracted or normalised image."
        )
    if counts.max() <= 0:
        raise NanoscopyError(f"{what} is empty (every pixel is 0); give an image that shows the structure.")
    return counts


def pysted_example(name: str, index: int) -> np.ndarray:
    """One pySTED example datamap as it ships, scaled to molecules (float32, 20 nm pixels)."""
    return (_example_array(_example_path(name, index)) * EXAMPLE_MOLECULES).astype(np.float32)


def pysted_example_indices(name: str) -> list[int]:
    """The indices of the example datamaps of ``name`` that the installed pySTED ships."""
    folder = _examples_folder() / _checked_example_name(name)
    return sorted(int(path.stem) for path in folder.glob("*.npy") if path.stem.isdigit())


def _checked_example_name(name: str) -> str:
    if name not in EXAMPLE_NAMES:
        raise NanoscopyError(
            f"pySTED has no example datamaps named {name!r}; choose one of {', '.join(EXAMPLE_NAMES)}."
        )
    return name


def _examples_folder() -> Path:
    try:
        return Path(str(resources.files("pysted"))) / "data" / "examples"
    except ModuleNotFoundError:
        raise NanoscopyError("pySTED is not installed; install napari-nanoscopy with its simulation extra.") from None


def _example_path(name: str, index: int) -> Path:
    path = _examples_folder() / _checked_example_name(name) / f"{int(index)}.npy"
    if not path.is_file():
        available = ", ".join(str(i) for i in pysted_example_indices(name))
        raise NanoscopyError(f"pySTED ships no example {name} {index}; its {name} examples are {available}.")
    return path


def _example_array(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise NanoscopyError(f"Cannot read the pySTED example {path} ({error}); reinstall pySTED.") from None
    if array.ndim != 2 or array.dtype.kind != "f" or not np.all(np.isfinite(array)) or array.min() < 0:
        raise NanoscopyError(f"The pySTED example {path} is not a 2D map of non-negative numbers; reinstall pySTED.")
    return array.astype(np.float64)


STATISTICS = ("mean", "background", "p50", "p90", "p99", "p99.9")


def intensity_statistics(image: np.ndarray) -> dict[str, float]:
    """Mean, background and percentiles of an image's counts. The background is the mean over
    the quarter of the pixels that are dimmest once smoothed (a 60 nm-ish Gaussian of 3 px), so
    structure edges and single noisy pixels do not decide it."""
    from scipy import ndimage

    image = np.asarray(image, np.float64)
    smooth = ndimage.gaussian_filter(image, 3.0, mode="reflect")
    dim = smooth <= np.percentile(smooth, 25)
    percentiles = np.percentile(image, [50, 90, 99, 99.9])
    return {
        "mean": float(image.mean()),
        "background": float(image[dim].mean()),
        **{name: float(value) for name, value in zip(STATISTICS[2:], percentiles)},
    }


def agreement(real: np.ndarray, simulated: np.ndarray, pixel_size_nm: float) -> dict[str, Any]:
    """How a re-imaged datamap compares with the real image: decorrelation resolution (nm, None
    when no peak stands above noise) and intensity statistics of both."""
    from napari_nanoscopy.analysis.resolution import decorrelation_resolution

    return {
        "resolution_nm": {
            "real": decorrelation_resolution(real, pixel_size_nm).resolution_nm,
            "simulated": decorrelation_resolution(simulated, pixel_size_nm).resolution_nm,
        },
        "statistics": {"real": intensity_statistics(real), "simulated": intensity_statistics(simulated)},
    }
