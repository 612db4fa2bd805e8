"""TIFF and OME-TIFF input and output that keep the physical pixel size.

Conventions
-----------
- ``ImageData.axes`` has one letter per dimension of ``data``, in tifffile's vocabulary:
  ``T`` time, ``C`` channel, ``Z`` depth, ``Y``, ``X``; ``Y`` and ``X`` come last.
  Files from other software lose their length-1 dimensions (tifffile's squeezed series
  axes), and a stack of unknown meaning (tifffile's ``I`` or ``Q``) is read as ``Z`` when
  the file has no ``Z`` axis. Files written by :func:`write_image` read back with exactly
  the axes and shape they were written with, length-1 dimensions included.
- Samples of a pixel stored in separate planes (tifffile's ``S`` before ``Y``: how tifffile
  saves a plain 3- or 4-plane stack, such as the TA-GAN datasets' confocal, STED and
  annotation planes) are channels, ``C``. An RGB image (colour samples interleaved in each
  pixel) is refused, since no nanoscopy model takes colour. ``read_image(path, axes=...)``
  names the dimensions of a file that does not say, or says wrongly (e.g. ``"CYX"`` for a
  stack of channels saved as slices, ``"YXC"`` for an RGB file's samples): one letter per
  dimension of the image as the file stores it, replacing the file's axes.
- ``pixel_size_nm`` is the lateral (Y/X) pixel size in nanometres, or None when the file
  carries no calibration. Anisotropic pixels (X and Y differing by more than 1 %) are
  refused. Plain TIFFs count as calibrated only when their resolution unit is the
  centimetre: an inch resolution is almost always a screen dpi, not a pixel size.
- ``channel_names`` has one name per entry of the ``C`` axis, or a single name when there
  is no ``C`` axis; it is None when the file does not name every channel.
- ``metadata`` is the JSON-serialisable dict given to :func:`write_image` (provenance),
  read back as ``json.loads`` returns it (tuples become lists); ``{}`` for other files.
- Only the first image series of a file is read (the full-resolution level of a pyramid).

What a TIFF records (axes, pixel size, channel names) is read in :mod:`.tiff_metadata`; outputs
are written all or none through :mod:`.outputs`, whose names this module re-exports.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass
from numbers import Real
from pathlib import Path

import numpy as np
import tifffile

from napari_nanoscopy.errors import NanoscopyError
from napari_nanoscopy.limits import available_memory
from napari_nanoscopy.outputs import OutputAppeared, StagedOutputs, atomic_output
from napari_nanoscopy.tiff_metadata import (NM_PER_CM, channel_names_for, check_tiff_data, name_unknown_stack_axis,
                                            series_axes, tiff_calibration)

__all__ = [
    "ImageData", "OutputAppeared", "StagedOutputs", "atomic_output", "choose_channel", "read_image",
    "select_channel", "write_image",
]

_OME_SUFFIXES = (".ome.tif", ".ome.tiff")
_TIFF_SUFFIXES = (".tif", ".tiff")
_WRITABLE_AXES = "TCZYX"
_IMAGEJ_AXIS_ORDER = "TZCYX"
_IMAGEJ_DTYPES = {np.dtype(name) for name in ("uint8", "uint16", "float32")}
# OME pixel types: bit, (u)int8-32, float, double; no 64-bit integers, no float16.
_OME_DTYPES = {
    np.dtype(name) for name in "bool int8 int16 int32 uint8 uint16 uint32 float32 float64".split()
}
_NM_PER_UM = 1e3

# Provenance lives as JSON in a tag of the TIFF range anyone may use privately
# (65000-65535); the "writer" key tells our tag apart from another program's use of the code.
_PROVENANCE_TAG = 65417
_PROVENANCE_WRITER = "napari-nanoscopy"
_PROVENANCE_NAMESPACE = "napari-nanoscopy/provenance"  # of the OME CommentAnnotation holding the same JSON


@dataclass
class ImageData:
    """An image with the physical and descriptive information read from its file."""

    data: np.ndarray
    pixel_size_nm: float | None
    axes: str
    channel_names: list[str] | None
    metadata: dict


def read_image(path, *, axes: str | None = None, header_only: bool = False) -> ImageData:
    """Read the first image series of a TIFF, ImageJ hyperstack or OME-TIFF file.

    ``axes`` replaces the file's own axes (one letter from ``"TCZYX"`` per dimension as
    stored). See the module documentation for the axes, pixel size, channel name and
    metadata rules. ``header_only`` reads no pixel: ``data`` is then a read-only array of the
    image's shape and dtype that holds no memory (every value 0), for checks before any work.
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
            return _image_from_tiff(tiff, path, axes, header_only)
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


def _image_from_tiff(tiff: tifffile.TiffFile, path: Path, given_axes: str | None, header_only: bool) -> ImageData:
    if not tiff.series:
        raise NanoscopyError(f"{path} contains no image data; check that it is an image file.")
    series = tiff.series[0]
    page = tiff.pages.first
    provenance = _read_provenance(page, path)
    if given_axes is None:
        axes = series_axes(series, page, path)  # refuses RGB before any pixel is read
    else:
        axes = name_unknown_stack_axis(series.axes)

    pixel_size_nm, channel_names = tiff_calibration(tiff, path, provenance.get("channel_names"))

    if header_only:  # every axis stride 0: the same reshapes and transposes, as views of one value
        data = np.broadcast_to(np.zeros((), series.dtype), series.shape)
    else:
        check_fits_in_memory(series.shape, series.dtype, path.name)
        check_tiff_data(tiff, path)
        data = series.asarray()
    restored = _restore_written_axes(data, series, provenance.get("axes"))
    if restored is not None:
        data, axes = restored
    elif "C" in axes and axes.index("C") > axes.index("Y"):  # samples interleaved in each pixel
        data, axes = np.moveaxis(data, axes.index("C"), -3), axes.replace("C", "")[:-2] + "CYX"
    if given_axes is not None:
        order, named_axes = axes_order(given_axes, data.shape, axes, path.name)
        file_channel = axes.index("C") if "C" in axes else None
        named_channel = order[named_axes.index("C")] if "C" in named_axes else None
        if file_channel != named_channel:
            channel_names = None  # the file's names belong to another dimension, if to any
        data, axes = np.transpose(data, order), named_axes
    return ImageData(
        data=data,
        pixel_size_nm=pixel_size_nm,
        axes=axes,
        channel_names=channel_names_for(channel_names, data.shape, axes),
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


def axes_order(given, shape: tuple[int, ...], axes: str, what: str) -> tuple[list[int], str]:
    """Check ``given`` axes (one per dimension of ``shape``, whose file axes are ``axes``).

    Returns the transposition that puts Y and X last and the axes after it.
    """
    letters = given.upper() if isinstance(given, str) else None
    if (
        letters is None
        or len(letters) != len(shape)
        or len(set(letters)) != len(letters)
        or not set(letters) <= set(_WRITABLE_AXES)
        or not {"Y", "X"} <= set(letters)
    ):
        raise NanoscopyError(
            f"The axes {given!r} do not fit {what}, whose image has shape {tuple(shape)} (read as "
            f"{axes!r}); give one letter per dimension from {_WRITABLE_AXES!r}, each at most once, "
            "including Y and X (e.g. 'CYX')."
        )
    order = [i for i, axis in enumerate(letters) if axis not in "YX"]
    order += [letters.index("Y"), letters.index("X")]
    return order, "".join(letters[i] for i in order)


def choose_channel(
    axes: str, shape: tuple[int, ...], channel_names, channel, *, what: str, how: str
) -> int | None:
    """The index along the ``C`` axis of the one channel a single-input model restores.

    ``channel`` is an index (int, or a string of digits) or a channel name (exact, else
    case-insensitive); None picks the only channel. Returns None when there is no ``C``
    axis. Without a ``channel``, more channels than one are refused with a message that
    lists them and ends with ``how`` (the way to choose, in the caller's words).
    """
    count = shape[axes.index("C")] if "C" in axes else 1
    names = channel_names if channel_names and len(channel_names) == count else None
    listing = ", ".join(f"{i}: {name}" for i, name in enumerate(names)) if names else (
        ", ".join(str(i) for i in range(count)) + " (unnamed)"
    )
    if channel is None:
        if count > 1:
            raise NanoscopyError(
                f"{what} has {count} channels ({listing}) and the model restores one; {how}."
            )
        return 0 if "C" in axes else None
    index = _channel_by_name(names or [], str(channel))
    if index is None and (isinstance(channel, int) or str(channel).strip().isdigit()):
        index = int(channel)
    if "C" not in axes and index != 0:
        raise NanoscopyError(
            f"{what} has no channel axis, so there is no channel {channel!r} to pick; restore it without "
            "a channel choice, or give axes that name its channel axis C."
        )
    if index is None or not 0 <= index < count:
        raise NanoscopyError(
            f"{what} has no channel {channel!r}; its channels are {listing}: give an index from 0 "
            f"to {count - 1}" + (" or one of the names." if names else ".")
        )
    return index if "C" in axes else None


def _channel_by_name(names: list[str], wanted: str) -> int | None:
    if wanted in names:
        return names.index(wanted)
    folded = [name.casefold() for name in names]
    return folded.index(wanted.casefold()) if folded.count(wanted.casefold()) == 1 else None


def select_channel(image: ImageData, channel=None, *, what: str = "The image", how: str | None = None) -> ImageData:
    """``image`` reduced to the one channel :func:`choose_channel` picks (no ``C`` axis left)."""
    index = choose_channel(
        image.axes, image.data.shape, image.channel_names, channel, what=what,
        how=how or "pass the channel to restore, by index or name",
    )
    if index is None:
        return image
    axis = image.axes.index("C")
    names = image.channel_names
    return ImageData(
        data=np.take(image.data, index, axis=axis),
        pixel_size_nm=image.pixel_size_nm,
        axes=image.axes.replace("C", ""),
        channel_names=[names[index]] if names and len(names) == image.data.shape[axis] else None,
        metadata=image.metadata,
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
    # The provenance JSON also goes into the OME-XML, where OME readers (Bio-Formats, OMERO) show it.
    provenance_json = provenance_tag[3]
    ome_metadata["CommentAnnotation"] = {"Namespace": _PROVENANCE_NAMESPACE, "Value": provenance_json}
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
        pixels_per_cm = NM_PER_CM / pixel_size_nm
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


def check_fits_in_memory(shape, dtype, what: str,
                         remedy: str = "restore it block by block (restore --block, or convert it to OME-Zarr), "
                                       "or check that the file is not damaged") -> None:
    """Refuse, before anything is read or allocated, an image (``what``, of ``shape`` and ``dtype``) larger
    than the memory available now: a header that claims 100000x100000 pixels must not end in a MemoryError."""
    needed = math.prod(int(n) for n in shape) * np.dtype(dtype).itemsize
    available = available_memory()
    if available is not None and needed > available:
        raise NanoscopyError(
            f"{what} is a {'x'.join(str(int(n)) for n in shape)} {np.dtype(dtype)} image ({needed / 1e9:.1f} GB), "
            f"more than the {available / 1e9:.1f} GB of memory available; {remedy}."
        )


def check_output_path(path, *, overwrite: bool = False, zarr: bool = False) -> Path:
    """Check, before any work, that an image can be written at ``path``: a TIFF suffix (or ``.zarr``,
    an OME-Zarr folder, where ``zarr``), an existing writable folder, nothing of another kind in the
    way, and nothing at all unless ``overwrite``. Returns the path with ``~`` expanded."""
    path = Path(path).expanduser()
    is_zarr = zarr and path.name.lower().endswith(".zarr")
    if not (path.name.lower().endswith(_TIFF_SUFFIXES) or is_zarr):
        zarr_too = " or in .zarr (OME-Zarr)" if zarr else ""
        raise NanoscopyError(
            f"Cannot write {path}: the name must end in .ome.tif or .ome.tiff (OME-TIFF), in .tif or .tiff "
            f"(ImageJ TIFF){zarr_too}; choose one of these suffixes."
        )
    if path.exists() and not overwrite:
        raise NanoscopyError(f"{path} already exists; choose another path or pass --overwrite.")
    if path.exists() and path.is_dir() != is_zarr:
        kind = "a folder" if path.is_dir() else "a file"
        raise NanoscopyError(f"Cannot write {path}: {kind} of that name is in the way; remove it or choose another path.")
    if not path.parent.is_dir():
        raise NanoscopyError(f"The folder {path.parent} does not exist; create it first.")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise NanoscopyError(f"The folder {path.parent} is not writable; choose another folder or change its permissions.")
    return path
