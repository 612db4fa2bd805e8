"""Decision latency of the live-assist loop per step of the TA-GAN paper's Table 1, 500x500 field.

Runs the real pipeline (``LivePipeline``) on a replay adapter that returns pre-rendered
images at once, so that only the decision compute is timed: steps 2 (10 Monte-Carlo
samples), 3 (disparity: Horn–Schunck flow of the 9 pairs, or the std), 5 (10 samples with
the STED patch), 6 (U-Net-Live on the ROI of each sample), 7 (the policy), and their sum.
Each figure is the min and median over the frames.

Models: ``--models bundled`` uses ``tagan-live-factin`` / ``unet-live-factin`` when they are
installed; ``bundled-size`` builds random-weight networks of the bundled sizes (TA-GAN Live
ngf 16, 6 blocks; U-Net-Live ngf 16, 7 downsamplings); ``paper-size`` the paper's (ngf 64,
9 blocks; U-Net-128 ngf 64). Speed does not depend on the weights.

    python benchmarks/live_latency.py [--models bundled-size] [--frames 3] [--disparity optical-flow] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from napari_nanoscopy.live.adapters import CONFOCAL, STED, AcquisitionSettings, Capabilities, MicroscopeAdapter
from napari_nanoscopy.live.pipeline import LivePipeline
from napari_nanoscopy.live.runner import DECISION_STEPS
from napari_nanoscopy.live.settings import LiveSettings
from napari_nanoscopy.models import build_generator, build_task_network
from napari_nanoscopy.formats import load_model
from napari_nanoscopy.packages import ModelCard, ModelPackage
from napari_nanoscopy.simulation import STANDARD_CONDITIONS, factin_series

PERCENTILE = {"mode": "percentile", "low": 1.0, "high": 99.8, "range": [-1.0, 1.0]}
IDENTITY = dict(in_channels=1, out_channels=1, base_filters=1, depth=1, kernel_size=1, convs_per_level=1,
                residual=True, dropout=0.0)
SIZES = {"bundled-size": (dict(ngf=16, n_blocks=6), dict(ngf=16, n_down=7)),
         "paper-size": (dict(ngf=64, n_blocks=9), dict(ngf=64, n_down=7))}


class ReplayAdapter(MicroscopeAdapter):
    """Returns crops of fixed confocal / STED images instantly (no acquisition time)."""

    name = "replay"

    def __init__(self, confocal: np.ndarray, sted: np.ndarray):
        c = STANDARD_CONDITIONS
        caps = Capabilities((CONFOCAL, STED), 20.0, confocal.shape, 16, {"excitation": 1e-4, "depletion": 0.5},
                            (1e-7, 1e-3), {"excitation": 635e-9, "depletion": 750e-9}, requires_arming=False)
        super().__init__(caps, {CONFOCAL: AcquisitionSettings(c["p_ex"], 0.0, c["pdt"]),
                                STED: AcquisitionSettings(c["p_ex"], c["p_sted"], c["pdt"])})
        self.images = {CONFOCAL: confocal, STED: sted}

    def _acquire(self, modality, region):
        y0, x0, h, w = region
        return self.images[modality][y0:y0 + h, x0:x0 + w], {}


def field(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Confocal- and STED-like images of a simulated dendrite (blurred molecules + Poisson noise)."""
    datamap = factin_series(1, 1, seed=seed, size=size).datamaps[0].astype(float)
    rng = np.random.default_rng(seed)
    confocal = rng.poisson(gaussian_filter(datamap, 4.5) * 4 + 0.6).astype(np.float32)
    sted = rng.poisson(gaussian_filter(datamap, 1.5) * 2 + 0.6).astype(np.float32)
    return confocal, sted


def random_models(kind: str) -> tuple[ModelPackage, ModelPackage]:
    generator_kwargs, task_kwargs = SIZES[kind]
    kwargs = dict(in_channels=3, out_channels=1, dropout=0.5, **generator_kwargs)
    generator_card = ModelCard(
        name=f"tagan-live-{kind}", family="tagan-live", generator=kwargs,
        input_channels=["confocal", "STED patch", "patch mask"], output_channels=["STED"], pixel_size_nm=20.0,
        normalization={"input": [PERCENTILE, {"mode": "none"}, {"mode": "none"}],
                       "output": {"mode": "range", "range": [-1.0, 1.0]}, "sted_patch": PERCENTILE},
        default_samples=10)
    identity = build_generator("l2l", **IDENTITY)
    torch.nn.init.zeros_(identity.final.weight)
    torch.nn.init.zeros_(identity.final.bias)
    segmenter_card = ModelCard(
        name=f"unet-live-{kind}", family="l2l", generator=IDENTITY,
        task_network={"kind": "unet128", "kwargs": task_kwargs},
        task={"kind": "segmentation", "outputs": ["rings", "fibres"], "thresholds": [-0.5294, -0.5294]},
        input_channels=["STED"], output_channels=["STED"], pixel_size_nm=20.0,
        normalization={"input": PERCENTILE, "output": {"mode": "range", "range": [-1.0, 1.0]}})
    return (ModelPackage(generator_card, build_generator("tagan-live", **kwargs).eval(), None, "benchmark"),
            ModelPackage(segmenter_card, identity.eval(), build_task_network("unet128", **task_kwargs).eval(), "benchmark"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", choices=("bundled", "bundled-size", "paper-size"), default="bundled")
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--size", type=int, default=500)
    parser.add_argument("--roi", type=int, default=300)
    parser.add_argument("--patch", type=int, default=100)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--disparity", choices=("optical-flow", "std"), default="optical-flow")
    parser.add_argument("--policy", choices=("dice", "variability"), default="dice")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--compile", action="store_true", help="torch.compile both networks (LiveSettings.compile)")
    parser.add_argument("--generator", default="tagan-live-factin", help="with --models bundled: name, folder or .zip")
    parser.add_argument("--segmenter", default="unet-live-factin", help="with --models bundled: name, folder or .zip")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    if args.models == "bundled":
        try:
            generator, segmenter = load_model(args.generator), load_model(args.segmenter)
        except Exception as error:  # noqa: BLE001 - fall back and say so
            print(f"(bundled live models not available: {error}; using random bundled-size networks)")
            args.models = "bundled-size"
    if args.models != "bundled":
        generator, segmenter = random_models(args.models)
    confocal, sted = field(args.size)
    settings = LiveSettings(policy=args.policy, samples=args.samples, disparity=args.disparity, patch=args.patch,
                            roi=args.roi, device=args.device, precision=args.precision, compile=args.compile,
                            initial_reference=True,
                            final_reference=False)
    with tempfile.TemporaryDirectory() as folder:
        pipeline = LivePipeline(ReplayAdapter(confocal, sted), Path(folder) / "session", settings,
                                generator=generator, segmenter=segmenter)
        started = time.perf_counter()
        pipeline.run(1)  # warm-up: numba compilation (torch.compile with --compile), first allocations
        warm_up_s = time.perf_counter() - started
        warm = len(pipeline.results)
        summary = pipeline.run(1 + args.frames)
        pipeline.close()
        records = pipeline.results[warm:]

    steps = (*DECISION_STEPS, "decision_total")
    table = {step: {"min_s": min(r["latency_s"][step] for r in records),
                    "median_s": float(np.median([r["latency_s"][step] for r in records]))} for step in steps}
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cpus": len(os.sched_getaffinity(0)),
                    "torch_threads": torch.get_num_threads(), "device": args.device, "torch": torch.__version__},
        "models": {"generator": generator.card.name, "generator_kwargs": generator.card.generator.to_dict(),
                   "segmenter": segmenter.card.name, "segmenter_kwargs": segmenter.card.task_network.to_dict()},
        "field": f"{args.size}x{args.size}, ROI {args.roi}, patch {args.patch}, {args.samples} samples, "
                 f"disparity {args.disparity}, policy {args.policy}, precision {args.precision}"
                 + (", compiled" if args.compile else ""),
        "warm_up_frame_s": warm_up_s,
        "frames_timed": len(records),
        "latency_s": table,
        "state": summary["state"],
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"Live decision latency, {result['field']}; {result['machine']}")
    print(f"models: {result['models']['generator']} / {result['models']['segmenter']}; {len(records)} frames timed "
          f"after a warm-up frame of {warm_up_s:.1f} s")
    print("| step | min (s) | median (s) |")
    print("|---|---|---|")
    for step in steps:
        print(f"| {step} | {table[step]['min_s']:.3f} | {table[step]['median_s']:.3f} |")


if __name__ == "__main__":
    main()
