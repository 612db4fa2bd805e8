"""The domain check: does an image resemble the inputs a model was trained on?

A model package carries a :class:`~napari_nanoscopy.card.DomainFingerprint`: the mean and spread
of a few statistics of its training inputs, and the score above which an image is outside them,
calibrated on held-out in-domain images (docs/domain.md says why these statistics). Every
restoration scores its image against it (:func:`check_frames`); a model without a fingerprint
gets a report that says "domain unknown".

The statistics are computed on the first input channel (the image a user gives), on square
windows at the model's pixel size, each window normalised with the model's own input
normalisation fitted to it alone, so that a window of a large image and a small training image
are compared alike:

- five quantiles of the normalised intensities, the fraction of background pixels (how much
  of the field holds structure, how bright it is against the rest) and the fraction at the
  window's floor (photon counts of a dim background are mostly zero: a brighter background,
  another dwell time or an analogue detector changes it),
- the logarithm of the normalised variance, of a robust noise estimate, of the shot noise
  (the slope of the noise variance against the local intensity: 1 / the photons spanning the
  normalised range, whatever the structure), of the background photons relative to that span
  (the intercept of the same line over its slope) and of the edge width (the span over the
  steepest smoothed gradients: the PSF's width where structures end sharply),
- the share of the spectrum's power in nine radial frequency bands, in cycles per pixel of the
  model's grid (the PSF's cut-off, the noise floor and the structure's scale: a wrong pixel size
  moves all of them).

Each statistic is standardised by the training spread and whitened with the training
covariance (in-domain images vary along correlated directions, a shift breaks the
correlations); a window scores its distance (root mean square per statistic) to the nearest
training windows so whitened (:data:`NEIGHBOURS`: the training set is not one Gaussian cloud,
and a shift that lands between its clusters is caught), and the image the median over its
windows (per-window scores come back in :attr:`DomainReport.per_tile`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable, Sequence

import numpy as np
from scipy import ndimage

from .card import DomainFingerprint
from .errors import NanoscopyError
from .normalisation import fit_affine
from .tile_run import resize_planes

# 2: nearest training windows instead of the Mahalanobis distance to their centre; background and edge width
FINGERPRINT_VERSION = 2
QUANTILES = (5, 25, 50, 75, 95)
# Radial frequency bands, cycles per pixel at the model's pixel size (0.5 is Nyquist).
BAND_EDGES = (0.0, 0.03, 0.05, 0.08, 0.12, 0.17, 0.23, 0.30, 0.38, 0.5)
FEATURES = (
    *(f"quantile_{q}" for q in QUANTILES), "background_fraction", "floor_fraction", "log_variance", "log_noise",
    "log_shot_noise", "log_background_photons", "log_edge_width",
    *(f"band_{low:g}_{high:g}" for low, high in zip(BAND_EDGES[:-1], BAND_EDGES[1:])),
)
# Plain words for each statistic, for the message that says what differs most.
FEATURE_GROUPS = {"quantile": "intensity distribution", "background": "background area",
                  "floor": "background level", "log_background": "background level",
                  "log_edge": "edge sharpness (the PSF's width)", "log": "noise level",
                  "band": "spatial frequency spectrum"}
# Window side, pixels at the model's pixel size (smaller training images: their side). 64 rather
# than 128: four times more windows per training image steady the covariance (with 128-pixel
# windows on 24 F-actin images, 10-15 % of held-out images were flagged; with 64, none).
DEFAULT_WINDOW = 64
MIN_WINDOW = 32
MAX_WINDOWS = 64  # windows scored per plane, spread over it: the check stays cheap on huge images
MAX_PLANES = 16  # planes of a stack scored, spread over it
MIN_TRAINING_WINDOWS = 8
MIN_HELD_OUT = 5
# The threshold: this margin times this percentile of the held-out in-domain scores (the highest
# one alone would hang the threshold on the single most unusual held-out image).
THRESHOLD_MARGIN = 1.2
THRESHOLD_PERCENTILE = 90.0
SHRINKAGE = 0.1  # of the training covariance towards its diagonal
# A window's score is its mean distance to this many nearest training windows (1 follows noise in
# single windows; more blurs the clusters a shift falls between: docs/domain.md has the figures).
NEIGHBOURS = 2
MAX_REFERENCE = 1024  # training windows kept in the fingerprint, spread over the training set
SCALE_FLOOR = 1e-3  # a statistic constant over the training set still gets a finite spread
BACKGROUND_LEVEL = 0.1  # of the normalised range: below it a pixel counts as background
STRUCTURE_FRACTION = 0.2  # a window spanning less than this of the plane's widest window's range is empty

@dataclass(frozen=True)
class DomainReport:
    """How far an image is from a model's training inputs.

    ``score`` is ``None`` when the model carries no fingerprint ("domain unknown"); ``flagged``
    is True when the score is above ``threshold``, and ``message`` says so in one sentence for a
    user. ``per_tile`` holds each window's score (planes x rows x columns, NaN where a window was
    not scored) with ``tile_size`` its side in the image's pixels, when there is more than one.
    ``differs_most`` names the statistics farthest from the training data (standardised).
    """

    score: float | None
    threshold: float | None
    flagged: bool
    message: str
    per_tile: np.ndarray | None = None
    tile_size: int | None = None
    differs_most: dict[str, float] = field(default_factory=dict)

    @property
    def known(self) -> bool:
        return self.score is not None

    def to_dict(self) -> dict[str, Any]:
        """The report for a provenance record (plain JSON values; the per-window scores summarised)."""
        record: dict[str, Any] = {"score": _rounded(self.score), "threshold": _rounded(self.threshold),
                                  "flagged": self.flagged, "message": self.message}
        if self.per_tile is not None:
            scored = self.per_tile[np.isfinite(self.per_tile)]
            record.update(tiles_scored=int(scored.size), tiles_flagged=int(np.count_nonzero(scored > self.threshold)),
                          tile_size=self.tile_size)
        if self.differs_most:
            record["differs_most"] = {name: round(value, 2) for name, value in self.differs_most.items()}
        return record


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


# --- statistics of one window --------------------------------------------------------------------


def window_features(window: np.ndarray, low: float, high: float) -> np.ndarray:
    """The statistics (in :data:`FEATURES` order) of one normalised (Y, X) window whose
    normalisation maps the data's low and high ends to ``low`` and ``high``."""
    unit = (np.asarray(window, dtype=np.float64) - low) / (high - low)  # 0 .. 1 over the normalised range
    quantiles = np.percentile(unit, QUANTILES)
    background = np.count_nonzero(unit < BACKGROUND_LEVEL) / unit.size
    # photon counts with a dim background sit at their floor (zero counts) in many pixels
    floor = np.count_nonzero(unit == unit.min()) / unit.size
    variance = float(unit.var())
    # the noise of a smooth image: a 2x2 second difference removes gradients; MAD -> sigma for Gaussian noise
    second = (unit[:-1, :-1] - unit[1:, :-1] - unit[:-1, 1:] + unit[1:, 1:]) / 2.0
    noise = 1.4826 * float(np.median(np.abs(second - np.median(second))))
    # shot noise: the noise variance grows with the local intensity, by 1 / (photons spanning the
    # normalised range); the slope of one on the other measures it whatever the structure
    local = (unit[:-1, :-1] + unit[1:, :-1] + unit[:-1, 1:] + unit[1:, 1:]).ravel() / 4.0
    spread = local.var()
    squared = second.ravel() ** 2
    shot = float(np.cov(local, squared)[0, 1] / spread) if spread > 0 else 0.0
    # Poisson noise of counts c = lo + unit (hi - lo): variance = unit / (hi - lo) + lo / (hi - lo)^2, so the
    # intercept over the slope is lo / (hi - lo): the background photons relative to the signal's span
    intercept = float(squared.mean() - shot * local.mean())
    relative_background = max(intercept, 0.0) / shot if shot > 0 else 0.0
    # the edge width (span over the steepest gradients, pixels) follows the PSF where structures end sharply
    smooth = ndimage.gaussian_filter(unit, 1.5)
    steepest = float(np.percentile(np.hypot(*np.gradient(smooth)), 99))
    edge_width = float(np.subtract(*np.percentile(smooth, [99, 1]))) / (steepest + 1e-6)
    bands = _band_power(unit)
    return np.concatenate([quantiles, [background, floor, math.log10(variance + 1e-8), math.log10(noise + 1e-6),
                                       math.log10(max(shot, 0.0) + 1e-4), math.log10(relative_background + 1e-3),
                                       math.log10(edge_width + 1e-3)], bands])



def _band_power(unit: np.ndarray) -> np.ndarray:
    """log10 of each radial band's share of the (tapered, mean-removed) power spectrum."""
    taper, bands = _spectral_grid(*unit.shape)
    power = np.abs(np.fft.rfft2((unit - unit.mean()) * taper)) ** 2
    total = power.sum() - power[0, 0] + 1e-12
    return np.log10(np.asarray([power[band].sum() / total for band in bands]) + 1e-9)


@lru_cache(maxsize=16)
def _spectral_grid(height: int, width: int) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """The Hann taper of a (height, width) window and the mask of each radial band of its rfft2."""
    radius = np.hypot(*np.meshgrid(np.fft.fftfreq(height), np.fft.rfftfreq(width), indexing="ij"))
    bands = tuple((radius > low) & (radius <= high) for low, high in zip(BAND_EDGES[:-1], BAND_EDGES[1:]))
    return np.outer(np.hanning(height), np.hanning(width)), bands


# --- windows of an image --------------------------------------------------------------------------


def _normalised_features(card, raw: np.ndarray) -> np.ndarray | None:
    """Features of one raw window (at the model's pixel size) normalised on its own with the model's
    first input normalisation; None when it is constant (nothing to compare) or not finite."""
    spec = card.input_normalizations()[0]
    raw = np.asarray(raw, dtype=np.float32)
    if not np.isfinite(raw).all():
        return None
    try:
        normalised = fit_affine(raw, spec).apply(raw)
    except NanoscopyError:  # a constant window: padding or an empty corner
        return None
    low, high = spec.range
    if spec.mode == "none":  # the channel goes in as it is: compare it over its own span
        low, high = float(normalised.min()), float(normalised.max())
        if high <= low:
            return None
    return window_features(normalised, low, high)


def _starts(length: int, side: int) -> list[int]:
    """Starts of ``length // side`` non-overlapping windows of ``side``, spread from the start to the end
    (any remainder falls between them)."""
    if length <= side:
        return [0]
    count = length // side
    return [round(i * (length - side) / (count - 1)) for i in range(count)] if count > 1 else [0]


def spread(count: int, most: int) -> list[int]:
    """At most ``most`` indices spread evenly over ``range(count)``."""
    if count <= most:
        return list(range(count))
    return sorted({round(i * (count - 1) / (most - 1)) for i in range(most)})


def plane_windows(plane, zoom: float, window: int) -> tuple[list[tuple[int, int, np.ndarray]], int, int, int]:
    """Windows of one (Y, X) plane (any sliceable array, read one window at a time) at the model's
    pixel size: ``([(row, column, raw window), ...], rows, columns, side in the image's pixels)``.

    ``zoom`` is the image's pixel size over the model's; each window covers ``window`` model pixels
    (the whole plane when it is smaller). At most :data:`MAX_WINDOWS` are read, spread over the plane.
    """
    height, width = (int(n) for n in plane.shape[-2:])
    side = max(1, round(window / zoom))
    rows, columns = _starts(height, side), _starts(width, side)
    grid = [(r, c) for r in range(len(rows)) for c in range(len(columns))]
    windows = []
    for index in spread(len(grid), MAX_WINDOWS):
        r, c = grid[index]
        raw = np.asarray(plane[rows[r]:rows[r] + side, columns[c]:columns[c] + side], dtype=np.float32)
        target = tuple(max(1, round(n * zoom)) for n in raw.shape)
        if target != raw.shape:
            raw = resize_planes(raw[None], target)[0]
        windows.append((r, c, raw))
    return windows, len(rows), len(columns), side


def scored_windows(card, plane, zoom: float, window: int) -> tuple[list[tuple[int, int, np.ndarray]], int, int, int]:
    """The statistics of the windows of one plane that hold structure: ``([(row, column, features),
    ...], rows, columns, side)`` as :func:`plane_windows` gives them.

    A window is left out when it is smaller than :data:`MIN_WINDOW`, constant, or nearly empty: its
    intensity span (1st to 99th percentile) under :data:`STRUCTURE_FRACTION` of the plane's widest
    window's. Empty background says nothing about the structure the model was trained on, and a
    large field holds more of it than a small training image (so training images are read alike).
    """
    windows, rows, columns, side = plane_windows(plane, zoom, window)
    windows = [(r, c, raw) for r, c, raw in windows if min(raw.shape) >= MIN_WINDOW]
    spans = [float(np.subtract(*np.percentile(raw, [99, 1]))) for _, _, raw in windows]
    widest = max(spans, default=0.0)
    scored = []
    for (row, column, raw), span in zip(windows, spans):
        if span >= STRUCTURE_FRACTION * widest and (features := _normalised_features(card, raw)) is not None:
            scored.append((row, column, features))
    return scored, rows, columns, side


def image_features(card, plane, zoom: float = 1.0, window: int = DEFAULT_WINDOW) -> np.ndarray:
    """The statistics of each scored window of one plane, (windows, features)."""
    scored, *_ = scored_windows(card, plane, zoom, window)
    return np.asarray([features for _, _, features in scored], dtype=np.float64).reshape(-1, len(FEATURES))


# --- fingerprint and calibration ------------------------------------------------------------------


def window_for(images: Sequence[np.ndarray]) -> int:
    """The window side for a training set: its smallest image side, at most :data:`DEFAULT_WINDOW`."""
    smallest = min(min(np.shape(image)[-2:]) for image in images)
    return int(max(MIN_WINDOW, min(DEFAULT_WINDOW, smallest)))


def standardised(fingerprint: DomainFingerprint, features: np.ndarray) -> np.ndarray:
    return (features - np.asarray(fingerprint.center)) / np.asarray(fingerprint.scale)


def whitened(fingerprint: DomainFingerprint, features: np.ndarray) -> np.ndarray:
    return standardised(fingerprint, features) @ np.asarray(fingerprint.whitening).T


def window_scores(fingerprint: DomainFingerprint, features: np.ndarray) -> np.ndarray:
    """Each window's mean distance (root mean square per statistic, whitened) to its
    ``fingerprint.neighbours`` nearest training windows."""
    points, reference = whitened(fingerprint, features), np.asarray(fingerprint.reference)
    neighbours = min(fingerprint.neighbours, len(reference))
    scores = np.empty(len(points))
    for start in range(0, len(points), 256):  # (256 x reference x statistics) at a time: bounded memory
        chunk = points[start:start + 256]
        distances = np.sqrt(np.mean((chunk[:, None, :] - reference[None]) ** 2, axis=-1))
        scores[start:start + 256] = np.sort(distances, axis=1)[:, :neighbours].mean(axis=1)
    return scores


def image_score(fingerprint: DomainFingerprint, features: np.ndarray) -> float:
    """An image's score: the median of its windows' (NaN when none could be scored)."""
    return float(np.median(window_scores(fingerprint, features))) if len(features) else math.nan


def _whitening(standard: np.ndarray) -> np.ndarray:
    """W with |W z|^2 = z' S^-1 z, S the training covariance shrunk towards its diagonal (fewer
    windows than a full covariance needs, and statistics that are nearly linear combinations)."""
    covariance = np.cov(standard.T)
    shrunk = (1 - SHRINKAGE) * covariance + SHRINKAGE * np.diag(np.maximum(np.diag(covariance), SCALE_FLOOR))
    return np.linalg.cholesky(np.linalg.inv(shrunk)).T


def make_fingerprint(card, training: Iterable[np.ndarray], held_out: Iterable[np.ndarray], *,
                     source: str = "", window: int | None = None) -> DomainFingerprint:
    """The fingerprint of ``card``'s model from training input planes (2D, at the model's pixel size),
    its threshold calibrated on ``held_out`` in-domain planes (not used for the statistics)."""
    training, held_out = list(training), list(held_out)
    if not training or len(held_out) < MIN_HELD_OUT:
        raise NanoscopyError(
            f"A domain fingerprint needs training images and at least {MIN_HELD_OUT} held-out in-domain images "
            f"(given {len(training)} and {len(held_out)}); give more images."
        )
    window = window or window_for(training + held_out)
    train_features = np.concatenate([image_features(card, image, 1.0, window) for image in training])
    if len(train_features) < MIN_TRAINING_WINDOWS:
        raise NanoscopyError(
            f"Only {len(train_features)} training windows of {window} pixels could be scored (at least "
            f"{MIN_TRAINING_WINDOWS} are needed; constant images are skipped); give more or larger training images."
        )
    center = np.median(train_features, axis=0)
    quartiles = np.percentile(train_features, [25, 75], axis=0)  # a robust spread: normal-consistent IQR
    scale = np.maximum((quartiles[1] - quartiles[0]) / 1.349, SCALE_FLOOR)
    whitening = _whitening((train_features - center) / scale)
    kept = train_features[spread(len(train_features), MAX_REFERENCE)]
    reference = tuple(tuple(round(float(v), 4) for v in row) for row in ((kept - center) / scale) @ whitening.T)
    draft = DomainFingerprint(features=FEATURES, center=tuple(center), scale=tuple(scale),
                              whitening=tuple(map(tuple, whitening)), threshold=1.0, window=window,
                              reference=reference, neighbours=NEIGHBOURS)
    scores = np.asarray([image_score(draft, image_features(card, image, 1.0, window)) for image in held_out])
    scores = scores[np.isfinite(scores)]
    if len(scores) < MIN_HELD_OUT:
        raise NanoscopyError(f"Fewer than {MIN_HELD_OUT} held-out images could be scored (constant images are "
                             "skipped); give more held-out images.")
    threshold = THRESHOLD_MARGIN * float(np.percentile(scores, THRESHOLD_PERCENTILE))
    calibration = {
        "version": FINGERPRINT_VERSION, "source": source, "training_images": len(training),
        "training_windows": int(len(train_features)), "held_out_images": int(len(scores)),
        "held_out_scores": {"median": _rounded(np.median(scores)), "p90": _rounded(np.percentile(scores, 90)),
                            "max": _rounded(scores.max()),
                            "above_threshold": int(np.count_nonzero(scores > threshold))},
        "rule": f"threshold = {THRESHOLD_MARGIN:g} x the {THRESHOLD_PERCENTILE:g}th percentile of held-out scores",
    }
    return DomainFingerprint(features=FEATURES, center=tuple(float(v) for v in center),
                             scale=tuple(float(v) for v in scale),
                             whitening=tuple(tuple(float(v) for v in row) for row in whitening),
                             threshold=_rounded(threshold), window=window, calibration=calibration,
                             reference=reference, neighbours=NEIGHBOURS)


# --- checking an image ----------------------------------------------------------------------------


def unknown_report(card) -> DomainReport:
    return DomainReport(
        score=None, threshold=None, flagged=False,
        message=f"Domain unknown: the model '{card.name}' carries no fingerprint of its training images, so nothing "
                "checks that this image resembles them; add one with 'napari-nanoscopy fingerprint MODEL --data DIR OUT'.",
    )


def fingerprint_problem(card) -> str | None:
    """Why ``card``'s fingerprint cannot score images with this version's statistics (None when it can)."""
    fingerprint = card.domain
    if fingerprint is None:
        return None
    if tuple(fingerprint.features) != FEATURES or not fingerprint.reference:
        return "its fingerprint was made with other statistics (another napari-nanoscopy version)"
    return None


def check_planes(card, planes: Sequence[Any], zoom: float = 1.0) -> DomainReport:
    """Score the (Y, X) input planes of one image (the model's first input channel, any sliceable
    arrays, read window by window) against ``card``'s fingerprint; ``zoom`` is the image's pixel
    size over the model's."""
    fingerprint = card.domain
    if fingerprint is None:
        return unknown_report(card)
    if (problem := fingerprint_problem(card)) is not None:
        return dataclasses.replace(unknown_report(card), message=f"Domain unknown: {problem}; make it again with "
                                   "'napari-nanoscopy fingerprint MODEL --data DIR OUT'.")
    grids, places, all_features, side = [], [], [], None
    for plane, index in enumerate(spread(len(planes), MAX_PLANES)):
        scored, rows, columns, side = scored_windows(card, planes[index], zoom, fingerprint.window)
        grids.append(np.full((rows, columns), np.nan))
        for row, column, features in scored:
            places.append((plane, row, column))
            all_features.append(features)
    per_tile = np.stack(grids)
    if not all_features:
        return dataclasses.replace(unknown_report(card), message="Domain unknown: no part of this image could be "
                                   f"scored (it is constant or smaller than {MIN_WINDOW} pixels at the model's pixel size).")
    all_features = np.asarray(all_features)
    per_tile[tuple(np.asarray(places).T)] = window_scores(fingerprint, all_features)  # every window in one pass
    score = float(np.median(per_tile[np.isfinite(per_tile)]))
    deviations = np.median(np.abs(standardised(fingerprint, all_features)), axis=0)
    worst = {FEATURES[k]: float(deviations[k]) for k in np.argsort(deviations)[::-1][:3]}
    flagged = score > fingerprint.threshold
    return DomainReport(score=score, threshold=fingerprint.threshold, flagged=flagged,
                        message=_message(card, score, fingerprint.threshold, flagged, worst),
                        per_tile=per_tile if per_tile.size > 1 else None, tile_size=side if per_tile.size > 1 else None,
                        differs_most=worst)


def _message(card, score: float, threshold: float, flagged: bool, worst: dict[str, float]) -> str:
    if not flagged:
        return (f"In domain: this image scores {score:.2f} against the training images of '{card.name}' "
                f"(in-domain images score below {threshold:.2f}).")
    groups = []
    for name in worst:
        group = next(text for prefix, text in FEATURE_GROUPS.items() if name.startswith(prefix))
        if group not in groups:
            groups.append(group)
    return (f"Outside the model's domain: this image scores {score:.2f} against the training images of "
            f"'{card.name}' (in-domain images score below {threshold:.2f}; its {' and '.join(groups[:2])} "
            f"{'differ' if len(groups) > 1 else 'differs'} most), "
            "so the output may be wrong; check the pixel size, or use a model trained on images like this one.")


def check_frames(card, frames: np.ndarray, zoom: float = 1.0) -> DomainReport:
    """:func:`check_planes` for the (N, C, Y, X) frames of a restoration: the first input channel."""
    return check_planes(card, [frame[0] for frame in frames], zoom)


class _PlaneView:
    """One (Y, X) plane of a larger array, sliced lazily: only the windows read are loaded."""

    def __init__(self, data, index: tuple):
        self.data, self.index = data, index
        self.shape = tuple(data.shape[-2:])

    def __getitem__(self, key):
        return np.asarray(self.data[self.index + tuple(key)])


def check_array(card, data, channel_axis: int | None = None, zoom: float = 1.0) -> DomainReport:
    """:func:`check_planes` for an image of any shape (numpy, dask, zarr: only the windows scored are
    read): its (Y, X) planes, channel 0 of ``channel_axis`` when the model takes several channels."""
    leading = tuple(int(n) for n in data.shape[:-2])
    if channel_axis is not None:
        channel_axis %= len(data.shape)
    indices = [index for index in np.ndindex(leading) if channel_axis is None or index[channel_axis] == 0]
    return check_planes(card, [_PlaneView(data, indices[k]) for k in spread(len(indices), MAX_PLANES)], zoom)
