"""TIFF images read chunk by chunk (tifffile's zarr view), for restorations that never hold them whole."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from .errors import NanoscopyError
from .ome_zarr import require_zarr


class LazyTiff:
    """A TIFF / OME-TIFF opened for chunked reading (tifffile's zarr view): nothing is read up front.

    Use as a context manager; ``array`` reads tiles (or strips) on demand. Axes are as
    :func:`~napari_nanoscopy.io.read_image` names them (``axes`` replaces them), in the order the
    file stores them, which must end in Y, X; the pixel size and channel names come from the OME,
    ImageJ or resolution metadata.
    """

    def __init__(self, path: str | os.PathLike, axes: str | None = None):
        import tifffile

        from .tiff_metadata import channel_names_for, check_tiff_data, series_axes, tiff_calibration

        zarr = require_zarr()
        self.path = Path(path).expanduser()
        try:
            self._tiff = tifffile.TiffFile(self.path)
        except (tifffile.TiffFileError, OSError, ValueError) as error:
            raise NanoscopyError(f"Could not read {self.path} as a TIFF image ({error}).") from None
        try:
            if not self._tiff.series:
                raise NanoscopyError(f"{self.path} contains no image data; check that it is an image file.")
            series = self._tiff.series[0]
            page = self._tiff.pages.first
            check_tiff_data(self._tiff, self.path)  # a damaged header fails here, not block by block
            self.pixel_size_nm, names = tiff_calibration(self._tiff, self.path)
            file_axes = series_axes(series, page, self.path) if axes is None else series.axes
            self.axes = axes_as_stored(axes, series.shape, file_axes, self.path.name)
            self.array = zarr.open(series.aszarr(), mode="r")
            self.channel_names = channel_names_for(names, self.array.shape, self.axes)
        except BaseException:
            self._tiff.close()
            raise

    def close(self) -> None:
        self._tiff.close()

    def __enter__(self) -> "LazyTiff":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def axes_as_stored(given: str | None, shape: Sequence[int], axes: str, what: str) -> str:
    """The axes of an image read chunk by chunk, as stored: ``given`` replaces ``axes`` (the file's).

    Chunked reading never transposes, so Y and X must be the last two stored axes.
    """
    from .io import axes_order

    if given is not None:
        axes_order(given, tuple(shape), axes, what)  # refuses axes that do not fit
        axes = given.upper()
    if not axes.endswith("YX"):
        raise NanoscopyError(
            f"{what} stores its axes as {axes!r}, and chunk-by-chunk restoration needs Y and X last; "
            "restore it in memory (a TIFF to a TIFF, without --block, --scheduler or --workers)."
        )
    return axes
