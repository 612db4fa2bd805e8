"""Forward-pass time per family: NCHW float32 (the engine before) vs channels-last float32 (the
engine's default now) vs channels-last bfloat16 (``precision="bf16"``) vs bfloat16 autocast.

Each network (generator and task network, as the engine runs them) is timed on the same random
batch, the variants alternately, and the figure is the min over the repeats. The channels-last
output must equal the NCHW one to float32 rounding; bfloat16 is compared with it as a max abs
error and a PSNR on the scale of the float32 output's range.

    python benchmarks/memory_format.py [--models bundled,paper] [--size 512] [--batch 1] [--repeats 3] [--json]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time

import torch

from napari_nanoscopy.bench import agreement as array_agreement, paper_package
from napari_nanoscopy.network_runtime import RestorationNetwork
from napari_nanoscopy.models import FAMILIES
from napari_nanoscopy.formats import load_model
from napari_nanoscopy.packages import bundled_model_names

BUNDLED = ["tagan-nanodomains", "tagan-live-factin", "tcan-filaments", "wang-beads", "l2l-twolabel", "unet-live-factin"]


def agreement(fast: torch.Tensor, exact: torch.Tensor) -> dict:
    """Max abs error and PSNR on the scale of ``exact``'s range, as `bench --only precision` reports them."""
    return array_agreement(fast.float().numpy(), exact.numpy())


def measure(package, size: int, batch: int, repeats: int) -> dict:
    torch.manual_seed(0)
    nchw = RestorationNetwork(package.generator, package.task_network).eval()
    nhwc = copy.deepcopy(nchw).to(memory_format=torch.channels_last)
    bf16 = copy.deepcopy(nhwc).to(torch.bfloat16)
    x = torch.randn(batch, package.generator.in_channels, size, size).clamp(-1, 1)
    x_nhwc = x.contiguous(memory_format=torch.channels_last)
    x_bf16 = x_nhwc.to(torch.bfloat16)

    def autocast():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return nhwc(x_nhwc)

    variants = {"nchw_fp32": lambda: nchw(x), "channels_last_fp32": lambda: nhwc(x_nhwc),
                "channels_last_bf16": lambda: bf16(x_bf16), "autocast_bf16": autocast}
    times = {name: [] for name in variants}
    with torch.inference_mode():
        outputs = {name: run() for name, run in variants.items()}  # warm-up
        for _ in range(repeats):
            for name, run in variants.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    best = {name: min(t) for name, t in times.items()}
    reference = outputs["nchw_fp32"]
    row = {"model": package.card.name, "family": package.card.family, "size": size, "batch": batch,
           "min_s": best, "speedup_vs_nchw": {name: best["nchw_fp32"] / t for name, t in best.items()}}
    for index, part in enumerate(("generator", "task")):
        if reference[index] is None:
            continue
        row[part] = {
            "channels_last_max_abs_difference": float((outputs["channels_last_fp32"][index] - reference[index]).abs().max()),
            "bf16": agreement(outputs["channels_last_bf16"][index], reference[index]),
            "autocast_bf16": agreement(outputs["autocast_bf16"][index], reference[index]),
        }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="bundled,paper", help="bundled, paper, or both (comma-separated)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    kinds = {k.strip() for k in args.models.split(",")}
    packages = []
    if "bundled" in kinds:
        packages += [load_model(n) for n in BUNDLED if n in bundled_model_names()]
    if "paper" in kinds:
        packages += [paper_package(f) for f in FAMILIES]
    rows = []
    for package in packages:
        rows.append(measure(package, args.size, args.batch, args.repeats))
        if not args.json:
            r = rows[-1]
            s = r["speedup_vs_nchw"]
            errors = "; ".join(f"{part} bf16 {r[part]['bf16']['max_abs_error']:.4f} / {r[part]['bf16']['psnr_db']:.1f} dB"
                               for part in ("generator", "task") if part in r)
            print(f"{r['model']:24s} {r['size']}x{r['size']} x{r['batch']}: NCHW {r['min_s']['nchw_fp32']:.3f} s, "
                  f"channels-last {s['channels_last_fp32']:.2f}x, +bf16 {s['channels_last_bf16']:.2f}x, "
                  f"autocast {s['autocast_bf16']:.2f}x | {errors}", flush=True)
    if args.json:
        print(json.dumps({"load_average_1min": os.getloadavg()[0], "torch_threads": torch.get_num_threads(),
                          "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
