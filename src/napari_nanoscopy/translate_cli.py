"""``napari-nanoscopy translate`` (an image from one domain of a TA-CycleGAN package to the other) and
``translate-dataset`` (a dataset folder's annotated images, keeping their masks)."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys

from napari_nanoscopy.cli import PROG, whole_number
from napari_nanoscopy.translation import DIRECTIONS


def add_parser(commands, progress_factory=None) -> argparse.ArgumentParser:
    """Add the ``translate`` subcommand; ``progress_factory(label)`` draws each image's progress."""
    translate = commands.add_parser(
        "translate",
        help="translate images between the two domains of a tagan-cycle model",
        description="Translate INPUT with a tagan-cycle model package from its domain A to B (--direction a2b, the "
        "default) or back (b2a), and write OUTPUT as TIFF / OME-TIFF with the input's pixel size.",
    )
    translate.add_argument("input", help="input TIFF or OME-TIFF, or a folder or quoted glob of them")
    translate.add_argument("output", help="translated image (.ome.tif for OME-TIFF, .tif for ImageJ TIFF), or a "
                           "folder for several inputs")
    translate.add_argument("--model", "-m", required=True, help="tagan-cycle package folder or .zip")
    translate.add_argument("--direction", default="a2b", choices=DIRECTIONS,
                           help="a2b (default): domain A to B with the model's generator; b2a: back, with its reverse one")
    translate.add_argument("--pixel-size", type=float, help="input pixel size in nm (default: read from the file)")
    translate.add_argument("--channel", help="the channel of a multichannel input to translate, by index (from 0) or name")
    translate.add_argument("--axes", help="the input's axes as the file stores them, one letter per dimension from TCZYX")
    translate.add_argument("--samples", "-n", type=whole_number, help="Monte-Carlo dropout samples averaged "
                           "(default: the model's)")
    translate.add_argument("--uncertainty", help="write the per-pixel standard deviation of the samples here")
    translate.add_argument("--tile", type=whole_number, help="tile size in pixels (default: automatic)")
    translate.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    translate.add_argument("--seed", type=whole_number, help="seed for reproducible Monte-Carlo samples")
    translate.add_argument("--overwrite", action="store_true", help="replace existing output files")
    translate.set_defaults(handler=functools.partial(run, progress_factory=progress_factory))
    _add_dataset_parser(commands, progress_factory)
    return translate


def _add_dataset_parser(commands, progress_factory) -> None:
    dataset = commands.add_parser(
        "translate-dataset",
        help="translate a dataset folder's annotated images with a tagan-cycle model, keeping their masks",
        description="Translate the target/ images of the dataset folder DIR with a tagan-cycle model and write the "
        "dataset OUT: target/ translated at each image's pixel size, task/ masks and dataset.json copied (input/ is "
        "not carried over). OUT appears complete or not at all.",
    )
    dataset.add_argument("folder", metavar="DIR", help="dataset folder (target/NAME.tif, task/NAME.tif)")
    dataset.add_argument("out", metavar="OUT", help="the translated dataset folder to write")
    dataset.add_argument("--model", "-m", required=True, help="tagan-cycle package folder or .zip")
    dataset.add_argument("--direction", default="a2b", choices=DIRECTIONS, help="a2b (default) or b2a")
    dataset.add_argument("--samples", "-n", type=whole_number, help="Monte-Carlo dropout samples averaged "
                         "(default: the model's)")
    dataset.add_argument("--seed", type=whole_number, default=0, help="seed of the Monte-Carlo samples (default 0)")
    dataset.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    dataset.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    dataset.set_defaults(handler=functools.partial(run_dataset, progress_factory=progress_factory))


def run(args: argparse.Namespace, progress_factory=None) -> int:
    """Plan the restore job with the model of the chosen direction (every check first), run it, print each path."""
    from napari_nanoscopy.restore_job import RestoreRequest, plan_restore, run_restore
    from napari_nanoscopy.translation import translation_model

    def note(text: str) -> None:
        print(f"{PROG}: {text if text.startswith('warning: ') else 'note: ' + text}", file=sys.stderr)

    request = RestoreRequest.from_options(args)
    request = dataclasses.replace(request, model=translation_model(args.model, args.direction))
    for written in run_restore(plan_restore(request), progress_factory=progress_factory, note=note):
        for path in written:
            print(f"wrote {path}")
    return 0


def run_dataset(args: argparse.Namespace, progress_factory=None) -> int:
    from napari_nanoscopy.translation import translate_dataset

    progress = progress_factory(f"translating {args.folder}") if progress_factory is not None else None
    out = translate_dataset(args.folder, args.out, args.model, args.direction, device=args.device,
                            samples=args.samples, seed=args.seed, overwrite=args.overwrite, progress=progress)
    print(f"wrote translated dataset {out}")
    return 0
