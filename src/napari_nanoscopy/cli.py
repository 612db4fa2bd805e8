"""The ``napari-nanoscopy`` command line: a thin front end over the library.

User errors print one line (``napari-nanoscopy: error: ...``) and exit with status 2; an
interrupted run exits with 130, and SIGTERM interrupts like Ctrl-C. Outputs are written only
after the restoration has finished, under hidden temporary names, and published all together
(:class:`~napari_nanoscopy.io.StagedOutputs`), never over a file that appeared meanwhile unless
--overwrite is given; so a failed, interrupted or terminated run leaves no output and no
temporary file.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

from .errors import Cancelled, NanoscopyError

PROG = "napari-nanoscopy"


class _Progress:
    """A one-line progress bar on stderr (redrawn in place on a terminal, every 10 % otherwise)."""

    def __init__(self, label: str, stream=sys.stderr):
        self.label, self.stream = label, stream
        self.interactive = stream.isatty()
        self.last_decile = -1
        self.start = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        fraction = done / total if total else 1.0
        if self.interactive:
            bar = "#" * int(fraction * 30)
            self.stream.write(f"\r{self.label} [{bar:<30}] {fraction:4.0%} ({done}/{total})")
            if done == total:
                self.stream.write(f" {time.perf_counter() - self.start:.1f} s\n")
        elif int(fraction * 10) > self.last_decile:
            self.last_decile = int(fraction * 10)
            self.stream.write(f"{self.label}: {fraction:.0%} ({done}/{total})\n")
        self.stream.flush()


def whole_number(text: str) -> int:
    """An integer option: digits, or an integral number in scientific notation ("1e3"); the library
    checks its range and says it in one line."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    return int(value)


def _restore(args: argparse.Namespace) -> int:
    from .restore_job import RestoreRequest, plan_restore, run_restore

    def note(text: str) -> None:
        print(f"{PROG}: {text if text.startswith('warning: ') else 'note: ' + text}", file=sys.stderr)

    if args.preset is not None:  # a TA-GAN pair named by its dataset: loaded here, as a package
        from .formats import load_model

        args.model = load_model(args.model, preset=args.preset)
    plan = plan_restore(RestoreRequest.from_options(args))  # every check, before any image is read
    for written in run_restore(plan, progress_factory=_Progress, note=note):
        for path in written:
            print(f"wrote {path}")
    return 0


def _models(args: argparse.Namespace) -> int:
    from .formats import list_models

    cards = list_models(args.paths)
    if not cards:
        print("No bundled models are installed; give model package paths to list them.")
        return 0
    for card in cards:
        print(card.summary())
        if card.description:
            print(f"    {card.description}")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from .datamap_cli import simulate_datamaps
    from .simulation import conditions_or_standard, simulate_dataset

    if args.kind == "datamaps" or args.datamaps or args.mix:
        return simulate_datamaps(args, _Progress(f"simulating {args.kind}"))

    out = simulate_dataset(
        args.kind, n=args.n, size=args.size, seed=args.seed, out_dir=args.out,
        progress=_Progress(f"simulating {args.kind}"), localisation=args.localisation,
        conditions=conditions_or_standard(args.conditions),
    )
    print(f"wrote {args.n} {args.kind} samples to {out}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from .training import TrainingConfig, checkpoint_folder, command_line_options, train

    progress = _Progress(f"training {args.family}")
    last_losses: dict[str, float] = {}

    def report(step: int, total: int, losses: dict[str, float]) -> None:
        last_losses.update(losses)
        progress(step, total)

    config = TrainingConfig(args.family, **{option.name: getattr(args, option.name) for option in command_line_options()})
    try:
        card = train(config, callback=report)
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted; checkpoints (if any) are in {checkpoint_folder(args.out_path)}; "
              "run the same command with --resume to continue.", file=sys.stderr)
        return 130
    losses = ", ".join(f"{k} {v:.4g}" for k, v in last_losses.items())
    print(f"wrote model package {args.out_path} ({card.family}; last losses: {losses})")
    return 0


def _import_csbdeep(args: argparse.Namespace) -> int:
    from .interop import import_csbdeep

    card = import_csbdeep(args.folder, args.out, percentiles=(args.low, args.high),
                          pixel_size_nm=args.pixel_size, overwrite=args.overwrite)
    print(f"wrote model package {args.out} ({card.summary()})")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import json

    from .evaluation import evaluate

    data = Path(args.data).expanduser()
    if not data.is_dir():
        raise NanoscopyError(f"The dataset folder {data} does not exist; give a folder written by `{PROG} simulate`.")
    baselines = {}
    for text in args.baseline:
        row, sep, model = text.partition("=")
        if not sep or not row or not model:
            raise NanoscopyError(f"--baseline takes NAME=MODEL (e.g. pix2pix=pix2pix-nanodomains), not {text!r}.")
        baselines[row] = model
    evaluation = evaluate(
        args.model, data, baselines=baselines, samples=args.samples, device=args.device, limit=args.limit, scorer=args.scorer,
        progress=_Progress(f"evaluating on {data.name}"),
    )
    if args.json:
        print(json.dumps(evaluation.to_dict(), indent=1))
    else:
        print(f"{evaluation.model} on {data} ({evaluation.n_images} {evaluation.kind} images)")
        print(evaluation.table())
    return 0


def _export_bmz(args: argparse.Namespace) -> int:
    from .interop import export_bmz

    test_image = None
    if args.sample:
        from .io import read_image
        from .restore_job import existing_file

        image = read_image(existing_file(args.sample))
        test_image = image.data
        while test_image.ndim > 3 or (test_image.ndim == 3 and "C" not in image.axes):
            test_image = test_image[0]  # the first plane of a stack
    out = export_bmz(args.model, args.out, test_image=test_image, authors=args.author or None,
                     license=args.license, overwrite=args.overwrite, direction=args.direction)
    print(f"wrote bioimage.io model {out}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    import json

    from .bench import SECTIONS, run_benchmarks
    from .bench_report import format_report

    sections = list(SECTIONS) if not args.only else [s.strip() for s in args.only.split(",") if s.strip()]
    say = None if args.json else (lambda text: print(f"{PROG} bench: {text}", file=sys.stderr, flush=True))
    report = run_benchmarks(quick=args.quick, device=args.device, sections=sections, size=args.size,
                            repeats=args.repeats, memory_size=args.memory_size, memory_model=args.memory_model,
                            precision=args.precision, progress=say)
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Deep-learning restoration of fluorescence nanoscopy images (TA-GAN, TCAN, Wang 2019, label2label).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # The order here is the order `--help` lists the commands in.
    for add_command in (_add_restore_parser, _add_segment_parser, _add_translate_parser, _add_simulate_parser, _add_train_parser, _add_import_csbdeep_parser,
                        _add_import_unet_parser,
                        _add_evaluate_parser, _add_fingerprint_parser, _add_datamap_parser, _add_export_bmz_parser, _add_live_parser,
                        _add_bench_parser,
                        _add_models_parser):
        add_command(commands)
    return parser


def _add_restore_parser(commands) -> None:
    from .inference import MC_MODES, PRECISIONS
    from .interop.tagan import PRESETS as TAGAN_PRESETS

    restore = commands.add_parser(
        "restore",
        help="restore a TIFF / OME-TIFF image with a model",
        description="Restore INPUT with a model and write OUTPUT (and optional uncertainty and segmentation) "
        "as TIFF / OME-TIFF with the input's pixel size.",
    )
    restore.add_argument("input", help="input TIFF, OME-TIFF or OME-Zarr (.zarr), or a folder or quoted glob of them")
    restore.add_argument("output", help="restored image (.ome.tif for OME-TIFF, .tif for ImageJ TIFF, .zarr for "
                         "OME-Zarr written chunk by chunk), or a folder for several inputs")
    restore.add_argument("--model", "-m", required=True, help="bundled model name, package folder or .zip, or TA-GAN .pth")
    restore.add_argument("--preset", choices=TAGAN_PRESETS, help="the TA-GAN dataset of a *_net_G.pth with its "
                         "*_net_S.pth beside it (default: recognised from the channel counts)")
    restore.add_argument("--pixel-size", type=float, help="input pixel size in nm (default: read from the file)")
    restore.add_argument("--channel", help="the channel of a multichannel input to restore, by index (from 0) or "
                         "name; needed when the input has several channels and the model takes one")
    restore.add_argument("--axes", help="the input's axes as the file stores them, one letter per dimension from "
                         "TCZYX (e.g. CYX for a stack of channels, YXC for an RGB file's samples); replaces "
                         "what the file says")
    restore.add_argument("--samples", "-n", type=whole_number, help="Monte-Carlo dropout samples (default: the model's)")
    restore.add_argument("--uncertainty", help="write the per-pixel standard deviation of the samples here")
    restore.add_argument("--segmentation", help="write the task network's segmentation (labels) here")
    restore.add_argument("--tile", type=whole_number, help="tile size in pixels (default: automatic)")
    restore.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    restore.add_argument("--mc-mode", default="dropout", choices=MC_MODES,
                         help="MC sampling: dropout only (default) or the public code's train-mode BatchNorm")
    restore.add_argument("--precision", default="fp32", choices=PRECISIONS,
                         help="fp32 (default) or bf16: bfloat16 network, about 2x faster on CPUs with AVX-512 BF16 "
                              "or AMX and on recent GPUs, outputs within about 0.02 of fp32 on a [-1, 1] scale")
    restore.add_argument("--compile", action="store_true",
                         help="torch.compile the network: faster passes after a first one that compiles (10-30 s "
                              "per window shape); pays off for many images of one size")
    restore.add_argument("--seed", type=whole_number, help="seed for reproducible Monte-Carlo samples")
    restore.add_argument("--overwrite", action="store_true", help="replace existing output files")
    restore.add_argument("--strict-domain", action="store_true", help="write nothing for an image outside the "
                         "model's domain (by default a warning is printed); see docs/domain.md")
    restore.add_argument("--block", type=whole_number, help="restore chunk by chunk in blocks of N pixels (OME-Zarr default: "
                         "1024 or a multiple of its chunks); memory then stays that of a few blocks")
    restore.add_argument("--scheduler", metavar="ADDRESS", help="run the blocks on a dask.distributed scheduler "
                         "(tcp://HOST:8786), or 'local' for an embedded LocalCluster")
    restore.add_argument("--workers", type=whole_number, help="run the blocks on an embedded dask LocalCluster of N workers")
    restore.set_defaults(handler=_restore)


def _add_simulate_parser(commands) -> None:
    from .simulation import KINDS, LOCALISATION_MAPS

    simulate = commands.add_parser(
        "simulate",
        help="simulate paired confocal/STED training data with pySTED",
        description="Simulate N structures of KIND, image them with pySTED under the standard conditions "
        "(or those of --conditions) and write input/ target/ task/ truth/ TIFFs and dataset.json to --out.",
    )
    simulate.add_argument("kind", choices=(*KINDS, "datamaps"), help="the structure to simulate; datamaps: real "
                          "structures from --datamaps")
    simulate.add_argument("--n", type=whole_number, default=100, help="number of samples (default 100)")
    simulate.add_argument("--size", type=whole_number, default=64, help="image size in pixels of 20 nm (default 64)")
    simulate.add_argument("--seed", type=whole_number, default=0, help="seed; the same seed gives the same files")
    simulate.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    simulate.add_argument(
        "--localisation", choices=LOCALISATION_MAPS, default="distance",
        help="nanodomains only: the task map, the paper's cube root of the distance to the closest centre "
        "(default) or a 1-pixel Gaussian peak on each centre, which localisation networks learn faster",
    )
    simulate.add_argument("--conditions", metavar="FILE|NAME", help="the microscope: a .yaml/.json condition "
                          "file (merged over the standard set) or a shipped set, standard (default) or seed-live-cell")
    from .datamap_cli import add_simulate_options

    add_simulate_options(simulate)
    simulate.set_defaults(handler=_simulate)


def _add_train_parser(commands) -> None:
    from .training import ALL_TRAINING_FAMILIES, command_line_options

    train = commands.add_parser(
        "train",
        help="train a model on paired images (input/ and target/ TIFF folders)",
        description="Train FAMILY on the pairs in --data (input/NAME.tif, target/NAME.tif, optional task/NAME.tif; "
        "see docs/training.md) and write a model package to --out. Defaults follow the family's paper.",
    )
    train.add_argument("family", choices=ALL_TRAINING_FAMILIES)
    for option in command_line_options():  # derived from TrainingConfig's fields
        if option.kind == "switch":
            train.add_argument(option.flag, dest=option.name, action="store_true", help=option.help)
            continue
        train.add_argument(option.flag, *option.aliases, dest=option.name, metavar=option.metavar, required=option.required,
                           default=option.default, type=whole_number if option.kind == "whole number" else None,
                           help=option.help)
    train.set_defaults(handler=_train)


def _add_import_csbdeep_parser(commands) -> None:
    csbdeep = commands.add_parser(
        "import-csbdeep",
        help="convert a CSBDeep/CARE model folder into a model package",
        description="Convert a CSBDeep CARE model folder (config.json + weights_best.h5) into an l2l model "
        "package (folder or .zip). --model also takes such a folder directly; see docs/csbdeep.md.",
    )
    csbdeep.add_argument("folder", help="CSBDeep model folder")
    csbdeep.add_argument("out", help="model package folder or .zip to write")
    csbdeep.add_argument("--low", type=float, default=2.0, help="input normalisation low percentile (CARE.predict: 2)")
    csbdeep.add_argument("--high", type=float, default=99.8, help="input normalisation high percentile (99.8)")
    csbdeep.add_argument("--pixel-size", type=float, help="pixel size in nm the model was trained at, if known")
    csbdeep.add_argument("--overwrite", action="store_true", help="replace an existing package")
    csbdeep.set_defaults(handler=_import_csbdeep)


def _add_import_unet_parser(commands) -> None:
    from .import_unet_cli import add_parser

    add_parser(commands)


def _add_evaluate_parser(commands) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="measure a model on a held-out dataset folder (PSNR, SSIM, task metrics, baselines)",
        description="Evaluate MODEL on the pairs in --data (a folder as `simulate` writes it): PSNR and SSIM "
        "against the target, the task metric of the dataset's kind (nanodomain F1, F-actin Dice, bead FWHM, "
        "two-label contrast), with the input and Richardson-Lucy deconvolution as baselines.",
    )
    evaluate.add_argument("model", help="bundled model name, package folder or .zip")
    evaluate.add_argument("--data", required=True, help="dataset folder with input/ target/ (task/ truth/) and dataset.json")
    evaluate.add_argument("--baseline", action="append", default=[], metavar="NAME=MODEL",
                          help="another model to compare, as a table row called NAME (repeatable)")
    evaluate.add_argument("--samples", "-n", type=whole_number, help="Monte-Carlo samples averaged per image (default: the model's)")
    evaluate.add_argument("--limit", type=whole_number, help="use only the first LIMIT images")
    evaluate.add_argument("--scorer", metavar="MODEL", help="a segmenting model (an authors' U-Net folder, "
                          "unet-live-factin...): per class, Dice of its segmentation of each restored image against "
                          "that of the real STED, as the TA-GAN paper scores synthetic images")
    evaluate.add_argument("--device", default="cpu", help="cpu (default), auto, cuda, cuda:N or mps")
    evaluate.add_argument("--json", action="store_true", help="print the figures as JSON")
    evaluate.set_defaults(handler=_evaluate)


def _add_export_bmz_parser(commands) -> None:
    bmz = commands.add_parser(
        "export-bmz",
        help="export a model as a bioimage.io (BioImage Model Zoo) package",
        description="Write MODEL as a bioimage.io model package (rdf.yaml, pytorch_state_dict and torchscript "
        "weights, test tensors, cover, README): a folder, or a .zip as the Model Zoo takes it. "
        "See docs/bioimageio.md.",
    )
    bmz.add_argument("model", help="bundled model name, package folder or .zip, CSBDeep folder or TA-GAN .pth")
    bmz.add_argument("out", help="OUT.zip (or a folder) to write")
    bmz.add_argument("--sample", help="TIFF image at the model's pixel size for the test tensors and cover "
                     "(default: a synthetic field)")
    bmz.add_argument("--author", action="append", help="author name (repeat for several)")
    bmz.add_argument("--license", default="CC-BY-4.0", help="SPDX license of the weights (default CC-BY-4.0)")
    bmz.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    bmz.add_argument("--direction", choices=("a2b", "b2a"), help="tagan-cycle models: the generator to export, "
                     "a2b (default: domain A to B) or b2a (back)")
    bmz.set_defaults(handler=_export_bmz)


def _add_segment_parser(commands) -> None:
    from .segment_cli import add_parser

    add_parser(commands, progress_factory=_Progress)


def _add_translate_parser(commands) -> None:
    from .translate_cli import add_parser

    add_parser(commands, progress_factory=_Progress)


def _add_fingerprint_parser(commands) -> None:
    from .fingerprint_cli import add_parser

    add_parser(commands)


def _add_datamap_parser(commands) -> None:
    from .datamap_cli import add_parser

    add_parser(commands, progress_factory=_Progress)


def _add_live_parser(commands) -> None:
    from .live.cli import add_parser

    add_parser(commands)


def _add_bench_parser(commands) -> None:
    from .bench import SECTIONS as BENCH_SECTIONS
    from .inference import PRECISIONS

    bench = commands.add_parser(
        "bench",
        help="measure restoration speed and memory on this machine (see docs/performance.md)",
        description="Measure, on this machine, section by section: "
        + "; ".join(f"{name} ({summary})" for name, summary in BENCH_SECTIONS.items())
        + ". Fixed seeds; min and median of repeats; the machine is described in the output.",
    )
    bench.add_argument("--quick", action="store_true",
                       help="small sizes and one repeat in every section: a smoke test in seconds")
    bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    bench.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    bench.add_argument("--only", metavar="SECTIONS",
                       help=f"comma-separated sections: {', '.join(BENCH_SECTIONS)} (default: all)")
    bench.add_argument("--size", type=whole_number, help="throughput input side in pixels (default 2048; quick 64)")
    bench.add_argument("--repeats", type=whole_number, help="timed repeats after the warm-up (default 3; quick 1)")
    bench.add_argument("--memory-size", type=whole_number,
                       help="side of the memory benchmark's float32 image (default 8192; quick 128)")
    bench.add_argument("--memory-model", default="l2l-twolabel",
                       help="model of the memory benchmark: a bundled name, a package, or paper:FAMILY")
    bench.add_argument("--precision", default="fp32", choices=PRECISIONS,
                       help="precision of the throughput, tiling, MC and memory sections (the precision section "
                            "always compares both)")
    bench.set_defaults(handler=_bench)


def _add_models_parser(commands) -> None:
    models = commands.add_parser("models", help="list bundled models and the given model packages")
    models.add_argument("paths", nargs="*", help="model package folders, .zip files or TA-GAN .pth files")
    models.set_defaults(handler=_models)

@contextmanager
def _terminate_as_interrupt():
    """Make SIGTERM raise KeyboardInterrupt, so that a terminated run cleans up as after Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with _terminate_as_interrupt():
        try:
            return args.handler(args)
        except NanoscopyError as error:
            print(f"{PROG}: error: {error}", file=sys.stderr)
            return 2
        except (KeyboardInterrupt, Cancelled):
            print(f"\n{PROG}: interrupted; no output was written.", file=sys.stderr)
            return 130
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1


if __name__ == "__main__":
    sys.exit(main())
