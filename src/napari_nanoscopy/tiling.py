"""Tiling of one image axis into overlapping windows, their blending weights, and forward-pass batches.

Tiles overlap by a halo at least as wide as the network's receptive radius, so the blended
result equals an untiled pass up to floating-point noise; tile origins sit on the network's
stride grid, and the blending weights are separable, so they are normalised with two 1D sums
instead of a full-size weight image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .blocks import round_up

BLEND_WIDTH = 32  # pixels over which neighbouring tiles cross-fade (hides MC-dropout seams)
MIN_TILE = 2 * BLEND_WIDTH
# Splits of one axis the automatic tiling weighs (64-px cores up to a 65536-px axis): bounds its
# search, which grows with the square of this, whatever the image's size.
MAX_AXIS_WINDOWS = 1024


def blend_ramp(width: int) -> np.ndarray:
    """sin^2 ramp sampled at pixel centres: ramp(u) + ramp(width-1-u) == 1, never exactly 0."""
    u = (np.arange(width) + 0.5) / width
    return np.sin(u * np.pi / 2) ** 2


@dataclass
class AxisPlan:
    """Tile windows along one axis and their normalised blending weights."""

    starts: list[int]  # window starts, inside [0, padded length - window]
    window: int  # the longest window
    weights: list[np.ndarray]  # per window, weights over the image pixels it covers (already normalised)
    spans: list[tuple[int, int]]  # per window, the image pixel range [a, b) its weights cover
    lengths: list[int] = field(default_factory=list)  # per window, its length (``window`` unless trimmed)
    core: int = 0  # the core size the plan was made for


def plan_axis(length: int, core: int, halo: int, blend: int, multiple: int, trim: bool = False) -> AxisPlan:
    """Windows of ``core + 2 * halo`` pixels on a grid of ``core``, kept inside the image.

    The image is padded (reflected) only up to the network's size multiple. A window is
    shifted inward at the image's edges, so the border pixels see the same context as in an
    untiled pass, and each weighted region keeps at least ``halo - blend / 2`` pixels of
    real context from the window edges that lie inside the image. With ``trim``, the windows
    at the image's edges are instead cut to ``core + halo`` (no halo is needed beyond the
    image), which computes fewer pixels for the same result.
    """
    padded = round_up(length, multiple)
    core_starts = list(range(0, length, core))
    if len(core_starts) > 1 and length - core_starts[-1] < blend:
        core_starts.pop()  # a last core narrower than the cross-fade joins its neighbour (its window grows)
    if core + 2 * halo >= padded or len(core_starts) == 1:
        core_starts, window, starts, lengths = [0], padded, [0], [padded]
    else:
        window = core + 2 * halo
        if trim:
            starts = [max(start - halo, 0) for start in core_starts]
            lengths = [min(start + core + halo, padded) - begin for start, begin in zip(core_starts, starts)]
        else:
            starts = [min(max(start - halo, 0), padded - window) for start in core_starts]
            lengths = [window] * len(starts)
        if starts[-1] + lengths[-1] < padded:  # the joined last core: its window reaches the image's end
            starts[-1] = max(core_starts[-1] - halo, 0)
            lengths[-1] = padded - starts[-1]
        window = max(lengths)
    raw = []
    for index, start in enumerate(core_starts):
        last = index == len(core_starts) - 1
        weight_start = 0 if index == 0 else start - blend // 2
        weight_end = length if last else min(start + core, length) + blend // 2
        weight = np.ones(weight_end - weight_start, dtype=np.float64)
        if index > 0:
            weight[:blend] = blend_ramp(blend)
        if not last:
            weight[-blend:] = blend_ramp(blend)[::-1]
        raw.append((weight_start, weight_end, weight))
    total = np.zeros(length, dtype=np.float64)
    for a, b, weight in raw:
        total[a:b] += weight
    return AxisPlan(
        starts=starts,
        window=window,
        weights=[(w / total[a:b]).astype(np.float32) for a, b, w in raw],
        spans=[(a, b) for a, b, _ in raw],
        lengths=lengths,
        core=core,
    )


def axis_options(length: int, halo: int, multiple: int) -> list[tuple[int, int, int, int]]:
    """(core, longest window, pixels computed, windows) for each split of an axis into equal cores."""
    padded = round_up(length, multiple)
    options = {(padded, padded, padded, 1)}  # one window over the whole (padded) axis
    smallest = round_up(MIN_TILE, multiple)
    for n in range(2, min(max(2, math.ceil(length / smallest)), MAX_AXIS_WINDOWS) + 1):
        core = max(smallest, round_up(math.ceil(length / n), multiple))
        if core + 2 * halo >= padded:
            continue
        core_starts = range(0, length, core)
        if length - core_starts[-1] < BLEND_WIDTH:  # a last core narrower than the cross-fade
            continue
        lengths = [min(start + core + halo, padded) - max(start - halo, 0) for start in core_starts]
        options.add((core, max(lengths), sum(lengths), len(lengths)))
    return sorted(options)


def auto_cores(shape: tuple[int, int], halo: int, multiple: int, budget: int) -> tuple[int, int]:
    """Core sizes (Y, X) of the tiling that computes the fewest window pixels, each window within ``budget``.

    Equal cores split each axis evenly (a 2048-px axis with 1248-px cores would compute two
    1448-px windows; two 1024-px cores with trimmed edge windows need two of 1124 px), and the
    windows need not be square (row bands), so the halos recomputed around the tiles cost as
    little as the budget allows. The windows are those of :func:`plan_axis`, so results do not
    depend on this choice beyond floating-point noise.
    """
    best = None
    options_x = axis_options(shape[1], halo, multiple)
    for core_y, window_y, total_y, n_y in axis_options(shape[0], halo, multiple):
        for core_x, window_x, total_x, n_x in options_x:
            area = window_y * window_x
            key = (area > budget, total_y * total_x if area <= budget else area, n_y * n_x)
            if best is None or key < best[0]:
                best = (key, (core_y, core_x))
    return best[1]


def computed_pixels(plans) -> float:
    """Window pixels a plan computes per image pixel (1.0 = no tiling overhead)."""
    plan_y, plan_x = plans
    length_y, length_x = plan_y.spans[-1][1], plan_x.spans[-1][1]
    return sum(plan_y.lengths) * sum(plan_x.lengths) / (length_y * length_x)


def tile_batches(plans, passes: int, batch: int) -> list[list[tuple[tuple[int, int], int]]]:
    """(tile, sample) jobs in forward-pass batches of at most ``batch`` windows of one shape.

    Tiles are ordered by window shape (trimmed edge windows differ from inner ones), so that
    batches stay full; every sample of a tile is in consecutive jobs.
    """
    plan_y, plan_x = plans
    tiles = [(iy, ix) for iy in range(len(plan_y.starts)) for ix in range(len(plan_x.starts))]
    tiles.sort(key=lambda tile: (plan_y.lengths[tile[0]], plan_x.lengths[tile[1]]))  # stable
    batches: list[list] = []
    current: list = []
    shape = None
    for tile in tiles:
        tile_shape = (plan_y.lengths[tile[0]], plan_x.lengths[tile[1]])
        for k in range(passes):
            if current and (len(current) == batch or tile_shape != shape):
                batches.append(current)
                current = []
            current.append((tile, k))
            shape = tile_shape
    if current:
        batches.append(current)
    return batches
