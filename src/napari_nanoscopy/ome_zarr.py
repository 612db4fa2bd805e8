"""OME-Zarr images: open one lazily (NGFF 0.4 or 0.5) and write one that appears only when complete."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .errors import NanoscopyError
from .io import StagedOutputs

OME_ZARR_SUFFIX = ".zarr"
_NGFF_VERSION = "0.4"


@dataclass
class ZarrImage:
    """The full-resolution array of an OME-Zarr image and what its metadata says about it."""

    array: Any  # zarr.Array, read lazily
    axes: str  # one letter per dimension, e.g. "TCYX"
    pixel_size_nm: float | None
    channel_names: list[str] | None
    metadata: dict
    path: Path


def require_zarr():
    """The zarr module (an optional dependency), or an error that says how to install it."""
    try:
        import zarr
    except ImportError:
        raise NanoscopyError(
            "Reading and writing OME-Zarr needs the zarr package; install it with "
            "'pip install napari-nanoscopy[large]'."
        ) from None
    return zarr


_UNIT_NM = {"nanometer": 1.0, "micrometer": 1e3, "millimeter": 1e6, "meter": 1e9, "angstrom": 0.1}


def open_ome_zarr(path: str | os.PathLike) -> ZarrImage:
    """Open an OME-Zarr image (NGFF 0.4 or 0.5) without reading its pixels."""
    zarr = require_zarr()
    path = Path(path).expanduser()
    if not path.is_dir():
        raise NanoscopyError(f"The OME-Zarr image {path} does not exist (an OME-Zarr image is a folder).")
    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception as error:
        raise NanoscopyError(f"{path} cannot be opened as a zarr group ({str(error)[:200]}).") from None
    attrs = dict(group.attrs)
    ome = attrs.get("ome", attrs)  # NGFF 0.5 nests the metadata under "ome"
    multiscales = ome.get("multiscales")
    if not multiscales:
        raise NanoscopyError(f"{path} has no OME-Zarr 'multiscales' metadata; it is not an OME-Zarr image.")
    scale = multiscales[0]
    dataset = scale["datasets"][0]
    array = group[dataset["path"]]
    axes_meta = scale.get("axes") or [{"name": n} for n in "tczyx"[-array.ndim:]]
    names = [(a["name"] if isinstance(a, dict) else str(a)).lower() for a in axes_meta]
    axes = "".join(n.upper() if n in "tczyx" else "Q" for n in names)
    if len(axes) != array.ndim or not axes.endswith("YX"):
        raise NanoscopyError(f"The OME-Zarr image {path} has axes {names}; its last two axes must be y and x.")
    pixel_size = None
    for transform in dataset.get("coordinateTransformations") or []:
        if transform.get("type") == "scale":
            sy, sx = transform["scale"][-2:]
            unit = (axes_meta[-1].get("unit") if isinstance(axes_meta[-1], dict) else None) or "micrometer"
            factor = _UNIT_NM.get(str(unit).lower())
            if factor is not None and sx > 0 and abs(sx - sy) <= 0.01 * sx:
                pixel_size = float(sx) * factor
    channels = None
    omero = ome.get("omero") or {}
    if "C" in axes and omero.get("channels"):
        labels = [c.get("label") for c in omero["channels"]]
        if len(labels) == array.shape[axes.index("C")] and all(labels):
            channels = [str(l) for l in labels]
    metadata = dict(attrs.get("napari_nanoscopy") or ome.get("napari_nanoscopy") or {})
    return ZarrImage(array=array, axes=axes, pixel_size_nm=pixel_size, channel_names=channels, metadata=metadata, path=path)


class OmeZarrWriter:
    """Create an OME-Zarr image (NGFF 0.4, zarr format 2) that appears at ``path`` only when complete.

    The arrays are written in a hidden staging folder beside ``path``; :meth:`commit` renames it
    into place and :meth:`abort` removes it, so an interrupted run leaves nothing behind. Given
    ``outputs`` (a :class:`~napari_nanoscopy.io.StagedOutputs`, whose ``overwrite`` then applies),
    the image is staged there and appears together with that run's other outputs when they are
    published.
    """

    def __init__(self, path: str | os.PathLike, shape: Sequence[int], axes: str, *, chunks: Sequence[int],
                 dtype="float32", pixel_size_nm: float | None = None, channel_names: list[str] | None = None,
                 metadata: dict | None = None, overwrite: bool = False, outputs: StagedOutputs | None = None):
        zarr = require_zarr()
        self.path = Path(path).expanduser()
        self._outputs = outputs if outputs is not None else StagedOutputs(overwrite)
        if self.path.exists() and not self._outputs.overwrite:
            raise NanoscopyError(f"{self.path} already exists; choose another path or pass --overwrite.")
        if not self.path.parent.is_dir():
            raise NanoscopyError(f"The folder {self.path.parent} does not exist; create it first.")
        if len(axes) != len(shape) or not axes.endswith("YX"):
            raise NanoscopyError(f"Axes {axes!r} do not describe an image of shape {tuple(shape)} ending in Y, X.")
        self.staging = self._outputs.stage(self.path)
        group = zarr.open_group(str(self.staging), mode="w", zarr_format=2)
        self.array = group.create_array("0", shape=tuple(shape), chunks=tuple(chunks), dtype=dtype, fill_value=0)
        kinds = {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space"}
        axes_meta = []
        for letter in axes:
            entry: dict[str, Any] = {"name": letter.lower(), "type": kinds.get(letter, "custom")}
            if letter in "YX" and pixel_size_nm:
                entry["unit"] = "micrometer"
            axes_meta.append(entry)
        scale = [1.0] * len(axes)
        if pixel_size_nm:
            scale[-2:] = [pixel_size_nm / 1e3, pixel_size_nm / 1e3]
        group.attrs["multiscales"] = [{
            "version": _NGFF_VERSION,
            "name": self.path.stem,
            "axes": axes_meta,
            "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}],
        }]
        if channel_names and "C" in axes:
            group.attrs["omero"] = {"channels": [{"label": n, "active": True} for n in channel_names]}
        group.attrs["napari_nanoscopy"] = json.loads(json.dumps(metadata or {}, default=str))

    def commit(self) -> Path:
        self._outputs.publish()
        return self.path

    def abort(self) -> None:
        self._outputs.discard()
