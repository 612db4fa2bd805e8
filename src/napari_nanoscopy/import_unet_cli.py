"""The ``import-unet`` subcommand: an authors' U-Net folder (``params.net``) into a model package."""

from __future__ import annotations

import argparse


def add_parser(commands) -> argparse.ArgumentParser:
    from .interop.stedactin import PRESETS

    parser = commands.add_parser(
        "import-unet",
        help="convert a U-Net folder of Lavoie-Cardinal et al. 2020 (params.net) into a model package",
        description="Convert an authors' U-Net folder (params.net, optional params_trainer.pkl; STEDActinFCN) into "
        "a segmenter-only model package (folder or .zip) that 'segment --model' runs as the authors did. --model "
        "also takes such a folder directly; see docs/models.md.",
    )
    parser.add_argument("folder", help="folder with params.net")
    parser.add_argument("out", help="model package folder or .zip to write")
    parser.add_argument("--preset", choices=tuple(PRESETS), help="which published network it is (default: "
                        "recognised from the published weights; needed for any other params.net)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing package")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from .interop.stedactin import import_unet

    card = import_unet(args.folder, args.out, preset=args.preset, overwrite=args.overwrite)
    print(f"wrote model package {args.out} ({card.summary()})")
    return 0
