"""napari reader and writers: TIFF / OME-TIFF at the file's physical pixel size.

Layer scales are in nanometres (``units`` = nm), the unit nanoscopy images are discussed in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import NanoscopyError
from .io import read_image, write_image

POLYGON_SUFFIX = ".polys.txt"  # the annotation files of Lavoie-Cardinal et al. 2020
UNIT_TO_NM = {"nm": 1.0, "nanometer": 1.0, "µm": 1e3, "um": 1e3, "micrometer": 1e3, "micron": 1e3, "mm": 1e6, "millimeter": 1e6}


def get_reader(path: str | list[str]):
    if isinstance(path, list) or not str(path).lower().endswith((".tif", ".tiff")):
        return None
    return read_tiff


def read_tiff(path: str) -> list[tuple]:
    """One layer per channel (named after it, or numbered as the command line's --channel counts
    them), each at the file's pixel size; an RGB file is refused, as by :func:`read_image`."""
    image = read_image(path)
    layer_type = "labels" if image.metadata.get("layer_type") == "labels" else "image"
    split = "C" in image.axes and layer_type == "image"
    layer_axes = image.axes.replace("C", "") if split else image.axes
    pixel = image.pixel_size_nm
    stem = Path(path).name.split(".")[0]
    # The file's own pixel size and axes win over any copied into its provenance.
    kwargs: dict[str, Any] = {"name": stem, "metadata": {**image.metadata, "pixel_size_nm": pixel, "axes": layer_axes}}
    if pixel is not None:
        kwargs["scale"] = (1.0,) * (len(layer_axes) - 2) + (pixel, pixel)
        kwargs["units"] = ("pixel",) * (len(layer_axes) - 2) + ("nm", "nm")
    if split:
        kwargs["channel_axis"] = image.axes.index("C")
        count = image.data.shape[kwargs["channel_axis"]]
        kwargs["name"] = list(image.channel_names or [f"{stem} [{index}]" for index in range(count)])
    return [(image.data, kwargs, layer_type)]


def get_polygon_reader(path: str | list[str]):
    if isinstance(path, list) or not str(path).lower().endswith(POLYGON_SUFFIX):
        return None
    return read_polygon_file


def read_polygon_file(path: str) -> list[tuple]:
    """The polygons of a ``*.polys.txt`` annotation file (Lavoie-Cardinal et al.) as one Shapes layer.

    The file gives vertices in pixels of its image and no pixel size, so the layer is at scale 1
    (the image's pixels); each shape's file label is its ``label`` feature. Nothing in the file is
    evaluated (:func:`~napari_nanoscopy.annotations.read_polygons` parses numbers only).
    """
    from .annotations import read_polygons

    polygons = read_polygons(path)
    name = Path(path).name[: -len(POLYGON_SUFFIX)]
    kwargs = {"name": f"{name} polygons", "shape_type": "polygon", "features": {"label": [p.label for p in polygons]},
              "face_color": "transparent", "edge_color": "#ffd400", "edge_width": 1.0,
              "metadata": {"annotations": str(path), "coordinates": "pixels of the annotated image"}}
    return [([polygon.vertices for polygon in polygons], kwargs, "shapes")]


def pixel_size_from_meta(meta: dict[str, Any]) -> float | None:
    """The layer's Y/X pixel size in nm, or None when its scale carries no physical unit."""
    scale = meta.get("scale")
    if scale is None:
        return None
    units = meta.get("units")
    unit = str(units[-1]) if units else "pixel"
    unit = unit.replace("nanometer", "nm").replace("micrometer", "µm")
    if unit in UNIT_TO_NM:
        y, x = (float(s) * UNIT_TO_NM[unit] for s in scale[-2:])
        if abs(y - x) > 0.01 * x:
            raise NanoscopyError(f"The layer has anisotropic pixels ({y:g} x {x:g} nm); resample it before saving.")
        return x
    metadata_pixel = (meta.get("metadata") or {}).get("pixel_size_nm")
    return float(metadata_pixel) if metadata_pixel else None


def _write(path: str, data: Any, meta: dict[str, Any], layer_type: str) -> list[str]:
    import numpy as np

    array = np.asarray(data)
    # A layer read by us remembers its file's axes (channels were split into layers).
    stored = str((meta.get("metadata") or {}).get("axes", "")).replace("C", "")
    axes = stored if len(stored) == array.ndim else "TZYX"[-array.ndim:]
    provenance = {
        k: v for k, v in (meta.get("metadata") or {}).items() if isinstance(v, (str, int, float, bool, list, dict)) or v is None
    }
    provenance.update(layer_name=meta.get("name"), layer_type=layer_type)
    if layer_type == "labels" and array.dtype == np.int64:
        array = array.astype(np.int32)  # OME has no 64-bit integer pixels
    write_image(path, array, pixel_size_nm=pixel_size_from_meta(meta), axes=axes, metadata=provenance)
    return [path]


def write_image_layer(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    return _write(path, data, meta, "image")


def write_labels_layer(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    return _write(path, data, meta, "labels")
