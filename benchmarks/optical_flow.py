"""Horn–Schunck optical flow for 9 pairs of 500x500 images: ours vs the plain reference.

The TA-GAN live loop measures the disparity of its 10 Monte-Carlo samples as the
Horn–Schunck flow between the 9 consecutive pairs (alpha 1, 100 iterations). This measures,
in one run and on the same images:

- reference: ``horn_schunck_reference`` (scipy convolutions of the published kernels), one
  pair per process in a pool of one process per CPU, as the published pipeline ran it;
- ours: ``horn_schunck_pairs`` (compiled, vectorised, one thread per CPU);
- both single-threaded on one pair, for a per-core comparison;

and checks that both agree to 1e-5. Every figure is the min and median of the repeats.

    python benchmarks/optical_flow.py [--repeats 3] [--size 500] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from scipy.ndimage import gaussian_filter

from napari_nanoscopy.analysis.optical_flow import horn_schunck, horn_schunck_pairs, horn_schunck_reference


def samples(size: int, n: int = 10, seed: int = 0) -> np.ndarray:
    """Ten MC-sample-like images in [0, 1]: one smooth structure, each sample jittered."""
    rng = np.random.default_rng(seed)
    base = gaussian_filter(rng.random((size, size)), 3.0)
    stack = np.stack([
        gaussian_filter(np.roll(base, tuple(rng.integers(-1, 2, 2)), (0, 1)) + 0.02 * rng.random((size, size)), 1.0)
        for _ in range(n)
    ])
    return ((stack - stack.min()) / (stack.max() - stack.min())).astype(np.float32)


def _reference_pair(pair):
    first, second = pair
    return horn_schunck_reference(first, second, alpha=1.0, iterations=100)


def timed(function, repeats):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return times, result


def cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=500)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    stack = samples(args.size)
    pairs = [(stack[k], stack[k + 1]) for k in range(len(stack) - 1)]
    workers = cpus()
    horn_schunck(stack[0], stack[1], iterations=1)  # compile (or load numba's cache) outside the timing

    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_reference_pair, pairs[:workers]))  # start the workers outside the timing
        reference_times, reference = timed(lambda: list(pool.map(_reference_pair, pairs)), args.repeats)
    ours_times, ours = timed(lambda: horn_schunck_pairs(stack, 1.0, 100, threads=workers), args.repeats)
    one_reference, _ = timed(lambda: _reference_pair(pairs[0]), args.repeats)
    one_ours, _ = timed(lambda: horn_schunck(*pairs[0]), args.repeats)

    difference = max(
        float(max(np.abs(ours[k, 0] - u).max(), np.abs(ours[k, 1] - v).max())) for k, (u, v) in enumerate(reference)
    )
    largest = max(float(np.abs(np.stack(pair)).max()) for pair in reference)

    def figures(times):
        return {"min_s": min(times), "median_s": statistics.median(times)}

    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cpus": workers,
                    "python": platform.python_version(), "numpy": np.__version__},
        "images": f"9 pairs of {args.size}x{args.size}, alpha 1, 100 iterations",
        "reference_9_pairs": figures(reference_times),
        "ours_9_pairs": figures(ours_times),
        "speedup_9_pairs": min(reference_times) / min(ours_times),
        "reference_1_pair_1_thread": figures(one_reference),
        "ours_1_pair_1_thread": figures(one_ours),
        "speedup_1_pair_1_thread": min(one_reference) / min(one_ours),
        "max_abs_difference": difference,
        "largest_flow_component": largest,
        "agree_to_1e-5": difference <= 1e-5,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"Horn–Schunck, {result['images']}, {workers} CPU(s), {result['machine']['cpu']}")
    print("| what | reference min / median (s) | ours min / median (s) | speed-up |")
    print("|---|---|---|---|")
    for label, key in (("9 pairs, all CPUs", "9_pairs"), ("1 pair, 1 thread", "1_pair_1_thread")):
        ref, our = result[f"reference_{key}"], result[f"ours_{key}"]
        print(f"| {label} | {ref['min_s']:.3f} / {ref['median_s']:.3f} | {our['min_s']:.4f} / {our['median_s']:.4f} "
              f"| {result[f'speedup_{key}']:.1f}x |")
    print(f"max |ours - reference| = {difference:.2e} (largest flow component {largest:.3f}); "
          f"agree to 1e-5: {result['agree_to_1e-5']}")


if __name__ == "__main__":
    main()
