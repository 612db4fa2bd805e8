"""The live-assist pipeline on the simulator: Table 1 steps, recording, dose budget, faults, resume, CLI.

The models are tiny TA-GAN Live / U-Net-Live packages with random weights, built here: these
tests check the loop's mechanics and bookkeeping, which do not depend on what a model learnt.
"""

import json

import numpy as np
import pytest
import torch

from napari_nanoscopy.errors import NanoscopyError
from napari_nanoscopy.network_runtime import bf16_problem as _bf16_problem
from napari_nanoscopy.io import read_image
from napari_nanoscopy.live import (
    CONFOCAL,
    STED,
    DoseBudget,
    FaultInjectingAdapter,
    read_session,
    session_layers,
)
from napari_nanoscopy.live.pipeline import LivePipeline
from napari_nanoscopy.live.policies import Decision, DicePolicy, Policy
from napari_nanoscopy.live.recorder import get_session_reader
from napari_nanoscopy.live.runner import DECISION_STEPS, STEPS
from napari_nanoscopy.live.settings import LiveSettings
from napari_nanoscopy.live.simulator import SimulatorAdapter
from napari_nanoscopy.models import build_generator, build_task_network
from napari_nanoscopy.packages import ModelCard, save_model

PERCENTILE = {"mode": "percentile", "low": 1.0, "high": 99.8, "range": [-1.0, 1.0]}
IDENTITY = dict(in_channels=1, out_channels=1, base_filters=1, depth=1, kernel_size=1, convs_per_level=1,
                residual=True, dropout=0.0)
FIELD, ROI, PATCH = 96, 48, 24


@pytest.fixture(scope="session")
def live_models(tmp_path_factory):
    """A tiny TA-GAN Live generator and a tiny U-Net-Live segmenter (random weights)."""
    root = tmp_path_factory.mktemp("live-models")
    torch.manual_seed(0)
    kwargs = dict(in_channels=3, out_channels=1, ngf=4, n_blocks=1, dropout=0.5)
    generator_card = ModelCard(
        name="tiny-tagan-live", family="tagan-live", generator=kwargs,
        input_channels=["confocal", "STED patch", "patch mask"], output_channels=["STED"], pixel_size_nm=20.0,
        normalization={"input": [PERCENTILE, {"mode": "none"}, {"mode": "none"}],
                       "output": {"mode": "range", "range": [-1.0, 1.0]}, "sted_patch": PERCENTILE},
        default_samples=10,
    )
    save_model(root / "generator", generator_card, build_generator("tagan-live", **kwargs), None)
    identity = build_generator("l2l", **IDENTITY)
    torch.nn.init.zeros_(identity.final.weight)
    torch.nn.init.zeros_(identity.final.bias)
    task_kwargs = dict(ngf=4, n_down=3)
    segmenter_card = ModelCard(
        name="tiny-unet-live", family="l2l", generator=IDENTITY, task_network={"kind": "unet128", "kwargs": task_kwargs},
        task={"kind": "segmentation", "outputs": ["rings", "fibres"], "thresholds": [-0.5294, -0.5294]},
        input_channels=["STED"], output_channels=["STED"], pixel_size_nm=20.0,
        normalization={"input": PERCENTILE, "output": {"mode": "range", "range": [-1.0, 1.0]}},
    )
    save_model(root / "segmenter", segmenter_card, identity, build_task_network("unet128", **task_kwargs))
    return root / "generator", root / "segmenter"


def settings(live_models, **overrides):
    generator, segmenter = live_models
    values = dict(samples=3, patch=PATCH, roi=ROI, generator=str(generator), segmenter=str(segmenter), device="cpu",
                  flow_iterations=10, seed=1)
    values.update(overrides)
    return LiveSettings(**values)


class Scripted(Policy):
    """Triggers on the listed frames (the pipeline's bookkeeping does not depend on why)."""

    name = "dice"

    def __init__(self, frames):
        super().__init__(0.5)
        self.frames, self.frame = set(frames), -1

    def decide(self, outputs, binarisation, reference):
        self.frame += 1
        trigger = self.frame in self.frames
        return Decision("scripted", float(trigger), 0.5, trigger, "scripted",
                        {"mean_segmentation": outputs.mean(axis=0) > binarisation})


class DiskChecking(FaultInjectingAdapter):
    """Checks, before each acquisition, that every earlier frame is already on disk and logged."""

    def __init__(self, inner, folder, faults=None, **kwargs):
        super().__init__(inner, faults, **kwargs)
        self.folder, self.completed = folder, 0

    def _acquire(self, modality, region):
        if self.folder.exists():
            files = list((self.folder / "frames").glob("*.ome.tif"))
            logged = [r for r in read_session(self.folder).records if r["type"] == "acquisition"]
            assert len(files) == len(logged) == self.completed
        result = super()._acquire(modality, region)
        return result

    def acquire(self, modality, region=None, **kwargs):
        frame = super().acquire(modality, region, **kwargs)
        self.completed += 1
        return frame


def simulator(frames=3, stimulus=1, seed=2):
    return SimulatorAdapter(frames, stimulus, size=FIELD, seed=seed)


def test_one_step_per_table_1_row_and_everything_recorded(live_models, tmp_path):
    out = tmp_path / "session"
    adapter = DiskChecking(simulator(), out)
    seen = []
    pipeline = LivePipeline(adapter, out, settings(live_models, keep_extras=True), on_frame=seen.append)
    summary = pipeline.run(3)
    pipeline.close()
    assert summary["state"] == "done" and summary["frames"] == 3 and summary["faults"] == 0
    assert summary["references"] == 2 and summary["remodelling"]["onsets"] == [1]
    assert set(summary["latency_s"]) == {*STEPS, "decision_total"}

    session = read_session(out)
    kinds = [(a["kind"], a["modality"]) for a in session.acquisitions]
    # initial reference, then per frame a confocal and a STED patch, then the final reference
    assert kinds == [("reference", STED)] + [("confocal", CONFOCAL), ("patch", STED)] * 3 + [("reference", STED)]
    assert adapter.completed == len(session.acquisitions) == len(list((out / "frames").glob("*.ome.tif")))
    for acquisition in session.acquisitions:
        image = read_image(out / acquisition["file"])
        assert image.pixel_size_nm == pytest.approx(20.0)
        assert image.data.shape == tuple(acquisition["region"][2:])
        assert image.metadata["dose_photons"] == acquisition["dose_photons"] > 0
        assert acquisition["started"] <= acquisition["finished"]
    roi = (ROI // 2, ROI // 2, ROI, ROI)
    assert all(a["region"] == list(roi) for a in session.acquisitions if a["kind"] == "reference")
    decisions = session.records_of("decision")
    assert [d["frame"] for d in decisions] == [0, 1, 2]
    for decision in decisions:
        y0, x0, h, w = decision["patch"]
        assert (h, w) == (PATCH, PATCH) and y0 % PATCH == 0 and x0 % PATCH == 0
        assert y0 + h <= roi[0] or y0 >= roi[0] + ROI or x0 + w <= roi[1] or x0 >= roi[1] + ROI  # outside the ROI
        assert set(decision["latency_s"]) == {*STEPS, "decision_total"}
        assert decision["latency_s"]["decision_total"] == pytest.approx(sum(decision["latency_s"][s] for s in DECISION_STEPS))
        assert decision["models_sha256"]["generator"] == pipeline.generator_card.weights_sha256
        samples = np.load(out / decision["extras"]["samples"])
        assert samples.shape == (3, FIELD, FIELD)
    assert len(seen) == 3 and seen[0].synthetic.shape == (FIELD, FIELD) and seen[0].segmentation.shape == (ROI, ROI)
    # dose: the budget's count equals the sum over the recorded frames
    assert summary["dose_photons"] == pytest.approx(sum(a["dose_photons"] for a in session.acquisitions))
    session_json = json.loads((out / "session.json").read_text())
    assert session_json["models"]["segmenter"]["name"] == "tiny-unet-live"
    assert json.loads((out / "summary.json").read_text())["frames"] == 3

    layers = get_session_reader(str(out))(str(out))
    names = [kwargs["name"] for _, kwargs, _ in layers]
    assert names == ["confocal", "STED"]
    confocal, kwargs, _ = layers[0]
    assert confocal.shape == (3, FIELD, FIELD) and kwargs["scale"] == (1.0, 20.0, 20.0)
    # one STED plane per frame: the initial reference at frame 0, the final one at frame 2, none at frame 1
    assert layers[1][0].shape == (3, ROI, ROI) and layers[1][1]["translate"] == (0.0, 24 * 20.0, 24 * 20.0)
    assert layers[1][1]["metadata"]["sted_frames"] == [0, 2] and np.isnan(layers[1][0][1]).all()
    assert get_session_reader(str(tmp_path)) is None


def test_the_patch_goes_where_the_samples_disagree_most(live_models, tmp_path):
    pipeline = LivePipeline(simulator(frames=1), tmp_path / "s", settings(live_models, disparity="std", keep_extras=True),
                            on_frame=lambda r: results.append(r))
    results = []
    pipeline.run(1)
    result = results[0]
    blocks = result.disparity.reshape(4, PATCH, 4, PATCH).mean(axis=(1, 3))
    blocks[1:3, 1:3] = -np.inf  # the ROI is never chosen
    row, col = np.unravel_index(np.argmax(blocks), blocks.shape)
    assert result.patch == (row * PATCH, col * PATCH, PATCH, PATCH)


def test_triggered_sted_becomes_the_reference_and_the_budget_declines_the_rest(live_models, tmp_path):
    out = tmp_path / "s"
    budget = DoseBudget(max_sted_frames=3)  # initial reference + 2 triggers; the final reference is refused
    pipeline = LivePipeline(simulator(frames=4), out, settings(live_models), budget=budget)
    pipeline.policy = Scripted({0, 1, 2})
    summary = pipeline.run(4)
    assert summary["triggered_frames"] == [0, 1]
    assert summary["declined"] == [2]
    assert summary["state"] == "done"  # every frame ran; only the final reference did not fit
    assert "allows 3 full STED" in summary["final_reference_declined"]
    session = read_session(out)
    steds = [a for a in session.acquisitions if a["kind"] in ("sted", "reference")]
    assert len(steds) == 3 == budget.sted_frames()
    assert [r["when"] for r in session.records_of("reference")] == ["initial", "trigger", "trigger"]
    declined = session.records_of("decision")[2]
    assert declined["trigger"] and not declined["sted_acquired"] and "allows 3 full STED" in declined["declined"]
    assert summary["sted_fraction"] == pytest.approx(0.5)
    # dose relative to a STED of the ROI at every frame: 2 triggers + 4 patches of a quarter ROI (+ confocal)
    assert summary["dose_relative_to_sted_every_frame"] == pytest.approx((2 + 4 * 0.25) / 4, rel=1e-3)


class Watching(DicePolicy):
    """The real dice policy, remembering the reference it was given; triggers on the listed frames."""

    def __init__(self, frames):
        super().__init__(0.5)
        self.frames, self.seen = set(frames), []

    def decide(self, outputs, binarisation, reference):
        decision = super().decide(outputs, binarisation, reference)
        self.seen.append({"reference": None if reference is None else reference.copy(), "score": decision.score,
                          "mean": decision.maps["mean_segmentation"].copy()})
        decision.trigger = len(self.seen) - 1 in self.frames
        return decision


def test_the_synthetic_reference_is_the_segmentation_of_the_frame_of_the_last_real_sted(live_models, tmp_path):
    out = tmp_path / "s"
    options = dict(reference="synthetic", final_reference=False)
    first = LivePipeline(simulator(frames=4), out, settings(live_models, **options))
    first.binarisation = -0.045  # mid-range of the random tiny segmenter's outputs: masks neither empty nor full
    first.policy = watching = Watching({1})
    first.on_frame = lambda result: first.request_stop() if result.frame == 2 else None
    assert first.run(4)["state"] == "stopped"
    first.close()
    seen = watching.seen
    masks = [view["mean"] for view in seen]
    assert 0 < np.count_nonzero(masks[0]) < masks[0].size and not np.array_equal(masks[0], masks[1])
    # frame 0 is the time point of the initial STED: its own synthetic segmentation is the reference
    np.testing.assert_array_equal(seen[0]["reference"], masks[0])
    assert seen[0]["score"] == 1.0
    np.testing.assert_array_equal(seen[1]["reference"], masks[0])
    # the STED triggered at frame 1 bleached the ROI: the new reference comes from a confocal
    # taken right after it (charged to the budget as a confocal)
    session = read_session(out)
    after = [a for a in session.acquisitions if a["kind"] == "after_sted_confocal"]
    assert [a["frame"] for a in after] == [1] and after[0]["index"] > session.records_of("reference")[1]["index"]
    assert sum(c["kind"] == "confocal" for c in first.budget.charges) == 3 + 1
    assert [r["frame"] for r in session.records_of("synthetic_reference")] == [0, 1]
    np.testing.assert_array_equal(seen[2]["reference"], session.reference_mask(1))
    assert not np.array_equal(session.reference_mask(1), masks[1])  # not the pre-STED segmentation
    assert all(d["reference"] == "synthetic" for d in session.records_of("decision"))
    second = LivePipeline(simulator(frames=4), out, settings(live_models, **options), resume=True)
    np.testing.assert_array_equal(second.synthetic_reference, seen[2]["reference"])  # rebuilt from disk
    second.close()

    paper = LivePipeline(simulator(frames=1), tmp_path / "p", settings(live_models, final_reference=False))
    paper.policy = watching = Watching(set())
    paper.run(1)
    paper.close()
    np.testing.assert_array_equal(watching.seen[0]["reference"], paper.reference_mask)  # the real STED's


def test_a_window_budget_counts_only_recent_sted_frames():
    budget = DoseBudget(max_sted_frames=1, window_frames=2)
    budget.charge("sted", 1.0, 0)
    assert budget.refusal("sted", 1.0, 1) is not None
    assert budget.refusal("sted", 1.0, 2) is None  # frame 0 left the window
    windowed = DoseBudget(max_dose_photons=10.0, window_frames=3)
    windowed.charge("confocal", 8.0, 0)
    assert windowed.refusal("patch", 5.0, 2) is not None and windowed.refusal("patch", 5.0, 3) is None
    budget = DoseBudget(max_dose_photons=10.0)
    budget.charge("confocal", 6.0, 0)
    with pytest.raises(NanoscopyError, match="refused"):
        budget.charge("patch", 5.0, 0)
    assert budget.dose_photons == 6.0
    with pytest.raises(NanoscopyError, match="whole number"):
        DoseBudget(max_sted_frames=-1)


@pytest.mark.parametrize("kind", ["raise", "disconnect", "hang"])
def test_a_fault_mid_frame_goes_to_the_safe_state_loses_no_frame_and_the_session_resumes(kind, live_models, tmp_path):
    out = tmp_path / "s"
    # acquisitions: 0 initial reference, 1 confocal f0, 2 patch f0, 3 confocal f1, 4 patch f1 (fault) ...
    adapter = DiskChecking(simulator(), out, {4: kind}, hang_s=30.0, timeout_s=10.0)
    pipeline = LivePipeline(adapter, out, settings(live_models))
    summary = pipeline.run(3)
    assert summary["state"] == "faulted" and summary["faults"] == 1 and summary["frames"] == 1
    assert adapter.safe_state_calls >= 1
    session = read_session(out)
    fault = session.records_of("fault")[0]
    assert fault["frame"] == 1 and fault["step"] == "4_sted_patch" and fault["safe_state"]
    assert len(session.acquisitions) == 4 == adapter.completed  # every acquired frame is on disk
    assert json.loads((out / "summary.json").read_text())["state"] == "faulted"

    adapter.release()
    adapter.reconnect()
    for _ in range(500):
        if not adapter.busy:
            break
        import time

        time.sleep(0.02)
    summary = pipeline.resume(3)
    pipeline.close()
    assert summary["state"] == "done" and summary["frames"] == 3 and summary["faults"] == 1
    session = read_session(out)
    assert [d["frame"] for d in session.records_of("decision")] == [0, 1, 2]
    assert [r["type"] for r in session.records].count("resume") == 1
    assert len(session.acquisitions) == adapter.completed == len(list((out / "frames").glob("*.ome.tif")))


def test_the_dose_budget_holds_under_repeated_faults(live_models, tmp_path):
    sim = simulator(frames=6)
    sted_roi = sim.estimate_dose(STED, (24, 24, ROI, ROI))
    budget = DoseBudget(max_sted_frames=2, max_dose_photons=3.2 * sted_roi)
    adapter = FaultInjectingAdapter(sim, {1: "raise", 4: "raise", 7: "raise"}, timeout_s=30.0)
    pipeline = LivePipeline(adapter, tmp_path / "s", settings(live_models), budget=budget)
    pipeline.policy = Scripted(set(range(20)))  # always wants a full STED
    states = [pipeline.run(6)["state"]]
    while states[-1] == "faulted" and len(states) < 10:
        states.append(pipeline.resume(6)["state"])
    pipeline.close()
    assert "faulted" in states and states[-1] in ("done", "budget exhausted")
    assert adapter.exposed_dose <= budget.max_dose_photons  # photons actually sent, failed acquisitions included
    assert budget.dose_photons <= budget.max_dose_photons
    steds = [a for a in read_session(tmp_path / "s").acquisitions if a["kind"] in ("sted", "reference")]
    assert len(steds) <= 2


def test_a_stopped_session_resumes_from_disk_with_its_reference_and_budget(live_models, tmp_path):
    out = tmp_path / "s"
    first = LivePipeline(simulator(frames=3), out, settings(live_models, final_reference=False), budget=DoseBudget(max_sted_frames=5))
    first.on_frame = lambda result: first.request_stop() if result.frame == 0 else None
    summary = first.run(3)
    first.close()
    assert summary["state"] == "stopped" and summary["frames"] == 1
    reference = first.reference_mask.copy()
    spent = first.budget.dose_photons

    budget = DoseBudget(max_sted_frames=5)
    second = LivePipeline(simulator(frames=3), out, settings(live_models, final_reference=False), budget=budget, resume=True)
    assert second.next_frame == 1 and second.initial_done
    np.testing.assert_array_equal(second.reference_mask, reference)
    assert budget.dose_photons == pytest.approx(spent)
    summary = second.run(3)
    second.close()
    assert summary["state"] == "done" and [d["frame"] for d in read_session(out).records_of("decision")] == [0, 1, 2]
    with pytest.raises(NanoscopyError, match="not empty"):
        LivePipeline(simulator(frames=1), out, settings(live_models))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(policy="always"), "dice, variability"),
        (dict(samples=1), "at least 2"),
        (dict(disparity="ssim"), "optical-flow, std"),
        (dict(patch=8), "smaller than the 16 px"),
        (dict(roi=96), "no place for the STED patch"),
        (dict(segment_class="spines"), "rings, fibres"),
        (dict(threshold=2.0), "from 0 to 1"),
        (dict(reference="last"), "sted, synthetic"),
        (dict(policy="variability", reference="synthetic"), "compares with no reference"),
        (dict(precision="fp16"), "fp32, bf16"),
    ],
)
def test_bad_live_settings_are_refused(overrides, message, live_models, tmp_path):
    with pytest.raises(NanoscopyError, match=message):
        LivePipeline(simulator(frames=1), tmp_path / "s", settings(live_models, **overrides))


@pytest.mark.skipif(_bf16_problem(torch.device("cpu")) is not None, reason="no native bfloat16 on this CPU")
def test_bf16_runs_both_networks_in_bfloat16_and_scores_like_fp32(live_models, tmp_path):
    scores = {}
    for precision in ("fp32", "bf16"):
        pipeline = LivePipeline(simulator(frames=2), tmp_path / precision, settings(live_models, precision=precision))
        assert pipeline.generator.dtype == pipeline.segmenter.dtype == (
            torch.bfloat16 if precision == "bf16" else torch.float32)
        assert pipeline.run(2)["state"] == "done"
        pipeline.close()
        scores[precision] = [d["score"] for d in read_session(tmp_path / precision).records_of("decision")]
    assert len(scores["bf16"]) == 2
    assert scores["bf16"] == pytest.approx(scores["fp32"], abs=0.05)


def test_models_must_be_a_live_generator_and_a_segmenter(live_models, tmp_path):
    generator, segmenter = live_models
    with pytest.raises(NanoscopyError, match="3 channels"):
        LivePipeline(simulator(frames=1), tmp_path / "a", settings(live_models, generator=str(segmenter)))
    with pytest.raises(NanoscopyError, match="no segmentation outputs"):
        LivePipeline(simulator(frames=1), tmp_path / "b", settings(live_models, segmenter=str(generator)))


def test_cli_runs_the_simulator_and_prints_a_json_summary(live_models, tmp_path, capsys):
    from napari_nanoscopy.cli import main

    generator, segmenter = live_models
    out = tmp_path / "cli"
    code = main(["live", "--adapter", "simulator", "--policy", "variability", "--frames", "2", "--out", str(out),
                 "--seed", "3", "--size", "64", "--roi", "32", "--patch", "16", "--samples", "2",
                 "--disparity", "std", "--generator", str(generator), "--segmenter", str(segmenter), "--device", "cpu"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["frames"] == 2 and summary["policy"] == "variability"
    assert {"sted_acquisitions", "dose_relative_to_sted_every_frame", "remodelling"} <= set(summary)
    assert summary["remodelling"]["onsets"] == [2] or summary["remodelling"]["onsets"] == []
    assert read_session(out).summary["frames"] == 2
    assert main(["live", "--read", str(out)]) == 0
    read_back = json.loads(capsys.readouterr().out)
    assert read_back["frames"] == 2 and read_back["state"] == "done"
    assert read_back["triggered_frames"] == summary["triggered_frames"]
    assert read_back["dose_photons"] == pytest.approx(summary["dose_photons"])
    assert read_back["dose_relative_to_sted_every_frame"] == pytest.approx(summary["dose_relative_to_sted_every_frame"])
    out = tmp_path / "cli-area"
    code = main(["live", "--policy", "area", "--reference", "synthetic", "--threshold", "0.1", "--frames", "1",
                 "--out", str(out), "--size", "64", "--roi", "32", "--patch", "16", "--samples", "2",
                 "--disparity", "std", "--generator", str(generator), "--segmenter", str(segmenter), "--device", "cpu"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["policy"] == "area" and summary["threshold"] == 0.1
    decision = read_session(out).records_of("decision")[0]
    assert decision["reference"] == "synthetic" and decision["score"] == 0.0  # frame 0 is its own reference
    assert main(["live", "--frames", "1"]) == 2 and "--out" in capsys.readouterr().err
    code = main(["live", "--adapter", "pymmcore", "--frames", "1", "--out", str(tmp_path / "hw")])
    assert code == 2 and "--arm" in capsys.readouterr().err


CRASH_SCRIPT = """
import sys
from napari_nanoscopy.live.pipeline import LivePipeline
from napari_nanoscopy.live.settings import LiveSettings
from napari_nanoscopy.live.simulator import SimulatorAdapter
generator, segmenter, out = sys.argv[1:4]
settings = LiveSettings(samples=3, patch=24, roi=48, generator=generator, segmenter=segmenter, device="cpu",
                        flow_iterations=10)
LivePipeline(SimulatorAdapter(50, 1, size=96, seed=4), out, settings).run(50)
"""


def test_a_crash_mid_session_loses_no_frame_and_leaves_a_valid_log(live_models, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from napari_nanoscopy.live import session_summary

    out = tmp_path / "crashed"
    process = subprocess.Popen([sys.executable, "-c", CRASH_SCRIPT, *map(str, live_models), str(out)])
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            log = out / "decisions.jsonl"
            if log.is_file() and log.read_text().count('"type": "decision"') >= 2:
                break
            assert process.poll() is None, "the session ended before it could be interrupted"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)  # no clean-up of any kind
    finally:
        process.wait(60)
    session = read_session(out)
    assert len(session.records_of("decision")) >= 2 and session.summary is None
    files = sorted(p.name for p in (out / "frames").glob("[0-9]*.ome.tif"))
    logged = sorted(a["file"].split("/")[-1] for a in session.acquisitions)
    assert set(logged) <= set(files) and len(files) - len(logged) <= 1  # at most the frame being logged
    for acquisition in session.acquisitions:
        assert read_image(out / acquisition["file"]).data.shape == tuple(acquisition["region"][2:])
    summary = session_summary(out)
    assert summary["state"].startswith("interrupted") and summary["frames"] == len(session.records_of("decision"))

    # resuming never overwrites a frame, logged or not
    before = {p.name: p.stat().st_mtime_ns for p in (out / "frames").glob("[0-9]*.ome.tif")}
    pipeline = LivePipeline(simulator(frames=50), out, settings(live_models), resume=True)
    assert pipeline.next_frame == len(session.records_of("decision"))
    resumed = pipeline.run(pipeline.next_frame + 1)  # one more frame and the final reference
    pipeline.close()
    assert resumed["state"] == "done"
    for name, mtime in before.items():
        assert (out / "frames" / name).stat().st_mtime_ns == mtime


def test_compile_setting_reaches_both_networks(live_models, tmp_path, monkeypatch):
    from napari_nanoscopy import inference

    monkeypatch.setattr(inference, "compile_problem", lambda device: None)
    monkeypatch.setattr(inference.torch, "compile", lambda network: ("compiled", network))  # nothing runs here
    pipeline = LivePipeline(simulator(frames=1), tmp_path / "s", settings(live_models, compile=True))
    try:
        for restorer in (pipeline.generator, pipeline.segmenter):
            assert restorer.compiled and restorer._forward == ("compiled", restorer.network)
    finally:
        pipeline.close()
    plain = LivePipeline(simulator(frames=1), tmp_path / "t", settings(live_models))
    try:
        assert not plain.generator.compiled and not plain.segmenter.compiled
    finally:
        plain.close()
