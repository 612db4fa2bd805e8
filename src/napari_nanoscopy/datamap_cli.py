"""``napari-nanoscopy datamap``: pySTED datamaps (molecules per pixel) from real STED images."""

from __future__ import annotations

import argparse


def add_parser(commands, progress_factory=None) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "datamap",
        help="derive pySTED datamaps from real STED images (real structures for `simulate datamaps`)",
        description="Derive from each STED image in STED_IMAGES (a TIFF or a folder of them, photon counts) the "
        "datamap, molecules per pixel at the image's pixel size, whose pySTED STED image under the conditions "
        "reproduces it (Richardson-Lucy under pySTED's Poisson model, 30 iterations by default), and "
        "write OUT/<name>.tif (float32) and OUT/datamaps.json with each datamap's source, derivation and the "
        "agreement of its pySTED re-image with the real image. STED_IMAGES may also be pysted:NAME[:I,J] "
        "(factin, psd95, tubulin): pySTED's example datamaps, written as they ship. See docs/simulation.md.",
    )
    parser.add_argument("sted_images", metavar="STED_IMAGES", help="a STED TIFF, a folder of them, or pysted:NAME")
    parser.add_argument("out", metavar="OUT", help="the new folder of datamaps (must not exist)")
    parser.add_argument("--pixel-size", type=float, metavar="NM",
                        help="the images' pixel size in nm (default: read from each file)")
    parser.add_argument("--conditions", metavar="FILE|NAME", help="the microscope the images were taken with: a "
                        ".yaml/.json condition file or a shipped set (default: standard); its pixel size "
                        "becomes the image's")
    parser.add_argument("--iterations", type=_iterations, default=30, metavar="N|auto",
                        help="Richardson-Lucy iterations (default 30), or auto: stop by the discrepancy principle")
    parser.add_argument("--seed", type=int, default=0, help="seed of the re-imaging that measures the agreement")
    parser.add_argument("--annotations", metavar="DIR", help="a folder of NAME.polys.txt polygon files (the "
                        "STEDActinFCN format), one per image: written as OUT/annotations/NAME.tif masks that "
                        "`simulate datamaps` turns into task masks")
    parser.add_argument("--labels", choices=("axon", "dendrite"), help="how the polygon labels read: axon (0, 1: "
                        "rings; nothing else annotated) or dendrite (0, 1: rings; 3: fibres)")
    parser.set_defaults(handler=run, progress_factory=progress_factory)
    return parser


def _iterations(text: str) -> int | None:
    if text == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"give a whole number of iterations or auto, not {text!r}") from None


def run(args: argparse.Namespace) -> int:
    import json

    from napari_nanoscopy.simulation.conditions import conditions_or_standard
    from napari_nanoscopy.simulation.datamap_files import write_datamaps

    progress = args.progress_factory("deriving datamaps") if args.progress_factory else None
    out = write_datamaps(
        args.sted_images, args.out, pixel_size_nm=args.pixel_size, conditions=conditions_or_standard(args.conditions),
        iterations=args.iterations, seed=args.seed, annotations=args.annotations, labels=args.labels,
        progress=progress,
    )
    records = json.loads((out / "datamaps.json").read_text(encoding="utf-8"))["datamaps"]
    for record in records:
        print(_summary(record))
    print(f"wrote {len(records)} datamaps to {out}")
    return 0


def _summary(record: dict) -> str:
    agreement = record.get("agreement")
    if agreement is None:
        return f"{record['name']}: pySTED example, {record['pixel_size_nm']:g} nm pixels"
    annotated = f"; masks of {', '.join(record['annotation']['classes'])}" if "annotation" in record else ""
    resolution = agreement["resolution_nm"]
    real, simulated = agreement["statistics"]["real"], agreement["statistics"]["simulated"]
    shown = "/".join("-" if value is None else f"{value:.0f}" for value in (resolution["real"], resolution["simulated"]))
    return (f"{record['name']}: {record['derivation']['iterations']} iterations; real/re-imaged resolution {shown} nm, "
            f"mean {real['mean']:.2f}/{simulated['mean']:.2f}, p99 {real['p99']:.0f}/{simulated['p99']:.0f} counts"
            f"{annotated}")


def add_simulate_options(simulate) -> None:
    """The options of ``simulate datamaps`` (added to the simulate parser)."""
    simulate.add_argument("--datamaps", action="append", metavar="DIR|pysted:NAME",
                          help="datamaps kind: a folder written by `datamap`, or pysted:NAME[:I,J] for pySTED's "
                          "examples (factin, psd95, tubulin); repeat for several")
    simulate.add_argument("--mix", metavar="KIND:SHARE[,...]", help="datamaps kind: this share of the samples is "
                          "a synthetic kind instead, e.g. factin:0.5")


def simulate_datamaps(args: argparse.Namespace, progress) -> int:
    from napari_nanoscopy.errors import NanoscopyError
    from napari_nanoscopy.simulation.conditions import conditions_or_standard
    from napari_nanoscopy.simulation.datamap_dataset import parse_mix, simulate_datamap_dataset

    if args.kind != "datamaps":
        raise NanoscopyError(f"--datamaps and --mix belong to the datamaps kind; leave them out for {args.kind}.")
    if args.localisation != "distance":
        raise NanoscopyError("The localisation map applies to nanodomains only; leave --localisation out for datamaps.")
    out = simulate_datamap_dataset(
        args.datamaps or [], n=args.n, size=args.size, seed=args.seed, out_dir=args.out, progress=progress,
        conditions=conditions_or_standard(args.conditions), mix=parse_mix(args.mix),
    )
    print(f"wrote {args.n} datamaps samples to {out}")
    return 0
