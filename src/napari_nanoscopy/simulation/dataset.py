"""Simulated training datasets written as folders of calibrated TIFFs.

Layout of ``out_dir`` (N = n samples, names zero-padded to at least 4 digits)::

    input/0000.tif   confocal image (float32 photon counts; weak label for "twolabel")
    target/0000.tif  STED image of the same datamap (float32; better label for "twolabel")
    task/0000.tif    task ground truth, for kinds that have one (see TASKS)
    truth/0000.tif   clean structure (float32 molecules per pixel)
    dataset.json     kind, n, size, seed, pixel size, conditions and per-sample facts

Every TIFF is an ImageJ TIFF carrying the 20 nm pixel size. Files appear only once fully
written, and ``dataset.json`` is written last: a folder without it is an interrupted run.
Sample i depends only on (seed, i), so the same seed gives identical files and a larger
n extends a smaller dataset.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

import numpy as np

from napari_nanoscopy.errors import NanoscopyError
from napari_nanoscopy.io import atomic_output, write_image
from napari_nanoscopy.simulation import axons, structures
from napari_nanoscopy.simulation._validation import checked_count, checked_size, rng_from_seed
from napari_nanoscopy.simulation.conditions import (
    PIXEL_SIZE_NM,
    STANDARD_CONDITIONS,
    acquire,
    acquire_pair,
    build_microscope,
)

KINDS = ("beads", "nanodomains", "factin", "filaments", "twolabel", "axons")

FOLDERS = {
    "input": "confocal image, float32 photon counts (twolabel: weak label, confocal)",
    "target": "STED image of the same datamap, float32 photon counts "
    "(twolabel: better label, confocal)",
    "task": "task ground truth (see 'task')",
    "truth": "clean structure, float32 molecules per pixel "
    "(twolabel: expected structure molecules, no background)",
}

TASKS = {
    "beads": None,
    "nanodomains": "localisation map: cube root of the distance in pixels to the closest "
    "nanodomain centre (TA-GAN), float32",
    "nanodomains-gaussian": "localisation map: exp(-d^2 / 2) of the distance d in pixels to the "
    "closest nanodomain centre (a 1-pixel Gaussian peak of height 1 on each centre), float32",
    "factin": "uint8 masks, channel 0 F-actin rings, channel 1 F-actin fibres",
    "filaments": "uint8 filament mask",
    "twolabel": "uint8 structure mask",
    "axons": "uint8 mask, channel 0 the regions of the axons' periodic F-actin lattice (as experts annotate rings)",
}

TASK_CHANNELS = {"factin": ["rings", "fibres"], "axons": ["rings"]}
_MAX_SAMPLES = 1_000_000


@dataclass(frozen=True)
class SimulatedSample:
    """One simulated training pair with its ground truth."""

    input: np.ndarray  # float32
    target: np.ndarray  # float32
    task: np.ndarray | None
    truth: np.ndarray  # float32
    positions: np.ndarray | None  # (N, 2) row, col pixels
    info: dict[str, Any]


def simulate_sample(
    kind: str,
    size: int = 64,
    seed=None,
    conditions: Mapping[str, Any] = STANDARD_CONDITIONS,
    *,
    localisation: str = "distance",
) -> SimulatedSample:
    """Generate one structure of ``kind`` and acquire it; see the module docstring.
    ``localisation`` chooses the nanodomains' localisation map (``structures.nanodomains``)."""
    _check_kind(kind)
    _check_localisation(kind, localisation)
    rng = rng_from_seed(seed)
    if kind == "twolabel":
        pair = structures.twolabel(size, seed=rng)
        weak = acquire(pair.weak, conditions, sted=False, rng=rng)
        better = acquire(pair.better, conditions, sted=False, rng=rng)
        return SimulatedSample(weak, better, pair.mask, pair.truth, None, pair.info)
    generate = {
        "beads": structures.beads,
        "nanodomains": structures.nanodomains,
        "factin": structures.factin,
        "filaments": structures.filaments,
        "axons": axons.axons,
    }[kind]
    options = {"localisation": localisation} if kind == "nanodomains" else {}
    structure = generate(size, seed=rng, **options)
    confocal, sted = acquire_pair(structure.datamap, conditions, rng=rng)
    return SimulatedSample(
        confocal, sted, structure.task, structure.truth, structure.positions, structure.info
    )


def simulate_dataset(
    kind: str,
    n: int,
    size: int,
    seed: int,
    out_dir: str | os.PathLike,
    progress: Callable[[int, int], None] | None = None,
    *,
    conditions: Mapping[str, Any] = STANDARD_CONDITIONS,
    localisation: str = "distance",
) -> Path:
    """Simulate ``n`` samples of ``kind`` (one of KINDS) into the new folder ``out_dir``.

    ``progress(done, total)`` is called after each sample; it may raise
    ``napari_nanoscopy.errors.Cancelled`` to stop (the samples written so far stay, and
    no ``dataset.json`` is written). ``localisation`` ("distance" or "gaussian") chooses
    the nanodomains' localisation map. Returns the folder's path.
    """
    _check_kind(kind)
    _check_localisation(kind, localisation)
    n = checked_count("n", n, 1, _MAX_SAMPLES)
    size = checked_size(size)
    seed = checked_count("seed", seed, 0, 2**63 - 1)
    build_microscope(conditions)  # refuses bad conditions before any folder is made
    if round(conditions["pixelsize"] * 1e9, 6) != PIXEL_SIZE_NM:
        raise NanoscopyError(
            f"The structures are drawn on {PIXEL_SIZE_NM:g} nm pixels, so the conditions' "
            f"pixelsize must be {PIXEL_SIZE_NM * 1e-9:g} m."
        )
    out_dir = new_output_folder(out_dir)
    task_description = TASKS[kind if localisation == "distance" else f"{kind}-{localisation}"]
    folders = [name for name in FOLDERS if name != "task" or task_description]
    for name in folders:
        (out_dir / name).mkdir()

    digits = max(4, len(str(n - 1)))
    samples = []
    for index in range(n):
        name = f"{index:0{digits}d}"
        sample = simulate_sample(kind, size, _sample_seed(seed, index), conditions, localisation=localisation)
        images = {"input": sample.input, "target": sample.target, "truth": sample.truth}
        if task_description:
            images["task"] = sample.task
        for folder, image in images.items():
            _write_tiff(out_dir / folder / f"{name}.tif", image, kind if folder == "task" else None)
        record = {"name": name, **sample.info}
        if sample.positions is not None:
            record["positions_px"] = sample.positions.tolist()
        samples.append(record)
        if progress is not None:
            progress(index + 1, n)

    manifest = {
        "kind": kind,
        "n": n,
        "size": size,
        "seed": seed,
        "pixel_size_nm": PIXEL_SIZE_NM,
        "folders": {name: FOLDERS[name] for name in folders},
        "task": task_description,
        "task_channels": TASK_CHANNELS.get(kind),
        "simulator": {"name": "pysted", "version": pysted_version()},
        "conditions": dict(conditions),
        "samples": samples,
    }
    with atomic_output(out_dir / "dataset.json") as temporary:
        temporary.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return out_dir


def _sample_seed(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


def _write_tiff(path: Path, image: np.ndarray, task_kind: str | None) -> None:
    channel_names = TASK_CHANNELS.get(task_kind) if task_kind else None
    axes = "CYX" if image.ndim == 3 else "YX"
    if image.dtype not in (np.uint8, np.float32):
        image = image.astype(np.float32)
    write_image(path, image, pixel_size_nm=PIXEL_SIZE_NM, axes=axes, channel_names=channel_names)


def new_output_folder(out_dir) -> Path:
    """``out_dir`` created, or refused when it is a file or not empty (nothing is overwritten or mixed in)."""
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists():
        if not out_dir.is_dir():
            raise NanoscopyError(f"{out_dir} is a file; give a folder path for the dataset.")
        if any(out_dir.iterdir()):
            raise NanoscopyError(
                f"The output folder {out_dir} is not empty; choose a new or empty folder so "
                "that no existing data is overwritten or mixed in."
            )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise NanoscopyError(f"Cannot create the output folder {out_dir} ({error}).") from error
    return out_dir


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise NanoscopyError(
            f"Unknown simulated structure kind {kind!r}; choose one of {', '.join(KINDS)}."
        )


def _check_localisation(kind: str, localisation: str) -> None:
    structures.check_localisation(localisation)
    if localisation != "distance" and kind != "nanodomains":
        raise NanoscopyError(
            f"The localisation map applies to nanodomains only; {kind} has no {localisation!r} map, "
            "so leave the option out for it."
        )


def pysted_version() -> str:
    return package_metadata.version("pysted")
