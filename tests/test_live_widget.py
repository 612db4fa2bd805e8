"""The Live assist dock widget under Xvfb: connect the simulator, start, stream layers, pause, resume, stop."""

import numpy as np
import pytest

from test_live import live_models  # noqa: F401 - the tiny TA-GAN Live / U-Net-Live packages

TIMEOUT_MS = 300_000


def _wait(qtbot, widget):
    qtbot.waitUntil(lambda: widget.job is not None and widget.job.finished, timeout=TIMEOUT_MS)


def _configure(widget, live_models, out):
    generator, segmenter = live_models
    widget.adapter_combo.setCurrentText("simulator")
    widget.size_box.setValue(64)
    widget.frames_box.setValue(3)
    widget.stimulus_box.setValue(1)
    widget.roi_box.setValue(32)
    widget.patch_box.setValue(16)
    widget.samples_box.setValue(2)
    widget.disparity_combo.setCurrentText("std")
    widget.generator_edit.setText(str(generator))
    widget.segmenter_edit.setText(str(segmenter))
    widget.out_edit.setText(str(out))


def test_live_widget_runs_the_simulator_and_streams_layers(make_napari_viewer, qtbot, live_models, tmp_path):
    from napari_nanoscopy._widgets.live import LiveWidget
    from napari_nanoscopy.live import read_session

    viewer = make_napari_viewer()
    widget = LiveWidget(viewer)
    viewer.window.add_dock_widget(widget)
    _configure(widget, live_models, tmp_path / "session")
    widget.connect_adapter()
    assert widget.adapter is not None and not widget.arm_box.isEnabled()  # the simulator needs no arming
    assert widget.start_button.isEnabled()

    # pause after the first frame, then continue the same session
    widget.start()
    assert widget.pause_button.isEnabled() and not widget.connect_button.isEnabled()
    qtbot.waitUntil(lambda: len(widget.results) >= 1, timeout=TIMEOUT_MS)
    widget.pause()
    _wait(qtbot, widget)
    assert widget.last_error is None
    assert widget.last_summary["state"] in ("stopped", "done")
    if widget.last_summary["state"] == "stopped":
        widget.start()
        _wait(qtbot, widget)
    assert widget.last_error is None and widget.last_summary["state"] == "done"
    assert widget.last_summary["frames"] == 3 and len(widget.results) == 3

    names = {layer.name for layer in viewer.layers}
    assert {"live confocal", "live synthetic STED", "live disparity", "live segmentation"} <= names
    confocal = viewer.layers["live confocal"]
    assert confocal.data.shape == (64, 64) and tuple(confocal.scale) == pytest.approx((20.0, 20.0))
    segmentation = viewer.layers["live segmentation"]
    assert segmentation.data.shape == (32, 32) and tuple(segmentation.translate) == pytest.approx((320.0, 320.0))
    np.testing.assert_array_equal(confocal.data, widget.results[-1].confocal)
    assert "photons" in widget.dose_label.text()
    assert [d["frame"] for d in read_session(tmp_path / "session").records_of("decision")] == [0, 1, 2]
    assert widget.pipeline is None  # the session ended; the next Start begins a new one
    widget.close()


def test_live_widget_reference_only_for_the_policies_that_use_one(make_napari_viewer):
    from napari_nanoscopy._widgets.live import LiveWidget

    widget = LiveWidget(make_napari_viewer())
    widget.reference_combo.setCurrentText("synthetic")
    widget.policy_combo.setCurrentText("variability")
    assert not widget.reference_combo.isEnabled()
    assert widget.settings().reference == "sted"
    widget.settings().check()
    widget.policy_combo.setCurrentText("area")
    assert widget.reference_combo.isEnabled() and widget.settings().reference == "synthetic"
    assert widget.settings().threshold == pytest.approx(0.2)  # the area policy's default, not dice's 0.5
    widget.threshold_box.setValue(0.092)
    assert widget.settings().threshold == pytest.approx(0.092)
    widget.policy_combo.setCurrentText("dice")
    assert widget.settings().threshold == pytest.approx(0.5)
    widget.close()


def test_live_widget_reports_a_bad_model_without_starting(make_napari_viewer, qtbot, live_models, tmp_path):
    from napari_nanoscopy._widgets.live import LiveWidget

    viewer = make_napari_viewer()
    widget = LiveWidget(viewer)
    _configure(widget, live_models, tmp_path / "s")
    widget.generator_edit.setText(str(tmp_path / "missing-model"))
    widget.connect_adapter()
    assert widget.start() is None
    assert widget.last_error and "missing-model" in widget.last_error
    assert widget.job is None
    widget.close()


def test_manifest_contributes_the_live_widget_and_the_session_reader():
    from pathlib import Path

    import yaml

    manifest = yaml.safe_load((Path(__file__).parents[1] / "src" / "napari_nanoscopy" / "napari.yaml").read_text())
    commands = {c["id"]: c["python_name"] for c in manifest["contributions"]["commands"]}
    widgets = {w["display_name"]: w["command"] for w in manifest["contributions"]["widgets"]}
    assert commands[widgets["Live assist"]] == "napari_nanoscopy._widgets.live:LiveWidget"
    readers = {r["command"]: r for r in manifest["contributions"]["readers"]}
    assert readers["napari-nanoscopy.get_session_reader"]["accepts_directories"]
    assert commands["napari-nanoscopy.get_session_reader"] == "napari_nanoscopy.live.recorder:get_session_reader"
