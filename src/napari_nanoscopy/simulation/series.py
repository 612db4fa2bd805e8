"""Frame-by-frame acquisition of a changing structure, with photobleaching carried over."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_nanoscopy.errors import NanoscopyError
from napari_nanoscopy.simulation._validation import checked_datamap, rng_from_seed
from napari_nanoscopy.simulation.conditions import STANDARD_CONDITIONS, acquire


@dataclass(frozen=True)
class SeriesAcquisition:
    """What a time series acquisition recorded."""

    confocal: np.ndarray  # (T, H, W) float32 photon counts, one confocal image per frame
    sted: dict[int, np.ndarray]  # frame index -> STED image (float32), for the STED frames
    fluorescent: np.ndarray  # (T, H, W) int32 molecules still fluorescent after each frame


def acquire_series(
    datamaps: np.ndarray,
    conditions: Mapping[str, Any] = STANDARD_CONDITIONS,
    *,
    sted: bool | Iterable[int] = False,
    rng: np.random.Generator | int | None = None,
) -> SeriesAcquisition:
    """Acquire each frame of ``datamaps`` (T, H, W molecules per pixel) with bleaching.

    Every frame gets a confocal image; the frames in ``sted`` (True: all) also get a STED
    image right after it. Bleaching is carried from frame to frame: molecules of a
    structure that stays keep their bleached state, molecules leaving a pixel (the
    structure shrinks there) are drawn at random among the molecules present, bleached or
    not, and molecules arriving are fresh. The input is left untouched. With the standard
    fluorophore only the depletion beam bleaches, so a confocal-only series does not dim.
    """
    datamaps = np.asarray(datamaps)
    if datamaps.ndim != 3 or datamaps.shape[0] < 1:
        raise NanoscopyError(
            "acquire_series needs a (frames, height, width) stack of datamaps; "
            f"got shape {datamaps.shape}."
        )
    datamaps = np.stack([checked_datamap(frame) for frame in datamaps])
    n_frames = datamaps.shape[0]
    sted_frames = _checked_sted_frames(sted, n_frames)
    rng = rng_from_seed(rng)

    fluorescent = datamaps[0].copy()
    confocal_images, sted_images, remaining = [], {}, []
    for frame in range(n_frames):
        if frame > 0:
            fluorescent = follow_structure(fluorescent, datamaps[frame - 1], datamaps[frame], rng)
        confocal_images.append(acquire(fluorescent, conditions, sted=False, rng=rng, bleach=True))
        if frame in sted_frames:
            sted_images[frame] = acquire(fluorescent, conditions, sted=True, rng=rng, bleach=True)
        remaining.append(fluorescent.copy())
    return SeriesAcquisition(np.stack(confocal_images), sted_images, np.stack(remaining))


def follow_structure(fluorescent, before, after, rng) -> np.ndarray:
    before = before.astype(np.int64)
    after = after.astype(np.int64)
    shrinking = after < before
    keep_probability = np.divide(after, before, out=np.ones(before.shape), where=shrinking)
    kept = rng.binomial(fluorescent, keep_probability)
    arrived = np.maximum(after - before, 0)
    return (kept + arrived).astype(np.int32)


def _checked_sted_frames(sted: bool | Iterable[int], n_frames: int) -> set[int]:
    if sted is True:
        return set(range(n_frames))
    if sted is False:
        return set()
    try:
        frames = {int(frame) for frame in sted}
    except (TypeError, ValueError):
        raise NanoscopyError(
            "sted must be True, False or a list of frame indices to image in STED."
        ) from None
    outside = sorted(frame for frame in frames if not 0 <= frame < n_frames)
    if outside:
        raise NanoscopyError(
            f"STED frames {outside} are outside the series (frames 0 to {n_frames - 1})."
        )
    return frames
