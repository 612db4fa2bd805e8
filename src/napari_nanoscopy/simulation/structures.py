"""Seeded generators of fluorophore datamaps (molecules per 20 nm pixel) with ground truth.

Every generator takes ``seed`` (an int, a ``numpy.random.Generator`` or None) and returns
integer datamaps ready for :func:`~napari_nanoscopy.simulation.conditions.acquire_pair`,
the clean structure and the ground truth of the analysis task. Positions are (row, col)
pixel indices; lengths in the parameters are nanometres.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage, spatial

from napari_nanoscopy.errors import NanoscopyError
from napari_nanoscopy.simulation._validation import checked_count, checked_size, rng_from_seed
from napari_nanoscopy.simulation.conditions import PIXEL_SIZE_NM

FWHM_TO_SIGMA = 1 / (2 * np.sqrt(2 * np.log(2)))


@dataclass(frozen=True)
class Structure:
    """A datamap and its ground truth."""

    datamap: np.ndarray  # int32 molecules per pixel: what the microscope images
    truth: np.ndarray  # float32 clean structure
    task: np.ndarray | None  # ground truth of the analysis task, where the kind has one
    positions: np.ndarray | None  # (N, 2) float (row, col) pixel positions of point objects
    info: dict[str, Any] = field(default_factory=dict)  # JSON-ready facts about the sample


@dataclass(frozen=True)
class TwoLabelStructure:
    """One structure seen through a weak label and through a better label (label2label)."""

    weak: np.ndarray  # int32 datamap: patchy structure, cytosolic haze, unspecific puncta
    better: np.ndarray  # int32 datamap: the structure with little background
    truth: np.ndarray  # float32 expected molecules of the structure alone, noise-free
    mask: np.ndarray  # uint8 structure mask
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FactinSeries:
    """A dendrite whose F-actin rings remodel into fibres after a stimulus."""

    datamaps: np.ndarray  # (T, H, W) int32 molecules per pixel in each frame
    masks: np.ndarray  # (T, 2, H, W) uint8: channel 0 rings, channel 1 fibres
    stimulus_frame: int
    info: dict[str, Any] = field(default_factory=dict)


def nm_to_px(length_nm: float) -> float:
    return length_nm / PIXEL_SIZE_NM


# --------------------------------------------------------------------------------------
# Beads


def beads(
    size: int = 64,
    *,
    n_isolated: int | None = None,
    n_pairs: int | None = None,
    pair_separation_nm: tuple[float, float] = (60.0, 200.0),
    molecules: tuple[int, int] = (80, 120),
    seed=None,
) -> Structure:
    """Sub-diffraction beads (one pixel each): isolated ones and closely spaced pairs.

    Isolated beads and pairs lie at least 500 nm from any other bead and 250 nm from the
    border, so each isolated bead can be fitted on its own. By default there are two
    isolated beads and one pair per 64 x 64 pixels. ``info`` lists which beads are isolated
    and the separation of each pair.
    """
    size = checked_size(size)
    rng = rng_from_seed(seed)
    blocks = (size // 64) ** 2
    n_isolated = 2 * blocks if n_isolated is None else checked_count("n_isolated", n_isolated, 0)
    n_pairs = blocks if n_pairs is None else checked_count("n_pairs", n_pairs, 0)
    if n_isolated + n_pairs == 0:
        raise NanoscopyError("Ask for at least one bead: n_isolated and n_pairs are both 0.")
    if not 0 < molecules[0] <= molecules[1]:
        raise NanoscopyError(f"molecules must be (low, high) with 0 < low <= high; got {molecules}.")
    low_nm, high_nm = pair_separation_nm
    if not 0 < low_nm <= high_nm < 500:
        raise NanoscopyError(
            "pair_separation_nm must be (low, high) with 0 < low <= high < 500 nm, "
            f"got {pair_separation_nm}."
        )

    isolation_px = nm_to_px(500)
    margin = int(np.ceil(nm_to_px(250)))
    for _ in range(200):
        placed = _place_beads(size, n_isolated, n_pairs, (low_nm, high_nm), isolation_px, margin, rng)
        if placed is not None:
            break
    else:
        raise NanoscopyError(
            f"{n_isolated} isolated beads and {n_pairs} pairs do not fit 500 nm apart in a "
            f"{size} x {size} pixel field; ask for fewer beads or a larger size."
        )
    positions, pairs = placed
    counts = rng.integers(molecules[0], molecules[1] + 1, size=len(positions))
    datamap = np.zeros((size, size), np.int32)
    datamap[positions[:, 0], positions[:, 1]] = counts
    paired = {index for pair in pairs for index in pair}
    info = {
        "isolated": [index not in paired for index in range(len(positions))],
        "pairs": [
            {"beads": [int(a), int(b)],
             "separation_nm": float(np.hypot(*(positions[a] - positions[b])) * PIXEL_SIZE_NM)}
            for a, b in pairs
        ],
        "molecules": counts.tolist(),
    }
    return Structure(datamap, datamap.astype(np.float32), None, positions.astype(float), info)


def _place_beads(size, n_isolated, n_pairs, separation_nm, isolation_px, margin, rng):
    positions: list[np.ndarray] = []
    pairs: list[tuple[int, int]] = []

    def far_from_others(*candidates):
        inside = all(margin <= c[0] < size - margin and margin <= c[1] < size - margin
                     for c in candidates)
        return inside and all(np.hypot(*(c - p)) >= isolation_px for c in candidates for p in positions)

    for _ in range(n_pairs):
        for _attempt in range(100):
            first = rng.integers(margin, size - margin, size=2)
            angle = rng.uniform(0, 2 * np.pi)
            separation = nm_to_px(rng.uniform(*separation_nm))
            second = np.rint(first + separation * np.array([np.sin(angle), np.cos(angle)])).astype(int)
            rounded_nm = np.hypot(*(second - first)) * PIXEL_SIZE_NM
            if separation_nm[0] <= rounded_nm <= separation_nm[1] and far_from_others(first, second):
                pairs.append((len(positions), len(positions) + 1))
                positions += [first, second]
                break
        else:
            return None
    for _ in range(n_isolated):
        for _attempt in range(100):
            candidate = rng.integers(margin, size - margin, size=2)
            if far_from_others(candidate):
                positions.append(candidate)
                break
        else:
            return None
    return np.array(positions, dtype=int), pairs


# --------------------------------------------------------------------------------------
# Nanodomains in dendritic spines (TA-GAN simulated nanodomain dataset)


def nanodomains(
    size: int = 64,
    *,
    n_nanodomains: int | None = None,
    min_separation_nm: float = 40.0,
    max_edge_distance_nm: float = 140.0,
    spine_molecules: int = 5,
    nanodomain_molecules: int = 100,
    localisation: str = "distance",
    seed=None,
) -> Structure:
    """A mushroom-shaped dendritic spine with 1–6 one-pixel nanodomains (TA-GAN paper).

    The spine head (0.12–0.48 µm²) sits on a neck joined to a dendrite shaft; the whole
    shape is randomly rotated and translated. Nanodomains (``nanodomain_molecules`` extra
    molecules on one 20 x 20 nm pixel) lie on the head's half facing away from the neck,
    no further than ``max_edge_distance_nm`` from the edge of the shape as seen in the
    field (measured from pixel centre to the nearest pixel outside the shape), at least
    ``min_separation_nm`` apart and inside the field. Molecule numbers follow the TA-GAN
    code (5 per spine pixel, 100 per nanodomain). ``n_nanodomains`` defaults to a random
    number from 1 to 6.

    ``task`` is a localisation map (``localisation``, one of LOCALISATION_MAPS): "distance",
    the paper's, holds in each pixel the cube root of its distance, in pixels, to the
    closest nanodomain centre (0 at the centres); "gaussian" holds exp(-d² / 2), a
    1-pixel (20 nm) Gaussian peak of height 1 on each centre, the heat map that
    localisation networks learn faster (docs/models.md).
    """
    check_localisation(localisation)
    size = checked_size(size)
    rng = rng_from_seed(seed)
    if n_nanodomains is None:
        n_nanodomains = int(rng.integers(1, 7))
    n_nanodomains = checked_count("n_nanodomains", n_nanodomains, 1, 6)
    spine_molecules = checked_count("spine_molecules", spine_molecules, 1)
    nanodomain_molecules = checked_count("nanodomain_molecules", nanodomain_molecules, 1)
    if min_separation_nm < 0 or max_edge_distance_nm < PIXEL_SIZE_NM:
        raise NanoscopyError(
            "min_separation_nm must be >= 0 and max_edge_distance_nm at least one pixel (20 nm)."
        )

    for _ in range(100):
        spine, geometry = _spine_mask(size, rng)
        centres = _pick_nanodomains(
            spine, geometry["facing_away"], n_nanodomains, min_separation_nm, max_edge_distance_nm, rng
        )
        if centres is not None:
            break
    else:
        raise NanoscopyError(
            f"Could not place {n_nanodomains} nanodomains {min_separation_nm} nm apart near the "
            "spine edge; lower min_separation_nm or n_nanodomains."
        )

    datamap = np.where(spine, spine_molecules, 0).astype(np.int32)
    datamap[centres[:, 0], centres[:, 1]] += nanodomain_molecules
    info = {
        "n_nanodomains": n_nanodomains,
        "head_area_um2": geometry["head_area_um2"],
        "rotation_deg": geometry["rotation_deg"],
        "spine_molecules": spine_molecules,
        "nanodomain_molecules": nanodomain_molecules,
    }
    return Structure(
        datamap, datamap.astype(np.float32), localisation_map(centres, (size, size), localisation),
        centres.astype(float), info,
    )


def _distance_to_centres(centres: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    not_centre = np.ones(shape, bool)
    not_centre[np.asarray(centres, int)[:, 0], np.asarray(centres, int)[:, 1]] = False
    return ndimage.distance_transform_edt(not_centre)


# localisation map -> its value as a function of the distance (pixels) to the closest centre
_MAP_OF_DISTANCE = {"distance": np.cbrt, "gaussian": lambda distance: np.exp(-0.5 * np.square(distance))}
LOCALISATION_MAPS = tuple(_MAP_OF_DISTANCE)


def check_localisation(localisation: str) -> None:
    if localisation not in _MAP_OF_DISTANCE:
        raise NanoscopyError(
            f"Unknown localisation map {localisation!r}; choose one of {', '.join(LOCALISATION_MAPS)}."
        )


def localisation_value(distance_px, localisation: str = "distance") -> np.ndarray:
    """A localisation map's value at ``distance_px`` from the closest centre: the cube root of
    the distance ("distance", TA-GAN) or exp(-d² / 2) ("gaussian", a 1-pixel peak of height 1)."""
    check_localisation(localisation)
    return _MAP_OF_DISTANCE[localisation](np.asarray(distance_px, np.float64))


def localisation_map(centres: np.ndarray, shape: tuple[int, int], localisation: str = "distance") -> np.ndarray:
    """``localisation_value`` of each pixel's distance (pixels) to the closest centre; where two
    Gaussian peaks overlap it is the larger."""
    return localisation_value(_distance_to_centres(centres, shape), localisation).astype(np.float32)


def _spine_mask(size: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    head_area_px = nm_to_px(1) ** 2 * rng.uniform(0.12e6, 0.48e6)
    aspect = rng.uniform(1.0, 1.6)  # heads are wider than they are long
    half_along = np.sqrt(head_area_px / (np.pi * aspect))
    half_across = aspect * half_along
    neck_length = nm_to_px(rng.uniform(100, 300))
    neck_half_width = nm_to_px(rng.uniform(80, 200)) / 2
    shaft_thickness = nm_to_px(rng.uniform(100, 400))
    rotation = rng.uniform(0, 2 * np.pi)
    centre = size / 2 + rng.uniform(-size / 6, size / 6, size=2)

    rows, cols = np.mgrid[:size, :size].astype(float)
    along = (rows - centre[0]) * np.sin(rotation) + (cols - centre[1]) * np.cos(rotation)
    across = (rows - centre[0]) * np.cos(rotation) - (cols - centre[1]) * np.sin(rotation)
    head = (along / half_along) ** 2 + (across / half_across) ** 2 <= 1
    neck_end = half_along + neck_length
    neck = (along >= 0) & (along <= neck_end) & (np.abs(across) <= neck_half_width)
    shaft = (along >= neck_end) & (along <= neck_end + shaft_thickness)
    geometry = {
        "facing_away": head & (along < 0),
        "head_area_um2": float(head_area_px * (PIXEL_SIZE_NM / 1000) ** 2),
        "rotation_deg": float(np.degrees(rotation)),
    }
    return head | neck | shaft, geometry


def _pick_nanodomains(spine, allowed, n, min_separation_nm, max_edge_distance_nm, rng):
    # Distance to the shape's edge within the field: an edge outside the field does not
    # count, which can only make the constraint stricter.
    edge_distance_nm = ndimage.distance_transform_edt(spine) * PIXEL_SIZE_NM
    candidates = np.argwhere(allowed & (edge_distance_nm <= max_edge_distance_nm))
    chosen = []
    for _ in range(n):
        if len(candidates) == 0:
            return None
        pick = candidates[rng.integers(len(candidates))]
        chosen.append(pick)
        separation_nm = np.hypot(*(candidates - pick).T) * PIXEL_SIZE_NM
        candidates = candidates[separation_nm >= max(min_separation_nm, PIXEL_SIZE_NM / 2)]
    return np.array(chosen, dtype=int)


# --------------------------------------------------------------------------------------
# F-actin in dendrites: periodic rings and longitudinal fibres


RING_PERIOD_NM = (180.0, 200.0)
_RING_SIGMA_PX = 0.6
_FIBRE_SIGMA_PX = 0.7
_MASK_HALF_WIDTH_PX = 0.75


def factin(
    size: int = 64,
    *,
    rings: bool = True,
    fibres: bool = True,
    seed=None,
) -> Structure:
    """A dendrite segment with F-actin periodic rings and/or longitudinal fibres.

    Rings are stripes perpendicular to the dendrite axis with a period drawn from
    180–200 nm, covering a stretch of 60–100 % of the dendrite; 1–4 slightly wavy fibres
    run along the axis. The dendrite (0.6–1.0 µm wide) also holds a dim cytosolic F-actin
    fill. ``task`` is a (2, H, W) uint8 mask: channel 0 the ring pixels, channel 1 the
    fibre pixels (pixel centres within 15 nm of a ring or fibre axis). ``info`` carries
    the axis angle (degrees from the image x axis towards +row) and the ring period.
    """
    size = checked_size(size)
    if not (rings or fibres):
        raise NanoscopyError("A dendrite needs rings, fibres or both; both were switched off.")
    rng = rng_from_seed(seed)
    dendrite = _Dendrite(size, rng)
    ring_stretch = dendrite.ring_stretch(rng) if rings else None
    fibre_list = [dendrite.fibre(rng, full_length=True) for _ in range(rng.integers(1, 5))] if fibres else []
    datamap, masks = dendrite.frame(ring_stretch, removed_rings=set(), fibres=fibre_list, growth=None)
    return Structure(datamap, datamap.astype(np.float32), masks, None, dendrite.info(len(fibre_list)))


def factin_series(
    n_frames: int,
    stimulus_frame: int,
    seed=None,
    *,
    size: int = 64,
) -> FactinSeries:
    """A dendrite imaged over time whose rings remodel into fibres after a stimulus.

    Frames before ``stimulus_frame`` are identical (rings along the whole dendrite, at most
    one fibre). From ``stimulus_frame`` on, 60–90 % of the rings disassemble one by one
    and 3–5 new fibres appear and elongate, so the ring area never grows and the fibre area
    never shrinks; ``stimulus_frame == n_frames`` gives an unstimulated control series.
    Molecules of unchanged structures are the same in every frame, so acquiring the series
    with :func:`~napari_nanoscopy.simulation.series.acquire_series` carries their
    bleaching over.
    """
    n_frames = checked_count("n_frames", n_frames, 1, 10_000)
    stimulus_frame = checked_count("stimulus_frame", stimulus_frame, 0, n_frames)
    size = checked_size(size)
    rng = rng_from_seed(seed)
    dendrite = _Dendrite(size, rng)
    ring_stretch = dendrite.ring_stretch(rng, whole=True)
    initial_fibres = [dendrite.fibre(rng, full_length=True) for _ in range(rng.integers(0, 2))]
    new_fibres = [dendrite.fibre(rng, full_length=False) for _ in range(rng.integers(3, 6))]

    # New fibres start at the stimulus (the first one right away) and reach their full
    # visible length in 2-4 frames.
    remodelled_frames = n_frames - stimulus_frame
    ring_ids = dendrite.ring_ids(ring_stretch)
    removal_frame = {}
    if remodelled_frames > 0:
        n_removed = int(np.ceil(rng.uniform(0.6, 0.9) * len(ring_ids)))
        for ring in rng.permutation(ring_ids)[:n_removed]:
            removal_frame[int(ring)] = stimulus_frame + int(rng.integers(remodelled_frames))
    onsets = [stimulus_frame] + [
        stimulus_frame + int(rng.integers(max(remodelled_frames, 1))) for _ in new_fibres[1:]
    ]
    speeds_px = [fibre.visible_length * rng.uniform(0.25, 0.5) for fibre in new_fibres]

    datamaps, masks = [], []
    for frame_index in range(n_frames):
        removed = {ring for ring, frame in removal_frame.items() if frame <= frame_index}
        growth = [(frame_index - onset + 1) * speed for onset, speed in zip(onsets, speeds_px)]
        datamap, mask = dendrite.frame(
            ring_stretch, removed, initial_fibres + new_fibres,
            growth=[np.inf] * len(initial_fibres) + growth,
        )
        datamaps.append(datamap)
        masks.append(mask)
    info = dendrite.info(len(initial_fibres) + len(new_fibres))
    info.update(n_frames=n_frames, stimulus_frame=stimulus_frame, rings_removed=len(removal_frame))
    return FactinSeries(np.stack(datamaps), np.stack(masks), stimulus_frame, info)


@dataclass
class _Fibre:
    counts: np.ndarray  # molecules along the whole potential fibre
    mask: np.ndarray
    start_along: float  # axis coordinate (px) where the fibre starts growing
    visible_length: float  # px from the start to where the fibre leaves the field


class _Dendrite:
    """Geometry and molecules of one dendrite segment crossing the field."""

    _FILL_MOLECULES = 0.3
    _RING_MOLECULES = 6.0
    _FIBRE_MOLECULES = 8.0

    def __init__(self, size: int, rng: np.random.Generator):
        self.angle = rng.uniform(0, np.pi)
        self.half_width = min(nm_to_px(rng.uniform(600, 1000)), 0.8 * size) / 2
        self.period = nm_to_px(rng.uniform(*RING_PERIOD_NM))
        offset = rng.uniform(-size / 8, size / 8)
        rows, cols = np.mgrid[:size, :size].astype(float) - (size - 1) / 2
        self.along = rows * np.sin(self.angle) + cols * np.cos(self.angle)
        self.across = rows * np.cos(self.angle) - cols * np.sin(self.angle) - offset
        self.inside = np.abs(self.across) <= self.half_width
        self.fill = np.where(self.inside, rng.poisson(self._FILL_MOLECULES, self.along.shape), 0)

        phase = rng.uniform(0, self.period)
        self.ring_index = np.rint((self.along - phase) / self.period).astype(int)
        distance = np.abs(self.along - phase - self.ring_index * self.period)
        ring_density = self._RING_MOLECULES * np.exp(-(distance**2) / (2 * _RING_SIGMA_PX**2))
        self.ring_counts = np.where(self.inside, rng.poisson(ring_density), 0)
        self.ring_mask = self.inside & (distance <= _MASK_HALF_WIDTH_PX)
        # Stretch of the axis over which the dendrite is in the field.
        self.along_span = (self.along[self.inside].min(), self.along[self.inside].max())

    def ring_stretch(self, rng: np.random.Generator, whole: bool = False) -> tuple[float, float]:
        low, high = self.along_span
        if whole:
            return low, high
        length = rng.uniform(0.6, 1.0) * (high - low)
        start = rng.uniform(low, high - length)
        return start, start + length

    def ring_ids(self, stretch: tuple[float, float]) -> list[int]:
        within = self._in_stretch(stretch) & self.ring_mask
        return sorted(int(ring) for ring in np.unique(self.ring_index[within]))

    def fibre(self, rng: np.random.Generator, full_length: bool) -> _Fibre:
        """A longitudinal fibre, slightly wavy, at a random offset across the dendrite."""
        while True:  # an offset near a corner of the band may miss the field; draw again
            offset = rng.uniform(-self.half_width + 2, self.half_width - 2)
            amplitude = rng.uniform(0, 1.5)
            wavelength = nm_to_px(rng.uniform(400, 1000))
            wave_phase = rng.uniform(0, 2 * np.pi)
            centre = offset + amplitude * np.sin(2 * np.pi * self.along / wavelength + wave_phase)
            distance = np.abs(self.across - centre)
            mask = self.inside & (distance <= _MASK_HALF_WIDTH_PX)
            if mask.sum() >= 10:
                break
        density = self._FIBRE_MOLECULES * np.exp(-(distance**2) / (2 * _FIBRE_SIGMA_PX**2))
        low, high = self.along[mask].min(), self.along[mask].max()
        start = low if full_length else rng.uniform(low, low + 0.5 * (high - low))
        return _Fibre(
            counts=np.where(self.inside, rng.poisson(density), 0),
            mask=mask,
            start_along=float(start),
            visible_length=float(high - start),
        )

    def frame(self, ring_stretch, removed_rings, fibres, growth):
        """Datamap and (rings, fibres) masks for rings minus ``removed_rings`` and fibres
        grown ``growth[i]`` pixels along the axis from their start (None: all fully grown;
        zero or less: not there yet)."""
        rings_on = np.zeros(self.along.shape, bool)
        if ring_stretch is not None:
            rings_on = self._in_stretch(ring_stretch) & ~np.isin(self.ring_index, list(removed_rings))
        datamap = self.fill + np.where(rings_on, self.ring_counts, 0)
        fibre_mask = np.zeros(self.along.shape, bool)
        for index, fibre in enumerate(fibres):
            length = np.inf if growth is None else growth[index]
            if length <= 0:
                continue
            grown = (self.along >= fibre.start_along) & (self.along <= fibre.start_along + length)
            datamap = datamap + np.where(grown, fibre.counts, 0)
            fibre_mask |= grown & fibre.mask
        masks = np.stack([rings_on & self.ring_mask, fibre_mask]).astype(np.uint8)
        return datamap.astype(np.int32), masks

    def info(self, n_fibres: int) -> dict:
        return {
            "axis_angle_deg": float(np.degrees(self.angle)),
            "ring_period_nm": float(self.period * PIXEL_SIZE_NM),
            "dendrite_width_nm": float(2 * self.half_width * PIXEL_SIZE_NM),
            "n_fibres": n_fibres,
        }

    def _in_stretch(self, stretch: tuple[float, float]) -> np.ndarray:
        return (self.along >= stretch[0]) & (self.along <= stretch[1])


# --------------------------------------------------------------------------------------
# Microtubule-like filaments and label2label pairs


_FILAMENT_FWHM_NM = 25.0


def filaments(
    size: int = 64,
    *,
    n_filaments: int | None = None,
    molecules_per_px: float = 8.0,
    seed=None,
) -> Structure:
    """Microtubule-like filaments: smooth random curves 25 nm wide crossing the field.

    The curves' tangent angle does a random walk with a persistence length of 1–4 µm.
    ``task`` is the uint8 filament mask (pixel centres within 15 nm of an axis); 3–6
    filaments per 64 x 64 pixels by default.
    """
    size = checked_size(size)
    rng = rng_from_seed(seed)
    if n_filaments is None:
        n_filaments = int(rng.integers(3, 7) * (size // 64))
    n_filaments = checked_count("n_filaments", n_filaments, 1, 10_000)
    density, mask = _filament_density(size, n_filaments, molecules_per_px, rng)
    datamap = rng.poisson(density).astype(np.int32)
    return Structure(datamap, datamap.astype(np.float32), mask, None, {"n_filaments": n_filaments})


def twolabel(size: int = 64, *, seed=None) -> TwoLabelStructure:
    """The same filaments seen through a weak label and a better label (label2label).

    Following the label2label paper's antibody images, the weak label binds the structure
    patchily (efficiency varying smoothly from 30 to 100 % along it), adds a diffuse
    cytosolic haze (about 1 molecule per pixel, varying over about 600 nm: cell-body
    signal, smooth on the scale of the PSF and above) and bright punctate
    unspecific binding (about 15 puncta per µm², 10–40 molecules each). The better label
    binds the structure fully with a tenth of the haze and no puncta. ``truth`` is the
    expected number of structure molecules per pixel, without background or noise.
    """
    size = checked_size(size)
    rng = rng_from_seed(seed)
    n_filaments = int(rng.integers(3, 7) * (size // 64))
    structure, mask = _filament_density(size, n_filaments, 8.0, rng)
    # smoother than the 214 nm PSF: at 150 nm the haze looked like blurred filaments, a
    # texture no label-to-label network can tell from structure (the paper's haze is diffuse)
    haze = _smooth_field(size, nm_to_px(600), rng)
    haze = 1.0 * haze / haze.mean()
    efficiency = 0.3 + 0.7 * _smooth_field(size, nm_to_px(200), rng)

    area_um2 = (size * PIXEL_SIZE_NM / 1000) ** 2
    n_puncta = int(rng.poisson(15 * area_um2))
    puncta = np.zeros((size, size))
    spots = rng.integers(0, size, size=(n_puncta, 2))
    np.add.at(puncta, (spots[:, 0], spots[:, 1]), rng.uniform(10, 40, size=n_puncta))
    puncta = ndimage.gaussian_filter(puncta, 0.7) * 2 * np.pi * 0.7**2  # keeps each punctum's total

    weak = rng.poisson(structure * efficiency + haze + puncta).astype(np.int32)
    better = rng.poisson(structure + 0.1 * haze).astype(np.int32)
    info = {"n_filaments": n_filaments, "n_puncta": n_puncta}
    return TwoLabelStructure(weak, better, structure.astype(np.float32), mask, info)


def _filament_density(size, n_filaments, molecules_per_px, rng):
    step = 0.25
    pixel_centres = np.argwhere(np.ones((size, size), bool)).astype(float)
    distance = np.full(size * size, np.inf)
    for _ in range(n_filaments):
        axis = _random_curve(size, step, rng)
        nearest, _ = spatial.cKDTree(axis).query(pixel_centres)
        distance = np.minimum(distance, nearest)
    distance = distance.reshape(size, size)
    sigma = nm_to_px(_FILAMENT_FWHM_NM) * FWHM_TO_SIGMA
    density = molecules_per_px * np.exp(-(distance**2) / (2 * sigma**2))
    return density, (distance <= _MASK_HALF_WIDTH_PX).astype(np.uint8)


def _random_curve(size: int, step: float, rng: np.random.Generator) -> np.ndarray:
    """(row, col) samples every ``step`` px of a curve through a random point, both ways
    until it leaves the field."""
    persistence = nm_to_px(rng.uniform(1000, 4000))
    start = rng.uniform(0, size, size=2)
    heading = rng.uniform(0, 2 * np.pi)
    halves = []
    for direction in (heading, heading + np.pi):
        points, angle, point = [], direction, start.copy()
        while -2 <= point[0] <= size + 1 and -2 <= point[1] <= size + 1:
            points.append(point.copy())
            angle += rng.normal(0, np.sqrt(step / persistence))
            point += step * np.array([np.sin(angle), np.cos(angle)])
        halves.append(np.array(points))
    return np.concatenate([halves[1][::-1], halves[0][1:]]) if len(halves[0]) > 1 else halves[1]


def _smooth_field(size: int, sigma_px: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth random field in [0, 1], mean 0.5, standard deviation 1/6 (Gaussian-filtered
    white noise, standardised so its contrast does not depend on the smoothing)."""
    smooth = ndimage.gaussian_filter(rng.normal(size=(size, size)), sigma_px, mode="wrap")
    return np.clip(0.5 + (smooth - smooth.mean()) / (6 * smooth.std()), 0, 1)
