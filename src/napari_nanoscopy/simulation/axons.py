"""Seeded datamaps of axons with the periodic F-actin lattice, masked as experts annotate it.

The real axonal STED images of Lavoie-Cardinal et al. (2020, ``STEDActinFCN``) show 1-3 axons
per 4.5 µm field, 250-800 nm wide, whose F-actin rings span the whole axon every 180-200 nm
over stretches of it, with a dim fill, bright puncta and neurites without rings around them.
The experts' polygons there mark the REGIONS of the axon where the lattice is, not each ring,
so the ``rings`` mask of :func:`axons` is the axon band over each ring stretch (the ``factin``
kind's masks are the ring stripes themselves).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from napari_nanoscopy.simulation._validation import checked_size, rng_from_seed
from napari_nanoscopy.simulation.conditions import PIXEL_SIZE_NM
from napari_nanoscopy.simulation.structures import RING_PERIOD_NM, Structure, nm_to_px

AXON_WIDTH_NM = (250.0, 800.0)
RINGED_FRACTION = 0.75  # of the axons carry a lattice; the others are negatives (fill and puncta only)
_RING_SIGMA_PX = 0.7
_RING_MOLECULES = (2.5, 6.0)  # peak molecules per pixel on a ring, drawn per axon
_FILL_MOLECULES = (0.3, 1.2)  # cytosolic F-actin per pixel inside an axon, drawn per axon
_PUNCTUM_SIGMA_PX = 1.5
_PUNCTUM_MOLECULES = (8.0, 25.0)  # peak molecules per pixel of a punctum
_MASK_MARGIN_PX = 1.0  # the experts' polygons reach a little past the axon's edge
_PATCH_SIGMA_PX = 1.2  # real rings look like rows of dots: their labelling varies over about 25 nm
_CLUTTER_PER_UM2 = 1.0  # dim spots of F-actin outside and on the axons


def axons(size: int = 128, *, seed=None) -> Structure:
    """1-3 straight axons crossing the field at random angles and offsets.

    Each axon (``AXON_WIDTH_NM`` wide) holds a dim F-actin fill and 0-3 bright puncta; three
    in four carry periodic rings (period from ``RING_PERIOD_NM``, one random strength per ring
    from 40 to 130 %) across their whole width over a stretch of 40-100 % of their visible length.
    Dim spots of F-actin (about one per µm²) lie all over the field. ``task`` is a (1, H, W)
    uint8 mask: the lattice regions (axon band within its ring stretch, widened by 20 nm), as
    the experts' polygons mark them. ``info`` lists each axon's angle, width, period and
    whether it has rings.
    """
    size = checked_size(size)
    rng = rng_from_seed(seed)
    density = np.zeros((size, size))
    lattice = np.zeros((size, size), bool)
    records = []
    for _ in range(int(rng.integers(1, 4))):
        axon_density, axon_lattice, record = _axon(size, rng)
        density += axon_density
        lattice |= axon_lattice
        records.append(record)
    density += _clutter(size, rng)
    datamap = rng.poisson(density).astype(np.int32)
    info = {"axons": records, "lattice_fraction": float(lattice.mean())}
    return Structure(datamap, density.astype(np.float32), lattice[None].astype(np.uint8), None, info)


def _axon(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict]:
    """Expected molecules per pixel of one axon, its lattice mask and its facts."""
    angle = rng.uniform(0, np.pi)
    half_width = nm_to_px(rng.uniform(*AXON_WIDTH_NM)) / 2
    offset = rng.uniform(-0.4 * size, 0.4 * size)
    rows, cols = np.mgrid[:size, :size].astype(float) - (size - 1) / 2
    along = rows * np.sin(angle) + cols * np.cos(angle)
    across = rows * np.cos(angle) - cols * np.sin(angle) - offset
    inside = np.abs(across) <= half_width
    density = np.where(inside, rng.uniform(*_FILL_MOLECULES), 0.0)
    density += _puncta(inside, rng)
    lattice = np.zeros((size, size), bool)
    record = {"angle_deg": float(np.degrees(angle)), "width_nm": float(2 * half_width * PIXEL_SIZE_NM),
              "rings": False}
    if inside.sum() >= 10 and rng.uniform() < RINGED_FRACTION:
        low, high = along[inside].min(), along[inside].max()
        length = rng.uniform(0.4, 1.0) * (high - low)
        start = rng.uniform(low, high - length)
        stretch = (along >= start) & (along <= start + length)
        period = nm_to_px(rng.uniform(*RING_PERIOD_NM))
        phase = rng.uniform(0, period)
        index = np.rint((along - phase) / period)
        distance = np.abs(along - phase - index * period)
        strengths = rng.uniform(0.4, 1.3, size=int(index.max() - index.min()) + 1)[(index - index.min()).astype(int)]
        peak = rng.uniform(*_RING_MOLECULES)
        rings = peak * strengths * _patchiness(size, rng) * np.exp(-(distance**2) / (2 * _RING_SIGMA_PX**2))
        density += np.where(inside & stretch, rings, 0.0)
        lattice = (np.abs(across) <= half_width + _MASK_MARGIN_PX) & stretch
        record.update(rings=True, period_nm=float(period * PIXEL_SIZE_NM))
    return density, lattice, record


def _puncta(inside: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """0-3 bright Gaussian spots (about 80 nm) on random pixels of the axon."""
    spots = np.zeros(inside.shape)
    candidates = np.argwhere(inside)
    if len(candidates) == 0:
        return spots
    for row, col in candidates[rng.integers(len(candidates), size=int(rng.integers(0, 4)))]:
        spots[row, col] += rng.uniform(*_PUNCTUM_MOLECULES)
    return ndimage.gaussian_filter(spots, _PUNCTUM_SIGMA_PX) * 2 * np.pi * _PUNCTUM_SIGMA_PX**2


def _patchiness(size: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth random labelling efficiency from 0 to 2, mean about 1 (rings as rows of dots)."""
    field = ndimage.gaussian_filter(rng.normal(size=(size, size)), _PATCH_SIGMA_PX)
    return np.clip(1 + field / (2 * field.std()), 0, 2)


def _clutter(size: int, rng: np.random.Generator) -> np.ndarray:
    """Dim spots (3-10 molecules a pixel at their peak) anywhere in the field."""
    count = int(rng.poisson(_CLUTTER_PER_UM2 * (size * PIXEL_SIZE_NM / 1000) ** 2))
    spots = np.zeros((size, size))
    np.add.at(spots, tuple(rng.integers(0, size, size=(2, count))), rng.uniform(3, 10, size=count))
    return ndimage.gaussian_filter(spots, _PUNCTUM_SIGMA_PX) * 2 * np.pi * _PUNCTUM_SIGMA_PX**2

