"""The live runner apart from its engine: run states and finish reasons, the frozen status, pause and
stop at a step boundary, subscribers once per frame, predictors passed in, and the one make_adapter.

Most tests drive the runner with a scripted engine on a still microscope (no models, no pySTED): the
runner's bookkeeping does not depend on what the engine computes.
"""

import dataclasses
import json

import numpy as np
import pytest
from test_live import live_models, settings  # noqa: F401 - the tiny TA-GAN Live / U-Net-Live packages

from napari_nanoscopy.errors import NanoscopyError
from napari_nanoscopy.live import (
    CONFOCAL,
    STED,
    AcquisitionSettings,
    Capabilities,
    DoseBudget,
    FaultInjectingAdapter,
    MicroscopeAdapter,
    Recorder,
    read_session,
)
from napari_nanoscopy.live.connection import AdapterSettings, make_adapter
from napari_nanoscopy.live.pipeline import open_session
from napari_nanoscopy.live.policies import Decision, DicePolicy
from napari_nanoscopy.live.runner import FinishReason, LiveRunner, RunState, RunStatus
from napari_nanoscopy.live.settings import LiveSettings
from napari_nanoscopy.live.simulator import SimulatorAdapter

FIELD, ROI = 64, (24, 24, 16, 16)


class Still(MicroscopeAdapter):
    """A microscope whose sample never changes; remembers what it acquired and at which frame."""

    name = "still"

    def __init__(self):
        caps = Capabilities(modalities=(CONFOCAL, STED), pixel_size_nm=20.0, field_shape=(FIELD, FIELD), min_patch=8,
                            max_power_w={"excitation": 1e-3, "depletion": 1.0}, dwell_time_s=(1e-7, 1e-3),
                            wavelengths_m={"excitation": 635e-9, "depletion": 750e-9}, requires_arming=False)
        super().__init__(caps, {CONFOCAL: AcquisitionSettings(1e-5, 0.0, 1e-5),
                                STED: AcquisitionSettings(1e-5, 0.1, 1e-5)})
        self.frame, self.acquired = -1, []

    def begin_frame(self, index: int) -> None:
        self.frame = index

    def _acquire(self, modality, region):
        self.acquired.append((self.frame, modality))
        return np.ones(region[2:], np.float32), {}

    def _safe_state(self) -> None:
        pass


@dataclasses.dataclass
class Scripted:
    """A decision engine (the DecisionEngine protocol, no networks) that triggers on the listed frames."""

    triggers: set
    policy: DicePolicy = dataclasses.field(default_factory=lambda: DicePolicy(0.5))
    models: dict = dataclasses.field(default_factory=lambda: {
        name: {"name": name, "weights_sha256": "0" * 64, "source": "test"} for name in ("generator", "segmenter")})
    decided: int = 0

    def generate(self, confocal, patch, seed):
        return np.stack([confocal.data, confocal.data])

    def propose_patch(self, samples, roi):
        return np.zeros(samples.shape[1:], np.float32), (0, 0, 8, 8)

    def segment(self, images, pixel_size_nm):
        return np.asarray(images, np.float32)

    def mask(self, outputs):
        return outputs.mean(axis=0) > 0.5

    def decide(self, outputs, reference):
        trigger = self.decided in self.triggers
        self.decided += 1
        return Decision("dice", float(trigger), 0.5, trigger, "scripted", {"mean_segmentation": self.mask(outputs)})

    def with_predictors(self, generator, segmenter):
        return self


def runner(tmp_path, *, triggers=(), budget=None, adapter=None, **options) -> LiveRunner:
    live = LiveSettings(patch=8, roi=16, **options)
    tmp_path.mkdir(exist_ok=True)
    recorder = Recorder(tmp_path / "session", session={"settings": live.to_dict()})
    return LiveRunner(adapter or Still(), Scripted(set(triggers)), recorder, live, budget or DoseBudget(), ROI)


def test_a_complete_run_goes_ready_running_done_and_records_plain_strings(tmp_path):
    live = runner(tmp_path)
    seen = []
    live.state_changed.connect(seen.append)
    assert live.status.state is RunState.READY and live.status.finish_reason is None
    summary = live.run(2)
    live.close()
    assert [status.state for status in seen] == [RunState.RUNNING, RunState.DONE]
    assert seen[-1].finish_reason is FinishReason.COMPLETED and seen[-1].next_frame == 2
    # summary.json keeps the strings it always had, not enum names
    assert type(summary["state"]) is str and json.loads(json.dumps(summary))["state"] == "done"
    assert RunState("budget exhausted") is RunState.BUDGET_EXHAUSTED


def test_the_status_is_a_frozen_snapshot(tmp_path):
    live = runner(tmp_path, triggers={1})
    snapshots = []
    live.frame_finished.connect(lambda result: snapshots.append(live.status))
    live.run(3)
    live.close()
    first = snapshots[0]
    assert isinstance(first, RunStatus)
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.state = RunState.DONE
    # each snapshot keeps the moment it was taken: frame 0's still says running, frame 0 next
    assert (first.state, first.next_frame, first.sted_acquisitions) == (RunState.RUNNING, 0, 0)
    assert [s.sted_acquisitions for s in snapshots] == [0, 1, 1]
    assert live.status.state is RunState.DONE and live.status.folder == tmp_path / "session"
    assert live.status.acquisitions == len(live.adapter.acquired)


@pytest.mark.parametrize("halt, reason", [("pause", FinishReason.PAUSED), ("stop", FinishReason.STOPPED)])
def test_pause_and_stop_take_effect_at_the_next_boundary_and_are_recorded_alike(tmp_path, halt, reason):
    live = runner(tmp_path, final_reference=False)
    live.frame_finished.connect(lambda result: getattr(live, halt)() if result.frame == 1 else None)
    summary = live.run(4)
    assert summary["state"] == "stopped" and summary["frames"] == 2
    assert live.status.state is RunState.STOPPED and live.status.finish_reason is reason
    # nothing was acquired for frame 2: the halt came between frames
    assert max(frame for frame, _ in live.adapter.acquired) == 1 and live.status.next_frame == 2
    records = read_session(tmp_path / "session").records
    assert records[-1]["type"] == "stop" and records[-1]["frame"] == 2
    # the session carries on from the boundary, every frame decided once
    assert live.resume(4)["state"] == "done"
    live.close()
    assert [r["frame"] for r in read_session(tmp_path / "session").records_of("decision")] == [0, 1, 2, 3]
    assert live.status.finish_reason is FinishReason.COMPLETED


def test_subscribers_are_called_once_per_frame_in_order(tmp_path):
    live = runner(tmp_path)
    first, second, replaced = [], [], []
    live.frame_finished.connect(lambda result: first.append(result.frame))
    live.on_frame = lambda result: replaced.append(result.frame)
    live.on_frame = lambda result: second.append(result.frame)  # replaces the previous on_frame
    finished = []
    live.finished.connect(lambda status, summary: finished.append((status.state, summary["frames"])))
    live.run(3)
    live.close()
    assert first == second == [0, 1, 2] and replaced == []
    assert finished == [(RunState.DONE, 3)]


def test_faults_budget_and_interrupts_end_with_their_reasons(tmp_path):
    # acquisition 0 is the initial reference, 1 the confocal of frame 0, 2 its STED patch
    faulty = runner(tmp_path / "f", adapter=FaultInjectingAdapter(Still(), {2: "raise"}))
    assert faulty.run(2)["state"] == "faulted"
    assert faulty.status.finish_reason is FinishReason.FAULT and faulty.status.faults == 1
    faulty.close()

    still = Still()
    # room for the initial reference and one confocal: frame 0's patch is skipped, frame 1's confocal refused
    budget = DoseBudget(max_dose_photons=still.estimate_dose(STED, ROI) + 1.5 * still.estimate_dose(CONFOCAL))
    capped = runner(tmp_path / "b", budget=budget, adapter=still)
    assert capped.run(3)["state"] == "budget exhausted" and capped.status.next_frame == 1
    assert capped.status.finish_reason is FinishReason.BUDGET
    capped.close()

    interrupted = runner(tmp_path / "i")
    ends = []
    interrupted.finished.connect(lambda status, summary: ends.append((status.finish_reason, summary["state"])))

    def interrupt(result):
        raise KeyboardInterrupt

    interrupted.frame_finished.connect(interrupt)
    with pytest.raises(KeyboardInterrupt):
        interrupted.run(3)
    interrupted.close()
    assert ends == [(FinishReason.INTERRUPTED, "interrupted")]  # told before the interrupt goes on


def test_the_engine_is_given_its_predictors(live_models, tmp_path):  # noqa: F811
    live = open_session(SimulatorAdapter(1, 1, size=96, seed=2), tmp_path / "s", settings(live_models))
    calls = []

    class Counting:
        def __init__(self, name, inner):
            self.name, self.inner = name, inner

        def restore(self, image, **options):
            calls.append(self.name)
            return self.inner.restore(image, **options)

    local = live.engine
    live.use_predictors(Counting("generator", live.generator), Counting("segmenter", live.segmenter))
    assert live.engine is not local and local.generator is not live.generator  # a new engine, the old one untouched
    assert live.run(1)["state"] == "done"
    live.close()
    # initial reference, frame 0 (generate twice, segment once), final reference
    assert calls == ["segmenter", "generator", "generator", "segmenter", "segmenter"]
    assert json.loads((tmp_path / "s" / "summary.json").read_text())["state"] == "done"  # the recorder subscribed


def test_one_make_adapter_builds_the_simulator_and_checks_hardware_settings():
    adapter = make_adapter(AdapterSettings(frames=3, size=64, seed=1))
    assert isinstance(adapter, SimulatorAdapter) and adapter.capabilities().field_shape == (64, 64)
    adapter.close()
    with pytest.raises(NanoscopyError, match="Give the Micro-Manager configuration file"):
        make_adapter(AdapterSettings(kind="pymmcore"))
    with pytest.raises(NanoscopyError, match="The adapter must be one of simulator, pymmcore, specpy; got 'leica'"):
        AdapterSettings(kind="leica")
