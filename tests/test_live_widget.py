"""The Live assist dock widget under Xvfb: connect the simulator, start, stream layers, pause, resume, stop;
the live layers' defaults, the score plot's ticks, and a recorded session opened in napari."""

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


def _frame_result(frame, field=64, roi=(16, 16, 32, 32), sted=False, variability=False):
    from napari_nanoscopy.live.runner import FrameResult
    from napari_nanoscopy.live.policies import Decision

    rng = np.random.default_rng(frame)
    maps = {"mean_segmentation": rng.random(roi[2:]) > 0.7}
    if variability:
        maps["high_variability"] = rng.random(roi[2:]) > 0.9
    return FrameResult(
        frame=frame, confocal=rng.random((field, field), np.float32) * 100,
        synthetic=rng.random((field, field), np.float32), disparity=rng.random((field, field), np.float32),
        patch=(0, 0, 8, 8), segmentation=maps["mean_segmentation"],
        decision=Decision("dice", 0.4, 0.5, sted, "test", maps),
        sted=rng.random(roi[2:], np.float32) * 30 if sted else None, timings_s={}, dose_photons=1.0, roi=roi,
    )


def test_live_layers_are_readable_when_a_session_starts(make_napari_viewer):
    """No additive wash of full-field layers: the confocal under the synthetic STED, the diagnostic
    maps hidden, the segmentation as outlines on top, the real STED of the ROI under them."""
    from napari_nanoscopy._widgets.live import LiveWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((8, 8)), name="the user's own layer")
    widget = LiveWidget(viewer)
    widget._update_layers(_frame_result(0))
    live = [layer for layer in viewer.layers if layer.name.startswith("live ")]
    assert [layer.name for layer in live] == ["live confocal", "live synthetic STED", "live disparity",
                                              "live segmentation"]  # bottom to top
    visible = {layer.name: layer.visible for layer in live}
    assert visible == {"live confocal": True, "live synthetic STED": True, "live disparity": False,
                       "live segmentation": True}
    images = [layer for layer in live if layer.name != "live segmentation"]
    assert all(layer.blending == "translucent" and layer.opacity == 1.0 for layer in images)
    assert [layer.colormap.name for layer in images] == ["gray", "magma", "viridis"]
    segmentation = viewer.layers["live segmentation"]
    assert segmentation.__class__.__name__ == "Labels" and segmentation.contour >= 1

    # a triggered STED (and the variability policy's map) later: the real STED under the outlines
    widget._update_layers(_frame_result(1, sted=True, variability=True))
    live = [layer for layer in viewer.layers if layer.name.startswith("live ")]
    assert [layer.name for layer in live] == ["live confocal", "live synthetic STED", "live disparity",
                                              "live variability", "live real STED", "live segmentation"]
    assert viewer.layers["live real STED"].visible and not viewer.layers["live variability"].visible
    assert viewer.layers["live real STED"].blending == "translucent"
    assert viewer.layers[0].name == "the user's own layer"
    widget.close()


def test_score_plot_has_whole_frame_ticks(make_napari_viewer):
    from napari_nanoscopy._widgets.live import LiveWidget

    widget = LiveWidget(make_napari_viewer())
    widget.plot.set_line("dice", np.array([0.0, 1.0, 2.0]), np.array([0.9, 0.4, 0.7]))
    assert [label for _, label in widget.plot.x_ticks()] == ["0", "1", "2"]
    widget.plot.set_line("dice", np.array([0.0]), np.array([0.9]))  # one frame: the axis spans 0 to 1
    assert [label for _, label in widget.plot.x_ticks()] == ["0", "1"]
    widget.close()


def test_a_recorded_session_opens_with_each_sted_at_its_frame(make_napari_viewer, tmp_path):
    """The STED stack holds only the frames where a STED was acquired; opened in napari, each sits
    at its frame number (empty planes elsewhere), next to that frame's confocal."""
    from napari_nanoscopy.live.adapters import CONFOCAL, STED, Frame
    from napari_nanoscopy.live.recorder import Recorder

    field, roi, pixel = 48, (8, 16, 24, 24), 20.0
    rng = np.random.default_rng(3)

    def frame(modality, region):
        shape = region[2:] if region else (field, field)
        return Frame(rng.random(shape, np.float32), modality, region or (0, 0, field, field), pixel, 0.0, 1.0)

    acquired = {}
    with Recorder(tmp_path / "session", session={"roi": list(roi)}) as recorder:
        # frame 2 acquired again after a resume; at frame 4 a triggered STED, then the final reference
        steps = [("reference", 0), ("confocal", 0), ("confocal", 1), ("confocal", 2), ("confocal", 2),
                 ("sted", 2), ("confocal", 3), ("confocal", 4), ("sted", 4), ("reference", 4)]
        for kind, t in steps:
            image = frame(CONFOCAL if kind == "confocal" else STED, None if kind == "confocal" else roi)
            recorder.write_frame(image, kind=kind, frame_number=t)
            acquired[(kind if kind == "confocal" else "sted", t)] = image.data  # the last of each frame

    viewer = make_napari_viewer()
    layers = viewer.open(str(tmp_path / "session"), plugin="napari-nanoscopy")
    confocal, sted = (viewer.layers[name] for name in ("confocal", "STED"))
    assert {layer.name for layer in layers} == {"confocal", "STED"}
    assert confocal.data.shape == (5, field, field) and sted.data.shape == (5, 24, 24)
    for t in range(5):
        np.testing.assert_array_equal(confocal.data[t], acquired[("confocal", t)])
        if ("sted", t) in acquired:
            np.testing.assert_array_equal(sted.data[t], acquired[("sted", t)])
        else:
            assert np.isnan(sted.data[t]).all()
        # plane t of both layers lies at frame t of the viewer's frame axis
        assert confocal.data_to_world((t, 0, 0))[0] == sted.data_to_world((t, 0, 0))[0] == t
    assert sted.metadata["sted_frames"] == [0, 2, 4]
    assert [a["kind"] for a in sted.metadata["acquisitions"]] == ["reference", "sted", "reference"]
    assert tuple(sted.translate) == pytest.approx((0.0, 8 * pixel, 16 * pixel))
