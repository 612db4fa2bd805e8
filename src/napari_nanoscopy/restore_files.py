"""``napari-nanoscopy restore`` for files, folders, globs, OME-Zarr and clusters.

Every job names its outputs and checks them (collisions, existing files, folders) before any
heavy work; each image is restored in memory (a TIFF to a TIFF) or block by block
(:func:`~napari_nanoscopy.chunked.restore_chunked`: OME-Zarr, ``--block``, ``--scheduler``,
``--workers``), and all its outputs are published together or none.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .blocks import choose_block, output_shape
from .chunked import restore_chunked
from .errors import NanoscopyError
from .io import StagedOutputs, check_fits_in_memory, check_output_path
from .lazy_tiff import LazyTiff, axes_as_stored
from .ome_zarr import OME_ZARR_SUFFIX, OmeZarrWriter, open_ome_zarr, require_zarr


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
        block = choose_block(getattr(args, "block", None), data, restorer.size_multiple)
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
            zarr = require_zarr()
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
