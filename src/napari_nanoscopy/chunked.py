"""Chunked and distributed restoration: images larger than memory, block by block, here or on a cluster.

An image (or each plane of a stack) is cut into blocks (:mod:`~napari_nanoscopy.blocks`); each
block is read with a margin of the Restorer's halo (the network's receptive radius plus half the
blending width) and restored by the one :class:`~napari_nanoscopy.inference.Restorer`, and only
its core is written. Block origins and margins are multiples of the network's size multiple, so
every block sits on the same stride grid as a whole-image pass, and a margin at least as wide as
the receptive radius gives every written pixel exactly the context a whole-image pass gives it.

Intensity normalisation needs statistics of the whole plane: they are taken first, from the same
regular subsample the in-memory Restorer uses, and every block of that plane is restored with the
:class:`~napari_nanoscopy.normalisation.Normaliser` fitted to them. So a chunked restoration
equals an in-memory one to floating-point noise (deterministic models; Monte-Carlo samples differ
only by their random draws), while the memory in use is that of a few blocks, whatever the image
size.

Sources are anything with ``shape``, ``dtype`` and numpy slicing: numpy arrays and memory maps,
zarr arrays (OME-Zarr via :func:`~napari_nanoscopy.ome_zarr.open_ome_zarr`), dask arrays,
tifffile's zarr view of a TIFF. Blocks run in this process, or on a dask.distributed cluster
(``scheduler``: an address, a ``Client``, or ``"local"`` for an embedded LocalCluster); blocks are
seeded from ``seed`` and their position, so the result does not depend on where or in which order
they ran.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from .blocks import Block, block_seed, choose_block, output_shape, plan_blocks, round_up
from .errors import Cancelled, NanoscopyError
from .limits import MAX_WORKERS, check_int, check_samples, check_seed
from .normalisation import Normaliser, statistics_sample
from .restorer_cache import restorers
from .uncertainty import ESTIMATOR

CONNECT_TIMEOUT = "10s"  # to reach a dask scheduler


# --- the work of one block (runs here or on a dask worker) ------------------------------------


def engine_of(model, precision: str | None, compile: bool | None) -> tuple[str, bool]:
    """``precision`` and ``compile``, each taken from ``model`` when it is None and ``model`` is a
    Restorer (else fp32, not compiled)."""
    from .inference import Restorer

    given = isinstance(model, Restorer)
    return (precision if precision is not None else model.precision if given else "fp32",
            bool(compile) if compile is not None else model.compiled if given else False)


def restorer_at_model_grid(model, device, mc_mode, pixel_size_nm, why_not: str, precision: str = "fp32",
                            compile: bool = False):
    """The package and restorer of ``model`` (a Restorer, package, path or name) for an image
    that must already be at the model's pixel size; ``why_not`` ends the refusal's sentence."""
    from .formats import load_model
    from .inference import Restorer
    from .packages import ModelPackage

    package = model.package if isinstance(model, Restorer) else model if isinstance(model, ModelPackage) else load_model(model)
    base = restorers.get(package, device, mc_mode, precision, compile).restorer
    if base.zoom_factor(pixel_size_nm) != 1.0:
        raise NanoscopyError(
            f"The image has {pixel_size_nm:g} nm pixels but the model '{base.card.name}' works at "
            f"{base.card.pixel_size_nm:g} nm; {why_not}"
        )
    return package, base


def restore_region(package, region: np.ndarray, normaliser, *, device: str = "auto",
                   mc_mode: str = "dropout", samples: int | None = None, seed: int | None = None,
                   tile_size: int | None = None, crop: tuple[slice, slice] | None = None,
                   want_std: bool = False, want_labels: bool = False, precision: str = "fp32",
                   compile: bool = False) -> dict[str, np.ndarray]:
    """Restore one region with ``normaliser`` (fitted to its whole plane) and return its cropped outputs.

    ``region`` is (Y, X) or (C, Y, X) for models with several inputs. This is the function dask
    workers run; it holds no state except the process's ready Restorers.
    """
    ready = restorers.get(package, device, mc_mode, precision, compile)
    restorer = ready.restorer
    channel_axis = 0 if restorer.in_channels > 1 else None
    with ready.lock:  # one forward pass at a time per Restorer
        result = restorer.restore(region, channel_axis=channel_axis, samples=samples, seed=seed, tile_size=tile_size,
                                  normaliser=normaliser)
    crop = crop or (slice(None), slice(None))
    out = {"mean": result.mean[(..., *crop)]}
    if want_std:
        out["std"] = (result.uncertainty if result.uncertainty is not None else np.zeros_like(result.mean))[(..., *crop)]
    if want_labels and result.labels is not None:
        out["labels"] = result.labels[(..., *crop)]
    return out


# --- the driver ------------------------------------------------------------------------------


@dataclass
class ChunkedResult:
    """What :func:`restore_chunked` wrote (the sinks it was given or created) and how."""

    mean: Any
    std: Any = None
    labels: Any = None
    blocks: int = 0
    block_size: int = 0
    margin: int = 0
    provenance: dict = field(default_factory=dict)


class BlockExecutor:
    """Runs block jobs here, in order, or on a dask.distributed cluster with a bounded queue."""

    def __init__(self, scheduler, package):
        self.client = self.cluster = None
        self.package = package
        if scheduler is None:
            return
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise NanoscopyError(
                "Distributed restoration needs dask.distributed; install it with 'pip install napari-nanoscopy[large]'."
            ) from None
        if hasattr(scheduler, "submit"):
            self.client = scheduler
            self.owns_client = False
        else:
            if scheduler == "local" or isinstance(scheduler, int):
                workers = (check_int("The number of dask workers", scheduler, 1, MAX_WORKERS) if isinstance(scheduler, int)
                           else max(1, (os.cpu_count() or 2) // 2))
                self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=False,
                                            dashboard_address=None)
                address = self.cluster
            else:
                address = str(scheduler)
            try:
                self.client = Client(address, timeout=CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as error:
                if self.cluster is not None:
                    self.cluster.close()
                raise NanoscopyError(
                    f"Cannot reach the dask scheduler at {scheduler} ({str(error)[:200]}); check the address "
                    "(tcp://HOST:8786) and that 'dask scheduler' runs there."
                ) from None
            self.owns_client = True
        # one copy of the model per worker, not one per block
        self.remote_package = None if package is None else self.client.scatter(package, broadcast=True)

    @property
    def workers(self) -> int:
        return 1 if self.client is None else max(1, len(self.client.scheduler_info().get("workers", {})))

    def run(self, jobs: Iterator[tuple[Block, np.ndarray, Normaliser]], kwargs: dict,
            done: Callable[[Block, dict], None], step: Callable[[], None]) -> None:
        if self.client is None:
            for block, region, normaliser in jobs:
                step()
                done(block, restore_region(self.package, region, normaliser, crop=block.crop,
                                           seed=block_seed(kwargs["seed"], block), **_without_seed(kwargs)))
            return
        from distributed import wait

        pending: deque = deque()
        limit = 2 * self.workers  # blocks in flight: bounds the memory of this process too
        try:
            for block, region, normaliser in jobs:
                step()
                future = self.client.submit(
                    restore_region, self.remote_package, region, normaliser, crop=block.crop,
                    seed=block_seed(kwargs["seed"], block), pure=False, **_without_seed(kwargs),
                )
                pending.append((block, future))
                while len(pending) >= limit:
                    wait([pending[0][1]])
                    first, future = pending.popleft()
                    done(first, future.result())
            while pending:
                first, future = pending.popleft()
                done(first, future.result())
        finally:
            for _, future in pending:
                future.cancel()

    def close(self) -> None:
        if self.client is not None and self.owns_client:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _without_seed(kwargs: dict) -> dict:
    return {k: v for k, v in kwargs.items() if k != "seed"}


def _checked_shape(base, source) -> tuple[int, ...]:
    """The shape of ``source``, refused when ``base`` (a Restorer) cannot restore it."""
    shape = tuple(int(n) for n in source.shape)
    multi = base.in_channels > 1
    if len(shape) < (3 if multi else 2):
        raise NanoscopyError(f"The image has shape {shape}; give at least a (Y, X) image (and C before Y, X for this model).")
    if multi and shape[-3] != base.in_channels:
        raise NanoscopyError(
            f"The model '{base.card.name}' takes {base.in_channels} channels on the axis before Y, X, but the image has "
            f"{shape[-3]}; reorder the axes or pick another model."
        )
    dtype = np.dtype(source.dtype)
    if dtype == bool or not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise NanoscopyError(f"The image has data type {dtype}; give a real-valued integer or floating-point image.")
    return shape


class _CoreWriter:
    """Writes each restored block's core into the sinks and reports progress."""

    def __init__(self, out, std_out, labels_out, total: int, progress):
        self.out, self.std_out, self.labels_out = out, std_out, labels_out
        self.total, self.progress, self.done = total, progress, 0

    def __call__(self, blk: Block, outputs: dict) -> None:
        core = blk.plane + (Ellipsis,) + blk.core
        self.out[core] = outputs["mean"]
        if self.std_out is not None:
            self.std_out[core] = outputs["std"]
        if self.labels_out is not None:
            self.labels_out[blk.plane + blk.core] = outputs["labels"]
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)


def _checked_sinks(package, card, shape, lead, out, std_out, labels_out):
    """``out`` (allocated when None), refused with the other sinks when a shape or the model does not fit."""
    if labels_out is not None and not card.task:
        raise NanoscopyError(f"The model '{card.name}' has no task network, so there is no segmentation to write.")
    expected = output_shape(package, shape)
    if out is None:
        out = np.zeros(expected, dtype=np.float32)
    for name, sink, want in (("output", out, expected), ("uncertainty output", std_out, expected),
                             ("segmentation output", labels_out, lead + shape[-2:])):
        if sink is not None and tuple(sink.shape) != tuple(want):
            raise NanoscopyError(f"The {name} has shape {tuple(sink.shape)} but the restoration gives {tuple(want)}.")
    return out


def _require_finite(data: np.ndarray, plane: tuple[int, ...]) -> None:
    if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        raise NanoscopyError(f"Plane {plane} of the image contains NaN or infinite pixels; replace them before restoring.")


def _block_jobs(source, normaliser: Normaliser, planes, pairs,
                multi: bool) -> Iterator[tuple[Block, np.ndarray, Normaliser]]:
    """Each block's region, read from ``source`` ((..., C, Y, X) when ``multi``), with ``normaliser``
    fitted to its whole plane."""
    channel_index = (slice(None),) if multi else ()
    for frame, plane in enumerate(planes):
        sample = statistics_sample(source, plane)
        if not multi:
            sample = sample[None]
        _require_finite(sample, plane)
        fitted = normaliser.fit(sample, plane=frame)
        for index, (core, region) in enumerate(pairs):
            data = np.asarray(source[plane + channel_index + region])
            _require_finite(data, plane)
            yield Block(plane=plane, index=index, core=core, region=region), data, fitted


def restore_chunked(
    model,
    source,
    out=None,
    *,
    std_out=None,
    labels_out=None,
    pixel_size_nm: float | None = None,
    samples: int | None = None,
    seed: int | None = None,
    block: int | None = None,
    tile_size: int | None = None,
    device: str = "auto",
    mc_mode: str = "dropout",
    precision: str | None = None,
    compile: bool | None = None,
    scheduler=None,
    progress: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> ChunkedResult:
    """Restore ``source`` block by block into ``out`` (and ``std_out``, the uncertainty layer, and ``labels_out``).

    ``source`` is (..., Y, X), or (..., C, Y, X) for models with several inputs; the sinks have
    the source's leading axes, the output channels when the model has more than one, then Y, X
    (create them with :func:`output_shape`; ``out=None`` allocates a numpy array). ``block`` is
    the side of a block's core (default: 1024, or a multiple of the source's chunks); ``scheduler``
    runs the blocks on dask.distributed (an address, a Client, ``"local"`` or a worker count for
    an embedded LocalCluster). Peak memory is that of a few blocks and their margins.
    ``precision`` ("fp32" or "bf16") and ``compile`` (torch.compile, see :class:`Restorer`) default
    to those of ``model`` when it is a Restorer, else fp32, not compiled.
    """
    precision, compile = engine_of(model, precision, compile)
    package, base = restorer_at_model_grid(
        model, device, mc_mode, pixel_size_nm,
        "chunked restoration does not resample. Resample the image to the model's pixel size first, or "
        "restore it in memory (a TIFF to a TIFF, without --block, --scheduler or --workers), which resamples.",
        precision, compile,
    )
    card = base.card
    shape = _checked_shape(base, source)
    lead = shape[:-3] if base.in_channels > 1 else shape[:-2]
    height, width = shape[-2:]
    m = base.size_multiple
    margin = round_up(base.halo, m)
    block = choose_block(block, source, m)
    samples = check_samples(card.default_samples if samples is None else samples)
    seed = check_seed(seed)
    want_std, want_labels = std_out is not None, labels_out is not None
    out = _checked_sinks(package, card, shape, lead, out, std_out, labels_out)

    pairs = plan_blocks(height, width, block, margin)
    planes = list(np.ndindex(lead)) if lead else [()]
    total = len(pairs) * len(planes)

    def step() -> None:
        if should_cancel is not None and should_cancel():
            raise Cancelled("Restoration cancelled.")

    finished = _CoreWriter(out, std_out, labels_out, total, progress)
    kwargs = dict(device=device, mc_mode=mc_mode, samples=samples, seed=seed, tile_size=tile_size,
                  want_std=want_std, want_labels=want_labels, precision=precision, compile=compile)
    executor = BlockExecutor(scheduler, package)
    try:
        executor.run(_block_jobs(source, base.normaliser, planes, pairs, base.in_channels > 1), kwargs, finished, step)
    finally:
        executor.close()
    provenance = _provenance(card, pixel_size_nm=pixel_size_nm, samples=samples, seed=seed, mc_mode=mc_mode,
                             precision=precision, compile=compile, block=block, margin=margin, blocks=total,
                             scheduler=scheduler)
    return ChunkedResult(mean=out, std=std_out, labels=labels_out, blocks=total, block_size=block,
                         margin=margin, provenance=provenance)


def _provenance(card, *, pixel_size_nm, samples, seed, mc_mode, precision, compile, block, margin, blocks,
                scheduler) -> dict:
    from . import __version__

    return {
        "model": card.name, "family": card.family, "weights_sha256": card.weights_sha256,
        "model_pixel_size_nm": card.pixel_size_nm, "pixel_size_nm": pixel_size_nm,
        "pixel_size_assumed": pixel_size_nm is None and card.pixel_size_nm is not None, "samples": samples,
        "seed": seed, "mc_mode": mc_mode if samples > 1 else "deterministic", "precision": precision,
        "compiled": compile, "chunked": True, **({"uncertainty": ESTIMATOR} if samples > 1 else {}),
        "block_size": block, "block_margin": margin, "blocks": blocks,
        "scheduler": None if scheduler is None else str(getattr(getattr(scheduler, "scheduler", None), "address", scheduler)),
        "napari_nanoscopy": __version__,
    }
