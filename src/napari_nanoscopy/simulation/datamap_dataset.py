"""The ``datamaps`` kind of ``simulate``: real-structure datamaps imaged into confocal/STED pairs.

Each sample takes one datamap of the given sources (``datamap_files.load_datamaps``) at random,
crops ``size`` x ``size`` pixels at a random place, flips it (each axis with probability 1/2),
rotates it by a random multiple of 90 degrees, deforms it mildly (a smooth random displacement
field, :data:`ELASTIC_SIGMA_PX` pixels smooth, at most about :data:`ELASTIC_MAX_PX` pixels) and
scales its density by a factor from :data:`DENSITY_RANGE`; the molecules are then rounded
stochastically to whole counts and imaged by pySTED (confocal then STED). With ``mix``
(``{"factin": 0.5}``) that share of the samples is a synthetic kind of ``dataset.simulate_sample``
instead. The folder has the layout of ``dataset.simulate_dataset`` (input/, target/, truth/,
dataset.json; truth is the augmented datamap, float32 molecules per pixel). When some datamaps
carry annotations (``datamap --annotations``), task/ holds float32 masks of the classes named in
the manifest's ``task_channels`` (the datamaps' classes, then those of the mixed-in kinds): the
masks are cropped and deformed with their datamap, and a class a sample's source did not
annotate is NaN there, which unet-live training skips. Sample i depends only on (seed, i): the
same seed gives the same bytes, and a larger n extends a smaller dataset.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from napari_nanoscopy.errors import NanoscopyError
from napari_nanoscopy.io import atomic_output, write_image
from napari_nanoscopy.simulation import datamaps
from napari_nanoscopy.simulation._validation import checked_count, checked_size
from napari_nanoscopy.simulation.conditions import PIXEL_SIZE_NM, STANDARD_CONDITIONS, acquire_pair
from napari_nanoscopy.simulation.datamap_files import DatamapSource, conditions_for, load_datamaps
from napari_nanoscopy.simulation.dataset import KINDS, TASK_CHANNELS, new_output_folder, pysted_version, simulate_sample

KIND = "datamaps"
ELASTIC_SIGMA_PX = 8.0
ELASTIC_MAX_PX = 2.0
DENSITY_RANGE = (0.7, 1.3)
MIXABLE_KINDS = tuple(kind for kind in KINDS if kind != "twolabel")  # twolabel pairs are two confocal labels
FOLDERS = {
    "input": "confocal image, float32 photon counts",
    "target": "STED image of the same datamap, float32 photon counts",
    "truth": "the augmented datamap (datamaps kind) or clean structure (mixed synthetic samples), "
    "float32 molecules per pixel",
}
TASK_FOLDER = ("float32 masks, one channel per class of task_channels: 1 inside, 0 outside, NaN where the sample's "
               "source did not annotate that class (unet-live training skips those pixels)")
_MAX_SAMPLES = 1_000_000


def parse_mix(text: str | None) -> dict[str, float]:
    """``"factin:0.5,filaments:0.2"`` -> ``{"factin": 0.5, "filaments": 0.2}`` (shares of the samples)."""
    if not text:
        return {}
    mix = {}
    for item in text.split(","):
        kind, _, share = item.partition(":")
        try:
            mix[kind.strip()] = float(share)
        except ValueError:
            raise NanoscopyError(
                f"--mix {text!r} is not KIND:SHARE[,KIND:SHARE]; write e.g. --mix factin:0.5."
            ) from None
    return mix


def _checked_mix(mix: Mapping[str, float]) -> dict[str, float]:
    mix = dict(mix or {})
    for kind, share in mix.items():
        if kind not in MIXABLE_KINDS:
            raise NanoscopyError(f"Cannot mix in {kind!r}; mix one of {', '.join(MIXABLE_KINDS)}.")
        if not np.isfinite(share) or share <= 0:
            raise NanoscopyError(f"The share of {kind} in the mix must be above 0; got {share!r}.")
    if sum(mix.values()) >= 1:
        raise NanoscopyError(
            f"The mixed-in shares add up to {sum(mix.values()):g}; keep them below 1 so that some samples "
            "come from the datamaps."
        )
    return mix


def augmented_crop(datamap: np.ndarray, size: int, rng: np.random.Generator,
                   annotation: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, Any], np.ndarray | None]:
    """A random ``size`` crop of ``datamap``, flipped, rotated, deformed and rescaled (see the module
    docstring), and the same crop of its ``annotation`` masks (C, Y, X), or None without them."""
    row = int(rng.integers(datamap.shape[0] - size + 1))
    col = int(rng.integers(datamap.shape[1] - size + 1))
    planes = [datamap] if annotation is None else [datamap, *annotation]
    crops = np.stack([np.asarray(plane[row:row + size, col:col + size], np.float64) for plane in planes])
    flips = [bool(rng.random() < 0.5), bool(rng.random() < 0.5)]
    for axis, flip in enumerate(flips):
        if flip:
            crops = np.flip(crops, axis + 1)
    quarter_turns = int(rng.integers(4))
    crops = _elastic(np.rot90(crops, quarter_turns, axes=(1, 2)), rng)
    density = float(rng.uniform(*DENSITY_RANGE))
    crop = np.maximum(crops[0], 0.0) * density
    info = {"crop_origin_px": [row, col], "flips": flips, "quarter_turns": quarter_turns, "density": density}
    masks = None if annotation is None else (crops[1:] >= 0.5).astype(np.uint8)
    return crop.astype(np.float32), info, masks


def _elastic(planes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``planes`` (C, Y, X) moved by one smooth random displacement field."""
    shape = planes.shape[1:]
    fields = []
    for _ in range(2):
        field = ndimage.gaussian_filter(rng.standard_normal(shape), ELASTIC_SIGMA_PX, mode="wrap")
        fields.append(field * (ELASTIC_MAX_PX / max(float(np.abs(field).max()), 1e-12)))
    rows, cols = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    coordinates = [rows + fields[0], cols + fields[1]]
    return np.stack([ndimage.map_coordinates(plane, coordinates, order=1, mode="reflect") for plane in planes])


def task_classes(maps: Sequence[DatamapSource], mix: Mapping[str, float]) -> list[str]:
    """The task channels of a dataset: the datamaps' classes, then the mixed-in kinds' (none when no
    datamap is annotated: the synthetic masks alone would leave every real structure unlabelled)."""
    classes = [name for item in maps for name in item.classes]
    if not classes:
        return []
    classes += [name for kind in mix for name in TASK_CHANNELS.get(kind, [])]
    return list(dict.fromkeys(classes))


def _task(classes: list[str], masks: np.ndarray | None, names: Sequence[str], size: int) -> np.ndarray:
    """``masks`` of the classes ``names`` as the dataset's channels ``classes``; NaN where not annotated."""
    task = np.full((len(classes), size, size), np.nan, np.float32)
    if masks is not None:
        masks = masks.reshape(len(names), size, size)
        for channel, name in enumerate(names):
            task[classes.index(name)] = masks[channel]
    return task


def simulate_datamap_dataset(
    sources: Sequence[str | os.PathLike],
    n: int,
    size: int,
    seed: int,
    out_dir: str | os.PathLike,
    progress: Callable[[int, int], None] | None = None,
    *,
    conditions: Mapping[str, Any] = STANDARD_CONDITIONS,
    mix: Mapping[str, float] | None = None,
) -> Path:
    """Image ``n`` augmented crops of the datamaps of ``sources`` into ``out_dir``; see the module docstring."""
    n = checked_count("n", n, 1, _MAX_SAMPLES)
    size = checked_size(size)
    seed = checked_count("seed", seed, 0, 2**63 - 1)
    mix = _checked_mix(mix)
    if not sources:
        raise NanoscopyError("The datamaps kind needs datamaps: give --datamaps DIR (from `datamap`) or pysted:factin.")
    maps = [item for source in sources for item in load_datamaps(source)]
    small = [item.name for item in maps if min(item.datamap.shape) < size]
    if small:
        raise NanoscopyError(
            f"The datamap {small[0]} is smaller than --size {size}; choose a smaller size or larger datamaps."
        )
    imaging = conditions_for(maps, conditions)
    pixel_nm = round(imaging["pixelsize"] * 1e9, 6)
    if mix and pixel_nm != PIXEL_SIZE_NM:
        raise NanoscopyError(
            f"The synthetic kinds are drawn on {PIXEL_SIZE_NM:g} nm pixels, the datamaps have {pixel_nm:g} nm; "
            "mix only datamaps of 20 nm pixels."
        )
    classes = task_classes(maps, mix)
    folders = {**FOLDERS, "task": TASK_FOLDER} if classes else FOLDERS
    out_dir = new_output_folder(out_dir)
    for name in folders:
        (out_dir / name).mkdir()
    digits = max(4, len(str(n - 1)))
    samples = []
    for index in range(n):
        name = f"{index:0{digits}d}"
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
        images, record = _sample(maps, size, rng, imaging, mix, classes)
        for folder, image in images.items():
            write_image(out_dir / folder / f"{name}.tif", image.astype(np.float32), pixel_size_nm=pixel_nm,
                        **({"axes": "CYX", "channel_names": classes} if folder == "task" else {}))
        samples.append({"name": name, **record})
        if progress is not None:
            progress(index + 1, n)
    manifest = {
        "kind": KIND, "n": n, "size": size, "seed": seed, "pixel_size_nm": pixel_nm, "folders": folders,
        "task": TASK_FOLDER if classes else None, "task_channels": classes or None, "mix": mix,
        "datamaps": [{"name": item.name, "shape": list(item.datamap.shape), **item.origin} for item in maps],
        "simulator": {"name": "pysted", "version": pysted_version()}, "conditions": imaging, "samples": samples,
    }
    with atomic_output(out_dir / "dataset.json") as temporary:
        temporary.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return out_dir


def _sample(maps: list[DatamapSource], size: int, rng, conditions, mix,
            classes: list[str]) -> tuple[dict[str, np.ndarray], dict]:
    draw = rng.random()
    for kind, share in mix.items():
        if draw < share:
            sample = simulate_sample(kind, size, rng, conditions)
            images = {"input": sample.input, "target": sample.target, "truth": sample.truth}
            if classes:
                names = TASK_CHANNELS.get(kind, [])
                images["task"] = _task(classes, sample.task if names else None, names, size)
            return images, {"source": kind}
        draw -= share
    chosen = maps[int(rng.integers(len(maps)))]
    truth, info, masks = augmented_crop(chosen.datamap, size, rng, chosen.annotation)
    molecules = datamaps.whole_molecules(truth, rng)
    confocal, sted = acquire_pair(molecules, conditions, rng=rng)
    images = {"input": confocal, "target": sted, "truth": truth}
    if classes:
        images["task"] = _task(classes, masks, chosen.classes, size)
    return images, {"source": KIND, "datamap": chosen.name, **info}
