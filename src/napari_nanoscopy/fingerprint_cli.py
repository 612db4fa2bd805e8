"""``napari-nanoscopy fingerprint``: give a model the domain fingerprint of its training images."""

from __future__ import annotations

import argparse


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "fingerprint",
        help="add the fingerprint of a model's training images (the domain check) to a copy of the model",
        description="Write MODEL as a new package OUT whose card carries the fingerprint of the images in --data "
        "(the model's training inputs, or images like them): every restoration then says whether an image "
        "resembles them, and restore --strict-domain refuses those that do not. The threshold is calibrated on "
        "--held-out in-domain images (default: every third image of --data). A napari-nanoscopy package keeps "
        "its weights file as it is. See docs/domain.md.",
    )
    parser.add_argument("model", help="model: a bundled name, a package folder or .zip, or a foreign model")
    parser.add_argument("out", help="the new package: a folder, or a .zip")
    parser.add_argument("--data", required=True, metavar="DIR",
                        help="folder of the model's training input TIFFs (or a dataset folder with input/)")
    parser.add_argument("--held-out", metavar="DIR", help="folder of held-out in-domain input TIFFs for the threshold")
    parser.add_argument("--pixel-size", type=float, metavar="NM",
                        help="the images' pixel size in nm, where their files do not record it")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from napari_nanoscopy.fingerprint import fingerprint_model, summary

    card = fingerprint_model(args.model, args.data, args.out, held_out=args.held_out, pixel_size_nm=args.pixel_size,
                             overwrite=args.overwrite)
    print(summary(card, args.out))
    return 0
