"""The benchmark report (from :func:`napari_nanoscopy.bench.run_benchmarks`) as Markdown text, one
function per section."""

from __future__ import annotations

from typing import Any, Callable


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def _machine(report: dict[str, Any]) -> list[str]:
    m = report["machine"]
    return [
        f"machine: {m['cpu']} ({m['architecture']}), {m['cores_available']} core(s) available, "
        f"{m['torch_threads']} torch threads, torch {m['torch']}, device {m['device']}"
        + (f" ({m['cuda_device']})" if m.get("cuda_device") else "")
        + (f", load average {m['load_average_1min_at_start']} at start" if "load_average_1min_at_start" in m else ""),
        f"{'quick smoke run' if report['quick'] else 'full run'}, {report['settings']['precision']}, seed {report['seed']}, "
        f"{report['settings']['repeats']} repeat(s) after a warm-up; total {report['total_s']:.0f} s",
    ]


def _throughput(report: dict[str, Any]) -> list[str]:
    lines = ["", "Restoration throughput (one deterministic pass)", "",
              "| kind | model | parameters | input | windows | min s | median s | Mpx/s (best) | Mpx/s (median) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in report["throughput"]["rows"]:
        lines.append(f"| {r['kind']} | {r['model']} | {r['parameters'] / 1e6:.2f} M | {r['size']}x{r['size']} | "
                     f"{r['windows']} | {_fmt(r['min_s'])} | {_fmt(r['median_s'])} | "
                     f"{_fmt(r['megapixels_per_s_best'])} | {_fmt(r['megapixels_per_s_median'])} |")
    if report["throughput"]["families_without_bundled_model"]:
        lines.append(f"(no bundled model of: {', '.join(report['throughput']['families_without_bundled_model'])})")
    return lines


def _precision(report: dict[str, Any]) -> list[str]:
    lines = ["", "bf16 vs fp32 (one deterministic pass; errors on the scale of the fp32 output's range)", ""]
    rows = report["precision"]
    if rows and "skipped" in rows[0]:
        lines.append(rows[0]["skipped"])
    else:
        lines += ["| kind | model | input | fp32 min s | bf16 min s | speed-up (best / median) | max abs error "
                  "| PSNR dB | task max abs error | task PSNR dB |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            task = r.get("task")
            lines.append(f"| {r['kind']} | {r['model']} | {r['size']}x{r['size']} | {_fmt(r['fp32']['min_s'])} | "
                         f"{_fmt(r['bf16']['min_s'])} | {r['speedup_best']:.2f}x / {r['speedup_median']:.2f}x | "
                         f"{r['output']['max_abs_error']:.4f} | {r['output']['psnr_db']:.1f} | "
                         + (f"{task['max_abs_error']:.4f} | {task['psnr_db']:.1f} |" if task else "- | - |"))
    return lines


def _tiling(report: dict[str, Any]) -> list[str]:
    lines = ["", "Tiling overhead (tiled / one-shot time, same pixels)", "",
              "| model | input | tile | windows | computed px | tiled min / median s | one-shot min / median s "
              "| overhead (best) | overhead (median) | max rel. difference |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["tiling"]:
        lines.append(f"| {r['model']} | {r['size']}x{r['size']} | {r['tile_size']} ({r['tile_choice']}) | "
                     f"{r['windows'] if r['windows'] is not None else '-'} | {r['computed_pixels']:.2f} | "
                     f"{_fmt(r['tiled']['min_s'])} / {_fmt(r['tiled']['median_s'])} | "
                     f"{_fmt(r['one_shot']['min_s'])} / {_fmt(r['one_shot']['median_s'])} | "
                     f"{r['overhead_best']:.3f} | {r['overhead_median']:.3f} | {r['max_relative_difference']:.1e} |")
    return lines


def _mc(report: dict[str, Any]) -> list[str]:
    lines = ["", "Monte-Carlo samples: batched vs sequential forward passes", "",
              "| model | input | samples | batch | batched min / median s | sequential min / median s "
              "| speed-up (best) | speed-up (median) |", "|---|---|---|---|---|---|---|---|"]
    for r in report["mc"]:
        lines.append(f"| {r['model']} | {r['size']}x{r['size']} | {r['samples']} | {r['batch_size']} | "
                     f"{_fmt(r['batched']['min_s'])} / {_fmt(r['batched']['median_s'])} | "
                     f"{_fmt(r['sequential']['min_s'])} / {_fmt(r['sequential']['median_s'])} | "
                     f"{r['speedup_best']:.2f}x | {r['speedup_median']:.2f}x |")
    return lines


def _memory(report: dict[str, Any]) -> list[str]:
    r = report["memory"]
    lines = ["", f"Peak memory: {r['model']}, {r['size']}x{r['size']} float32 "
                  f"({r['input_bytes'] / 2**20:.0f} MiB input), {r['seconds']:.1f} s: "
                  f"peak {r['peak_bytes'] / 2**20:.0f} MiB resident, {r['baseline_bytes'] / 2**20:.0f} MiB before "
                  f"the input existed; peak / input = {r['peak_over_input']:.2f} ({r['windows']} windows computing "
                  f"{r['computed_pixels']:.2f}x the pixels, {r['activation_bytes_per_pixel']:.0f} activation bytes "
                  f"per window pixel, {r['precision']})"]
    return lines


def _roofline(report: dict[str, Any]) -> list[str]:
    peak = report["roofline"]["conv_peak"]
    lines = ["", f"Roofline: dense 3x3 convolution peak {peak['flops_per_s'] / 1e9:.1f} GFLOP/s "
                  f"({peak['channels']} channels, {peak['side']}x{peak['side']})", "",
              "| generator (paper size) | input | GFLOP / pass | min s | GFLOP/s | ratio to peak |",
              "|---|---|---|---|---|---|"]
    for r in report["roofline"]["generators"]:
        lines.append(f"| {r['family']} | {r['size']}x{r['size']} | {r['gflop_per_pass']:.2f} | {_fmt(r['min_s'])} | "
                     f"{r['flops_per_s'] / 1e9:.1f} | {r['roofline_ratio']:.2f} |")
    return lines


def _optical_flow(report: dict[str, Any]) -> list[str]:
    r = report["optical_flow"]
    lines = ["", "Horn-Schunck optical flow (benchmarks/optical_flow.py)"]
    if "speedup_9_pairs" in r:
        lines.append(f"{r['images']}: reference {_fmt(r['reference_9_pairs']['min_s'])} s, ours "
                     f"{_fmt(r['ours_9_pairs']['min_s'])} s (min), speed-up {r['speedup_9_pairs']:.1f}x; "
                     f"1 pair 1 thread {r['speedup_1_pair_1_thread']:.1f}x; agree to 1e-5: {r['agree_to_1e-5']}")
    else:
        lines.append(str(r))
    return lines


def _live_latency(report: dict[str, Any]) -> list[str]:
    r = report["live_latency"]
    lines = ["", "Live decision latency (benchmarks/live_latency.py)"]
    if "latency_s" in r:
        lines.append(f"{r['models']['generator']} / {r['models']['segmenter']}, {r['field']}")
        lines += ["", "| step | min s | median s |", "|---|---|---|"]
        for step, t in r["latency_s"].items():
            lines.append(f"| {step} | {_fmt(t['min_s'])} | {_fmt(t['median_s'])} |")
    else:
        lines.append(str(r))
    return lines


# in the order the sections run (bench.SECTIONS)
SECTION_LINES: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "throughput": _throughput,
    "precision": _precision,
    "tiling": _tiling,
    "mc": _mc,
    "memory": _memory,
    "roofline": _roofline,
    "optical_flow": _optical_flow,
    "live_latency": _live_latency,
}


def format_report(report: dict[str, Any]) -> str:
    """The figures as Markdown tables."""
    lines = _machine(report)
    for section, section_lines in SECTION_LINES.items():
        if section in report:
            lines += section_lines(report)
    return "\n".join(lines)
