"""Out-of-core and distributed restoration: images larger than memory, many files, many machines.

An image (or each plane of a stack) is cut into blocks of ``block`` pixels; each block is read
with a margin of the Restorer's halo (the network's receptive radius plus half the blending
width) and restored by the one :class:`~napari_nanoscopy.inference.Restorer`, and only its core
is written. Block origins and margins are multiples of the network's size multiple, so every
block sits on the same stride grid as a whole-image pass, and a margin at least as wide as the
receptive radius gives every written pixel exactly the context a whole-image pass gives it.

Intensity normalisation needs statistics of the whole plane: they are taken first, from the same
regular subsample the in-memory Restorer uses, and every block of that plane is normalised with
them. So a chunked restoration equals an in-memory one to floating-point noise (deterministic
models; Monte-Carlo samples differ only by their random draws), while the memory in use is that
of a few blocks, whatever the image size.

Sources are anything with ``shape``, ``dtype`` and numpy slicing: numpy arrays and memory maps,
zarr arrays (OME-Zarr via :func:`open_ome_zarr`), dask arrays, tifffile's zarr view of a TIFF.
Blocks run in this process, or on a dask.distributed cluster (``scheduler``: an address, a
``Client``, or ``"local"`` for an embedded LocalCluster); blocks are seeded from ``seed`` and
their position, so the result does not depend on where or in which order they ran.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .errors import Cancelled, NanoscopyError
from .io import StagedOutputs, check_fits_in_memory, check_output_path
from .limits import MAX_TILE, MAX_WORKERS, check_int, check_samples, check_seed

DEFAULT_BLOCK = 1024  # pixels: the side of a block (its core), at the model's pixel size
CONNECT_TIMEOUT = "10s"  # to reach a dask scheduler
OME_ZARR_SUFFIX = ".zarr"
_NGFF_VERSION = "0.4"


# --- OME-Zarr ------------------------------------------------------------------------------


@dataclass
class ZarrImage:
    """The full-resolution array of an OME-Zarr image and what its metadata says about it."""

    array: Any  # zarr.Array, read lazily
    axes: str  # one letter per dimension, e.g. "TCYX"
    pixel_size_nm: float | None
    channel_names: list[str] | None
    metadata: dict
    path: Path


def _zarr():
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
    zarr = _zarr()
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


class LazyTiff:
    """A TIFF / OME-TIFF opened for chunked reading (tifffile's zarr view): nothing is read up front.

    Use as a context manager; ``array`` reads tiles (or strips) on demand. Axes are as
    :func:`~napari_nanoscopy.io.read_image` names them (``axes`` replaces them), in the order the
    file stores them, which must end in Y, X; the pixel size and channel names come from the OME,
    ImageJ or resolution metadata.
    """

    def __init__(self, path: str | os.PathLike, axes: str | None = None):
        import tifffile

        from . import io as nio

        zarr = _zarr()
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
            nio.check_tiff_data(self._tiff, self.path)  # a damaged header fails here, not block by block
            names = None
            if self._tiff.is_ome:
                self.pixel_size_nm, names = nio._ome_calibration(self._tiff.ome_metadata, self.path)
            elif self._tiff.is_imagej:
                self.pixel_size_nm = nio._imagej_pixel_size(page, self._tiff.imagej_metadata, self.path)
                names = nio._imagej_channel_names(self._tiff.imagej_metadata)
            else:
                self.pixel_size_nm = nio._plain_tiff_pixel_size(page, self.path)
            file_axes = nio.series_axes(series, page, self.path) if axes is None else series.axes
            self.axes = axes_as_stored(axes, series.shape, file_axes, self.path.name)
            self.array = zarr.open(series.aszarr(), mode="r")
            self.channel_names = nio._channel_names_for(names, self.array.shape, self.axes)
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


def input_channel(restorer, data, axes: str, channel_names, channel, what: str) -> tuple[Any, str, dict]:
    """The image a model restores: for a single-input model only the chosen channel.

    The choice is :func:`~napari_nanoscopy.io.choose_channel`'s (``channel`` is an index or a
    name); a zarr source stays lazy. Returns the data, its axes and the provenance of the choice.
    """
    from .io import choose_channel

    if restorer.in_channels > 1:
        if channel is not None:
            raise NanoscopyError(
                f"The model '{restorer.card.name}' takes {restorer.in_channels} channels "
                f"({', '.join(restorer.card.input_channels)}), so there is no channel to pick; drop --channel."
            )
        return data, axes, {}
    index = choose_channel(axes, tuple(data.shape), channel_names, channel, what=what,
                           how="pick one with --channel INDEX or --channel NAME")
    if index is None:
        return data, axes, {}
    axis = axes.index("C")
    chosen = {"input_channel": index}
    if channel_names and len(channel_names) == data.shape[axis]:
        chosen["input_channel_name"] = channel_names[index]
    picked = np.take(data, index, axis=axis) if isinstance(data, np.ndarray) else _OneChannel(data, axis, index)
    return picked, axes.replace("C", ""), chosen


class _OneChannel:
    """One channel of a chunked array, read region by region like the array itself."""

    def __init__(self, array, axis: int, index: int):
        self.array, self.axis, self.index = array, axis, index
        self.shape = tuple(array.shape[:axis]) + tuple(array.shape[axis + 1:])
        self.ndim = len(self.shape)
        self.dtype = array.dtype
        chunks = getattr(array, "chunks", None)
        if chunks and not isinstance(chunks[0], tuple):
            self.chunks = tuple(chunks[:axis]) + tuple(chunks[axis + 1:])

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        return self.array[key[: self.axis] + (self.index,) + key[self.axis:]]


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
        zarr = _zarr()
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


# --- planning --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """One block of one plane: ``core`` is written, ``region`` (core plus margin, clipped) is read."""

    plane: tuple[int, ...]  # index into the leading (stack) axes
    index: int  # position of the block in the plane's block grid (for its seed)
    core: tuple[slice, slice]
    region: tuple[slice, slice]

    @property
    def crop(self) -> tuple[slice, slice]:
        """The core, in the region's coordinates."""
        return tuple(slice(c.start - r.start, c.stop - r.start) for c, r in zip(self.core, self.region))


def plan_blocks(height: int, width: int, block: int, margin: int) -> list[tuple[tuple[slice, slice], tuple[slice, slice]]]:
    """(core, region) pairs covering a ``height`` x ``width`` plane."""
    pairs = []
    for y0 in range(0, height, block):
        for x0 in range(0, width, block):
            core = (slice(y0, min(y0 + block, height)), slice(x0, min(x0 + block, width)))
            region = (slice(max(0, y0 - margin), min(height, y0 + block + margin)),
                      slice(max(0, x0 - margin), min(width, x0 + block + margin)))
            pairs.append((core, region))
    return pairs


# --- the work of one block (runs here or on a dask worker) ------------------------------------

_RESTORERS: dict[tuple, Any] = {}
_RESTORER_CACHE = 4  # models kept ready per process
_RESTORERS_LOCK = threading.Lock()


def _engine_of(model, precision: str | None, compile: bool | None) -> tuple[str, bool]:
    """``precision`` and ``compile``, each taken from ``model`` when it is None and ``model`` is a
    Restorer (else fp32, not compiled)."""
    from .inference import Restorer

    given = isinstance(model, Restorer)
    return (precision if precision is not None else model.precision if given else "fp32",
            bool(compile) if compile is not None else model.compiled if given else False)


def _restorer_at_model_grid(model, device, mc_mode, pixel_size_nm, why_not: str, precision: str = "fp32",
                            compile: bool = False):
    """The package and restorer of ``model`` (a Restorer, package, path or name) for an image
    that must already be at the model's pixel size; ``why_not`` ends the refusal's sentence."""
    from .inference import Restorer
    from .packages import ModelPackage, load_model

    package = model.package if isinstance(model, Restorer) else model if isinstance(model, ModelPackage) else load_model(model)
    base = _restorer_for(package, device, mc_mode, precision, compile)
    if base._zoom_factor(pixel_size_nm) != 1.0:
        raise NanoscopyError(
            f"The image has {pixel_size_nm:g} nm pixels but the model '{base.card.name}' works at "
            f"{base.card.pixel_size_nm:g} nm; {why_not}"
        )
    return package, base


def _restorer_for(package, device: str, mc_mode: str, precision: str = "fp32", compile: bool = False):
    """One Restorer per (model, device, mode, precision, compile) and process, reused by every block it runs."""
    from .inference import Restorer

    key = (package.card.name, package.card.weights_sha256, id(package) if not package.card.weights_sha256 else 0,
           str(device), mc_mode, precision, compile)
    with _RESTORERS_LOCK:
        if key not in _RESTORERS:
            while len(_RESTORERS) >= _RESTORER_CACHE:
                _RESTORERS.pop(next(iter(_RESTORERS)))  # the oldest
            _RESTORERS[key] = Restorer(package, device=device, mc_mode=mc_mode, precision=precision, compile=compile)
        return _RESTORERS[key]


def restore_region(package, region: np.ndarray, normalization: dict, *, device: str = "auto",
                   mc_mode: str = "dropout", samples: int | None = None, seed: int | None = None,
                   tile_size: int | None = None, crop: tuple[slice, slice] | None = None,
                   want_std: bool = False, want_labels: bool = False, precision: str = "fp32",
                   compile: bool = False) -> dict[str, np.ndarray]:
    """Restore one region with a fixed (whole-plane) normalisation and return its cropped outputs.

    ``region`` is (Y, X) or (C, Y, X) for models with several inputs. This is the function dask
    workers run; it holds no state except a cached Restorer per process.
    """
    base = _restorer_for(package, device, mc_mode, precision, compile)
    restorer = copy.copy(base)
    restorer.card = dataclasses.replace(base.card, normalization=normalization)
    channel_axis = 0 if base.in_channels > 1 else None
    with _RESTORE_LOCKS.setdefault(id(base), threading.Lock()):  # one forward pass at a time per model
        result = restorer.restore(region, channel_axis=channel_axis, samples=samples, seed=seed, tile_size=tile_size)
    crop = crop or (slice(None), slice(None))
    out = {"mean": result.mean[(..., *crop)]}
    if want_std:
        out["std"] = (result.std if result.std is not None else np.zeros_like(result.mean))[(..., *crop)]
    if want_labels and result.labels is not None:
        out["labels"] = result.labels[(..., *crop)]
    return out


_RESTORE_LOCKS: dict[int, threading.Lock] = {}


def _fixed_normalization(card, sample: np.ndarray, frame: int) -> dict:
    """The card's input normalisation turned into fixed affines from one plane's statistics.

    ``sample`` is (C, y, x): the same regular subsample of the plane the in-memory Restorer takes
    its statistics from. The fixed spec reproduces that affine exactly ([0, 1] -> [offset, offset + scale]).
    """
    from .inference import _input_affine

    specs = []
    for c, spec in enumerate(card.input_normalizations()):
        if spec.get("mode") == "none":
            specs.append({"mode": "none"})
            continue
        affine = _input_affine(sample[c], spec, c, frame)
        specs.append({"mode": "fixed", "min": 0.0, "max": 1.0,
                      "range": [float(affine.offset), float(affine.offset) + float(affine.scale)]})
    return {"input": specs, "output": card.output_normalization()}


def _statistics_step(height: int, width: int) -> int:
    from .inference import PERCENTILE_SAMPLE

    return max(1, math.ceil(math.sqrt(height * width / PERCENTILE_SAMPLE)))


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


class _Executor:
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

    def run(self, jobs: Iterator[tuple[Block, np.ndarray, dict]], kwargs: dict,
            done: Callable[[Block, dict], None], step: Callable[[], None]) -> None:
        if self.client is None:
            for block, region, normalization in jobs:
                step()
                done(block, restore_region(self.package, region, normalization, crop=block.crop,
                                           seed=_block_seed(kwargs["seed"], block), **_without_seed(kwargs)))
            return
        from distributed import wait

        pending: deque = deque()
        limit = 2 * self.workers  # blocks in flight: bounds the memory of this process too
        try:
            for block, region, normalization in jobs:
                step()
                future = self.client.submit(
                    restore_region, self.remote_package, region, normalization, crop=block.crop,
                    seed=_block_seed(kwargs["seed"], block), pure=False, **_without_seed(kwargs),
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


def _block_seed(seed: int | None, block: Block) -> int | None:
    if seed is None:
        return None
    plane = 0
    for i in block.plane:
        plane = plane * 1_000_003 + i
    return (int(seed) * 1_000_003 + plane * 65_537 + block.index) % (2**63)


def _without_seed(kwargs: dict) -> dict:
    return {k: v for k, v in kwargs.items() if k != "seed"}


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
    """Restore ``source`` block by block into ``out`` (and ``std_out``, ``labels_out``).

    ``source`` is (..., Y, X), or (..., C, Y, X) for models with several inputs; the sinks have
    the source's leading axes, the output channels when the model has more than one, then Y, X
    (create them with :func:`output_shape`; ``out=None`` allocates a numpy array). ``block`` is
    the side of a block's core (default: 1024, or a multiple of the source's chunks); ``scheduler``
    runs the blocks on dask.distributed (an address, a Client, ``"local"`` or a worker count for
    an embedded LocalCluster). Peak memory is that of a few blocks and their margins.
    ``precision`` ("fp32" or "bf16") and ``compile`` (torch.compile, see :class:`Restorer`) default
    to those of ``model`` when it is a Restorer, else fp32, not compiled.
    """
    precision, compile = _engine_of(model, precision, compile)
    package, base = _restorer_at_model_grid(
        model, device, mc_mode, pixel_size_nm,
        "chunked restoration does not resample. Resample the image to the model's pixel size first, or "
        "restore it in memory (a TIFF to a TIFF, without --block, --scheduler or --workers), which resamples.",
        precision, compile,
    )
    card = base.card
    shape = tuple(int(n) for n in source.shape)
    multi = base.in_channels > 1
    if len(shape) < (3 if multi else 2):
        raise NanoscopyError(f"The image has shape {shape}; give at least a (Y, X) image (and C before Y, X for this model).")
    if multi and shape[-3] != base.in_channels:
        raise NanoscopyError(
            f"The model '{card.name}' takes {base.in_channels} channels on the axis before Y, X, but the image has "
            f"{shape[-3]}; reorder the axes or pick another model."
        )
    dtype = np.dtype(source.dtype)
    if dtype == bool or not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise NanoscopyError(f"The image has data type {dtype}; give a real-valued integer or floating-point image.")
    lead = shape[:-3] if multi else shape[:-2]
    height, width = shape[-2:]
    m = base.size_multiple
    margin = _round_up(base.halo, m)
    block = _choose_block(block, source, m)
    samples = check_samples(card.default_samples if samples is None else samples)
    seed = check_seed(seed)
    want_std, want_labels = std_out is not None, labels_out is not None
    if want_labels and not card.task:
        raise NanoscopyError(f"The model '{card.name}' has no task network, so there is no segmentation to write.")
    expected = output_shape(package, shape)
    if out is None:
        out = np.zeros(expected, dtype=np.float32)
    for name, sink, want in (("output", out, expected), ("uncertainty output", std_out, expected),
                             ("segmentation output", labels_out, lead + (height, width))):
        if sink is not None and tuple(sink.shape) != tuple(want):
            raise NanoscopyError(f"The {name} has shape {tuple(sink.shape)} but the restoration gives {tuple(want)}.")

    pairs = plan_blocks(height, width, block, margin)
    planes = list(np.ndindex(lead)) if lead else [()]
    total = len(pairs) * len(planes)
    done_steps = 0

    def step() -> None:
        if should_cancel is not None and should_cancel():
            raise Cancelled("Restoration cancelled.")

    def finished(blk: Block, outputs: dict) -> None:
        nonlocal done_steps
        core = blk.plane + (Ellipsis,) + blk.core
        out[core] = outputs["mean"]
        if want_std:
            std_out[core] = outputs["std"]
        if want_labels:
            labels_out[blk.plane + blk.core] = outputs["labels"]
        done_steps += 1
        if progress is not None:
            progress(done_steps, total)

    stats_step = _statistics_step(height, width)

    def jobs() -> Iterator[tuple[Block, np.ndarray, dict]]:
        for frame, plane in enumerate(planes):
            channel_index = (slice(None),) if multi else ()
            sample = np.asarray(source[plane + channel_index + (slice(None, None, stats_step), slice(None, None, stats_step))])
            if not multi:
                sample = sample[None]
            if np.issubdtype(sample.dtype, np.floating) and not np.isfinite(sample).all():
                raise NanoscopyError(
                    f"Plane {plane} of the image contains NaN or infinite pixels; replace them before restoring."
                )
            normalization = _fixed_normalization(card, sample, frame)
            for index, (core, region) in enumerate(pairs):
                data = np.asarray(source[plane + channel_index + region])
                if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
                    raise NanoscopyError(
                        f"Plane {plane} of the image contains NaN or infinite pixels; replace them before restoring."
                    )
                yield Block(plane=plane, index=index, core=core, region=region), data, normalization

    kwargs = dict(device=device, mc_mode=mc_mode, samples=samples, seed=seed, tile_size=tile_size,
                  want_std=want_std, want_labels=want_labels, precision=precision, compile=compile)
    executor = _Executor(scheduler, package)
    try:
        executor.run(jobs(), kwargs, finished, step)
    finally:
        executor.close()
    from . import __version__

    provenance = {
        "model": card.name, "family": card.family, "weights_sha256": card.weights_sha256,
        "model_pixel_size_nm": card.pixel_size_nm, "pixel_size_nm": pixel_size_nm,
        "pixel_size_assumed": pixel_size_nm is None and card.pixel_size_nm is not None, "samples": samples,
        "seed": seed, "mc_mode": mc_mode if samples > 1 else "deterministic", "precision": precision,
        "compiled": compile, "chunked": True,
        "block_size": block, "block_margin": margin, "blocks": total,
        "scheduler": None if scheduler is None else str(getattr(getattr(scheduler, "scheduler", None), "address", scheduler)),
        "napari_nanoscopy": __version__,
    }
    return ChunkedResult(mean=out, std=std_out, labels=labels_out, blocks=total, block_size=block,
                         margin=margin, provenance=provenance)


def output_shape(package, shape: Sequence[int]) -> tuple[int, ...]:
    """The shape of the restored image for a source of ``shape``."""
    generator = package.generator
    lead = tuple(shape[:-3]) if generator.in_channels > 1 else tuple(shape[:-2])
    channels = (generator.out_channels,) if generator.out_channels > 1 else ()
    return lead + channels + tuple(shape[-2:])


def _round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


def _choose_block(block: int | None, source, multiple: int) -> int:
    if block is not None:
        return _round_up(check_int("The block size", block, 64, MAX_TILE, "leave it out for an automatic choice"), multiple)
    chunks = getattr(source, "chunks", None)
    if chunks and not isinstance(chunks[0], tuple):  # zarr: one chunk shape; dask gives tuples of sizes
        side = max(int(chunks[-2]), int(chunks[-1]))
        side = side * max(1, DEFAULT_BLOCK // side)
        return _round_up(side, multiple)
    return _round_up(DEFAULT_BLOCK, multiple)


# --- dask arrays (napari layers) -------------------------------------------------------------


def restore_dask(model, array, *, pixel_size_nm: float | None = None, samples: int | None = None,
                 seed: int | None = None, block: int | None = None, device: str = "auto",
                 mc_mode: str = "dropout", output: str = "mean", precision: str | None = None,
                 compile: bool | None = None):
    """A lazy dask array of the restored ``array`` (a dask or numpy array, (..., Y, X)).

    Nothing is restored until blocks are computed, so napari shows a restored view of a huge
    image by computing only the blocks on screen. Each plane's normalisation statistics are taken
    when the graph is built (one strided read of the plane). ``output`` is "mean", "std" or
    "labels". Computing the whole array with ``dask.compute`` or on a dask.distributed client
    gives the same numbers as :func:`restore_chunked`. ``precision`` and ``compile`` as for :func:`restore_chunked`.
    """
    import dask
    import dask.array as da

    if output not in ("mean", "std", "labels"):
        raise NanoscopyError(f"output must be 'mean', 'std' or 'labels', not {output!r}.")
    precision, compile = _engine_of(model, precision, compile)
    package, base = _restorer_at_model_grid(
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
    margin = _round_up(base.halo, base.size_multiple)
    block = _choose_block(block, array, base.size_multiple)
    samples = card.default_samples if samples is None else int(samples)
    pairs = plan_blocks(height, width, block, margin)
    step = _statistics_step(height, width)
    out_channels = base.out_channels if output != "labels" else 1
    dtype = np.uint8 if output == "labels" else np.float32
    kwargs = dict(device=device, mc_mode=mc_mode, samples=samples, tile_size=None,
                  want_std=output == "std", want_labels=output == "labels", precision=precision, compile=compile)

    def run(region, normalization, blk):
        result = restore_region(package, np.asarray(region), normalization, crop=blk.crop,
                                seed=_block_seed(seed, blk), **kwargs)
        return result[output]

    planes = []
    for frame, plane in enumerate(np.ndindex(lead) if lead else [()]):
        sample = np.asarray(array[plane + (slice(None, None, step), slice(None, None, step))])[None]
        normalization = _fixed_normalization(card, sample, frame)
        rows: dict[int, list] = {}
        for index, (core, region) in enumerate(pairs):
            blk = Block(plane=plane, index=index, core=core, region=region)
            shape = ((out_channels,) if out_channels > 1 else ()) + (core[0].stop - core[0].start, core[1].stop - core[1].start)
            piece = da.from_delayed(dask.delayed(run)(array[plane + region], normalization, blk), shape=shape, dtype=dtype)
            rows.setdefault(core[0].start, []).append(piece)
        planes.append(da.concatenate([da.concatenate(r, axis=-1) for _, r in sorted(rows.items())], axis=-2))
    if not lead:
        return planes[0]
    stacked = da.stack(planes)
    return stacked.reshape(lead + stacked.shape[1:])


# --- the command line: many files, OME-Zarr, clusters ----------------------------------------

_IMAGE_SUFFIXES = (".tif", ".tiff", ".zarr")


def needs_batch(args) -> bool:
    """True when ``napari-nanoscopy restore`` was given more than one in-memory TIFF job."""
    text = str(args.input)
    path = Path(text).expanduser()
    return (
        any(ch in text for ch in "*?[")
        or (path.is_dir() and not text.rstrip("/").endswith(OME_ZARR_SUFFIX))
        or text.rstrip("/").endswith(OME_ZARR_SUFFIX)
        or str(args.output).rstrip("/").endswith(OME_ZARR_SUFFIX)
        or bool(getattr(args, "scheduler", None))
        or bool(getattr(args, "workers", None))
        or bool(getattr(args, "block", None))
    )


def check_uncertainty_samples(args, card) -> None:
    """Refuse ``--uncertainty`` before restoring when the restoration will make a single pass."""
    samples = args.samples if args.samples is not None else card.default_samples
    if args.uncertainty and samples < 2:
        raise NanoscopyError("An uncertainty map needs at least 2 samples; pass --samples 2 or more.")


def expand_inputs(text: str) -> list[Path]:
    """The images named by a path, a folder (its TIFF and OME-Zarr images) or a glob pattern."""
    import glob

    path = Path(text).expanduser()
    if any(ch in text for ch in "*?["):
        found = [Path(p) for p in sorted(glob.glob(os.path.expanduser(text)))]
    elif path.is_dir() and not text.rstrip("/").endswith(OME_ZARR_SUFFIX):
        found = sorted(p for p in path.iterdir() if not p.name.startswith("."))
    else:
        if not path.exists():
            raise NanoscopyError(f"The input {path} does not exist; check the path.")
        return [path]
    images = [p for p in found if p.name.lower().endswith(_IMAGE_SUFFIXES) and not p.name.startswith(".")]
    if not images:
        raise NanoscopyError(f"No TIFF or OME-Zarr images match {text}; give a file, a folder of images or a glob.")
    return images


def _output_name(source: Path, suffix_text: str, zarr_out: bool) -> str:
    name = source.name
    for ending in (".ome.tiff", ".ome.tif", ".tiff", ".tif", OME_ZARR_SUFFIX):
        if name.lower().endswith(ending):
            name = name[: -len(ending)]
            break
    return f"{name}{suffix_text}" + (OME_ZARR_SUFFIX if zarr_out else ".ome.tif")


def cli_restore(args, progress_factory, prog: str = "napari-nanoscopy") -> int:
    """``napari-nanoscopy restore`` for folders, globs, OME-Zarr and clusters: one progress bar."""
    import sys

    from .inference import Restorer

    sources = expand_inputs(str(args.input))
    batch = len(sources) > 1 or any(ch in str(args.input) for ch in "*?[") or (
        Path(args.input).expanduser().is_dir() and not str(args.input).rstrip("/").endswith(OME_ZARR_SUFFIX))
    out_text = str(args.output)
    jobs = []
    if batch:
        folder = Path(out_text).expanduser()
        if folder.exists() and not folder.is_dir():
            raise NanoscopyError(f"Several inputs need an output folder, but {folder} is a file.")
        if not folder.parent.is_dir():
            raise NanoscopyError(f"The folder {folder.parent} does not exist; create it first.")
        extra_folders = {k: Path(v).expanduser() for k, v in (("uncertainty", args.uncertainty),
                                                              ("segmentation", args.segmentation)) if v}
        for source in sources:
            zarr_out = source.name.lower().endswith(OME_ZARR_SUFFIX)
            outputs = {"restored": folder / _output_name(source, "_restored", zarr_out)}
            for key, where in extra_folders.items():
                outputs[key] = where / _output_name(source, f"_{key}", zarr_out)
            jobs.append((source, outputs))
    else:
        outputs = {"restored": Path(out_text).expanduser()}
        if args.uncertainty:
            outputs["uncertainty"] = Path(args.uncertainty).expanduser()
        if args.segmentation:
            outputs["segmentation"] = Path(args.segmentation).expanduser()
        jobs.append((sources[0], outputs))
    every = [p.resolve() for _, outs in jobs for p in outs.values()]
    if len(set(every)) != len(every):
        raise NanoscopyError("Two outputs have the same path; give each output its own file.")
    inputs = {s.resolve() for s, _ in jobs}
    for _, outs in jobs:
        for path in outs.values():
            if path.resolve() in inputs:
                raise NanoscopyError(f"The output {path} is one of the inputs; choose another output path.")
            if not batch:  # suffix, folder, permissions: before any work (batch folders are made below)
                check_output_path(path, overwrite=args.overwrite, zarr=True)
            elif path.exists() and not args.overwrite:
                raise NanoscopyError(f"{path} already exists; choose another path or pass --overwrite.")

    restorer = Restorer(args.model, device=args.device, mc_mode=args.mc_mode, precision=args.precision,
                        compile=args.compile)
    if args.segmentation and not restorer.card.task:
        raise NanoscopyError(
            f"The model '{restorer.card.name}' has no task network, so there is no segmentation to write; "
            "drop --segmentation or pick a task-assisted model."
        )
    check_uncertainty_samples(args, restorer.card)
    scheduler = getattr(args, "scheduler", None) or (int(args.workers) if getattr(args, "workers", None) else None)
    label = f"restoring {len(jobs)} images" if len(jobs) > 1 else f"restoring {jobs[0][0].name}"
    bar = progress_factory(label)
    unit = 1000
    if batch:
        for _, outs in jobs:
            for path in outs.values():
                if not path.parent.parent.is_dir():
                    raise NanoscopyError(f"The folder {path.parent.parent} does not exist; create it first.")
                if path.parent.exists() and not path.parent.is_dir():
                    raise NanoscopyError(f"{path.parent} is a file; several inputs need output folders.")
                path.parent.mkdir(exist_ok=True)
    for number, (source, outs) in enumerate(jobs):
        def progress(done: int, total: int, number=number) -> None:
            bar(number * unit + int(unit * done / max(total, 1)), len(jobs) * unit)

        written = _restore_one(restorer, source, outs, args, scheduler, progress, prog)
        for path in written:
            print(f"wrote {path}", file=sys.stdout)
    return 0


def _restore_one(restorer, source: Path, outputs: dict[str, Path], args, scheduler, progress, prog: str) -> list[Path]:
    """Restore one file (TIFF in memory, or OME-Zarr / TIFF chunk by chunk) and write all outputs or none."""
    from .io import read_image

    zarr_in = source.name.lower().rstrip("/").endswith(OME_ZARR_SUFFIX)
    zarr_out = {k: p.name.lower().endswith(OME_ZARR_SUFFIX) for k, p in outputs.items()}
    chunked = zarr_in or any(zarr_out.values()) or scheduler is not None or getattr(args, "block", None)
    lazy = None
    given_axes = getattr(args, "axes", None)
    if zarr_in:
        image = open_ome_zarr(source)
        axes = axes_as_stored(given_axes, image.array.shape, image.axes, source.name)
        data, pixel, names = image.array, image.pixel_size_nm, image.channel_names
    elif chunked:  # a TIFF read tile by tile, never whole
        lazy = LazyTiff(source, axes=given_axes)
        data, axes, pixel, names = lazy.array, lazy.axes, lazy.pixel_size_nm, lazy.channel_names
    else:
        loaded = read_image(source, axes=given_axes)
        data, axes, pixel, names = loaded.data, loaded.axes, loaded.pixel_size_nm, loaded.channel_names
    try:
        data, axes, chosen = input_channel(restorer, data, axes, names, getattr(args, "channel", None), source.name)
        return _restore_loaded(restorer, source, outputs, args, scheduler, progress, prog,
                               data, axes, pixel, zarr_out, chunked, chosen)
    finally:
        if lazy is not None:
            lazy.close()


def _restore_loaded(restorer, source, outputs, args, scheduler, progress, prog, data, axes, pixel, zarr_out, chunked,
                    chosen):
    import sys

    from .io import write_image

    card = restorer.card
    pixel = args.pixel_size if args.pixel_size is not None else pixel
    if pixel is None and card.pixel_size_nm is not None:
        print(f"{prog}: note: {source.name} records no pixel size; assuming the model's {card.pixel_size_nm:g} nm "
              "(give --pixel-size to resample).", file=sys.stderr)
    if restorer.in_channels > 1 and (len(axes) < 3 or axes[-3] != "C"):
        raise NanoscopyError(f"{source.name} has axes {axes}; this model needs its channels on the axis before Y, X.")
    stack_axes = "".join(a for a in axes[:-2] if a != "C" or restorer.in_channels == 1)
    restored_axes = stack_axes + ("C" if restorer.out_channels > 1 else "") + "YX"
    out_pixel = pixel if pixel is not None else card.pixel_size_nm
    staged = StagedOutputs(overwrite=args.overwrite)  # every output of this image, published together

    if not chunked:
        channel_axis = axes.index("C") if "C" in axes and restorer.in_channels > 1 else None
        result = restorer.restore(data, pixel_size_nm=pixel, channel_axis=channel_axis, samples=args.samples,
                                  tile_size=args.tile, seed=args.seed, progress=progress)
        arrays = {"restored": result.mean, "uncertainty": result.std, "segmentation": result.labels}
        provenance = {"input": str(source), **chosen, **result.provenance}
    else:
        shape = output_shape(restorer.package, data.shape)
        block = _choose_block(getattr(args, "block", None), data, restorer.size_multiple)
        chunks = (1,) * (len(shape) - 2) + (min(block, shape[-2]), min(block, shape[-1]))
        writers: dict[str, Any] = {}
        sinks: dict[str, Any] = {}
        provenance_base = {"input": str(source), **chosen, "content": "restored"}
        try:
            for key, path in outputs.items():
                if key == "uncertainty" and (args.samples or card.default_samples) < 2:
                    raise NanoscopyError("An uncertainty map needs at least 2 samples; pass --samples 2 or more.")
                target_shape = shape if key != "segmentation" else shape[: len(shape) - (3 if restorer.out_channels > 1 else 2)] + shape[-2:]
                dtype = np.uint8 if key == "segmentation" else np.float32
                if zarr_out[key]:
                    writers[key] = OmeZarrWriter(
                        path, target_shape, restored_axes if key != "segmentation" else stack_axes + "YX",
                        chunks=chunks if key != "segmentation" or len(target_shape) == len(shape) else chunks[-len(target_shape):],
                        dtype=dtype, pixel_size_nm=out_pixel, outputs=staged,
                        channel_names=card.output_channels if restorer.out_channels > 1 else None,
                        metadata=provenance_base,
                    )
                    sinks[key] = writers[key].array
                else:
                    check_fits_in_memory(target_shape, dtype, f"The output {path.name}",
                                         "write it as OME-Zarr (a .zarr output), which is written block by block")
                    sinks[key] = np.zeros(target_shape, dtype=dtype)
            chunk_result = restore_chunked(
                restorer, data, sinks["restored"], std_out=sinks.get("uncertainty"), labels_out=sinks.get("segmentation"),
                pixel_size_nm=pixel, samples=args.samples, seed=args.seed, block=getattr(args, "block", None),
                tile_size=args.tile, device=args.device, mc_mode=args.mc_mode, precision=args.precision,
                compile=args.compile, scheduler=scheduler, progress=progress,
            )
            provenance = {**provenance_base, **chunk_result.provenance}
            zarr = _zarr()
            for key, writer in writers.items():  # record the provenance before committing
                group = zarr.open_group(str(writer.staging), mode="a")
                group.attrs["napari_nanoscopy"] = json.loads(json.dumps(
                    {**provenance, "content": {"restored": "restored", "uncertainty": "MC-dropout std",
                                               "segmentation": "labels"}[key]}, default=str))
        except BaseException:
            staged.discard()
            raise
        arrays = {k: (None if zarr_out[k] else sinks[k]) for k in outputs}

    try:
        for key, path in outputs.items():
            if chunked and zarr_out[key]:
                continue
            data_out = arrays.get(key)
            if data_out is None:
                if key == "uncertainty":
                    raise NanoscopyError("An uncertainty map needs at least 2 samples; pass --samples 2 or more.")
                raise NanoscopyError(f"The model '{card.name}' gives no {key} output.")
            out_axes = stack_axes + "YX" if key == "segmentation" else restored_axes
            content = {"restored": "restored", "uncertainty": "MC-dropout std",
                       "segmentation": {str(i + 1): n for i, n in enumerate(restorer.task_names)}}[key]
            write_image(staged.stage(path), data_out, pixel_size_nm=out_pixel, axes=out_axes,
                        channel_names=card.output_channels if "C" in out_axes else None,
                        metadata={"content": content, **provenance})
    except BaseException:
        staged.discard()
        raise
    return staged.publish()


# --- one image on a remote worker (the live pipeline's GPU computer) --------------------------


def _remote_restore(package, image: np.ndarray, device: str, mc_mode: str, options: dict, precision: str = "fp32"):
    restorer = _restorer_for(package, device, mc_mode, precision)
    with _RESTORE_LOCKS.setdefault(id(restorer), threading.Lock()):
        return restorer.restore(image, **options)


class RemoteRestorer:
    """A stand-in for :class:`~napari_nanoscopy.inference.Restorer` whose restorations run on a
    dask.distributed worker, for example a GPU computer next to the microscope.

    ``restore(image, **options)`` takes the Restorer's options and returns the same
    :class:`~napari_nanoscopy.inference.RestorationResult`, computed by the same code on the
    worker (the model is sent there once). ``scheduler`` is an address (``tcp://gpu-box:8786``),
    a ``Client``, or ``"local"`` / a worker count for an embedded LocalCluster; ``worker``
    pins the work to one worker's address; ``precision`` ("fp32" or "bf16") is the worker's
    Restorer's (the worker must support bf16 natively). ``progress`` is called once the result is back and
    ``should_cancel`` is polled before sending. The live pipeline can use it wherever it holds
    a Restorer (its ``generator`` and ``segmenter``).
    """

    def __init__(self, model, scheduler, *, device: str = "auto", mc_mode: str = "dropout", worker: str | None = None,
                 precision: str = "fp32"):
        from .inference import MC_MODES, PRECISIONS, Restorer
        from .packages import ModelPackage, load_model

        if mc_mode not in MC_MODES:
            raise NanoscopyError(f"mc_mode must be one of {', '.join(MC_MODES)}, not '{mc_mode}'.")
        if precision not in PRECISIONS:
            raise NanoscopyError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}.")
        package = model.package if isinstance(model, Restorer) else model if isinstance(model, ModelPackage) else load_model(model)
        self.package, self.card = package, package.card
        self.device, self.mc_mode, self.worker, self.precision = device, mc_mode, worker, precision
        generator = package.generator
        self.in_channels, self.out_channels = generator.in_channels, generator.out_channels
        self.task_names = list(self.card.task["outputs"]) if self.card.task else []
        self._executor = _Executor(scheduler, package)

    def restore(self, image, *, progress=None, should_cancel=None, **options):
        if should_cancel is not None and should_cancel():
            raise Cancelled("Restoration cancelled.")
        client = self._executor.client
        future = client.submit(_remote_restore, self._executor.remote_package, np.asarray(image), self.device,
                               self.mc_mode, options, self.precision, pure=False,
                               workers=[self.worker] if self.worker else None)
        try:
            result = future.result()
        except NanoscopyError:
            raise
        except OSError as error:
            raise NanoscopyError(f"The remote worker could not be reached ({str(error)[:200]}); check the cluster.") from None
        result.provenance["remote_worker"] = True
        if progress is not None:
            progress(1, 1)
        return result

    def close(self) -> None:
        self._executor.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RemoteInference:
    """The handle :func:`use_remote_workers` returns; ``close()`` disconnects (and stops an embedded cluster)."""

    def __init__(self, executor: _Executor, restorers: list[RemoteRestorer]):
        self._executor, self.restorers = executor, restorers

    def close(self) -> None:
        self._executor.close()


def use_remote_workers(pipeline, scheduler, *, device: str = "auto", worker: str | None = None) -> RemoteInference:
    """Run a live pipeline's model inference on a dask.distributed worker.

    ``pipeline`` is a :class:`napari_nanoscopy.live.pipeline.LivePipeline`; its generator and
    segmenter Restorers are replaced by :class:`RemoteRestorer` s on ``scheduler`` (pinned to
    ``worker`` if given), so every frame's Monte-Carlo samples and segmentations are computed
    there (a GPU computer next to the microscope) while acquisition, decisions and recording stay
    here, in the pipeline's precision. Results are the same as local inference with the same seeds.
    """
    executor = _Executor(scheduler, None)
    restorers = []
    for name in ("generator", "segmenter"):
        local = getattr(pipeline, name)
        remote = RemoteRestorer.__new__(RemoteRestorer)
        remote.package, remote.card = local.package, local.card
        remote.device, remote.mc_mode, remote.worker, remote.precision = device, local.mc_mode, worker, local.precision
        remote.in_channels, remote.out_channels, remote.task_names = local.in_channels, local.out_channels, local.task_names
        remote._executor = _SharedExecutor(executor, local.package)
        setattr(pipeline, name, remote)
        restorers.append(remote)
    return RemoteInference(executor, restorers)


class _SharedExecutor:
    """One client, one model scattered to the workers."""

    def __init__(self, executor: _Executor, package):
        self.client = executor.client
        self.remote_package = self.client.scatter(package, broadcast=True)

    def close(self) -> None:
        pass
