"""Datamap files: real STED images in, datamap TIFFs out, and datamap sources for ``simulate``.

``write_datamaps(source, out)`` derives one datamap per real STED image (``datamaps.derive_datamap``)
and writes the folder ``out``, all or nothing::

    out/<image name>.tif   float32 molecules per pixel, ImageJ TIFF with the image's pixel size
                           and the derivation's facts as provenance metadata
    out/annotations/<image name>.tif
                           with ``annotations``: uint8 masks (C, Y, X), one channel per class of
                           the label scheme, named; the image's polygons on the datamap's grid
    out/datamaps.json      per datamap: its source (file name, SHA-256), pixel size, derivation
                           facts and the agreement of its pySTED re-image with the real image

A *datamap source* is a folder of such TIFFs, one TIFF, or ``pysted:NAME[:I,J,...]``: pySTED's
example datamaps of NAME (factin, psd95, tubulin), all or the listed indices. A datamap with a
file of the same name in ``annotations/`` beside it carries those masks: the classes its expert
annotated, the others unannotated.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_nanoscopy.annotations import LABEL_SCHEMES, class_masks, read_polygons
from napari_nanoscopy.errors import NanoscopyError
from napari_nanoscopy.io import read_image, write_image
from napari_nanoscopy.limits import check_pixel_size, check_seed
from napari_nanoscopy.outputs import StagedOutputs
from napari_nanoscopy.simulation import datamaps
from napari_nanoscopy.simulation.conditions import STANDARD_CONDITIONS

PYSTED_PREFIX = "pysted:"
_TIFF_SUFFIXES = (".tif", ".tiff")
_UNSIGNED_OFFSET = 32768  # uint16 STED images stored with ImageJ calibration c0 = -32768
MAX_IMAGES = 10_000
ANNOTATIONS_FOLDER = "annotations"
POLYGON_SUFFIX = ".polys.txt"
MAX_CLASSES = 16


@dataclass(frozen=True)
class DatamapSource:
    """One datamap ready to image: ``name`` (unique in its source), molecules per pixel, pixel size."""

    name: str
    datamap: np.ndarray  # float32
    pixel_size_nm: float
    origin: dict[str, Any]  # JSON-ready: where it came from
    annotation: np.ndarray | None = None  # uint8 (C, Y, X) masks of ``classes``, on the datamap's grid
    classes: tuple[str, ...] = ()


def read_sted_image(path, pixel_size_nm: float | None = None) -> tuple[np.ndarray, float]:
    """A real STED image as float64 photon counts and its pixel size in nm.

    uint16 images whose minimum is not 0 are stored with an offset of 32768 (ImageJ calibration
    c0 = -32768, as the FLClab images are) and lose it. ``pixel_size_nm`` replaces the file's.
    """
    path = Path(path)
    image = read_image(path)
    data = np.squeeze(image.data)
    if data.ndim != 2:
        raise NanoscopyError(
            f"{path.name} is a {image.axes} image of shape {image.data.shape}, not one 2D plane; save each "
            "STED plane (one channel, one time point) as its own TIFF."
        )
    if data.dtype == np.uint16 and data.size and data.min() != 0:
        data = data.astype(np.float64) - _UNSIGNED_OFFSET
    counts = datamaps.checked_counts(data, f"The STED image {path.name}")
    if pixel_size_nm is None:
        if image.pixel_size_nm is None:
            raise NanoscopyError(
                f"{path.name} carries no pixel size; give it with --pixel-size (in nm, e.g. 20)."
            )
        pixel_size_nm = image.pixel_size_nm
    return counts, check_pixel_size(pixel_size_nm, f"The pixel size of {path.name}")


def sted_image_paths(source) -> list[Path]:
    """The TIFFs of ``source``: one file, or every TIFF directly inside a folder (sorted)."""
    source = Path(source).expanduser()
    if source.is_dir():
        paths = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in _TIFF_SUFFIXES
                       and not p.name.startswith("."))
        if not paths:
            raise NanoscopyError(f"The folder {source} holds no .tif or .tiff image; give a folder of STED TIFFs.")
        if len(paths) > MAX_IMAGES:
            raise NanoscopyError(f"The folder {source} holds {len(paths)} TIFFs, more than {MAX_IMAGES}; split it.")
        return paths
    if not source.is_file():
        raise NanoscopyError(f"{source} does not exist; give a STED TIFF or a folder of them.")
    return [source]


def write_datamaps(
    source,
    out,
    *,
    pixel_size_nm: float | None = None,
    conditions: Mapping[str, Any] = STANDARD_CONDITIONS,
    iterations: int | None = datamaps.DEFAULT_ITERATIONS,
    seed: int = 0,
    annotations=None,
    labels: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Derive the datamaps of the STED images in ``source`` (or copy pySTED examples given as
    ``pysted:NAME[:I,...]``) into the new folder ``out``; see the module docstring.

    Every image is read and checked before any work; the folder appears only once complete.
    ``iterations`` of Richardson-Lucy (None: stop by the discrepancy principle).
    ``seed`` seeds the re-imaging that measures the agreement. ``annotations``: a folder of
    ``<image name>.polys.txt`` polygon files (STEDActinFCN's format) read with the label scheme
    ``labels`` (``axon``: rings; ``dendrite``: rings and fibres); an image without one gets no masks.
    """
    out = Path(out).expanduser()
    if out.exists():
        raise NanoscopyError(f"{out} already exists; give a new folder for the datamaps.")
    if not out.parent.is_dir():
        raise NanoscopyError(f"The folder {out.parent} does not exist; create it first.")
    seed = check_seed(seed)
    if isinstance(source, str) and source.startswith(PYSTED_PREFIX):
        jobs = [(item.name, item.datamap, item.pixel_size_nm, item.origin, None) for item in load_datamaps(source)]
    else:
        jobs = [_read_job(path, pixel_size_nm) for path in sted_image_paths(source)]
        _check_unique_names([job[0] for job in jobs], source)
    polygons = {}
    if annotations is not None:
        if isinstance(source, str) and source.startswith(PYSTED_PREFIX):
            raise NanoscopyError("pySTED's example datamaps have no annotation; leave --annotations out for them.")
        polygons = _read_annotations(annotations, labels, [job[0] for job in jobs])
    elif labels is not None:
        raise NanoscopyError("--labels names how polygon files are read; give the folder of them with --annotations.")
    for pixel_nm in sorted({job[2] for job in jobs}):
        datamaps.conditions_at(conditions, pixel_nm)  # refuses bad conditions before any work
    with StagedOutputs() as staged:
        folder = staged.stage(out)
        folder.mkdir()
        records = []
        for index, (name, array, pixel_nm, origin, counts) in enumerate(jobs):
            records.append(_write_one(folder, name, array, pixel_nm, origin, counts, conditions, iterations,
                                      np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))))
            if name in polygons:
                records[-1]["annotation"] = _write_annotation(folder, name, counts.shape, pixel_nm, labels,
                                                              *polygons[name])
            if progress is not None:
                progress(index + 1, len(jobs))
        manifest = {"conditions": dict(conditions), "seed": seed, "datamaps": records}
        (folder / "datamaps.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return out


def _read_job(path: Path, pixel_size_nm):
    counts, pixel_nm = read_sted_image(path, pixel_size_nm)
    origin = {"file": path.name, "sha256": _digest(path)}
    return path.name.split(".")[0], None, pixel_nm, origin, counts


def _read_annotations(folder, labels: str | None, names: list[str]) -> dict[str, tuple[list, dict]]:
    """name -> (polygons, source record) for every image with a polygon file in ``folder``."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise NanoscopyError(f"The annotation folder {folder} does not exist; give the folder of *.polys.txt files.")
    if labels not in LABEL_SCHEMES:
        raise NanoscopyError(
            f"Say how the polygon labels read with --labels ({' or '.join(LABEL_SCHEMES)}: "
            f"{'; '.join(f'{k}: {sorted(set(v.values()))}' for k, v in LABEL_SCHEMES.items())}), not {labels!r}."
        )
    found = {}
    for name in names:
        path = folder / f"{name}{POLYGON_SUFFIX}"
        if path.is_file():
            found[name] = (read_polygons(path), {"file": path.name, "sha256": _digest(path)})
    if not found:
        raise NanoscopyError(
            f"No image has a polygon file in {folder} (expected e.g. {names[0]}{POLYGON_SUFFIX}); name each file "
            "after its image."
        )
    return found


def _write_annotation(folder: Path, name: str, shape, pixel_nm: float, labels: str, polygons, source) -> dict:
    classes, masks = class_masks(polygons, shape, labels)
    (folder / ANNOTATIONS_FOLDER).mkdir(exist_ok=True)
    file = f"{ANNOTATIONS_FOLDER}/{name}.tif"
    write_image(folder / file, masks, pixel_size_nm=pixel_nm, axes="CYX", channel_names=classes)
    return {"file": file, "classes": classes, "labels": labels, "source": source}


def _check_unique_names(names: list[str], source) -> None:
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise NanoscopyError(
            f"Several images in {source} share the name {repeated[0]!r} (only their suffix differs); rename them "
            "so that each datamap gets its own file."
        )


def _write_one(folder, name, array, pixel_nm, origin, counts, conditions, iterations, rng) -> dict:
    record = {"name": name, "file": f"{name}.tif", "pixel_size_nm": pixel_nm, "source": origin}
    if counts is not None:
        derived = datamaps.derive_datamap(counts, pixel_nm, conditions, iterations=iterations)
        array = derived.datamap
        imaging = datamaps.conditions_at(conditions, pixel_nm)
        simulated = datamaps.reimage(array, imaging, sted=True, rng=rng)
        record["derivation"] = derived.info
        record["agreement"] = datamaps.agreement(counts, simulated, pixel_nm)
    write_image(folder / f"{name}.tif", array.astype(np.float32), pixel_size_nm=pixel_nm,
                metadata={"datamap": {k: v for k, v in record.items() if k != "agreement"}})
    return record


def load_datamaps(source) -> list[DatamapSource]:
    """The datamaps of one source (a folder or TIFF of datamaps, or ``pysted:NAME[:I,...]``)."""
    if isinstance(source, str) and source.startswith(PYSTED_PREFIX):
        return _pysted_examples(source)
    loaded = []
    for path in sted_image_paths(source):
        image = read_image(path)
        array = np.squeeze(image.data)
        if array.ndim != 2 or array.dtype.kind not in "biuf":
            raise NanoscopyError(f"The datamap {path.name} is not one 2D plane of numbers; give the TIFFs `datamap` writes.")
        array = array.astype(np.float32)
        if not np.all(np.isfinite(array)) or array.min() < 0:
            raise NanoscopyError(
                f"The datamap {path.name} holds NaN, infinite or negative values; datamaps are molecules per pixel "
                "(>= 0): derive it again with `napari-nanoscopy datamap`."
            )
        if image.pixel_size_nm is None:
            raise NanoscopyError(f"The datamap {path.name} carries no pixel size; write it with its pixel size "
                                 "(`napari-nanoscopy datamap` does).")
        name = path.name.split(".")[0]
        origin = {"file": path.name, "sha256": _digest(path)}
        annotation, classes = None, ()
        annotation_path = path.parent / ANNOTATIONS_FOLDER / f"{name}.tif"
        if annotation_path.is_file():
            annotation, classes = _read_annotation(annotation_path, array.shape)
            origin["annotation"] = {"file": f"{ANNOTATIONS_FOLDER}/{annotation_path.name}", "classes": list(classes),
                                    "sha256": _digest(annotation_path)}
        loaded.append(DatamapSource(name, array, float(image.pixel_size_nm), origin, annotation, classes))
    return loaded


def _read_annotation(path: Path, shape: tuple[int, int]) -> tuple[np.ndarray, tuple[str, ...]]:
    """The masks beside a datamap, checked (header first: no size in the file is trusted)."""
    def refuse(problem: str):
        raise NanoscopyError(
            f"The annotation {path} {problem}; write it again with `napari-nanoscopy datamap --annotations`, or "
            "remove it to use the datamap without annotation."
        )

    header = read_image(path, header_only=True)
    planes = header.data.shape[0] if header.axes == "CYX" else 1
    if header.axes not in ("YX", "CYX") or tuple(header.data.shape[-2:]) != tuple(shape) or planes > MAX_CLASSES:
        refuse(f"is {header.axes} {tuple(header.data.shape)}, not at most {MAX_CLASSES} masks of the datamap's "
               f"{shape[0]}x{shape[1]} pixels")
    names = header.channel_names if header.axes == "CYX" else header.channel_names[:1] if header.channel_names else None
    if not names or len(names) != planes or len(set(names)) != planes:
        refuse("does not name each of its classes once")
    masks = read_image(path).data.reshape(planes, *shape)
    if masks.dtype.kind not in "biuf" or not np.all((masks == 0) | (masks == 1)):
        refuse("holds values other than 0 and 1")
    return masks.astype(np.uint8), tuple(names)


def _pysted_examples(spec: str) -> list[DatamapSource]:
    parts = spec[len(PYSTED_PREFIX):].split(":")
    if len(parts) > 2 or not parts[0]:
        raise NanoscopyError(f"{spec!r} is not a pySTED example source; write pysted:NAME or pysted:NAME:0,1,2.")
    name = parts[0]
    available = datamaps.pysted_example_indices(name)
    try:
        indices = available if len(parts) == 1 else [int(text) for text in parts[1].split(",")]
    except ValueError:
        raise NanoscopyError(f"{spec!r} lists indices that are not whole numbers; write e.g. pysted:{name}:0,1,2.") from None
    if len(set(indices)) != len(indices):
        raise NanoscopyError(f"{spec!r} lists an index twice; list each example once.")
    origin = {"pysted_example": name, "molecules_at_max": datamaps.EXAMPLE_MOLECULES}
    return [
        DatamapSource(f"{name}-{index}", datamaps.pysted_example(name, index), datamaps.EXAMPLE_PIXEL_SIZE_NM,
                      {**origin, "index": index})
        for index in indices
    ]


def conditions_for(sources: list[DatamapSource], conditions: Mapping[str, Any]) -> dict[str, Any]:
    """The conditions to image ``sources`` with: all must share one pixel size, which the
    conditions take on (a datamap is molecules per pixel of its own size)."""
    sizes = sorted({round(item.pixel_size_nm, 3) for item in sources})
    if len(sizes) != 1:
        raise NanoscopyError(
            f"The datamaps have different pixel sizes ({', '.join(f'{s:g}' for s in sizes)} nm); image datamaps of "
            "one pixel size per dataset."
        )
    return datamaps.conditions_at(copy.deepcopy(dict(conditions)), sizes[0])


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
