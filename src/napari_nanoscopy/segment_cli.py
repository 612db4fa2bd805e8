"""``napari-nanoscopy segment``: class labels (and probabilities) of STED images with a segmenting model."""

from __future__ import annotations

import argparse
import functools
import sys

from napari_nanoscopy.cli import PROG, whole_number
from napari_nanoscopy.interop.stedactin import PRESETS as STEDACTIN_PRESETS
from napari_nanoscopy.interop.tagan import PRESETS as TAGAN_PRESETS


def add_parser(commands, progress_factory=None) -> argparse.ArgumentParser:
    """Add the ``segment`` subcommand; ``progress_factory(label)`` draws each image's progress."""
    segment = commands.add_parser(
        "segment",
        help="segment STED images into classes (F-actin rings, fibres) with a segmenting model",
        description="Segment IMAGE with a model that segments (the authors' U-Net folders, unet-live-factin, a TA-GAN "
        "with its task network) and write the class labels to OUT as uint8 TIFF / OME-TIFF (0 background, k the "
        "model's k-th class, named in the OME-XML) at the input's pixel size, with optional per-class probabilities.",
    )
    segment.add_argument("input", help="input TIFF or OME-TIFF, or a folder or quoted glob of them")
    segment.add_argument("output", help="labels (.ome.tif for OME-TIFF, .tif for ImageJ TIFF), or a folder for "
                         "several inputs (NAME_labels.ome.tif)")
    segment.add_argument("--model", "-m", required=True,
                         help="bundled model name, package folder or .zip, U-Net folder (params.net) or TA-GAN .pth")
    segment.add_argument("--preset", choices=[*STEDACTIN_PRESETS, *TAGAN_PRESETS],
                         help="which published network MODEL is: axon or dendrite for a U-Net folder (params.net), the "
                         "TA-GAN dataset of a *_net_G.pth with its *_net_S.pth (default: recognised from the weights)")
    segment.add_argument("--probabilities", metavar="FILE", help="write the class probabilities here (float32, one "
                         "channel per class); a folder for several inputs (NAME_probabilities.ome.tif)")
    segment.add_argument("--pixel-size", type=float, help="input pixel size in nm (default: read from the file)")
    segment.add_argument("--channel", help="the channel of a multichannel input to segment, by index (from 0) or name")
    segment.add_argument("--axes", help="the input's axes as the file stores them, one letter per dimension from "
                         "TCZYX; replaces what the file says")
    segment.add_argument("--tile", type=whole_number, help="tile size in pixels (default: automatic)")
    segment.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    segment.add_argument("--overwrite", action="store_true", help="replace existing output files")
    segment.set_defaults(handler=functools.partial(run, progress_factory=progress_factory))
    return segment


def run(args: argparse.Namespace, progress_factory=None) -> int:
    """Plan (every check, before any image is read), segment, print each published path."""
    from napari_nanoscopy.segment_job import SegmentRequest, plan_segment, run_segment

    def note(text: str) -> None:
        print(f"{PROG}: note: {text}", file=sys.stderr)

    plan = plan_segment(SegmentRequest.from_options(args))
    for written in run_segment(plan, progress_factory=progress_factory, note=note):
        for path in written:
            print(f"wrote {path}")
    return 0
