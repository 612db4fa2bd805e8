"""`napari-nanoscopy bench --quick --json` as a smoke test: structure and sane numbers, no timing limits."""

import json
import math

import pytest

from napari_nanoscopy.bench import SECTIONS, run_benchmarks
from napari_nanoscopy.cli import main
from napari_nanoscopy.errors import NanoscopyError


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_bench_quick_json(capsys):
    assert main(["bench", "--quick", "--json", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    machine = report["machine"]
    assert machine["cores_available"] >= 1 and machine["torch_threads"] >= 1 and machine["torch"] and machine["cpu"]
    assert machine["device"] == "cpu" and report["quick"] is True
    assert set(SECTIONS) <= set(report)

    rows = report["throughput"]["rows"]
    assert {r["kind"] for r in rows} == {"paper-size", "bundled"}
    assert {r["family"] for r in rows if r["kind"] == "paper-size"} == {"tagan", "tagan-live", "tcan", "wang", "l2l"}
    for r in rows:
        assert r["min_s"] <= r["median_s"] and all(positive(r[k]) for k in
                                                   ("min_s", "median_s", "megapixels_per_s_best", "parameters"))
    for r in report["tiling"]:
        assert positive(r["overhead_best"]) and positive(r["overhead_median"]) and r["windows"] > 1
        assert r["max_relative_difference"] <= 1e-4  # tiled == one-shot
    for r in report["mc"]:
        assert positive(r["speedup_best"]) and r["batch_size"] >= 1 and r["samples"] > 1
    memory = report["memory"]
    assert positive(memory["peak_over_input"]) and memory["finite"] and memory["peak_bytes"] >= memory["baseline_bytes"]
    roofline = report["roofline"]
    assert positive(roofline["conv_peak"]["flops_per_s"])
    assert all(positive(r["roofline_ratio"]) and positive(r["gflop_per_pass"]) for r in roofline["generators"])
    flow = report["optical_flow"]
    assert "skipped" in flow or (flow["agree_to_1e-5"] and positive(flow["speedup_9_pairs"]))
    live = report["live_latency"]
    assert "skipped" in live or positive(live["latency_s"]["decision_total"]["min_s"])


def test_bench_rejects_bad_settings():
    with pytest.raises(NanoscopyError, match="section"):
        run_benchmarks(quick=True, sections=["speed"])
    with pytest.raises(NanoscopyError, match="repeats"):
        run_benchmarks(quick=True, sections=["memory"], repeats=0)
