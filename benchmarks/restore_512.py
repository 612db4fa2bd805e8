"""Time one 512x512 restoration per family at paper size on this machine.

Weights are freshly initialised (speed does not depend on their values). Prints a Markdown
table: deterministic pass and, for families with dropout, 10 Monte-Carlo samples; the min
and median of the repeats, and the peak resident memory of the process.

    python benchmarks/restore_512.py [--repeats 3] [--device cpu]
"""

import argparse
import platform
import resource
import statistics
import time

import numpy as np
import torch

from napari_nanoscopy.inference import Restorer
from napari_nanoscopy.models import FAMILIES, build_generator, paper_defaults
from napari_nanoscopy.packages import ModelCard, ModelPackage


def package_for(family: str) -> ModelPackage:
    kwargs = paper_defaults(family)
    generator = build_generator(family, **kwargs).eval()
    channels = ["confocal", "STED patch", "patch mask"] if family == "tagan-live" else ["confocal"]
    percentile = {"mode": "percentile", "low": 1.0, "high": 99.8, "range": [-1.0, 1.0]}
    inputs = [percentile] + [{"mode": "none"}] * (len(channels) - 1)
    card = ModelCard(
        name=f"{family}-paper-size", family=family, generator=kwargs, input_channels=channels,
        output_channels=["STED"], pixel_size_nm=20.0,
        normalization={"input": inputs, "output": {"mode": "range", "range": [-1.0, 1.0]}},
        default_samples=10 if kwargs.get("dropout", 0) > 0 else 1,
    )
    return ModelPackage(card, generator, None, "benchmark")


def timed(function, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--mc-samples", type=int, default=10, help="also time N samples for dropout families (0: skip)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    confocal = rng.poisson(20, (512, 512)).astype(np.float32)
    live_input = np.stack([confocal, -np.ones_like(confocal), -np.ones_like(confocal)])
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, device {args.device}")
    print("| family | samples | min s | median s |")
    print("|---|---|---|---|")
    for family in FAMILIES:
        restorer = Restorer(package_for(family), device=args.device)
        image = live_input if family == "tagan-live" else confocal
        sample_counts = [1, args.mc_samples] if restorer.stochastic and args.mc_samples > 1 else [1]
        for samples in sample_counts:
            restorer.restore(image, samples=samples)  # warm-up
            times = timed(lambda: restorer.restore(image, samples=samples), args.repeats)
            print(f"| {family} | {samples} | {min(times):.2f} | {statistics.median(times):.2f} |", flush=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
