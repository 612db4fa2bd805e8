"""The segmentation job for files, folders and globs: plan -> run -> write, as restore_job does for restoration.

:func:`plan_segment` names every input and output and makes every check a user can fail (input
paths, output suffixes, collisions and folders, existing files, the tile size and pixel size,
every image's channel choice from its header, whether the model segments at all) before any
image's pixels are read. :func:`run_segment` reads each
image, picks its channel, segments it with :class:`~napari_nanoscopy.segmentation.Segmenter` at
its pixel size and publishes its labels (uint8, class names in the OME-XML) and probabilities
(float32, one channel per class) together or not at all (:class:`~napari_nanoscopy.outputs.StagedOutputs`).
The input planning is restore_job's (input expansion, output names and folders); the command
line (:mod:`.segment_cli`) only builds the request, runs the plan and prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType, SimpleNamespace
from typing import Any, Callable, Iterator

import numpy as np

from . import io
from .errors import NanoscopyError
from .formats import load_model
from .limits import MAX_TILE, check_int, check_pixel_size
from .restore_job import (MEMORY, ImageJob, check_output_folders, existing_file, expand_inputs, input_channel,
                          is_glob, output_folder, output_name, pixel_size_to_use)

LABELS, PROBABILITIES = "labels", "probabilities"  # the outputs of one image, by kind
_ONE_CHANNEL = SimpleNamespace(in_channels=1)  # what input_channel needs to know of a segmenter: it takes one channel


@dataclass(frozen=True)
class SegmentRequest:
    """What to segment, with which model and how: the options of ``napari-nanoscopy segment``."""

    input: str
    output: str
    model: Any
    probabilities: str | None = None
    pixel_size: float | None = None
    channel: str | int | None = None
    axes: str | None = None
    tile: int | None = None
    device: str = "auto"
    overwrite: bool = False
    preset: str | None = None  # which published network a .pth pair or params.net folder is (formats.load_model)

    @classmethod
    def from_options(cls, options) -> "SegmentRequest":
        """The request of parsed command line options (an ``argparse.Namespace``)."""
        return cls(**{f.name: getattr(options, f.name, f.default) for f in fields(cls)})


@dataclass(frozen=True)
class SegmentPlan:
    """A checked segmentation: the segmenter ready to run and one job per input image."""

    request: SegmentRequest
    segmenter: Any = field(repr=False, compare=False)
    jobs: tuple[ImageJob, ...]
    output_folders: bool  # several inputs: outputs go into folders made when the run starts

    def label(self, job: ImageJob) -> str:
        """The progress label of one job."""
        count = f" ({self.jobs.index(job) + 1} of {len(self.jobs)})" if len(self.jobs) > 1 else ""
        return f"segmenting {job.source.name}{count}"


# --- plan ---------------------------------------------------------------------------------------


def plan_segment(request: SegmentRequest) -> SegmentPlan:
    """Check ``request`` and plan its jobs; refuses anything wrong with one sentence, before any pixel is read."""
    from .inference import MIN_TILE
    from .segmentation import Segmenter

    if request.tile is not None:
        check_int("The tile size", request.tile, MIN_TILE, MAX_TILE, "leave it out for an automatic choice")
    if request.pixel_size is not None:
        check_pixel_size(request.pixel_size, "The --pixel-size given")
    text = str(request.input)
    several = is_glob(text) or Path(text).expanduser().is_dir()
    jobs = _jobs_into_folders(request) if several else [_single_job(request)]
    for job in jobs:  # a channel or axes problem of the last image refuses the run before the first is segmented
        header = io.read_image(job.source, axes=request.axes, header_only=True)
        input_channel(_ONE_CHANNEL, header.data, header.axes, header.channel_names, request.channel, job.source.name)
    model = load_model(request.model, preset=request.preset) if request.preset is not None else request.model
    segmenter = Segmenter(model, device=request.device)  # refuses a model that does not segment
    if several:
        check_output_folders(jobs)
    return SegmentPlan(request=request, segmenter=segmenter, jobs=tuple(jobs), output_folders=several)


def _single_job(request: SegmentRequest) -> ImageJob:
    source = _tiff_input(existing_file(request.input))
    outputs = {LABELS: Path(request.output).expanduser()}
    if request.probabilities:
        outputs[PROBABILITIES] = Path(request.probabilities).expanduser()
    resolved = [path.resolve() for path in outputs.values()]
    if source.resolve() in resolved:
        raise NanoscopyError(f"An output path is the input file {source}; choose another output path.")
    if len(set(resolved)) != len(resolved):
        raise NanoscopyError("The labels and the probabilities have the same path; give each output its own file.")
    for path in outputs.values():  # every output writable before any work, not after the segmentation
        io.check_output_path(path, overwrite=request.overwrite)
    return ImageJob(source, MappingProxyType(outputs), MEMORY)


def _jobs_into_folders(request: SegmentRequest) -> list[ImageJob]:
    """One job per image of a folder or glob: OUTPUT/NAME_labels.ome.tif (and PROBABILITIES/NAME_probabilities.ome.tif)."""
    sources = [_tiff_input(source) for source in expand_inputs(str(request.input))]
    folders = {LABELS: output_folder(request)}
    if request.probabilities:
        folders[PROBABILITIES] = Path(request.probabilities).expanduser()
    jobs = [ImageJob(source, MappingProxyType({kind: folder / output_name(source, f"_{kind}", False)
                                                for kind, folder in folders.items()}), MEMORY)
            for source in sources]
    named: dict[Path, Path] = {}
    for job in jobs:
        output = job.outputs[LABELS].resolve()
        if output in named:
            raise NanoscopyError(f"{named[output].name} and {job.source.name} would both be segmented into "
                                 f"{output.name}; rename one of them or segment them separately.")
        named[output] = job.source
    every = [path.resolve() for job in jobs for path in job.outputs.values()]
    inputs = {job.source.resolve() for job in jobs}
    for path in every:
        if path in inputs:
            raise NanoscopyError(f"The output {path} is one of the inputs; choose another output folder.")
        if path.exists() and not request.overwrite:
            raise NanoscopyError(f"{path} already exists; choose another folder or pass --overwrite.")
    return jobs


def _tiff_input(source: Path) -> Path:
    if not source.name.lower().endswith((".tif", ".tiff")):
        raise NanoscopyError(f"{source.name} is not a TIFF image; segment reads TIFF and OME-TIFF files, so "
                             "convert it to TIFF first.")
    return source


# --- run ----------------------------------------------------------------------------------------


def run_segment(plan: SegmentPlan, *, progress_factory: Callable[[str], Callable[[int, int], None]] | None = None,
                note: Callable[[str], None] | None = None) -> Iterator[list[Path]]:
    """Segment every job of ``plan`` in turn and yield the paths each one published.

    ``progress_factory(label)`` gives each image's progress callback; ``note(text)`` is told what
    was assumed (a missing pixel size).
    """
    if plan.output_folders:
        for job in plan.jobs:
            for path in job.outputs.values():
                path.parent.mkdir(exist_ok=True)
    for job in plan.jobs:
        progress = progress_factory(plan.label(job)) if progress_factory is not None else None
        yield _run_job(plan, job, progress, note)


def _run_job(plan: SegmentPlan, job: ImageJob, progress, note) -> list[Path]:
    """Segment one image and publish its labels and probabilities together, or neither."""
    request, segmenter = plan.request, plan.segmenter
    loaded = io.read_image(job.source, axes=request.axes)
    data, axes, chosen = input_channel(_ONE_CHANNEL, loaded.data, loaded.axes, loaded.channel_names, request.channel,
                                       job.source.name)
    model_pixel = segmenter.card.pixel_size_nm
    pixel = pixel_size_to_use(request.pixel_size, loaded.pixel_size_nm, model_pixel, job.source.name, note)
    result = segmenter.segment(data, pixel_size_nm=pixel, tile_size=request.tile, progress=progress)
    provenance = {"input": str(job.source), **chosen, **result.provenance}
    with io.StagedOutputs(overwrite=request.overwrite) as staged:  # published at the end, discarded on any error
        write_segmentation(staged, job, result, axes, pixel if pixel is not None else model_pixel, provenance)
    return staged.published


def write_segmentation(staged, job: ImageJob, result, axes: str, pixel_size_nm: float | None, provenance) -> None:
    """Stage the labels (uint8; OME-XML names the classes) and probabilities (float32, a channel per class) of ``job``."""
    names = result.class_names
    classes = {str(index + 1): name for index, name in enumerate(names)}
    stack_axes = axes[:-2]
    io.write_image(staged.stage(job.outputs[LABELS]), np.asarray(result.labels, dtype=np.uint8),
                   pixel_size_nm=pixel_size_nm, axes=stack_axes + "YX",
                   channel_names=["labels: 0 background, " + ", ".join(f"{k} {n}" for k, n in classes.items())],
                   metadata={**provenance, "content": "labels", "classes": {"0": "background", **classes}})
    if PROBABILITIES in job.outputs:
        io.write_image(staged.stage(job.outputs[PROBABILITIES]), np.asarray(result.probabilities, dtype=np.float32),
                       pixel_size_nm=pixel_size_nm, axes=stack_axes + "CYX",
                       channel_names=[f"{name} probability" for name in names],
                       metadata={**provenance, "content": "class probabilities"})
