"""A live session's folder says what happened: Ctrl-C, a changed resume, racing recorders, the budget."""

import json
import threading
import time

import numpy as np
import pytest
from test_live import live_models, settings, simulator  # noqa: F401 - the tiny TA-GAN Live / U-Net-Live packages

from napari_nanoscopy.cli import main
from napari_nanoscopy.errors import NanoscopyError
from napari_nanoscopy.live import recorder as recorder_module
from napari_nanoscopy.live.budget import DoseBudget
from napari_nanoscopy.live.pipeline import LivePipeline
from napari_nanoscopy.live.policies import Decision, Policy
from napari_nanoscopy.live.recorder import Recorder, read_session
from napari_nanoscopy.live.simulator import SimulatorAdapter


def live_command(live_models, out, *options):
    generator, segmenter = live_models
    return ["live", "--frames", "3", "--out", str(out), "--size", "64", "--roi", "32", "--patch", "16",
            "--samples", "2", "--disparity", "std", "--generator", str(generator), "--segmenter", str(segmenter),
            "--device", "cpu", *options]


class InterruptedAt(SimulatorAdapter):
    """The simulator, with Ctrl-C pressed during its ``at``-th acquisition."""

    def __init__(self, *args, at, **kwargs):
        super().__init__(*args, **kwargs)
        self.at, self.acquisitions = at, 0

    def acquire(self, modality, region=None, **kwargs):
        self.acquisitions += 1
        if self.acquisitions == self.at:
            raise KeyboardInterrupt
        return super().acquire(modality, region, **kwargs)


def test_ctrl_c_writes_the_summary_of_what_is_on_disk(live_models, tmp_path, monkeypatch, capsys):
    from napari_nanoscopy.live import cli as live_cli

    # the initial reference and each frame's confocal and patch (and a STED if it triggers): Ctrl-C mid-session
    monkeypatch.setattr(live_cli, "make_adapter", lambda args: InterruptedAt(3, 2, size=64, seed=3, at=6))
    out = tmp_path / "session"
    assert main(live_command(live_models, out)) == 130
    captured = capsys.readouterr()
    session = read_session(out)
    frames, on_disk = len(session.records_of("decision")), len(list((out / "frames").glob("*.ome.tif")))
    assert frames >= 1 and on_disk == 5
    assert "no output was written" not in captured.err
    assert f"interrupted; {frames} frame(s) and 5 acquisition(s) are recorded in {out}" in captured.err
    assert "--resume" in captured.err and "Traceback" not in captured.err
    printed = json.loads(captured.out)
    assert printed["state"] == "interrupted" and printed["frames"] == frames and printed["acquisitions"] == 5
    assert session.summary["state"] == "interrupted" and session.summary["frames"] == frames
    assert session.summary["acquisitions"] == 5 and session.records[-1]["interrupted"] is True

    monkeypatch.undo()  # the same command with --resume continues from frame 1
    assert main(live_command(live_models, out, "--resume")) == 0
    assert json.loads(capsys.readouterr().out)["frames"] == 3


@pytest.mark.parametrize("options, changed", [
    (["--size", "80"], ["field size 64x64 (now 80x80)", "ROI 32x32 px at y 16, x 16 (now 32x32 px at y 24, x 24)"]),
    (["--roi", "24"], ["ROI 32x32 px at y 16, x 16 (now 24x24 px at y 20, x 20)"]),
    (["--policy", "variability", "--threshold", "0.3"], ["policy dice (now variability)", "threshold 0.5 (now 0.3)"]),
])
def test_resume_with_another_field_roi_or_policy_is_refused_before_anything_is_acquired(
        options, changed, live_models, tmp_path, capsys):
    out = tmp_path / "session"
    assert main(live_command(live_models, out, "--frames", "1")) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(live_command(live_models, out, "--resume", *options)) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error
    assert f"The session in {out} was recorded with {'; '.join(changed)};" in error
    assert "resume it with the settings it was recorded with, or record a new session in another folder" in error
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # nothing acquired or logged
    # what does not change the recording's meaning may change: a larger budget, the seed, the device
    assert main(live_command(live_models, out, "--resume", "--max-sted", "10", "--seed", "7")) == 0
    assert read_session(out).summary["state"] == "done"


def test_of_two_recorders_racing_for_one_folder_one_is_refused_and_never_owns_it(tmp_path, monkeypatch):
    folder = tmp_path / "session"
    both_checked = threading.Barrier(2, timeout=60)
    waited = threading.local()

    class Clock:  # both recorders have found the folder empty when they ask for the time
        @staticmethod
        def time():
            if not getattr(waited, "done", False):
                waited.done = True
                both_checked.wait()
            return time.time()

    monkeypatch.setattr(recorder_module, "time", Clock)
    recorders, errors = {}, {}

    def start(name):
        try:
            recorders[name] = Recorder(folder, session={"owner": name})
        except NanoscopyError as error:
            errors[name] = str(error)

    threads = [threading.Thread(target=start, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(recorders) == 1 and len(errors) == 1
    (winner, recorder), (loser, message) = *recorders.items(), *errors.items()
    assert message == (f"Another live session started recording in {folder} at the same time; "
                       "give this one a new folder.")
    assert json.loads((folder / "session.json").read_text())["owner"] == winner
    recorder.close()
    assert sorted(p.name for p in folder.iterdir()) == ["decisions.jsonl", "frames", "session.json"]


class Never(Policy):
    """A dice policy that never triggers, so only the references are full STED images."""

    name = "dice"

    def decide(self, outputs, binarisation, reference):
        return Decision("never", 1.0, self.threshold, False, "never",
                        {"mean_segmentation": outputs.mean(axis=0) > binarisation})


def test_a_budget_that_refuses_only_the_final_reference_ends_done(live_models, tmp_path):
    pipeline = LivePipeline(simulator(frames=2), tmp_path / "s", settings(live_models),
                            budget=DoseBudget(max_sted_frames=1))  # the initial reference only
    pipeline.policy = Never()
    summary = pipeline.run(2)
    pipeline.close()
    assert summary["state"] == "done" and summary["frames"] == 2 and summary["references"] == 1
    assert "final" not in pipeline.references
    assert summary["final_reference_declined"].startswith("The sted acquisition at frame 1 was refused")
    session = read_session(tmp_path / "s")
    assert session.summary["state"] == "done"
    assert [r["step"] for r in session.records_of("budget")] == ["reference_final"]
    assert not np.any([a["kind"] == "reference" and a["frame"] == 1 for a in session.acquisitions])
