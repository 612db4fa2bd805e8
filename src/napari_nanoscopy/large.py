"""Out-of-core and distributed restoration, by the names the documentation gives them.

The work lives in modules named for their job: :mod:`~napari_nanoscopy.ome_zarr` and
:mod:`~napari_nanoscopy.lazy_tiff` (reading and writing), :mod:`~napari_nanoscopy.blocks`
(planning), :mod:`~napari_nanoscopy.chunked` (the block-by-block driver, here or on a cluster),
:mod:`~napari_nanoscopy.lazy` (dask arrays), :mod:`~napari_nanoscopy.remote` (one image on a
remote worker) and :mod:`~napari_nanoscopy.restore_job` (the command line's restore job: plan, run, write).
"""

from __future__ import annotations

from .blocks import Block, output_shape, plan_blocks
from .chunked import ChunkedResult, restore_chunked
from .lazy import restore_dask
from .lazy_tiff import LazyTiff
from .ome_zarr import OmeZarrWriter, ZarrImage, open_ome_zarr
from .remote import RemoteInference, RemoteRestorer, use_remote_workers

__all__ = [
    "Block", "ChunkedResult", "LazyTiff", "OmeZarrWriter", "RemoteInference", "RemoteRestorer", "ZarrImage",
    "open_ome_zarr", "output_shape", "plan_blocks", "restore_chunked", "restore_dask", "use_remote_workers",
]
