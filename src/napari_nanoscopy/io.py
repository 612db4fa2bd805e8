"""TIFF and OME-TIFF input and output that keep the physical pixel size.

Conventions
-----------
- ``ImageData.axes`` has one letter per dimension of ``data``, in tifffile's vocabulary:
  ``T`` time, ``C`` channel, ``Z`` depth, ``Y``, ``X``, ``S`` samples of an RGB pixel.
  Files from other software lose their length-1 dimensions (tifffile's squeezed series
  axes), and a stack of unknown meaning (tifffile's ``I`` or ``Q``) is read as ``Z`` when
  the file has no ``Z`` axis. Files written by :func:`write_image` read back with exactly
  the axes and shape they were written with, length-1 dimensions included.
- ``pixel_size_nm`` is the lateral (Y/X) pixel size in nanometres, or None when the file
  carries no calibration. Anisotropic pixels (X and Y differing by more than 1 %) are
  refused. Plain TIFFs count as calibrated only when their resolution unit is the
  centimetre: an inch resolution is almost always a screen dpi, not a pixel size.
- ``channel_names`` has one name per entry of the ``C`` axis, or a single name when there
  is no ``C`` axis; it is None when the file does not name every channel.
- ``metadata`` is the JSON-serialisable dict given to :func:`write_image` (provenance),
  read back as ``json.loads`` returns it (tuples become lists); ``{}`` for other files.
- Only the first image series of a file is read (the full-resolution level of a pyramid).
"""

from __future__ import annotations

import json
import math
import os
import secrets
import warnings
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from numbers import Real
from pathlib import Path

import numpy as np
import tifffile

from napari_nanoscopy.errors import NanoscopyError

__all__ = ["ImageData", "atomic_output", "read_image", "write_image"]

_OME_SUFFIXES = (".ome.tif", ".ome.tiff")
_TIFF_SUFFIXES = (".tif", ".tiff")
_WRITABLE_AXES = "TCZYX"
_IMAGEJ_AXIS_ORDER = "TZCYX"
_IMAGEJ_DTYPES = {np.dtype(name) for name in ("uint8", "uint16", "float32")}
# OME pixel types: bit, (u)int8-32, float, double; no 64-bit integers, no float16.
_OME_DTYPES = {
    np.dtype(name) for name in "bool int8 int16 int32 uint8 uint16 uint32 float32 float64".split()
}
_UNKNOWN_STACK_AXES = "IQ"
_ANISOTROPY_TOLERANCE = 0.01
_NM_PER_CM = 1e7
_NM_PER_UM = 1e3

# Provenance lives as JSON in a tag of the TIFF range anyone may use privately
# (65000-65535); the "writer" key tells our tag apart from another program's use of the code.
_PROVENANCE_TAG = 65417
_PROVENANCE_WRITER = "napari-nanoscopy"

_NM_PER_UNIT = {
    "m": 1e9,
    "cm": 1e7,
    "mm": 1e6,
    "\u00b5m": 1e3,  # micro sign
    "\u03bcm": 1e3,  # Greek mu
    "um": 1e3,
    "micron": 1e3,
    "microns": 1e3,
    "\\u00B5m": 1e3,  # ImageJ escapes the micro sign in its ASCII description
    "nm": 1.0,
    "pm": 1e-3,
    "\u00c5": 0.1,  # Latin A with ring
    "\u212b": 0.1,  # angstrom sign
}
_UNCALIBRATED_UNITS = {"", "pixel", "pixels", "reference frame"}


@dataclass
class ImageData:
    """An image with the physical and descriptive information read from its file."""

    data: np.ndarray
    pixel_size_nm: float | None
    axes: str
    channel_names: list[str] | None
    metadata: dict


@contextmanager
def atomic_output(path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` and move it onto ``path`` on success.

    On any exception the temporary file is deleted and the exception re-raised, so a
    partial file never appears at ``path`` (and an existing file there stays untouched).
    The temporary name is hidden (leading dot) and keeps ``path``'s last suffix.
    """
    target = Path(path)
    if not target.parent.is_dir():
        raise NanoscopyError(
            f"Cannot write {target}: the folder {target.parent} does not exist; create it first."
        )
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.partial{target.suffix}")
    try:
        yield temporary
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def read_image(path) -> ImageData:
    """Read the first image series of a TIFF, ImageJ hyperstack or OME-TIFF file.

    See the module documentation for the axes, pixel size, channel name and metadata rules.
    """
    path = Path(path)
    if not path.name.lower().endswith(_TIFF_SUFFIXES):
        raise NanoscopyError(
            f"Cannot read {path}: only TIFF files (.tif, .tiff, .ome.tif, .ome.tiff) are "
            "supported; convert the image to TIFF first."
        )
    if not path.is_file():
        raise NanoscopyError(f"The image file {path} does not exist; check the path.")
    try:
        with tifffile.TiffFile(path) as tiff:
            return _image_from_tiff(tiff, path)
    except (tifffile.TiffFileError, OSError, ValueError, KeyError, IndexError) as error:
        raise NanoscopyError(
            f"Could not read {path} as a TIFF image ({error}); check that the file is a "
            "complete, uncorrupted TIFF."
        ) from error


def write_image(
    path, data, *, pixel_size_nm=None, axes=None, channel_names=None, metadata=None
) -> None:
    """Write ``data`` as OME-TIFF (``.ome.tif``/``.ome.tiff``) or ImageJ TIFF (``.tif``/``.tiff``).

    ``axes`` defaults to ``"YX"`` for 2D and ``"ZYX"`` for 3D data and is required otherwise;
    it takes letters from ``"TCZYX"``, each at most once, and must end in ``"YX"``.
    ``pixel_size_nm`` is stored natively (OME PhysicalSizeX/Y in µm; ImageJ resolution with
    unit ``um``). ``channel_names`` needs one name per ``C`` entry (one name without a ``C``
    axis). ``metadata`` must be a JSON-serialisable dict; it is stored as JSON in a private
    TIFF tag and read back by :func:`read_image`.

    OME-TIFF stores bool, (u)int8-32, float32 and float64 exactly and refuses other dtypes.
    A ``.tif``/``.tiff`` holds an ImageJ hyperstack when ImageJ can represent the dtype:
    uint8, uint16 and float32 as they are, float64 converted to float32 (so it does not read
    back bit-exact; use ``.ome.tif`` for that). Other dtypes go to a plain TIFF with the
    pixel size in centimetre resolution tags. ImageJ stores axes in TZCYX order; the
    original order is restored on reading. The file appears only once fully written.
    """
    path = Path(path)
    lower_name = path.name.lower()
    if not lower_name.endswith(_TIFF_SUFFIXES):
        raise NanoscopyError(
            f"Cannot write {path}: the name must end in .ome.tif or .ome.tiff (OME-TIFF) "
            "or in .tif or .tiff (ImageJ TIFF); choose one of these suffixes."
        )
    data = np.asarray(data)
    if data.dtype.kind not in "biuf" or data.ndim < 2:
        raise NanoscopyError(
            f"Cannot write {path}: data of dtype {data.dtype} and shape {data.shape} is not "
            "an image; pass a numeric array with at least two dimensions (Y, X)."
        )
    data = data.astype(data.dtype.newbyteorder("="), copy=False)  # dtype checks need native order
    is_ome = lower_name.endswith(_OME_SUFFIXES)
    if is_ome and data.dtype not in _OME_DTYPES:
        raise NanoscopyError(
            f"Cannot write {path}: OME-TIFF cannot store {data.dtype} data; convert it (e.g. "
            "labels to int32, float16 to float32) or write a plain .tif instead."
        )
    axes = _checked_axes(axes, data.shape)
    pixel_size_nm = _checked_pixel_size(pixel_size_nm)
    channel_names = _checked_channel_names(channel_names, data.shape, axes)
    metadata = _checked_metadata(metadata)
    provenance = {"writer": _PROVENANCE_WRITER, "axes": axes, "metadata": metadata}
    if channel_names is not None and not is_ome:
        provenance["channel_names"] = channel_names  # ImageJ/plain TIFF have no native place
    provenance_tag = (_PROVENANCE_TAG, "s", 0, _provenance_json(provenance), True)

    try:
        with atomic_output(path) as temporary:
            if is_ome:
                _write_ome(temporary, data, axes, pixel_size_nm, channel_names, provenance_tag)
            elif data.dtype in _IMAGEJ_DTYPES or data.dtype == np.float64:
                _write_imagej(temporary, data, axes, pixel_size_nm, provenance_tag)
            else:
                _write_plain(temporary, data, axes, pixel_size_nm, provenance_tag)
    except OSError as error:
        raise NanoscopyError(
            f"Could not write {path} ({error}); check that the folder is writable and the "
            "disk has space."
        ) from error


def _image_from_tiff(tiff: tifffile.TiffFile, path: Path) -> ImageData:
    if not tiff.series:
        raise NanoscopyError(f"{path} contains no image data; check that it is an image file.")
    series = tiff.series[0]
    page = tiff.pages.first
    provenance = _read_provenance(page, path)

    channel_names = provenance.get("channel_names")
    if tiff.is_ome:
        pixel_size_nm, channel_names = _ome_calibration(tiff.ome_metadata, path)
    elif tiff.is_imagej:
        pixel_size_nm = _imagej_pixel_size(page, tiff.imagej_metadata, path)
    else:
        pixel_size_nm = _plain_tiff_pixel_size(page, path)

    data = series.asarray()
    restored = _restore_written_axes(data, series, provenance.get("axes"))
    if restored is None:
        axes = _name_unknown_stack_axis(series.axes)
    else:
        data, axes = restored
    return ImageData(
        data=data,
        pixel_size_nm=pixel_size_nm,
        axes=axes,
        channel_names=_channel_names_for(channel_names, data.shape, axes),
        metadata=provenance.get("metadata", {}),
    )


def _read_provenance(page, path: Path) -> dict:
    tag = page.tags.get(_PROVENANCE_TAG)
    if tag is None:
        return {}
    try:
        provenance = json.loads(tag.value)
    except (TypeError, ValueError):
        provenance = None
    if not isinstance(provenance, dict) or provenance.get("writer") != _PROVENANCE_WRITER:
        warnings.warn(
            f"{path} has a TIFF tag {_PROVENANCE_TAG} not written by napari-nanoscopy; "
            "its content is ignored.",
            stacklevel=4,
        )
        return {}
    return provenance


def _restore_written_axes(data: np.ndarray, series, written_axes) -> tuple[np.ndarray, str] | None:
    """Undo the squeezing and reordering a format imposed on axes this module wrote.

    Returns None when the file's layout does not fit ``written_axes`` (e.g. it was edited).
    """
    file_axes = series.get_axes(squeeze=False)
    file_shape = series.get_shape(squeeze=False)
    if (
        not isinstance(written_axes, str)
        or len(set(file_axes)) != len(file_axes)
        or not set(written_axes) <= set(file_axes)
        or any(size != 1 for axis, size in zip(file_axes, file_shape) if axis not in written_axes)
    ):
        return None
    kept_axes = "".join(axis for axis in file_axes if axis in written_axes)
    kept_shape = [size for axis, size in zip(file_axes, file_shape) if axis in written_axes]
    kept = data.reshape(kept_shape)
    return np.transpose(kept, [kept_axes.index(axis) for axis in written_axes]), written_axes


def _name_unknown_stack_axis(axes: str) -> str:
    if "Z" in axes:
        return axes
    for unknown in _UNKNOWN_STACK_AXES:
        if unknown in axes:
            return axes.replace(unknown, "Z", 1)
    return axes


def _channel_names_for(names, shape: tuple[int, ...], axes: str) -> list[str] | None:
    if not isinstance(names, list):
        return None
    channel_count = shape[axes.index("C")] if "C" in axes else 1
    return names if len(names) == channel_count else None


def _ome_calibration(ome_xml: str, path: Path) -> tuple[float | None, list[str] | None]:
    """Pixel size (nm) and channel names of the first OME Image."""
    pixels = next(
        (
            element
            for element in ElementTree.fromstring(ome_xml).iter()
            if _local_name(element) == "Pixels"
        ),
        None,
    )
    if pixels is None:
        return None, None

    def physical_size_nm(axis):
        size = pixels.get(f"PhysicalSize{axis}")
        if size is None:
            return None
        nm_per_unit = _nm_per_unit(pixels.get(f"PhysicalSize{axis}Unit", "µm"), path)
        return None if nm_per_unit is None else float(size) * nm_per_unit

    pixel_size_nm = _lateral_pixel_size(physical_size_nm("X"), physical_size_nm("Y"), path)
    names = [channel.get("Name") for channel in pixels if _local_name(channel) == "Channel"]
    return pixel_size_nm, (names if names and all(names) else None)


def _local_name(element) -> str:
    return element.tag.rpartition("}")[2]


def _imagej_pixel_size(page, imagej_metadata: dict | None, path: Path) -> float | None:
    unit = (imagej_metadata or {}).get("unit")
    if unit is None:
        return None
    nm_per_unit = _nm_per_unit(unit, path)
    return _pixel_size_from_resolution(page, nm_per_unit, path)


def _plain_tiff_pixel_size(page, path: Path) -> float | None:
    if page.resolutionunit != tifffile.RESUNIT.CENTIMETER:
        return None
    return _pixel_size_from_resolution(page, _NM_PER_CM, path)


def _pixel_size_from_resolution(page, nm_per_unit: float | None, path: Path) -> float | None:
    """Pixel size from the X/YResolution tags, which count pixels per unit."""
    if nm_per_unit is None or "XResolution" not in page.tags:
        return None
    x_pixels_per_unit, y_pixels_per_unit = page.resolution
    if "YResolution" not in page.tags:
        y_pixels_per_unit = x_pixels_per_unit

    def size_nm(pixels_per_unit):
        return nm_per_unit / pixels_per_unit if pixels_per_unit > 0 else None

    return _lateral_pixel_size(size_nm(x_pixels_per_unit), size_nm(y_pixels_per_unit), path)


def _lateral_pixel_size(x_nm: float | None, y_nm: float | None, path: Path) -> float | None:
    """One lateral pixel size from X and Y; a missing or invalid one defers to the other."""
    sizes = [
        size for size in (x_nm, y_nm) if size is not None and math.isfinite(size) and size > 0
    ]
    if not sizes:
        return None
    if max(sizes) > min(sizes) * (1 + _ANISOTROPY_TOLERANCE):
        raise NanoscopyError(
            f"{path} has anisotropic pixels ({x_nm:g} nm in X, {y_nm:g} nm in Y), which are "
            "not supported; resample the image to square pixels first."
        )
    return sizes[0]


def _nm_per_unit(unit: str, path: Path) -> float | None:
    """Nanometres per length unit; None for units that mean "not calibrated"."""
    unit = unit.strip()
    if unit in _NM_PER_UNIT:
        return _NM_PER_UNIT[unit]
    if unit.lower() in _UNCALIBRATED_UNITS:
        return None
    raise NanoscopyError(
        f"{path} gives its pixel size in the unsupported unit {unit!r}; re-save it with a "
        "metric unit (nm, µm, mm, m) or Å."
    )


def _checked_axes(axes, shape: tuple[int, ...]) -> str:
    if axes is None:
        if len(shape) == 2:
            return "YX"
        if len(shape) == 3:
            return "ZYX"
        raise NanoscopyError(
            f"Data of shape {shape} has more than three dimensions; pass axes, e.g. 'TCYX'."
        )
    if (
        not isinstance(axes, str)
        or len(axes) != len(shape)
        or len(set(axes)) != len(axes)
        or not set(axes) <= set(_WRITABLE_AXES)
        or not axes.endswith("YX")
    ):
        raise NanoscopyError(
            f"axes {axes!r} do not fit data of shape {shape}; give one letter per dimension "
            f"from {_WRITABLE_AXES!r}, each at most once, ending in 'YX' (e.g. 'CYX')."
        )
    return axes


def _checked_pixel_size(pixel_size_nm) -> float | None:
    if pixel_size_nm is None:
        return None
    if (
        isinstance(pixel_size_nm, bool)
        or not isinstance(pixel_size_nm, Real)
        or not math.isfinite(pixel_size_nm)
        or pixel_size_nm <= 0
    ):
        raise NanoscopyError(
            f"pixel_size_nm must be a positive number of nanometres or None, got "
            f"{pixel_size_nm!r}; pass the lateral pixel size."
        )
    return float(pixel_size_nm)


def _checked_channel_names(channel_names, shape: tuple[int, ...], axes: str) -> list[str] | None:
    if channel_names is None:
        return None
    channel_count = shape[axes.index("C")] if "C" in axes else 1
    if (
        isinstance(channel_names, str)
        or not all(isinstance(name, str) for name in channel_names)
        or len(channel_names) != channel_count
    ):
        raise NanoscopyError(
            f"channel_names {channel_names!r} do not fit {channel_count} channel(s); pass a "
            "list with one string per entry of the C axis (one string when there is no C axis)."
        )
    return list(channel_names)


def _checked_metadata(metadata) -> dict:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise NanoscopyError(
            f"metadata must be a dict, got {type(metadata).__name__}; "
            "pass a JSON-serialisable dict."
        )
    return metadata


def _provenance_json(provenance: dict) -> str:
    try:
        return json.dumps(provenance)
    except (TypeError, ValueError) as error:
        raise NanoscopyError(
            f"metadata cannot be stored as JSON ({error}); pass only dicts, lists, strings, "
            "numbers, booleans and None."
        ) from error


def _write_ome(path, data, axes, pixel_size_nm, channel_names, provenance_tag) -> None:
    ome_metadata: dict = {"axes": axes}
    if pixel_size_nm is not None:
        pixel_size_um = pixel_size_nm / _NM_PER_UM
        ome_metadata.update(
            PhysicalSizeX=pixel_size_um,
            PhysicalSizeXUnit="µm",
            PhysicalSizeY=pixel_size_um,
            PhysicalSizeYUnit="µm",
        )
    if channel_names is not None:
        ome_metadata["Channel"] = {"Name": channel_names}
    tifffile.imwrite(
        path,
        data,
        ome=True,
        photometric="minisblack",
        metadata=ome_metadata,
        extratags=[provenance_tag],
    )


def _write_imagej(path, data, axes, pixel_size_nm, provenance_tag) -> None:
    imagej_axes = "".join(axis for axis in _IMAGEJ_AXIS_ORDER if axis in axes)
    imagej_data = np.transpose(data, [axes.index(axis) for axis in imagej_axes])
    if imagej_data.dtype == np.float64:
        imagej_data = imagej_data.astype(np.float32)
    imagej_metadata = {"axes": imagej_axes}
    resolution = None
    if pixel_size_nm is not None:
        imagej_metadata["unit"] = "um"
        pixels_per_um = _NM_PER_UM / pixel_size_nm
        resolution = (pixels_per_um, pixels_per_um)
    tifffile.imwrite(
        path,
        imagej_data,
        imagej=True,
        photometric="minisblack",
        resolution=resolution,
        metadata=imagej_metadata,
        extratags=[provenance_tag],
    )


def _write_plain(path, data, axes, pixel_size_nm, provenance_tag) -> None:
    resolution = None
    if pixel_size_nm is not None:
        pixels_per_cm = _NM_PER_CM / pixel_size_nm
        resolution = (pixels_per_cm, pixels_per_cm)
    tifffile.imwrite(
        path,
        data,
        photometric="minisblack",
        resolution=resolution,
        resolutionunit=tifffile.RESUNIT.CENTIMETER if resolution else None,
        metadata={"axes": axes},
        extratags=[provenance_tag],
    )


def read_json_object(path: str | os.PathLike, what: str, remedy: str) -> dict:
    """Read a JSON file that must hold an object; ``what`` and ``remedy`` word the errors."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise NanoscopyError(f"{what} is not valid JSON ({error}); {remedy}.") from None
    if not isinstance(data, dict):
        raise NanoscopyError(f"{what} must hold a JSON object; {remedy}.")
    return data
