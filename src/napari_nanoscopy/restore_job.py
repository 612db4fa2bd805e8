"""One restoration job for files, folders, globs and OME-Zarr: plan -> run -> write.

:func:`plan_restore` names every input and output and makes every check a user can fail (input
paths, output collisions, suffixes and folders, existing files, segmentation and uncertainty
needs) before any image is read, and chooses each image's engine: in memory (a TIFF to a TIFF)
or block by block (:func:`~napari_nanoscopy.chunked.restore_chunked`: OME-Zarr, ``--block``, a
dask ``scheduler`` or ``workers``). :func:`run_restore` opens each image, checks its channels and
pixel size, restores it with that engine and writes all its outputs or none
(:class:`~napari_nanoscopy.io.StagedOutputs`). The command line only builds the request, runs
the plan and prints.
"""

from __future__ import annotations

import json
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from . import io
from .blocks import choose_block, output_shape
from .chunked import restore_chunked
from .errors import NanoscopyError
from .domain import DomainReport, check_array
from .inference import RestorationResult, Restorer
from .lazy_tiff import LazyTiff, axes_as_stored
from .limits import available_memory
from .memory import PEAK_FACTOR
from .ome_zarr import OME_ZARR_SUFFIX, OmeZarrWriter, open_ome_zarr, require_zarr

MEMORY, CHUNKED = "memory", "chunked"  # the engines a job runs on
_IMAGE_SUFFIXES = (".tif", ".tiff", ".zarr")
_PROGRESS_UNIT = 1000  # progress steps per image when one bar covers several images
_UNCERTAINTY_NEEDS_SAMPLES = "An uncertainty map needs at least 2 samples; pass --samples 2 or more."


@dataclass(frozen=True)
class RestoreRequest:
    """What to restore, with which model and how: the options of ``napari-nanoscopy restore``."""

    input: str
    output: str
    model: Any
    uncertainty: str | None = None
    segmentation: str | None = None
    pixel_size: float | None = None
    channel: str | int | None = None
    axes: str | None = None
    samples: int | None = None
    tile: int | None = None
    device: str = "auto"
    mc_mode: str = "dropout"
    precision: str = "fp32"
    compile: bool = False
    seed: int | None = None
    overwrite: bool = False
    strict_domain: bool = False  # refuse (write nothing) when an image is outside the model's domain
    block: int | None = None
    scheduler: str | None = None
    workers: int | None = None

    @classmethod
    def from_options(cls, options) -> "RestoreRequest":
        """The request of parsed command line options (an ``argparse.Namespace``)."""
        return cls(**{f.name: getattr(options, f.name, f.default) for f in fields(cls)})

    @property
    def scheduler_or_workers(self):
        """Where the blocks run: a scheduler address, a number of local workers, or None (here)."""
        return self.scheduler or (int(self.workers) if self.workers else None)


@dataclass(frozen=True)
class ImageJob:
    """One input image, its outputs by kind ("restored", "uncertainty", "segmentation") and its engine."""

    source: Path
    outputs: Mapping[str, Path]
    engine: str


@dataclass(frozen=True)
class RestorePlan:
    """A checked restoration: the model ready to run and one job per input image."""

    request: RestoreRequest
    restorer: Any = field(repr=False, compare=False)
    jobs: tuple[ImageJob, ...]
    single_file: bool  # the plain TIFF-to-TIFF form: one image in memory, progress in its own steps
    output_folders: bool  # several inputs: outputs go into folders made when the run starts

    @property
    def label(self) -> str:
        return f"restoring {len(self.jobs)} images" if len(self.jobs) > 1 else f"restoring {self.jobs[0].source.name}"


# --- plan ---------------------------------------------------------------------------------------


def plan_restore(request: RestoreRequest) -> RestorePlan:
    """Check ``request`` and plan its jobs; refuses anything wrong with one sentence, before any image is read."""
    single_file = not _needs_chunks_or_files(request)
    output_folders = False
    if single_file:
        jobs = _single_file_jobs(request)
    else:
        jobs, output_folders = _file_jobs(request)
    restorer = Restorer(request.model, device=request.device, mc_mode=request.mc_mode, precision=request.precision,
                        compile=request.compile)
    _check_model_gives(request, restorer.card)
    if output_folders:
        check_output_folders(jobs)
    for job in jobs:  # a channel or axes problem in the 57th image refuses the run before the first is restored
        with _opened(request, job, header_only=True) as (data, axes, pixel, names):
            _prepare(request, restorer, job, data, axes, pixel, names, note=None)
    return RestorePlan(request=request, restorer=restorer, jobs=tuple(jobs), single_file=single_file,
                       output_folders=output_folders)


def _needs_chunks_or_files(request: RestoreRequest) -> bool:
    """True unless the request is one TIFF restored in memory into TIFFs."""
    text, output = str(request.input), str(request.output)
    return (
        is_glob(text)
        or Path(text).expanduser().is_dir()
        or text.rstrip("/").endswith(OME_ZARR_SUFFIX)
        or output.rstrip("/").endswith(OME_ZARR_SUFFIX)
        or bool(request.scheduler or request.workers or request.block)
    )


def existing_file(text: str) -> Path:
    """The file named by ``text``, refused when there is none."""
    path = Path(text).expanduser()
    if not path.is_file():
        raise NanoscopyError(f"The input file {path} does not exist; check the path.")
    return path


def _named_outputs(request: RestoreRequest) -> dict[str, Path]:
    outputs = {"restored": Path(request.output).expanduser()}
    for key, text in (("uncertainty", request.uncertainty), ("segmentation", request.segmentation)):
        if text:
            outputs[key] = Path(text).expanduser()
    return outputs


def _single_file_jobs(request: RestoreRequest) -> list[ImageJob]:
    source = existing_file(request.input)
    outputs = _named_outputs(request)
    resolved = [p.resolve() for p in outputs.values()]
    if source.resolve() in resolved:
        raise NanoscopyError(f"An output path is the input file {source}; choose another output path.")
    if len(set(resolved)) != len(resolved):
        raise NanoscopyError("Two outputs have the same path; give each output its own file.")
    for path in outputs.values():  # every output writable before any work, not after the restoration
        io.check_output_path(path, overwrite=request.overwrite)
    return [ImageJob(source, MappingProxyType(outputs), MEMORY)]


def _file_jobs(request: RestoreRequest) -> tuple[list[ImageJob], bool]:
    """The jobs of a folder, a glob or an OME-Zarr input, and whether their outputs go into folders."""
    text = str(request.input)
    sources = expand_inputs(text)
    into_folders = len(sources) > 1 or is_glob(text) or (
        Path(text).expanduser().is_dir() and not text.rstrip("/").endswith(OME_ZARR_SUFFIX))
    if into_folders:
        folder = output_folder(request)
        named = [(source, _outputs_in_folders(request, folder, source)) for source in sources]
    else:
        named = [(sources[0], _named_outputs(request))]
    every = [p.resolve() for _, outs in named for p in outs.values()]
    if len(set(every)) != len(every):
        raise NanoscopyError("Two outputs have the same path; give each output its own file.")
    inputs = {source.resolve() for source, _ in named}
    for _, outs in named:
        for path in outs.values():
            if path.resolve() in inputs:
                raise NanoscopyError(f"The output {path} is one of the inputs; choose another output path.")
            if not into_folders:  # suffix, folder, permissions (output folders are checked once the model is known)
                io.check_output_path(path, overwrite=request.overwrite, zarr=True)
            elif path.exists() and not request.overwrite:
                raise NanoscopyError(f"{path} already exists; choose another path or pass --overwrite.")
    jobs = [ImageJob(source, MappingProxyType(outs), _engine_for(request, source, outs)) for source, outs in named]
    return jobs, into_folders


def output_folder(request: RestoreRequest) -> Path:
    """The folder of the restored images of several inputs (made when the run starts)."""
    folder = Path(str(request.output)).expanduser()
    if folder.exists() and not folder.is_dir():
        raise NanoscopyError(f"Several inputs need an output folder, but {folder} is a file.")
    if not folder.parent.is_dir():
        raise NanoscopyError(f"The folder {folder.parent} does not exist; create it first.")
    return folder


def _outputs_in_folders(request: RestoreRequest, folder: Path, source: Path) -> dict[str, Path]:
    zarr_out = _is_zarr(source)
    outputs = {"restored": folder / output_name(source, "_restored", zarr_out)}
    for key, where in (("uncertainty", request.uncertainty), ("segmentation", request.segmentation)):
        if where:
            outputs[key] = Path(where).expanduser() / output_name(source, f"_{key}", zarr_out)
    return outputs


def _engine_for(request: RestoreRequest, source: Path, outputs: Mapping[str, Path]) -> str:
    """Block by block for OME-Zarr inputs or outputs, ``block``, a scheduler or workers; else in memory."""
    chunked = (_is_zarr(source) or any(_is_zarr(p) for p in outputs.values())
               or request.scheduler_or_workers is not None or request.block)
    return CHUNKED if chunked else MEMORY


def _is_zarr(path: Path) -> bool:
    return path.name.lower().rstrip("/").endswith(OME_ZARR_SUFFIX)


def _check_model_gives(request: RestoreRequest, card) -> None:
    """Refuse outputs the model cannot give: a segmentation without a task network, an uncertainty from one pass."""
    if request.segmentation and not card.task:
        raise NanoscopyError(
            f"The model '{card.name}' has no task network, so there is no segmentation to write; "
            "drop --segmentation or pick a task-assisted model."
        )
    samples = request.samples if request.samples is not None else card.default_samples
    if request.uncertainty and samples < 2:
        raise NanoscopyError(_UNCERTAINTY_NEEDS_SAMPLES)


def check_output_folders(jobs) -> None:
    """Refuse output folders of several inputs that cannot be made when the run starts."""
    for job in jobs:
        for path in job.outputs.values():
            if not path.parent.parent.is_dir():
                raise NanoscopyError(f"The folder {path.parent.parent} does not exist; create it first.")
            if path.parent.exists() and not path.parent.is_dir():
                raise NanoscopyError(f"{path.parent} is a file; several inputs need output folders.")


def is_glob(text: str) -> bool:
    """Whether an input path is a glob pattern (it names several images)."""
    return any(ch in text for ch in "*?[")


def expand_inputs(text: str) -> list[Path]:
    """The images named by a path, a folder (its TIFF and OME-Zarr images) or a glob pattern."""
    import glob

    path = Path(text).expanduser()
    if is_glob(text):
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


def output_name(source: Path, suffix_text: str, zarr_out: bool) -> str:
    """An output's name in a folder: ``source``'s name without its image suffix, then ``suffix_text`` and the suffix."""
    name = source.name
    for ending in (".ome.tiff", ".ome.tif", ".tiff", ".tif", OME_ZARR_SUFFIX):
        if name.lower().endswith(ending):
            name = name[: -len(ending)]
            break
    return f"{name}{suffix_text}" + (OME_ZARR_SUFFIX if zarr_out else ".ome.tif")


# --- run ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _OpenImage:
    """One job's input as the model takes it, with the axes of its outputs."""

    data: Any
    axes: str
    pixel_size_nm: float | None  # what the restoration is told (None: the model's own)
    out_pixel_size_nm: float | None  # what the outputs record
    chosen: Mapping[str, Any]  # provenance of the channel choice
    stack_axes: str
    restored_axes: str


def run_restore(plan: RestorePlan, *, progress_factory: Callable[[str], Callable[[int, int], None]] | None = None,
                note: Callable[[str], None] | None = None) -> Iterator[list[Path]]:
    """Restore every job of ``plan`` in turn and yield the paths each one published.

    ``progress_factory(label)`` gives one progress callback for the whole plan; ``note(text)``
    is told what was assumed (a missing pixel size).
    """
    if plan.output_folders:
        for job in plan.jobs:
            for path in job.outputs.values():
                path.parent.mkdir(exist_ok=True)
    bar = progress_factory(plan.label) if progress_factory is not None else None
    for number, job in enumerate(plan.jobs):
        yield _run_job(plan, job, _job_progress(bar, number, len(plan.jobs), plan.single_file), note)


def _job_progress(bar, number: int, jobs: int, own_steps: bool):
    if bar is None or own_steps:
        return bar

    def progress(done: int, total: int) -> None:
        bar(number * _PROGRESS_UNIT + int(_PROGRESS_UNIT * done / max(total, 1)), jobs * _PROGRESS_UNIT)

    return progress


@contextmanager
def _opened(request: RestoreRequest, job: ImageJob, header_only: bool = False):
    """The image of ``job`` as its engine reads it: (data, axes, pixel size, channel names).

    OME-Zarr and chunked TIFFs are read block by block anyway; ``header_only`` reads no pixel of
    an in-memory TIFF either (its data is then a shape-only stand-in).
    """
    if _is_zarr(job.source):
        zarr_image = open_ome_zarr(job.source)
        axes = axes_as_stored(request.axes, zarr_image.array.shape, zarr_image.axes, job.source.name)
        yield zarr_image.array, axes, zarr_image.pixel_size_nm, zarr_image.channel_names
    elif job.engine == CHUNKED:  # a TIFF read tile by tile, never whole
        with LazyTiff(job.source, axes=request.axes) as lazy:
            yield lazy.array, lazy.axes, lazy.pixel_size_nm, lazy.channel_names
    else:
        loaded = io.read_image(job.source, axes=request.axes, header_only=header_only)
        yield loaded.data, loaded.axes, loaded.pixel_size_nm, loaded.channel_names


def _run_job(plan: RestorePlan, job: ImageJob, progress, note) -> list[Path]:
    """Restore one image with its engine and publish all its outputs or none."""
    request, restorer = plan.request, plan.restorer
    staged = io.StagedOutputs(overwrite=request.overwrite)  # every output of this image, published together
    try:
        with _opened(request, job) as (data, axes, pixel, names):
            image = _prepare(request, restorer, job, data, axes, pixel, names, note)
            domain_report = _check_domain(request, restorer, job, image, note)
            if job.engine == MEMORY:
                arrays, provenance = _restore_in_memory(plan, job, image, progress)
            else:
                arrays, provenance = _restore_in_blocks(plan, job, image, staged, progress)
            provenance.setdefault("domain", domain_report.to_dict())
            write_outputs(staged, job, image, arrays, provenance, restorer)
    except BaseException:
        staged.discard()
        raise
    return staged.publish()


def _prepare(request: RestoreRequest, restorer: Restorer, job: ImageJob, data, axes: str, pixel, names,
             note) -> _OpenImage:
    """The channel the model takes, the pixel size (noting an assumed one) and the output axes."""
    card = restorer.card
    data, axes, chosen = input_channel(restorer, data, axes, names, request.channel, job.source.name)
    pixel = pixel_size_to_use(request.pixel_size, pixel, card.pixel_size_nm, job.source.name, note)
    if job.engine == CHUNKED and restorer.in_channels > 1 and (len(axes) < 3 or axes[-3] != "C"):
        raise NanoscopyError(f"{job.source.name} has axes {axes}; this model needs its channels on the axis before Y, X.")
    stack_axes = "".join(a for a in axes[:-2] if a != "C" or restorer.in_channels == 1)
    restored_axes = stack_axes + ("C" if restorer.out_channels > 1 else "") + "YX"
    return _OpenImage(data=data, axes=axes, pixel_size_nm=pixel,
                      out_pixel_size_nm=pixel if pixel is not None else card.pixel_size_nm,
                      chosen=MappingProxyType(chosen), stack_axes=stack_axes, restored_axes=restored_axes)


def _check_domain(request: RestoreRequest, restorer: Restorer, job: ImageJob, image: _OpenImage, note) -> DomainReport:
    """The image against the model's training inputs, before any restoration: a warning when it is
    outside them, a refusal with ``strict_domain``."""
    channel_axis = image.axes.index("C") if "C" in image.axes and restorer.in_channels > 1 else None
    report = check_array(restorer.card, image.data, channel_axis, restorer.zoom_factor(image.pixel_size_nm))
    if report.flagged and request.strict_domain:
        raise NanoscopyError(f"{job.source.name}: {report.message[:-1]}; nothing was written (--strict-domain).")
    if report.flagged and note is not None:
        note(f"warning: {job.source.name}: {report.message}")
    return report


def _restore_in_memory(plan: RestorePlan, job: ImageJob, image: _OpenImage, progress):
    request, restorer = plan.request, plan.restorer
    channel_axis = image.axes.index("C") if "C" in image.axes and restorer.in_channels > 1 else None
    result = restore_array(restorer, image.data, pixel_size_nm=image.pixel_size_nm, channel_axis=channel_axis,
                           samples=request.samples, tile_size=request.tile, seed=request.seed, progress=progress,
                           check_domain=False)  # the job scored the image before restoring it
    arrays = {"restored": result.mean, "uncertainty": result.uncertainty, "segmentation": result.labels}
    return arrays, {"input": str(job.source), **image.chosen, **result.provenance}


def _restore_in_blocks(plan: RestorePlan, job: ImageJob, image: _OpenImage, staged, progress):
    """Restore block by block into OME-Zarr outputs (staged) or arrays for TIFF outputs."""
    request, restorer = plan.request, plan.restorer
    writers, sinks = _block_sinks(plan, job, image, staged)
    result = restore_chunked(
        restorer, image.data, sinks["restored"], std_out=sinks.get("uncertainty"), labels_out=sinks.get("segmentation"),
        pixel_size_nm=image.pixel_size_nm, samples=request.samples, seed=request.seed, block=request.block,
        tile_size=request.tile, device=request.device, mc_mode=request.mc_mode, precision=request.precision,
        compile=request.compile, scheduler=request.scheduler_or_workers, progress=progress,
    )
    provenance = {"input": str(job.source), **image.chosen, **result.provenance}
    zarr = require_zarr()
    for key, writer in writers.items():  # record the provenance before committing
        group = zarr.open_group(str(writer.staging), mode="a")
        group.attrs["napari_nanoscopy"] = json.loads(json.dumps(
            {**provenance, "content": {"restored": "restored", "uncertainty": "pooled MC-dropout std",
                                       "segmentation": "labels"}[key]}, default=str))
    return {key: sink for key, sink in sinks.items() if key not in writers}, provenance


def _block_sinks(plan: RestorePlan, job: ImageJob, image: _OpenImage, staged) -> tuple[dict, dict]:
    """Where the blocks go: a staged OME-Zarr writer per .zarr output, an array per TIFF output."""
    request, restorer = plan.request, plan.restorer
    card = restorer.card
    shape = output_shape(restorer.package, image.data.shape)
    block = choose_block(request.block, image.data, restorer.size_multiple)
    chunks = (1,) * (len(shape) - 2) + (min(block, shape[-2]), min(block, shape[-1]))
    labels_shape = shape[: len(shape) - (3 if restorer.out_channels > 1 else 2)] + shape[-2:]
    writers: dict[str, OmeZarrWriter] = {}
    sinks: dict[str, Any] = {}
    for key, path in job.outputs.items():
        target_shape = labels_shape if key == "segmentation" else shape
        dtype = np.uint8 if key == "segmentation" else np.float32
        if _is_zarr(path):
            writers[key] = OmeZarrWriter(
                path, target_shape, image.stack_axes + "YX" if key == "segmentation" else image.restored_axes,
                chunks=chunks[-len(target_shape):], dtype=dtype, pixel_size_nm=image.out_pixel_size_nm,
                outputs=staged, channel_names=card.output_channels if restorer.out_channels > 1 else None,
                metadata={"input": str(job.source), **image.chosen, "content": "restored"},
            )
            sinks[key] = writers[key].array
        else:
            io.check_fits_in_memory(target_shape, dtype, f"The output {path.name}",
                                    "write it as OME-Zarr (a .zarr output), which is written block by block")
            sinks[key] = np.zeros(target_shape, dtype=dtype)
    return writers, sinks


# --- write --------------------------------------------------------------------------------------


def write_outputs(staged, job: ImageJob, image: _OpenImage, arrays: Mapping[str, Any], provenance: Mapping,
                  restorer) -> None:
    """Stage every TIFF output of ``job`` (OME-Zarr outputs were staged as their blocks were written).

    OME-XML names every output's channels: the model's output channels, their spread, the labels.
    """
    card = restorer.card
    for key, path in job.outputs.items():
        if key not in arrays:
            continue
        data = arrays[key]
        if data is None:
            if key == "uncertainty":
                raise NanoscopyError(_UNCERTAINTY_NEEDS_SAMPLES)
            raise NanoscopyError(f"The model '{card.name}' gives no {key} output.")
        if key == "segmentation":
            task_names = restorer.task_names
            axes, content = image.stack_axes + "YX", {str(i + 1): name for i, name in enumerate(task_names)}
            channel_names = [f"segmentation ({', '.join(task_names)})"]
        elif key == "uncertainty":
            axes, content = image.restored_axes, "pooled MC-dropout std"
            channel_names = [f"{name} uncertainty (pooled MC-dropout std)" for name in card.output_channels]
        else:
            axes, content, channel_names = image.restored_axes, "restored", list(card.output_channels)
        io.write_image(staged.stage(path), data, pixel_size_nm=image.out_pixel_size_nm, axes=axes,
                       channel_names=channel_names if "C" in axes or len(channel_names) == 1 else None,
                       metadata={"content": content, **provenance})


# --- an array already open: a napari layer, numpy, dask or zarr ----------------------------------


def restore(image, model, device: str | None = "auto", precision: str = "fp32", compile: bool = False,
            **options) -> RestorationResult:
    """Restore ``image`` with ``model`` (a package, a path or a bundled name); see :class:`Restorer`
    for ``precision`` and ``compile``, and :func:`restore_array` for the options."""
    return restore_array(Restorer(model, device=device, precision=precision, compile=compile), image, **options)


def restore_array(restorer: Restorer, data, *, pixel_size_nm: float | None = None, channel_axis: int | None = None,
                  samples: int | None = None, tile_size: int | None = None, seed: int | None = None,
                  progress=None, should_cancel=None, **options) -> RestorationResult:
    """Restore an array already open (numpy, or lazy: dask, zarr, a napari layer's data) with its engine.

    In memory (:meth:`Restorer.restore`; ``options`` go to it) unless the array is lazy and too
    large to restore whole in the memory available now; then block by block
    (:func:`~napari_nanoscopy.chunked.restore_chunked`, which reads a few blocks at a time and
    does not resample) into arrays on the input's grid. ``provenance["engine"]`` says which.
    """
    if array_engine(data, restorer) == MEMORY:
        result = restorer.restore(np.asarray(data), pixel_size_nm=pixel_size_nm, channel_axis=channel_axis,
                                  samples=samples, tile_size=tile_size, seed=seed, progress=progress,
                                  should_cancel=should_cancel, **options)
        result.provenance["engine"] = MEMORY
        return result
    if options:
        raise NanoscopyError(f"{', '.join(sorted(options))} need the image in memory, and this one is too large to "
                             "restore whole; restore it without them.")
    domain = check_array(restorer.card, data, channel_axis, restorer.zoom_factor(pixel_size_nm))  # a few windows read
    if channel_axis is not None and channel_axis % data.ndim != data.ndim - 3:  # the blocks take C before Y, X
        import dask.array as da

        data = da.moveaxis(da.asarray(data), channel_axis, -3)
    sinks = output_shape(restorer.package, data.shape)
    labels_shape = sinks[: len(sinks) - (3 if restorer.out_channels > 1 else 2)] + sinks[-2:]
    wants_std = (restorer.card.default_samples if samples is None else samples) > 1 and restorer.stochastic
    chunked = restore_chunked(
        restorer, data, np.zeros(sinks, np.float32), std_out=np.zeros(sinks, np.float32) if wants_std else None,
        labels_out=np.zeros(labels_shape, np.uint8) if restorer.card.task else None, pixel_size_nm=pixel_size_nm,
        samples=samples, seed=seed, tile_size=tile_size, progress=progress, should_cancel=should_cancel,
    )
    return RestorationResult(mean=chunked.mean, uncertainty=chunked.std, labels=chunked.labels,
                             task_names=list(restorer.card.task.outputs) if restorer.card.task else [], domain=domain,
                             provenance={**chunked.provenance, "engine": CHUNKED, "domain": domain.to_dict()})


def array_engine(data, restorer: Restorer) -> str:
    """MEMORY for a numpy array or a lazy one that fits; CHUNKED for a lazy array too large to restore whole."""
    if isinstance(data, np.ndarray):
        return MEMORY
    available = available_memory()
    needed = PEAK_FACTOR * math.prod(int(n) for n in data.shape) * 4  # as float32, with outputs and activations
    return CHUNKED if available is not None and needed > available else MEMORY


# --- the pixel size and the channel a model takes -----------------------------------------------


def pixel_size_to_use(given: float | None, recorded: float | None, model_pixel: float | None, name: str,
                      note: Callable[[str], None] | None) -> float | None:
    """The pixel size an image is restored or segmented at: the one given, else the file's; ``note`` is told
    when neither is there and the model's is assumed."""
    pixel = given if given is not None else recorded
    if pixel is None and model_pixel is not None and note is not None:
        note(f"{name} records no usable pixel size (none, zero, negative or not a number); assuming the "
             f"model's {model_pixel:g} nm (give --pixel-size to resample).")
    return pixel



def input_channel(restorer, data, axes: str, channel_names, channel, what: str) -> tuple[Any, str, dict]:
    """The image a model restores: for a single-input model only the chosen channel.

    The choice is :func:`~napari_nanoscopy.io.choose_channel`'s (``channel`` is an index or a
    name); a zarr source stays lazy. Returns the data, its axes and the provenance of the choice.
    """
    if restorer.in_channels > 1:
        if channel is not None:
            raise NanoscopyError(
                f"The model '{restorer.card.name}' takes {restorer.in_channels} channels "
                f"({', '.join(restorer.card.input_channels)}), so there is no channel to pick; drop --channel."
            )
        return data, axes, {}
    index = io.choose_channel(axes, tuple(data.shape), channel_names, channel, what=what,
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
