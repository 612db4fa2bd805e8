"""Lazy restoration as a dask array (a napari layer of a huge image computes only the blocks on screen)."""

from __future__ import annotations

import numpy as np

from .blocks import Block, block_seed, choose_block, plan_blocks, round_up
from .chunked import engine_of, restore_region, restorer_at_model_grid
from .errors import NanoscopyError
from .normalisation import statistics_sample


def restore_dask(model, array, *, pixel_size_nm: float | None = None, samples: int | None = None,
                 seed: int | None = None, block: int | None = None, device: str = "auto",
                 mc_mode: str = "dropout", output: str = "mean", precision: str | None = None,
                 compile: bool | None = None):
    """A lazy dask array of the restored ``array`` (a dask or numpy array, (..., Y, X)).

    Nothing is restored until blocks are computed, so napari shows a restored view of a huge
    image by computing only the blocks on screen. Each plane's normalisation statistics are taken
    when the graph is built (one strided read of the plane). ``output`` is "mean", "std" or
    "labels". Computing the whole array with ``dask.compute`` or on a dask.distributed client
    gives the same numbers as :func:`~napari_nanoscopy.chunked.restore_chunked`. ``precision`` and ``compile`` as
    for :func:`~napari_nanoscopy.chunked.restore_chunked`.
    """
    import dask
    import dask.array as da

    if output not in ("mean", "std", "labels"):
        raise NanoscopyError(f"output must be 'mean', 'std' or 'labels', not {output!r}.")
    precision, compile = engine_of(model, precision, compile)
    package, base = restorer_at_model_grid(
        model, device, mc_mode, pixel_size_nm,
        "lazy restoration does not resample. Resample the image to the model's pixel size first.", precision, compile,
    )
    card = base.card
    if output == "labels" and not card.task:
        raise NanoscopyError(f"The model '{card.name}' has no task network, so there are no labels.")
    if base.in_channels > 1:
        raise NanoscopyError("Lazy restoration takes single-input models; use restore_chunked for multichannel input.")
    array = da.asarray(array) if not hasattr(array, "dask") else array
    *lead, height, width = array.shape
    lead = tuple(lead)
    margin = round_up(base.halo, base.size_multiple)
    block = choose_block(block, array, base.size_multiple)
    samples = card.default_samples if samples is None else int(samples)
    pairs = plan_blocks(height, width, block, margin)
    out_channels = base.out_channels if output != "labels" else 1
    dtype = np.uint8 if output == "labels" else np.float32
    kwargs = dict(device=device, mc_mode=mc_mode, samples=samples, tile_size=None,
                  want_std=output == "std", want_labels=output == "labels", precision=precision, compile=compile)

    def run(region, normaliser, blk):
        result = restore_region(package, np.asarray(region), normaliser, crop=blk.crop,
                                seed=block_seed(seed, blk), **kwargs)
        return result[output]

    planes = []
    for frame, plane in enumerate(np.ndindex(lead) if lead else [()]):
        normaliser = base.normaliser.fit(statistics_sample(array, plane)[None], plane=frame)
        rows: dict[int, list] = {}
        for index, (core, region) in enumerate(pairs):
            blk = Block(plane=plane, index=index, core=core, region=region)
            shape = ((out_channels,) if out_channels > 1 else ()) + (core[0].stop - core[0].start, core[1].stop - core[1].start)
            piece = da.from_delayed(dask.delayed(run)(array[plane + region], normaliser, blk), shape=shape, dtype=dtype)
            rows.setdefault(core[0].start, []).append(piece)
        planes.append(da.concatenate([da.concatenate(r, axis=-1) for _, r in sorted(rows.items())], axis=-2))
    if not lead:
        return planes[0]
    stacked = da.stack(planes)
    return stacked.reshape(lead + stacked.shape[1:])
