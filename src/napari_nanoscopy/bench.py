"""Benchmarks of the restoration engine on this machine (``napari-nanoscopy bench``).

Every figure is measured here, with fixed seeds, as the min and median of repeats (after a
small warm-up pass), and the report describes the machine it ran on:

- **throughput**: megapixels per second of one deterministic restoration, per family at the
  papers' sizes (freshly initialised weights: speed does not depend on their values) and for
  the bundled models, on a square input (2048x2048 in the full run);
- **tiling**: tiled time / one-shot time on the same pixels (one window covering the image);
- **precision**: bf16 vs fp32 restorations of the same field per family (paper size and
  bundled): speed-up, and the bf16 output's agreement with the fp32 one (max abs error and PSNR,
  both on the scale of the fp32 output's range);
- **mc**: N Monte-Carlo samples batched (the engine's automatic batch) vs N sequential
  forward passes (batch of 1), as a speed-up;
- **memory**: peak resident memory of a large restoration (8192x8192 float32 in the full
  run), in a fresh process, over the process's memory before the input existed, divided by the
  input's size (so 1.0 would be the input alone);
- **roofline**: achieved FLOP/s of a generator forward pass vs the best FLOP/s this machine
  reaches on a dense 3x3 convolution;
- **optical_flow** and **live_latency**: the repository's ``benchmarks/optical_flow.py`` and
  ``benchmarks/live_latency.py`` (run in their own processes, their JSON taken as it is) when
  this is a source checkout that has them.

No Qt or napari here: this runs headless, on a CPU or a CUDA device (``device="auto"``).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .bench_timing import machine, sync_device, timed, timed_pair
from .errors import NanoscopyError
from .limits import check_int

# Every section and what it measures, in the order they run (`bench --help` lists them from here).
SECTIONS = {
    "throughput": "megapixels per second of a restoration per family, at paper size and for the bundled models",
    "precision": "bf16 against fp32, the speed-up and how closely the outputs agree",
    "tiling": "tiled vs one-shot restoration of the same pixels",
    "mc": "Monte-Carlo samples batched vs one forward pass each",
    "memory": "peak resident memory of a large restoration, in a fresh process",
    "roofline": "FLOP/s of a generator pass vs this machine's dense-convolution peak",
    "optical_flow": "Horn-Schunck optical flow (benchmarks/optical_flow.py, source checkouts only)",
    "live_latency": "live-assist decision latency (benchmarks/live_latency.py, source checkouts only)",
}
SEED = 0
BENCHMARKS_DIR = Path(__file__).resolve().parents[2] / "benchmarks"

# Full run as the benchmarks issue asks; --quick is a smoke test of every section in seconds: one
# repeat, small fields, a short convolution peak, and tiling on a narrow CARE U-Net, whose small
# halo lets a 128-px field split into windows.
FULL = dict(size=2048, repeats=3, memory_size=8192, mc_size=512, mc_samples=10, tiling_size=2048,
            roofline_size=512, conv_peak_s=0.2, flow_size=500, flow_repeats=3,
            live=dict(size=500, frames=3, samples=10), all_bundled=True, warm_up=True)
QUICK = dict(size=64, repeats=1, memory_size=128, mc_size=64, mc_samples=3, tiling_size=128,
             roofline_size=32, conv_peak_s=0.01, flow_size=64, flow_repeats=1,
             live=dict(size=128, frames=1, samples=2), all_bundled=False, warm_up=False)
QUICK_TILING_MODEL = dict(base_filters=8, depth=1, kernel_size=3)  # l2l generator, halo 26 px
PERCENTILE = {"mode": "percentile", "low": 1.0, "high": 99.8, "range": [-1.0, 1.0]}


def field(size: int, seed: int = SEED) -> np.ndarray:
    """A confocal-like float32 field: Poisson counts of smooth random structures (fixed seed)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    small = max(8, size // 4)
    structure = gaussian_filter(rng.random((small, small)), 1.5)
    structure = np.kron(structure, np.ones((4, 4)))[:size, :size]
    if structure.shape[0] < size:
        structure = np.pad(structure, ((0, size - structure.shape[0]), (0, size - structure.shape[1])), mode="reflect")
    structure = (structure - structure.min()) / (np.ptp(structure) or 1.0)
    return rng.poisson(2.0 + 30.0 * structure**2).astype(np.float32)


def paper_package(family: str, **overrides):
    """A model package of ``family`` at its paper's size (or changed by ``overrides``), freshly initialised (seed 0)."""
    from .models import build_generator, paper_defaults
    from .packages import ModelCard, ModelPackage

    kwargs = {**paper_defaults(family), **overrides}
    torch.manual_seed(SEED)
    generator = build_generator(family, **kwargs).eval()
    channels = ["confocal", "STED patch", "patch mask"] if family == "tagan-live" else ["confocal"]
    card = ModelCard(
        name=f"{family}-{'small' if overrides else 'paper-size'}", family=family, generator=kwargs,
        input_channels=channels, output_channels=["STED"], pixel_size_nm=20.0,
        normalization={"input": [PERCENTILE] + [{"mode": "none"}] * (len(channels) - 1),
                       "output": {"mode": "range", "range": [-1.0, 1.0]}},
        default_samples=10 if kwargs.get("dropout", 0) > 0 else 1,
    )
    return ModelPackage(card, generator, None, "benchmark")


def model_input(restorer, size: int) -> np.ndarray:
    """A size x size input with the channels the model takes (a live model gets an empty STED patch)."""
    confocal = field(size)
    if restorer.in_channels == 1:
        return confocal
    extra = [-np.ones_like(confocal)] * (restorer.in_channels - 1)  # "no STED revealed" as in the live loop
    return np.stack([confocal, *extra])


def _parameters(package) -> int:
    count = sum(p.numel() for p in package.generator.parameters())
    if package.task_network is not None:
        count += sum(p.numel() for p in package.task_network.parameters())
    return count


def _restore_call(restorer, image, **options) -> Callable[[], Any]:
    channel_axis = 0 if image.ndim == 3 else None
    return lambda: restorer.restore(image, channel_axis=channel_axis, seed=SEED, **options)


WARM_UP = [True]  # the quick smoke run skips warm-ups: the min of its repeats stands in


def _warm_up(restorer, device) -> None:
    if not WARM_UP[0]:
        return
    image = model_input(restorer, 2 * restorer.size_multiple if restorer.size_multiple > 32 else 64)
    _restore_call(restorer, image, samples=1)()
    sync_device(device)


# --- sections ------------------------------------------------------------------------------


def bench_throughput(packages: list[tuple[str, Any]], size: int, repeats: int, device,
                     precision: str = "fp32") -> list[dict]:
    """Megapixels per second of one deterministic restoration of a size x size field."""
    from .inference import Restorer

    rows = []
    for kind, package in packages:
        restorer = Restorer(package, device=device, precision=precision)
        image = model_input(restorer, size)
        _warm_up(restorer, device)
        timing = timed(_restore_call(restorer, image, samples=1), repeats, device)
        megapixels = size * size / 1e6
        rows.append({
            "kind": kind, "model": restorer.card.name, "family": restorer.card.family,
            "parameters": _parameters(restorer.package), "size": size, "precision": precision,
            "windows": _automatic_windows(restorer, size),
            **timing,
            "megapixels_per_s_best": megapixels / timing["min_s"],
            "megapixels_per_s_median": megapixels / timing["median_s"],
        })
    return rows


def _automatic_windows(restorer, size: int) -> int:
    """How many windows the automatic tiling gives a size x size image."""
    plans, _ = restorer.plan((size, size))
    return math.prod(len(plan.starts) for plan in plans)


def bench_tiling(package, size: int, repeats: int, device, tile_size: int | None = None,
                 precision: str = "fp32") -> dict:
    """Tiled (automatic or given tile) vs one-shot restoration of the same size x size field."""
    from .inference import Restorer

    restorer = Restorer(package, device=device, precision=precision)
    image = model_input(restorer, size)
    _warm_up(restorer, device)
    one_shot_tile = size + 2 * restorer.halo  # one window covers the whole image
    tiled_call = _restore_call(restorer, image, samples=1, tile_size=tile_size)
    one_shot_call = _restore_call(restorer, image, samples=1, tile_size=one_shot_tile)
    tiled_result, one_shot_result = tiled_call(), one_shot_call()
    tiled, one_shot = timed_pair(tiled_call, one_shot_call, repeats, device)
    scale = float(np.abs(one_shot_result.mean).max()) or 1.0
    return {
        "model": restorer.card.name, "size": size, "halo": restorer.halo,
        "tile_size": tiled_result.provenance["tile_size"], "tile_choice": "given" if tile_size else "automatic",
        "windows": _window_count(tiled_result), "computed_pixels": tiled_result.provenance["computed_pixels"],
        "precision": precision, "tiled": tiled, "one_shot": one_shot,
        "overhead_best": tiled["min_s"] / one_shot["min_s"],
        "overhead_median": tiled["median_s"] / one_shot["median_s"],
        "max_relative_difference": float(np.abs(tiled_result.mean - one_shot_result.mean).max()) / scale,
    }


def _window_count(result) -> int | None:
    return result.provenance.get("windows")


def bench_mc(package, size: int, samples: int, repeats: int, device, precision: str = "fp32",
             batch_size: int | None = None) -> dict:
    """N Monte-Carlo samples batched (the engine's automatic batch, or ``batch_size``) vs one per forward pass."""
    from .inference import Restorer

    restorer = Restorer(package, device=device, precision=precision)
    if not restorer.stochastic:
        raise NanoscopyError(f"The model '{restorer.card.name}' has no dropout, so it has no Monte-Carlo samples to time.")
    image = model_input(restorer, size)
    _warm_up(restorer, device)
    batched_call = _restore_call(restorer, image, samples=samples, batch_size=batch_size)
    sequential_call = _restore_call(restorer, image, samples=samples, batch_size=1)
    batch = batched_call().provenance["batch_size"]
    sequential_call()
    batched, sequential = timed_pair(batched_call, sequential_call, repeats, device)
    return {
        "model": restorer.card.name, "size": size, "samples": samples, "batch_size": batch,
        "precision": precision, "batched": batched, "sequential": sequential,
        "speedup_best": sequential["min_s"] / batched["min_s"],
        "speedup_median": sequential["median_s"] / batched["median_s"],
    }


def agreement(fast: np.ndarray, exact: np.ndarray) -> dict:
    """Max abs error and PSNR of ``fast`` against ``exact``, on the scale of ``exact``'s range."""
    scale = float(np.ptp(exact)) or 1.0
    error = (fast.astype(np.float64) - exact) / scale
    mse = float(np.mean(error**2))
    return {"max_abs_error": float(np.abs(error).max()), "psnr_db": 10 * math.log10(1 / mse) if mse else math.inf}


def bench_precision(packages: list[tuple[str, Any]], size: int, repeats: int, device) -> list[dict]:
    """bf16 vs fp32: time of one deterministic restoration and the bf16 output's agreement with fp32."""
    from .inference import Restorer
    from .network_runtime import bf16_problem

    problem = bf16_problem(device)
    if problem is not None:
        return [{"skipped": f"bf16 is not measured: {problem}"}]
    rows = []
    for kind, package in packages:
        exact_restorer = Restorer(package, device=device)
        fast_restorer = Restorer(exact_restorer.package, device=device, precision="bf16")
        image = model_input(exact_restorer, size)
        for restorer in (exact_restorer, fast_restorer):
            _warm_up(restorer, device)
        exact_call = _restore_call(exact_restorer, image, samples=1)
        fast_call = _restore_call(fast_restorer, image, samples=1)
        exact, fast = exact_call(), fast_call()
        fp32, bf16 = timed_pair(exact_call, fast_call, repeats, device)
        row = {"kind": kind, "model": exact_restorer.card.name, "family": exact_restorer.card.family, "size": size,
               "fp32": fp32, "bf16": bf16, "speedup_best": fp32["min_s"] / bf16["min_s"],
               "speedup_median": fp32["median_s"] / bf16["median_s"], "output": agreement(fast.mean, exact.mean)}
        if exact.task is not None:
            row["task"] = agreement(fast.task, exact.task)
        rows.append(row)
    return rows


_MEMORY_CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
from napari_nanoscopy.bench import field, paper_package, model_input
from napari_nanoscopy.inference import Restorer
from napari_nanoscopy.formats import load_model
model, size, device, threads, precision = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
torch.set_num_threads(threads)
package = paper_package(model[len("paper:"):]) if model.startswith("paper:") else load_model(model)
restorer = Restorer(package, device=device, precision=precision)
warm_up = model_input(restorer, min(size, 128))
restorer.restore(warm_up, channel_axis=None if restorer.in_channels == 1 else 0, samples=1)
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
try:  # forget the warm-up's high-water mark (Linux >= 4.0), so the peak is this restoration's
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    reset = status("VmHWM") <= status("VmRSS") + (1 << 20)
except OSError:
    reset = False
baseline = status("VmRSS") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
tile = field(min(size, 1024))
image = np.empty((size, size), dtype=np.float32)  # filled block by block: no temporary copies
for y in range(0, size, 1024):
    for x in range(0, size, 1024):
        block = image[y:y + 1024, x:x + 1024]
        block[...] = tile[:block.shape[0], :block.shape[1]]
if restorer.in_channels > 1:
    image = np.stack([image] + [-np.ones_like(image)] * (restorer.in_channels - 1))
start = time.perf_counter()
result = restorer.restore(image, channel_axis=None if image.ndim == 2 else 0, samples=1, seed=0)
seconds = time.perf_counter() - start
peak = status("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"model": restorer.card.name, "size": size, "input_bytes": image.nbytes,
                  "output_bytes": result.mean.nbytes, "baseline_bytes": baseline, "peak_bytes": peak,
                  "seconds": seconds, "tile_size": result.provenance["tile_size"],
                  "windows": result.provenance["windows"], "high_water_mark_reset": reset,
                  "computed_pixels": result.provenance["computed_pixels"], "precision": precision,
                  "activation_bytes_per_pixel": restorer.activation_bytes_per_pixel(),
                  "finite": bool(np.isfinite(result.mean).all())}))
"""


def bench_memory(model: str, size: int, device, precision: str = "fp32") -> dict:
    """Peak resident memory of one size x size float32 restoration in a fresh process."""
    command = [sys.executable, "-c", _MEMORY_CHILD, model, str(size), str(device), str(torch.get_num_threads()),
               precision]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise NanoscopyError(f"The memory benchmark's process failed: {completed.stderr.strip()[-500:]}")
    figures = json.loads(completed.stdout.strip().splitlines()[-1])
    extra = figures["peak_bytes"] - figures["baseline_bytes"]
    figures["peak_over_input"] = extra / figures["input_bytes"]
    figures["megapixels_per_s"] = size * size / 1e6 / figures["seconds"]
    return figures


def _conv_peak(device, size: int, repeats: int, seconds: float) -> dict:
    """Best FLOP/s of dense 3x3 convolutions (64, 128 and 256 channels) on this device, each
    timed over loops of about ``seconds``."""
    best = None
    for channels in (64, 128, 256):
        side = max(32, size * 64 // channels)
        conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False).to(device).eval()
        x = torch.randn(1, channels, side, side, device=device)
        with torch.inference_mode():
            conv(x)  # warm-up
            sync_device(device)
            start = time.perf_counter()
            conv(x)
            sync_device(device)
            loops = max(1, min(200, int(seconds / max(time.perf_counter() - start, 1e-6))))
            timing = timed(lambda: [conv(x) for _ in range(loops)], max(3, repeats), device)
        timing = {key: value / loops if key.endswith("_s") else value for key, value in timing.items()}
        flops = 2.0 * channels * channels * 9 * side * side
        row = {"channels": channels, "side": side, "flops": flops, **timing, "flops_per_s": flops / timing["min_s"]}
        if best is None or row["flops_per_s"] > best["flops_per_s"]:
            best = row
    return best


def count_flops(module: torch.nn.Module, x: torch.Tensor) -> float:
    """FLOPs (2 per multiply-add) of one forward pass, counted by torch's FLOP counter."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        module(x)
    return float(counter.get_total_flops())


def bench_roofline(families: list[str], size: int, repeats: int, device, conv_peak_s: float = 0.2) -> dict:
    """Achieved FLOP/s of each paper-size generator's forward pass vs the dense-convolution peak
    (each timed call of the peak loops its convolution for about ``conv_peak_s`` seconds)."""
    peak = _conv_peak(device, size, repeats, conv_peak_s)
    rows = []
    for family in families:
        package = paper_package(family)
        generator = package.generator.to(device).eval()
        torch.manual_seed(SEED)
        x = torch.randn(1, generator.in_channels, size, size, device=device)
        flops = count_flops(generator, x)
        with torch.inference_mode():
            generator(x)
            timing = timed(lambda: generator(x), repeats, device)
        achieved = flops / timing["min_s"]
        rows.append({"family": family, "size": size, "gflop_per_pass": flops / 1e9, **timing,
                     "flops_per_s": achieved, "roofline_ratio": achieved / peak["flops_per_s"]})
    return {"conv_peak": peak, "generators": rows}


def _script(name: str, arguments: list[str], timeout: float | None) -> dict:
    """Run a repository benchmark script with --json in its own process and return its figures."""
    path = BENCHMARKS_DIR / name
    if not path.is_file():
        return {"skipped": f"{path} is not here (it is part of a source checkout, not of the installed package)"}
    command = [sys.executable, str(path), *arguments, "--json"]
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"skipped": f"{name} ran longer than {timeout:.0f} s"}
    if completed.returncode != 0:
        return {"failed": completed.stderr.strip()[-800:]}
    text = completed.stdout
    start = text.find("{")
    if start < 0:
        return {"failed": f"{name} printed no JSON: {text[-300:]}"}
    figures = json.loads(text[start:])
    figures["command"] = " ".join(["python", f"benchmarks/{name}", *arguments, "--json"])
    return figures


# --- the whole run ---------------------------------------------------------------------------


@dataclass
class _Run:
    """What every benchmark section needs: the settings, the device and the models to measure."""

    plan: dict[str, Any]
    device: torch.device
    precision: str
    quick: bool
    size_given: bool
    say: Callable[[str], None]
    bundled: list[str]
    per_family: dict[str, str]  # the first bundled model of each family
    memory_model: str

    @property
    def chosen(self) -> list[str]:
        return self.bundled if self.plan["all_bundled"] else list(self.per_family.values())


def run_benchmarks(
    quick: bool = False,
    device: str | torch.device | None = "auto",
    sections: list[str] | tuple[str, ...] = tuple(SECTIONS),
    size: int | None = None,
    repeats: int | None = None,
    memory_size: int | None = None,
    memory_model: str = "l2l-twolabel",
    precision: str = "fp32",
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the benchmark ``sections`` and return their figures (JSON-serialisable)."""
    from .inference import PRECISIONS, resolve_device
    from .formats import load_model
    from .packages import bundled_model_names

    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise NanoscopyError(f"Unknown benchmark section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}.")
    plan = dict(QUICK if quick else FULL)
    # a 16384-px side is 1 GiB of float32 (the memory section holds several); 100 repeats take a day
    for name, value, low, high in (("size", size, 64, 16384), ("repeats", repeats, 1, 100),
                                   ("memory size", memory_size, 64, 16384)):
        if value is not None:
            check_int(f"The benchmark {name}", value, low, high)
    plan["size"] = size or plan["size"]
    plan["repeats"] = repeats or plan["repeats"]
    plan["memory_size"] = memory_size or plan["memory_size"]
    resolved = resolve_device(device)
    if precision not in PRECISIONS:
        raise NanoscopyError(f"The benchmark precision must be one of {', '.join(PRECISIONS)}, not {precision!r}.")
    WARM_UP[0] = plan["warm_up"]
    torch.manual_seed(SEED)
    np.random.seed(SEED)

    report: dict[str, Any] = {"machine": machine(resolved), "quick": quick, "seed": SEED,
                              "settings": {**{k: v for k, v in plan.items() if k != "live"}, "precision": precision}}
    started = time.perf_counter()
    bundled = bundled_model_names()
    per_family: dict[str, str] = {}
    for name in bundled:
        per_family.setdefault(load_model(name).card.family, name)
    run = _Run(plan, resolved, precision, quick, bool(size), progress or (lambda text: None), bundled, per_family,
               memory_model)
    for section, measure in _SECTION_RUNS.items():
        if section in sections:
            report[section] = measure(run)
    report["total_s"] = time.perf_counter() - started
    return report


def _throughput_section(run: _Run) -> dict:
    from .formats import load_model
    from .models import FAMILIES

    plan = run.plan
    run.say("throughput at paper size")
    rows = bench_throughput([("paper-size", paper_package(f)) for f in FAMILIES], plan["size"], plan["repeats"],
                            run.device, run.precision)
    run.say("throughput of the bundled models")
    rows += bench_throughput([("bundled", load_model(n)) for n in run.chosen], plan["size"], plan["repeats"],
                             run.device, run.precision)
    missing = [f for f in FAMILIES if f not in run.per_family]
    return {"rows": rows, "families_without_bundled_model": missing}


def _precision_section(run: _Run) -> list[dict]:
    from .formats import load_model
    from .models import FAMILIES

    run.say("bf16 vs fp32")
    families = ["tagan", "l2l"] if run.quick else list(FAMILIES)
    packages = [("paper-size", paper_package(f)) for f in families]
    packages += [("bundled", load_model(run.per_family[f])) for f in FAMILIES if f in run.per_family]
    return bench_precision(packages, run.plan["size"], run.plan["repeats"], run.device)


def _tiling_section(run: _Run) -> list[dict]:
    from .formats import load_model

    plan = run.plan
    run.say("tiling overhead")
    tiling_size = max(plan["tiling_size"], plan["size"] if run.size_given else 0)
    if run.quick:  # quick images are smaller than the automatic window: a given tile (2 x 2 windows)
        return [bench_tiling(paper_package("l2l", **QUICK_TILING_MODEL), tiling_size, plan["repeats"], run.device,
                             tiling_size // 2, run.precision)]
    return [bench_tiling(paper_package("tagan"), tiling_size, plan["repeats"], run.device, precision=run.precision),
            bench_tiling(load_model(run.per_family.get("tagan", run.bundled[0])), tiling_size, plan["repeats"],
                         run.device, precision=run.precision)]


def _mc_section(run: _Run) -> list[dict]:
    from .formats import load_model

    plan = run.plan
    run.say("Monte-Carlo batching")
    rows = [bench_mc(load_model(run.per_family["tagan"]), plan["mc_size"], plan["mc_samples"], plan["repeats"],
                     run.device, run.precision)]
    if not run.quick:
        rows.append(bench_mc(paper_package("tagan"), plan["mc_size"], plan["mc_samples"], plan["repeats"], run.device,
                             run.precision))
    return rows


def _memory_section(run: _Run) -> dict:
    size = run.plan["memory_size"]
    run.say(f"peak memory of a {size}x{size} restoration")
    return bench_memory(run.memory_model, size, run.device, run.precision)


def _roofline_section(run: _Run) -> dict:
    from .models import FAMILIES

    run.say("roofline")
    families = ["tagan", "l2l"] if run.quick else list(FAMILIES)
    return bench_roofline(families, run.plan["roofline_size"], run.plan["repeats"], run.device,
                          run.plan["conv_peak_s"])


def _optical_flow_section(run: _Run) -> dict:
    run.say("Horn-Schunck optical flow (benchmarks/optical_flow.py)")
    return _script("optical_flow.py", ["--size", str(run.plan["flow_size"]), "--repeats",
                                       str(run.plan["flow_repeats"])], _script_timeout(run))


def _live_latency_section(run: _Run) -> dict:
    run.say("live decision latency (benchmarks/live_latency.py)")
    live = run.plan["live"]
    arguments = ["--models", "bundled", "--size", str(live["size"]), "--frames", str(live["frames"]),
                 "--samples", str(live["samples"]), "--device", str(run.device)]
    if run.quick:
        arguments += ["--roi", str(live["size"] // 2), "--patch", str(live["size"] // 4)]
    return _script("live_latency.py", arguments, _script_timeout(run))


def _script_timeout(run: _Run) -> float | None:
    return 300.0 if run.quick else None


# in the order of SECTIONS
_SECTION_RUNS: dict[str, Callable[[_Run], Any]] = {
    "throughput": _throughput_section,
    "precision": _precision_section,
    "tiling": _tiling_section,
    "mc": _mc_section,
    "memory": _memory_section,
    "roofline": _roofline_section,
    "optical_flow": _optical_flow_section,
    "live_latency": _live_latency_section,
}
