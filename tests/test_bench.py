"""`napari-nanoscopy bench --quick --json` as a smoke test: structure and sane numbers, no timing limits."""

import json
import math

import numpy as np
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
    for r in report["precision"]:  # bf16 vs fp32, where this CPU has bfloat16
        assert "skipped" in r or (positive(r["speedup_best"]) and r["output"]["max_abs_error"] < 0.1
                                  and r["output"]["psnr_db"] > 30)
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


@pytest.mark.parametrize("name", ["tagan", "tagan-task"])
def test_automatic_tiling_with_trimmed_edge_windows_matches_one_shot(packages_dir, smooth_image, monkeypatch, name):
    """The automatic plan (even cores, edge windows cut to core + halo, batches of one shape) is exact."""
    from napari_nanoscopy import inference
    from napari_nanoscopy.inference import Restorer

    image = np.concatenate([smooth_image, smooth_image[::-1]], axis=0)  # 320 x 176
    restorer = Restorer(str(packages_dir / name), device="cpu")
    one_shot = restorer.restore(image, samples=1, tile_size=512)
    assert one_shot.provenance["windows"] == 1
    monkeypatch.setitem(inference.BATCH_PIXELS, "cpu", 200 * 176)  # forces row bands
    shapes, steps = [], []
    restorer.network.register_forward_hook(lambda module, args, out: shapes.append(tuple(args[0].shape)))
    tiled = restorer.restore(image, samples=1, progress=lambda done, total: steps.append((done, total)))
    assert tiled.provenance["windows"] > 1 and len({s[-2:] for s in shapes}) > 1  # edge windows are shorter
    assert all(s[-2] * s[-1] <= 200 * 176 for s in shapes)
    assert steps[-1][0] == steps[-1][1] == len(shapes)
    scale = np.abs(one_shot.mean).max()
    assert np.abs(tiled.mean - one_shot.mean).max() <= 1e-4 * scale
    if one_shot.task is not None:
        assert np.abs(tiled.task - one_shot.task).max() <= 1e-4 * np.abs(one_shot.task).max()
    mc = restorer.restore(image, samples=3, seed=0, keep_samples=True)  # MC samples through the same plan
    assert mc.samples.shape == (3,) + image.shape and np.isfinite(mc.std).all() and mc.std.max() > 0
