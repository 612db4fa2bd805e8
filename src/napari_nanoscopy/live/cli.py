"""``napari-nanoscopy live``: run the live-assist loop from the shell and print a JSON summary."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from napari_nanoscopy.analysis.variability import DISPARITY_METHODS
from napari_nanoscopy.cli import PROG, whole_number
from napari_nanoscopy.errors import NanoscopyError
from napari_nanoscopy.inference import PRECISIONS
from napari_nanoscopy.live.connection import ADAPTERS, AdapterSettings, make_adapter
from napari_nanoscopy.live.policies import POLICIES
from napari_nanoscopy.live.runner import RunState
from napari_nanoscopy.live.settings import DEFAULT_GENERATOR, DEFAULT_SEGMENT_CLASS, DEFAULT_SEGMENTER, REFERENCES


def add_parser(commands) -> argparse.ArgumentParser:
    live = commands.add_parser(
        "live",
        help="model-assisted live STED on the simulator or a microscope",
        description="Run the TA-GAN live-assist loop (Table 1 of the TA-GAN paper): per frame a confocal image, "
        "Monte-Carlo samples of TA-GAN Live, a STED patch where they disagree most, regenerated samples, "
        "U-Net-Live segmentation and a dice, variability or area decision whether to acquire a full STED. Every frame "
        "and decision is recorded in OUT; a line per frame (decision, score, dose so far) goes to stderr and a JSON "
        "summary to stdout. Hardware adapters need --arm. "
        "See docs/live.md.",
    )
    live.add_argument("--adapter", choices=ADAPTERS, default="simulator", help="microscope (default: the simulator)")
    live.add_argument("--policy", choices=POLICIES, default="dice",
                      help="STED trigger (default dice; area is ours, see docs/live.md)")
    live.add_argument("--threshold", type=float,
                      help="trigger threshold (default 0.5 for dice and variability as in the paper, 0.2 for area; "
                      "benchmarks/live_targets.py --calibrate measures one for your models)")
    live.add_argument("--reference", choices=REFERENCES, default="sted",
                      help="what dice and area compare with: the segmentation of the last real STED (default, the "
                      "paper) or the synthetic segmentation of the frame it was acquired at")
    live.add_argument("--frames", type=whole_number, default=15, help="time points (default 15)")
    live.add_argument("--out", help="new folder for the recorded session")
    live.add_argument("--read", metavar="DIR", help="print the summary of the session recorded in DIR and exit")
    live.add_argument("--resume", action="store_true", help="continue the session already in --out")
    live.add_argument("--seed", type=whole_number, default=0, help="seed of the simulator and the Monte-Carlo samples")
    live.add_argument("--samples", type=whole_number, default=10, help="Monte-Carlo samples per generation (default 10)")
    live.add_argument("--disparity", choices=DISPARITY_METHODS, default="optical-flow",
                      help="disparity between samples (default Horn–Schunck optical flow)")
    live.add_argument("--patch", type=whole_number, default=100, help="STED patch / superpixel side in pixels (default 100)")
    live.add_argument("--roi", type=whole_number, default=300, help="central ROI side in pixels (default 300)")
    live.add_argument("--generator", default=DEFAULT_GENERATOR, help="TA-GAN Live model (name, folder or .zip): "
                      "tagan-live-factin-synthetic (default: simulated dendrites) or tagan-live-factin (also real "
                      "structures: invents less on real images, caught fewer simulated onsets; docs/live.md)")
    live.add_argument("--segmenter", default=DEFAULT_SEGMENTER, help="U-Net-Live model (name, folder or .zip): "
                      "unet-live-factin-synthetic (default: simulated dendrites, the generator's task network), "
                      "unet-live-factin (also real axonal rings) or unet-live-axons (axons, rings only)")
    live.add_argument("--segment-class", default=DEFAULT_SEGMENT_CLASS,
                      help="the segmenter's class the decision watches (default fibres; unet-live-axons: rings)")
    live.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    live.add_argument("--precision", choices=PRECISIONS, default="fp32",
                      help="fp32 (default) or bf16: both networks in bfloat16, faster where the CPU or GPU supports it")
    live.add_argument("--compile", action="store_true",
                      help="torch.compile both networks: decisions about 1.3x faster, the first frame compiles (10-60 s)")
    live.add_argument("--max-sted", type=whole_number, help="most full STED images (references included) per --window")
    live.add_argument("--window", type=whole_number, help="frames of the --max-sted window (default: the whole session)")
    live.add_argument("--max-dose", type=float, help="most photons sent into the sample per --window")
    live.add_argument("--keep-extras", action="store_true", help="also keep MC samples, disparity and segmentations")
    live.add_argument("--no-references", action="store_true", help="skip the initial and final reference STED")
    sim = live.add_argument_group("simulator")
    sim.add_argument("--size", type=whole_number, default=500, help="field of view in pixels (default 500)")
    sim.add_argument("--stimulus-frame", type=whole_number,
                     help="time point where remodelling starts (default 5, or --frames if fewer; = --frames for a control)")
    sim.add_argument("--conditions", metavar="FILE|NAME", help="the simulated microscope: a .yaml/.json condition file "
                     "or a shipped set, standard (default) or seed-live-cell (docs/simulation.md)")
    hw = live.add_argument_group("hardware")
    hw.add_argument("--arm", action="store_true", help="allow a hardware adapter to illuminate the sample")
    hw.add_argument("--mm-config", help="Micro-Manager configuration file (pymmcore)")
    hw.add_argument("--mm-group", default="Modality", help="configuration group selecting the modality (pymmcore)")
    hw.add_argument("--pixel-size", type=float, help="pixel size in nm (pymmcore without calibration; specpy)")
    hw.add_argument("--confocal-config", default="Confocal", help="Imspector configuration of the confocal (specpy)")
    hw.add_argument("--sted-config", default="STED", help="Imspector configuration of the STED (specpy)")
    hw.add_argument("--timeout", type=float, help="watchdog timeout per acquisition in seconds")
    live.set_defaults(handler=run)
    return live


def adapter_settings(args: argparse.Namespace) -> AdapterSettings:
    """The adapter the options ask for; a hardware adapter only with --arm and its configuration file."""
    if args.adapter != "simulator" and not args.arm:
        raise NanoscopyError(
            f"The {args.adapter} adapter drives a real microscope and acquires only when armed; check the sample "
            "and the microscope, then pass --arm."
        )
    if args.adapter == "pymmcore":
        if not args.mm_config:
            raise NanoscopyError("The pymmcore adapter needs --mm-config, the Micro-Manager configuration file to load.")
        if not Path(args.mm_config).expanduser().is_file():
            raise NanoscopyError(f"The Micro-Manager configuration file {args.mm_config} does not exist; check the "
                                 "--mm-config path.")
    return AdapterSettings(
        kind=args.adapter, frames=args.frames, stimulus_frame=args.stimulus_frame, size=args.size, seed=args.seed,
        arm=args.arm, mm_config=args.mm_config, mm_group=args.mm_group, pixel_size_nm=args.pixel_size,
        confocal_config=args.confocal_config, sted_config=args.sted_config, timeout_s=args.timeout,
        conditions=args.conditions,
    )


def frame_line(result, frames: int) -> str:
    """One line per frame (numbered from 0, as recorded): the decision, its score against the
    threshold, the dose sent into the sample so far and the decision time."""
    decision = result.decision
    action = "STED" if result.sted is not None else ("STED wanted" if decision.trigger else "no STED")
    line = (f"{PROG} live: frame {result.frame}/{frames - 1}: {action} ({decision.reason}); "
            f"dose so far {result.dose_photons:.3g} photons; {result.timings_s['decision_total']:.1f} s")
    return line + (f"; {result.declined}" if result.declined else "")


def run(args: argparse.Namespace) -> int:
    from napari_nanoscopy.live.budget import DoseBudget
    from napari_nanoscopy.live.pipeline import open_session
    from napari_nanoscopy.live.recorder import session_summary
    from napari_nanoscopy.live.settings import LiveSettings

    if args.read:
        json.dump(session_summary(args.read), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if not args.out:
        raise NanoscopyError("Give --out, a new folder to record the session in (or --read DIR to read one).")
    settings = LiveSettings(
        policy=args.policy, threshold=args.threshold, reference=args.reference, samples=args.samples, disparity=args.disparity,
        patch=args.patch, roi=args.roi, generator=args.generator, segmenter=args.segmenter,
        segment_class=args.segment_class, device=args.device,
        precision=args.precision, compile=args.compile,
        seed=args.seed, initial_reference=not args.no_references, final_reference=not args.no_references,
        keep_extras=args.keep_extras,
    )
    budget = DoseBudget(args.max_sted, args.window, args.max_dose)
    adapter = make_adapter(adapter_settings(args))
    try:
        runner = open_session(
            adapter, args.out, settings, budget=budget, resume=args.resume,
            on_frame=lambda result: print(frame_line(result, args.frames), file=sys.stderr, flush=True),
        )
        try:
            summary = runner.run(args.frames)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the runner wrote summary.json; report what is on disk
            summary = session_summary(runner.folder)
        finally:
            runner.close()
    finally:
        adapter.close()
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")
    status = runner.status
    if status.state is RunState.INTERRUPTED:
        print(f"\n{PROG}: interrupted; {summary['frames']} frame(s) and {summary['acquisitions']} acquisition(s) are "
              f"recorded in {status.folder}; run the same command with --resume to continue.", file=sys.stderr)
        return 130
    return 0 if status.state is RunState.DONE else 1
