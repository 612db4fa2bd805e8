"""What a TIFF file records about its pixels: the axes of its first series in this package's
vocabulary, its lateral pixel size and channel names (OME, ImageJ or plain TIFF tags), and whether
its strips or tiles hold the image its header describes. Shared by :mod:`.io` (whole images) and
:mod:`.lazy_tiff` (chunked reading)."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import tifffile

from .errors import NanoscopyError

_UNKNOWN_STACK_AXES = "IQ"
_ANISOTROPY_TOLERANCE = 0.01
NM_PER_CM = 1e7

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


def series_axes(series, page, path: Path) -> str:
    """The axes of a tifffile series in the vocabulary of :mod:`.io`; an RGB image is refused.

    Samples stored as separate planes (``S`` before ``Y``) and the extra samples of a
    grey-level pixel are channels (``C``, left where the file has them); interleaved colour
    samples (photometric RGB and its relatives) make an RGB image.
    """
    axes = name_unknown_stack_axis(series.axes)
    if "S" not in axes:
        return axes
    interleaved = axes.index("S") > axes.index("X")
    grey = page.photometric in (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.MINISWHITE)
    if interleaved and not grey:
        samples = series.shape[axes.index("S")]
        raise NanoscopyError(
            f"{path.name} is an RGB image ({samples} colour samples per pixel) and nanoscopy models "
            "need a single fluorescence channel; export the raw channel as a greyscale TIFF, or read "
            "the samples as channels (axes 'YXC', --axes YXC on the command line) and pick one."
        )
    if "C" in axes:
        raise NanoscopyError(
            f"{path.name} has both channels and samples per pixel (axes {axes!r}); give its axes "
            "explicitly (--axes on the command line), e.g. 'CZYX'."
        )
    return axes.replace("S", "C")


def name_unknown_stack_axis(axes: str) -> str:
    """``axes`` with a stack of unknown meaning (tifffile's ``I`` or ``Q``) read as ``Z`` when there is no ``Z``."""
    if "Z" in axes:
        return axes
    for unknown in _UNKNOWN_STACK_AXES:
        if unknown in axes:
            return axes.replace(unknown, "Z", 1)
    return axes


def channel_names_for(names, shape: tuple[int, ...], axes: str) -> list[str] | None:
    """``names`` when they are a list with one name per channel (one for an image without ``C``), else None."""
    if not isinstance(names, list):
        return None
    channel_count = shape[axes.index("C")] if "C" in axes else 1
    return names if len(names) == channel_count else None


def tiff_calibration(tiff: tifffile.TiffFile, path: Path,
                     channel_names: list[str] | None = None) -> tuple[float | None, list[str] | None]:
    """The pixel size (nm) and channel names ``tiff`` records: OME metadata, else ImageJ's, else the plain
    resolution tags. ``channel_names`` (known otherwise: this package's provenance) give way to OME names,
    and ImageJ slice labels fill them in where they are missing."""
    page = tiff.pages.first
    if tiff.is_ome:
        return _ome_calibration(tiff.ome_metadata, path)
    if tiff.is_imagej:
        pixel_size_nm = _imagej_pixel_size(page, tiff.imagej_metadata, path)
        return pixel_size_nm, channel_names or _imagej_channel_names(tiff.imagej_metadata)
    return _plain_tiff_pixel_size(page, path), channel_names


def _imagej_channel_names(imagej_metadata: dict | None) -> list[str] | None:
    """ImageJ slice labels of the first time point and slice: one per channel, C varying fastest."""
    metadata = imagej_metadata or {}
    labels = metadata.get("Labels")
    count = int(metadata.get("channels", 1))
    if count < 2 or not isinstance(labels, list) or len(labels) < count:
        return None
    names = [label.strip() if isinstance(label, str) else "" for label in labels[:count]]
    return names if all(names) else None


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
    return _pixel_size_from_resolution(page, NM_PER_CM, path)


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


def check_tiff_data(tiff: tifffile.TiffFile, path: Path) -> None:
    """Refuse a TIFF whose strips or tiles cannot hold the image its header describes (a damaged or
    truncated file), before any pixel is read: tifffile would fail later, or return zeros."""
    page = tiff.pages.first
    expected = math.prod(page.chunked)
    end = tiff.filehandle.size
    inside = sum(1 for offset, count in zip(page.dataoffsets, page.databytecounts) if offset + count <= end)
    if len(page.dataoffsets) < expected or inside < len(page.dataoffsets):
        raise NanoscopyError(
            f"{path.name} is damaged: its header describes a {'x'.join(map(str, page.shape))} image in {expected} "
            f"strips or tiles, but the file holds only {inside} of them; export the image again."
        )
