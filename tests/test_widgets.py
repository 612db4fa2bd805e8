"""The napari front end: Restore, Train and Metrics widgets, sample data, writer (under Xvfb)."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from napari_nanoscopy.io import read_image
from napari_nanoscopy.samples import SAMPLE_DIR
from conftest import stop_after_first_step, wait_idle

MANIFEST = Path(__file__).parents[1] / "src" / "napari_nanoscopy" / "napari.yaml"
TIMEOUT_MS = 120_000


# -- manifest and sample data (no viewer) ------------------------------------------------------


def test_every_sample_in_samples_json_has_a_manifest_entry_and_back():
    import json

    from napari_nanoscopy._widgets._sample_data import function_name

    samples = json.loads((SAMPLE_DIR / "samples.json").read_text())
    manifest = yaml.safe_load(MANIFEST.read_text())
    entries = {entry["key"]: entry for entry in manifest["contributions"].get("sample_data", [])}
    commands = {c["id"]: c["python_name"] for c in manifest["contributions"]["commands"]}
    missing = sorted(set(samples) - set(entries))
    assert not missing, (
        f"samples.json has {missing} but napari.yaml has no sample_data entry for them; add to napari.yaml, for each KEY, "
        "a command {id: napari-nanoscopy.sample_KEY, python_name: napari_nanoscopy._widgets._sample_data:sample_KEY, "
        "title: ...} and a sample_data entry {key: KEY, display_name: <samples.json display_name>, "
        "command: napari-nanoscopy.sample_KEY} (hyphens in KEY become underscores in the function name)"
    )
    assert not sorted(set(entries) - set(samples)), "napari.yaml lists samples that samples.json does not describe"
    for key, entry in entries.items():
        assert entry["display_name"] == samples[key]["display_name"], f"display names of sample {key} differ"
        assert commands[entry["command"]] == f"napari_nanoscopy._widgets._sample_data:{function_name(key)}"
        for layer in samples[key]["layers"]:
            assert (SAMPLE_DIR / layer["file"]).is_file(), f"sample {key} names a missing file {layer['file']}"


def test_manifest_contributes_the_three_widgets():
    manifest = yaml.safe_load(MANIFEST.read_text())
    widgets = {w["display_name"]: w["command"] for w in manifest["contributions"]["widgets"]}
    commands = {c["id"]: c["python_name"] for c in manifest["contributions"]["commands"]}
    for name, module in (("Restore", "restore:RestoreWidget"), ("Train", "train:TrainWidget"),
                         ("Metrics", "metrics:MetricsWidget")):
        assert commands[widgets[name]] == f"napari_nanoscopy._widgets.{module}"


def test_sample_loader_sets_scale_names_and_roles():
    from napari_nanoscopy._widgets import _sample_data

    layers = _sample_data.sample_twolabel()
    assert [kwargs["metadata"]["role"] for _, kwargs, _ in layers][-1] == "input"  # on top
    for data, kwargs, layer_type in layers:
        assert kwargs["scale"] == (20.0, 20.0) and kwargs["units"] == ("nm", "nm")
        assert kwargs["metadata"]["model"] == "l2l-twolabel" and layer_type == "image"
    with pytest.raises(AttributeError):
        _sample_data.sample_does_not_exist


def test_every_sample_loads_with_named_layers_at_its_pixel_size():
    from napari_nanoscopy._widgets._sample_data import load_sample, sample_descriptions

    for key, sample in sample_descriptions().items():
        layers = load_sample(key)
        assert [kwargs["name"] for _, kwargs, _ in layers] != [] and layers[-1][1]["metadata"]["role"] == "input"
        for data, kwargs, layer_type in layers:
            assert kwargs["scale"][-2:] == (sample["pixel_size_nm"],) * 2, key
            entry = next(e for e in sample["layers"] if e["name"] == kwargs["name"])
            if entry.get("classes"):
                assert layer_type == "labels"
                for value, name in entry["classes"].items():
                    assert kwargs["features"]["class"][int(value)] == name


# -- helpers -----------------------------------------------------------------------------------


@pytest.fixture
def notifications():
    from napari.utils.notifications import notification_manager

    seen = []

    def record(notification):
        seen.append(notification)

    notification_manager.notification_ready.connect(record)
    yield seen
    notification_manager.notification_ready.disconnect(record)


def open_sample(viewer):
    return viewer.open_sample("napari-nanoscopy", "twolabel")


def results(viewer):
    return [layer for layer in viewer.layers if "nanoscopy_role" in (layer.metadata or {})]


# -- Restore -----------------------------------------------------------------------------------


def test_restore_bundled_sample_at_the_input_scale_and_rerun_updates(make_napari_viewer, qtbot):
    from napari_nanoscopy._widgets.restore import RestoreWidget

    viewer = make_napari_viewer()
    open_sample(viewer)
    widget = RestoreWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.input_combo.layer().name == "weak label (input)"
    assert widget.selected_entry().card.name == "l2l-twolabel"  # picked from the sample's metadata
    assert widget.pixel_box.value() == pytest.approx(20.0)
    widget.run()
    wait_idle(qtbot, widget)
    assert widget.last_error is None
    [restored] = results(viewer)
    assert restored.name == "restored: weak label (input)"
    assert tuple(restored.scale) == (20.0, 20.0) and restored.data.shape == (128, 128)
    meta = restored.metadata
    assert meta["model"] == "l2l-twolabel" and len(meta["weights_sha256"]) == 64
    assert meta["versions"]["napari"] and meta["samples"] == 1
    first = restored.data.copy()
    count = len(viewer.layers)
    widget.run()
    wait_idle(qtbot, widget)
    assert len(viewer.layers) == count and results(viewer) == [restored]
    np.testing.assert_allclose(restored.data, first, atol=1e-5)


def test_restore_a_lazy_layer_too_large_for_memory_runs_block_by_block(make_napari_viewer, qtbot, monkeypatch):
    """The widget restores through the one job path: a dask layer that does not fit runs in blocks."""
    da = pytest.importorskip("dask.array")
    from napari_nanoscopy import restore_job
    from napari_nanoscopy._widgets.restore import RestoreWidget

    viewer = make_napari_viewer()
    open_sample(viewer)
    layer = viewer.layers["weak label (input)"]
    expected = np.asarray(layer.data)
    lazy = viewer.add_image(da.from_array(expected, chunks=64), name="lazy", scale=layer.scale)
    widget = RestoreWidget(viewer)
    widget.input_combo.setCurrentText(lazy.name)
    widget.run()
    wait_idle(qtbot, widget)
    in_memory = viewer.layers["restored: lazy"]
    assert in_memory.metadata["engine"] == "memory"
    first = np.asarray(in_memory.data).copy()
    monkeypatch.setattr(restore_job, "available_memory", lambda: 100_000)  # less than 2.5 x 128 x 128 float32
    widget.run()
    wait_idle(qtbot, widget)
    assert widget.last_error is None
    assert in_memory.metadata["engine"] == "chunked" and in_memory.metadata["blocks"] >= 1
    np.testing.assert_allclose(in_memory.data, first, rtol=1e-5, atol=1e-5 * float(np.abs(first).max()))


def test_restore_says_beside_the_result_whether_the_image_is_in_the_models_domain(make_napari_viewer, qtbot,
                                                                                  notifications):
    from napari_nanoscopy._widgets.restore import RestoreWidget

    viewer = make_napari_viewer()
    open_sample(viewer)
    widget = RestoreWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.run()
    wait_idle(qtbot, widget)
    assert widget.domain_note.isVisibleTo(widget) and widget.domain_note.text().startswith("In domain")
    restored = results(viewer)[0]
    assert restored.metadata["domain"]["flagged"] is False
    assert not [n for n in notifications if "domain" in str(n.message)]
    widget.pixel_box.setValue(40.0)  # the sample's 20 nm pixels told as 40 nm: the structure looks twice as fine
    widget.run()
    wait_idle(qtbot, widget)
    assert widget.last_error is None
    text = widget.domain_note.text()
    assert text.startswith("⚠ Outside the model's domain") and "'l2l-twolabel'" in text
    assert restored.metadata["domain"]["flagged"] is True
    assert [n for n in notifications if "Outside the model's domain" in str(n.message)]


def test_restore_task_model_gives_restored_uncertainty_and_labelled_segmentation(
    make_napari_viewer, qtbot, packages_dir, smooth_image
):
    from napari_nanoscopy._widgets.restore import RestoreWidget

    viewer = make_napari_viewer()
    layer = viewer.add_image(smooth_image, name="confocal", scale=(25.0, 25.0), translate=(100.0, -50.0),
                             units=("nm", "nm"))
    widget = RestoreWidget(viewer)
    widget.add_model(packages_dir / "tagan-task")
    wait_idle(qtbot, widget)
    assert widget.selected_entry().card.name == "test-tagan"
    assert widget.samples_box.value() == 4 and widget.pixel_box.value() == pytest.approx(25.0)
    widget.samples_box.setValue(3)
    widget.run()
    wait_idle(qtbot, widget)
    assert widget.last_error is None
    by_role = {l.metadata["nanoscopy_role"]: l for l in results(viewer)}
    assert set(by_role) == {"restored", "uncertainty", "segmentation"}
    for result in by_role.values():
        assert tuple(result.scale) == (25.0, 25.0) and tuple(result.translate) == (100.0, -50.0)
        assert result.data.shape == smooth_image.shape
        assert result.metadata["source_layer"] == "confocal" and result.metadata["samples"] == 3
        assert result.metadata["pixel_size_nm"] == pytest.approx(25.0)
    assert by_role["uncertainty"].colormap.name != layer.colormap.name
    assert float(by_role["uncertainty"].data.max()) > 0
    segmentation = by_role["segmentation"]
    assert segmentation.__class__.__name__ == "Labels"
    assert list(segmentation.features["class"]) == ["background", "rings", "fibres"]
    assert segmentation.metadata["classes"] == ["background", "rings", "fibres"]
    # rerun: same three layers, updated in place
    layers_before = list(viewer.layers)
    widget.run()
    wait_idle(qtbot, widget)
    assert list(viewer.layers) == layers_before
    # napari's layer list elides long names in the middle: the results differ in their first word
    names = [by_role[role].name for role in ("restored", "uncertainty", "segmentation")]
    assert names == ["restored: confocal", "uncertainty: confocal", "segmentation: confocal"]
    assert len({name[:12] for name in names}) == 3
    assert by_role["restored"].metadata["model"] == "test-tagan"
    # another model on the same input: its results name the model, the first ones keep their names
    assert widget.select_model("l2l-twolabel")
    widget.run()
    wait_idle(qtbot, widget)
    assert widget.last_error is None
    assert [l.name for l in results(viewer) if l.metadata["model"] == "l2l-twolabel"] == [
        "restored: confocal [l2l-twolabel]"]
    assert [by_role[role].name for role in ("restored", "uncertainty", "segmentation")] == names


def test_restore_stack_plane_by_plane_with_progress(make_napari_viewer, qtbot, smooth_image):
    from napari.utils import progress

    from napari_nanoscopy._widgets.restore import RestoreWidget

    viewer = make_napari_viewer()
    stack = np.stack([smooth_image[:96, :96], smooth_image[32:128, 40:136], smooth_image[64:, 80:]])
    viewer.add_image(stack, name="time series", scale=(1.0, 20.0, 20.0), units=("pixel", "nm", "nm"))
    widget = RestoreWidget(viewer)
    assert widget.select_model("l2l-twolabel")
    reports = []
    job = widget.run()
    job._bridge.progressed.connect(lambda done, total, _: reports.append((done, total)))
    assert job.bar in progress._all_instances  # napari's activity dock shows it
    wait_idle(qtbot, widget)
    assert job.bar not in progress._all_instances and job.bar.total == reports[-1][1] + 1  # + the end of the job
    assert widget.last_error is None
    [restored] = results(viewer)
    assert restored.data.shape == stack.shape and tuple(restored.scale) == (1.0, 20.0, 20.0)
    assert reports and reports[-1][0] == reports[-1][1] and reports[-1][1] >= 3  # at least one step per plane
    for plane in range(3):
        assert np.std(restored.data[plane]) > 0


def test_progress_bar_is_full_only_when_the_results_are_shown(make_napari_viewer, qtbot, smooth_image):
    """Blending, segmentation and adding the layers come after the last tile: no 100 % before the end."""
    from napari_nanoscopy._widgets.restore import RestoreWidget

    viewer = make_napari_viewer()
    viewer.add_image(smooth_image[:96, :96], name="confocal", scale=(20.0, 20.0), units=("nm", "nm"))
    widget = RestoreWidget(viewer)
    assert widget.select_model("l2l-twolabel")
    bar = widget.progress_bar
    shown = []  # (value, maximum, the job still running) at every change of the bar
    bar.valueChanged.connect(lambda value: shown.append((value, bar.maximum(), widget.job is not None)))
    reports = []
    job = widget.run()
    job._bridge.progressed.connect(lambda done, total, _: reports.append((done, total)))
    wait_idle(qtbot, widget)
    assert widget.last_error is None and results(viewer)
    assert reports[-1][0] == reports[-1][1]  # the worker reported its last step while the job ran
    running = [(value, maximum) for value, maximum, busy in shown if busy]
    assert running and all(value < maximum for value, maximum in running), running
    assert bar.value() == bar.maximum() > 0  # full once the layers are there


def test_restore_multichannel_model_takes_the_matching_channel_axis(make_napari_viewer, qtbot, packages_dir, smooth_image):
    from napari_nanoscopy._widgets.restore import RestoreWidget

    viewer = make_napari_viewer()
    viewer.add_image(smooth_image[:64, :64], name="one channel")
    three = np.stack([smooth_image[:64, :64], np.full((64, 64), -1.0), np.full((64, 64), -1.0)])
    viewer.add_image(three, name="confocal + patch + mask", scale=(1.0, 30.0, 30.0), units=("pixel", "nm", "nm"))
    widget = RestoreWidget(viewer)
    widget.add_model(packages_dir / "tagan-live")
    wait_idle(qtbot, widget)
    assert [l.name for l in widget.input_combo.layers()] == ["confocal + patch + mask"]  # only layers it can take
    assert widget.channel_combo.isVisibleTo(widget) and widget.channel_combo.currentData() == 0
    widget.run()
    wait_idle(qtbot, widget)
    assert widget.last_error is None, widget.last_error
    [restored] = results(viewer)
    assert restored.data.shape == (64, 64) and tuple(restored.scale) == (30.0, 30.0)


def test_cancel_stops_a_long_run_and_leaves_the_viewer_usable(make_napari_viewer, qtbot, packages_dir):
    from napari_nanoscopy._widgets.restore import RestoreWidget

    viewer = make_napari_viewer()
    image = np.random.default_rng(0).random((4, 256, 256)).astype(np.float32)
    viewer.add_image(image, name="big")
    widget = RestoreWidget(viewer)
    widget.add_model(packages_dir / "tagan")
    wait_idle(qtbot, widget)
    widget.samples_box.setValue(50)
    widget.tile_box.setValue(64)
    reports = []
    job = widget.run()
    job._bridge.progressed.connect(lambda done, total, _: reports.append((done, total)))
    qtbot.waitUntil(lambda: len(reports) > 0, timeout=TIMEOUT_MS)
    assert widget.cancel_button.isEnabled()
    widget.cancel()
    wait_idle(qtbot, widget)
    assert reports[-1][0] < reports[-1][1], "the run finished before it was cancelled; make it longer"
    assert results(viewer) == [] and "Cancelled" in widget.status.text()
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()
    # the viewer and the widget still work
    viewer.add_image(image[0, :64, :64], name="small")
    widget.input_combo.set_layer(viewer.layers["small"])
    widget.samples_box.setValue(2)
    widget.run()
    wait_idle(qtbot, widget)
    assert widget.last_error is None and {l.metadata["nanoscopy_role"] for l in results(viewer)} == {"restored", "uncertainty"}


def test_incompatible_layer_gives_a_notification_not_a_crash(make_napari_viewer, qtbot, notifications):
    from napari_nanoscopy._widgets.restore import RestoreWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(1).random((16, 16)), name="tiny")
    viewer.add_image(np.random.default_rng(1).random((32, 32, 3)), name="photo", rgb=True)
    viewer.add_labels(np.zeros((64, 64), dtype=np.uint8), name="mask")
    widget = RestoreWidget(viewer)
    assert [l.name for l in widget.input_combo.layers()] == ["tiny"]  # RGB and Labels layers are not offered
    widget.select_model("l2l-twolabel")
    widget.run()
    wait_idle(qtbot, widget)
    assert "smaller than the 32x32 minimum" in widget.last_error
    assert any("smaller than the 32x32 minimum" in str(n.message) for n in notifications)
    assert results(viewer) == [] and widget.run_button.isEnabled()
    widget.add_model("/no/such/model")
    wait_idle(qtbot, widget)
    assert "No model file, folder or bundled model" in widget.last_error


def test_restore_lists_bundled_models_through_the_packages_api(make_napari_viewer):
    from napari_nanoscopy._widgets.restore import RestoreWidget
    from napari_nanoscopy.formats import list_models

    widget = RestoreWidget(make_napari_viewer())
    bundled = [entry.card.name for entry in widget._entries if entry.bundled]
    assert bundled == [card.name for card in list_models()] and bundled


REAL_AXON_NETWORK = Path(__file__).parents[2] / "shared" / "real" / "STEDActinFCN" / "axon" / "network"


@pytest.mark.skipif(not (REAL_AXON_NETWORK / "params.net").is_file(), reason="the real STEDActinFCN files are absent")
def test_restore_refuses_a_segmenter_only_model_and_does_not_list_it(make_napari_viewer, qtbot):
    from napari_nanoscopy._widgets._registry import REGISTRY
    from napari_nanoscopy._widgets.restore import RestoreWidget
    from napari_nanoscopy.formats import load_model

    widget = RestoreWidget(make_napari_viewer())
    count = len(widget._entries)
    widget.add_model(REAL_AXON_NETWORK)
    wait_idle(qtbot, widget)
    assert "only segments images (rings) and restores nothing" in widget.last_error
    assert "Segment widget" in widget.last_error and len(widget._entries) == count
    REGISTRY.add(str(REAL_AXON_NETWORK), load_model(REAL_AXON_NETWORK).card)  # opened in the Segment widget
    assert len(widget._entries) == count


def test_result_layers_save_with_pixel_size_and_provenance(make_napari_viewer, qtbot, tmp_path):
    from napari_nanoscopy._widgets.restore import RestoreWidget

    viewer = make_napari_viewer()
    open_sample(viewer)
    widget = RestoreWidget(viewer)
    widget.run()
    wait_idle(qtbot, widget)
    [restored] = results(viewer)
    path = tmp_path / "restored.ome.tif"
    viewer.layers.selection = {restored}
    written = viewer.layers.save(str(path), selected=True, plugin="napari-nanoscopy")
    assert written == [str(path)]
    image = read_image(path)
    assert image.pixel_size_nm == pytest.approx(20.0)
    assert image.metadata["model"] == "l2l-twolabel" and image.metadata["weights_sha256"] == restored.metadata["weights_sha256"]
    [reopened] = viewer.open(str(path), plugin="napari-nanoscopy")
    assert tuple(reopened.scale) == (20.0, 20.0)


# -- Train -------------------------------------------------------------------------------------


def test_train_from_two_layers_saves_a_model_restore_can_use(make_napari_viewer, qtbot, tmp_path):
    from napari_nanoscopy._widgets.restore import RestoreWidget
    from napari_nanoscopy._widgets.train import TrainWidget, pairs_folder
    from napari_nanoscopy.formats import load_model

    viewer = make_napari_viewer()
    open_sample(viewer)
    viewer.add_image(np.zeros((128, 128)), name="unrelated layer on top")
    widget = TrainWidget(viewer)
    restore = RestoreWidget(viewer)
    assert widget.input_combo.layer().name == "weak label (input)"
    assert widget.target_combo.layer().name == "better label (target)"
    widget.family_combo.setCurrentText("l2l")
    from napari_nanoscopy.training.config import MAX_BATCH, MAX_PATCH
    widget.batch_box.setValue(4096)
    widget.patch_box.setValue(100_000)
    assert (widget.batch_box.value(), widget.patch_box.value()) == (MAX_BATCH, MAX_PATCH)  # no value train() refuses
    widget.steps_box.setValue(3)
    widget.patch_box.setValue(64)
    widget.batch_box.setValue(2)
    out = tmp_path / "my-l2l"
    widget.output_edit.setText(str(out))
    bar = widget.progress_bar
    shown = []  # (value, maximum, the job still running) at every change of the bar
    bar.valueChanged.connect(lambda value: shown.append((value, bar.maximum(), widget.job is not None)))
    widget.train()
    wait_idle(qtbot, widget)
    assert widget.last_error is None, widget.last_error
    running = [(value, maximum) for value, maximum, busy in shown if busy]
    assert running and all(value < maximum for value, maximum in running), running  # saving comes after step 3
    assert bar.value() == bar.maximum() > 0
    ticks = widget.plot.x_ticks()
    assert ticks and all(float(tick).is_integer() for tick, _ in ticks), ticks  # whole steps on the loss curve
    package = load_model(out)
    assert package.card.training["steps"] == 3 and package.card.pixel_size_nm == pytest.approx(20.0)
    assert (pairs_folder(out) / "input" / "plane_0000.ome.tif").is_file()
    assert set(widget.history) and len(next(iter(widget.history.values()))) == 3
    assert widget.plot.lines  # the loss curve was drawn
    assert restore.select_model(str(out.resolve()))  # the trained model is offered in Restore
    assert restore.selected_entry().card.name == "my-l2l"


def test_train_stop_then_resume_finishes_the_run(make_napari_viewer, qtbot, tmp_path):
    from napari_nanoscopy._widgets.train import TrainWidget
    from napari_nanoscopy.formats import load_model

    viewer = make_napari_viewer()
    open_sample(viewer)
    widget = TrainWidget(viewer)
    widget.steps_box.setValue(30)
    widget.patch_box.setValue(64)
    widget.batch_box.setValue(1)
    out = tmp_path / "stopped"
    widget.output_edit.setText(str(out))
    job = widget.train()
    stop_after_first_step(qtbot, widget, job, TIMEOUT_MS)
    assert widget.stopped and not out.exists()
    assert "resume=True" in widget.status.text()
    assert (tmp_path / "stopped.checkpoint" / "checkpoint.pt").is_file()
    widget.train(resume=True)
    wait_idle(qtbot, widget)
    assert widget.last_error is None, widget.last_error
    card = load_model(out).card
    assert card.training["resumed"] is True and card.training["steps"] == 30
    assert max(step for step, _ in next(iter(widget.history.values()))) == 30


def test_train_from_a_folder_of_pairs(make_napari_viewer, qtbot, tmp_path, smooth_image):
    from napari_nanoscopy._widgets.train import TrainWidget, write_layer_pairs
    from napari_nanoscopy.formats import load_model

    rng = np.random.default_rng(2)
    noisy = smooth_image[None] + rng.normal(0, 10, (2,) + smooth_image.shape).astype(np.float32)
    write_layer_pairs(tmp_path / "pairs", noisy, np.stack([smooth_image] * 2), None, 30.0, None)
    widget = TrainWidget(make_napari_viewer())
    widget.source_combo.setCurrentIndex(1)
    widget.folder_edit.setText(str(tmp_path / "pairs"))
    widget.steps_box.setValue(2)
    widget.patch_box.setValue(64)
    widget.batch_box.setValue(1)
    widget.output_edit.setText(str(tmp_path / "from-folder.zip"))
    widget.train()
    wait_idle(qtbot, widget)
    assert widget.last_error is None, widget.last_error
    card = load_model(tmp_path / "from-folder.zip").card
    assert card.training["n_pairs"] == 2 and card.pixel_size_nm == pytest.approx(30.0)


def test_train_errors_are_notifications(make_napari_viewer, qtbot, notifications, tmp_path):
    from napari_nanoscopy._widgets.train import TrainWidget

    viewer = make_napari_viewer()
    open_sample(viewer)
    widget = TrainWidget(viewer)
    widget.train()
    assert "Choose where to save" in widget.last_error
    widget.output_edit.setText(str(tmp_path / "tagan-without-task"))
    widget.family_combo.setCurrentText("tagan")
    widget.steps_box.setValue(2)
    widget.train()
    wait_idle(qtbot, widget)
    assert "task/ folder" in widget.last_error
    assert any("task/ folder" in str(n.message) for n in notifications)


# -- Metrics -----------------------------------------------------------------------------------


def beads(sigma_px, seed=0, size=192, spacing=32):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(float)
    image = np.zeros((size, size))
    for cy in range(spacing // 2 + 8, size - 16, spacing):
        for cx in range(spacing // 2 + 8, size - 16, spacing):
            oy, ox = rng.uniform(-2, 2, 2)
            image += np.exp(-((y - cy - oy) ** 2 + (x - cx - ox) ** 2) / (2 * sigma_px**2))
    return image + 0.01 * rng.normal(size=image.shape)


def test_metrics_table_histogram_and_copy(make_napari_viewer, qtbot):
    from qtpy.QtGui import QGuiApplication

    from napari_nanoscopy._widgets.metrics import MetricsWidget

    viewer = make_napari_viewer()
    viewer.add_image(beads(3.0), name="reference", scale=(20.0, 20.0), units=("nm", "nm"))
    viewer.add_image(beads(3.0) + 0.05 * np.random.default_rng(5).normal(size=(192, 192)), name="result",
                     scale=(20.0, 20.0), units=("nm", "nm"))
    widget = MetricsWidget(viewer)
    widget.result_combo.set_layer(viewer.layers["result"])
    widget.reference_combo.set_layer(viewer.layers["reference"])
    widget.fwhm_box.setChecked(True)
    widget.separation_box.setValue(400.0)
    widget.compute()
    wait_idle(qtbot, widget)
    assert widget.last_error is None, widget.last_error
    rows = {row[0]: row[1:] for row in widget.report.rows}
    assert float(rows["PSNR [dB]"][0]) > 15
    assert 0 < float(rows["SSIM"][0]) < 1 and float(rows["NRMSE"][0]) > 0
    assert "MS-SSIM (5 scales)" in rows and rows["Intensities"][0].startswith("normalised")
    expected_fwhm = 2.3548 * 3.0 * 20.0
    for name in ("result", "reference"):
        assert np.median(widget.report.fwhm_nm[name]) == pytest.approx(expected_fwhm, rel=0.1)
        assert len(widget.report.fwhm_nm[name]) >= 16
    assert "n = " in rows["Bead FWHM, median [nm]"][0]
    assert rows["Resolution, decorrelation [nm]"][0] != "no structure above noise"
    assert len(widget.histogram.histograms) == 2
    assert widget.table.rowCount() == len(widget.report.rows)
    text = widget.copy()
    assert QGuiApplication.clipboard().text() == text
    assert text.splitlines()[0] == "Metric\tresult\treference" and "\tinf" not in text
    # without normalisation an intensity offset lowers PSNR; with it the offset does not matter
    viewer.layers["result"].data = viewer.layers["result"].data * 3 + 10
    widget.compute()
    wait_idle(qtbot, widget)
    assert float(rows["PSNR [dB]"][0]) == pytest.approx(
        float({r[0]: r[1] for r in widget.report.rows}["PSNR [dB]"]), abs=0.5)
    widget.normalise_box.setChecked(False)
    widget.compute()
    wait_idle(qtbot, widget)
    assert float({r[0]: r[1] for r in widget.report.rows}["PSNR [dB]"]) < 0


def test_metrics_dice_of_labels_and_mismatch_notification(make_napari_viewer, qtbot, notifications):
    from napari_nanoscopy._widgets.metrics import MetricsWidget

    viewer = make_napari_viewer()
    truth = np.zeros((64, 64), dtype=np.uint8)
    truth[10:30, 10:30] = 1
    guess = np.zeros_like(truth)
    guess[10:30, 20:40] = 1
    viewer.add_labels(truth, name="truth")
    viewer.add_labels(guess, name="guess")
    viewer.add_image(np.random.default_rng(0).random((64, 64)), name="image")
    widget = MetricsWidget(viewer)
    widget.resolution_box.setChecked(False)
    widget.result_combo.set_layer(viewer.layers["guess"])
    widget.reference_combo.set_layer(viewer.layers["truth"])
    widget.compute()
    wait_idle(qtbot, widget)
    rows = {row[0]: row[1] for row in widget.report.rows}
    assert float(rows["Dice (foreground)"]) == pytest.approx(0.5)
    assert float(rows["IoU (foreground)"]) == pytest.approx(1 / 3, rel=1e-3)
    widget.reference_combo.set_layer(viewer.layers["image"])
    widget.compute()
    wait_idle(qtbot, widget)
    assert "Labels layer and the other an image" in widget.last_error
    assert any("Labels layer" in str(n.message) for n in notifications)


def test_metrics_of_the_displayed_plane_of_a_stack(make_napari_viewer, qtbot):
    from napari_nanoscopy._widgets.metrics import MetricsWidget

    viewer = make_napari_viewer()
    truth = np.zeros((2, 64, 64), dtype=np.uint8)
    truth[:, 10:30, 10:30] = 1
    guess = truth.copy()
    guess[1, 10:30, 20:40] = 1
    guess[1, 10:30, 10:20] = 0  # plane 1: half overlap; plane 0: identical
    viewer.add_labels(truth, name="truth")
    viewer.add_labels(guess, name="guess")
    widget = MetricsWidget(viewer)
    widget.resolution_box.setChecked(False)
    widget.result_combo.set_layer(viewer.layers["guess"])
    widget.reference_combo.set_layer(viewer.layers["truth"])
    widget.compute()
    wait_idle(qtbot, widget)
    assert float({r[0]: r[1] for r in widget.report.rows}["Dice (foreground)"]) == pytest.approx(0.75)
    widget.scope_combo.setCurrentIndex(1)
    viewer.dims.set_current_step(0, 1)
    widget.compute()
    wait_idle(qtbot, widget)
    assert float({r[0]: r[1] for r in widget.report.rows}["Dice (foreground)"]) == pytest.approx(0.5)


def test_removed_widgets_stop_listening_to_the_viewer(make_napari_viewer, qtbot):
    from napari_nanoscopy._widgets.restore import RestoreWidget

    viewer = make_napari_viewer()
    widget = RestoreWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Restore")
    viewer.window.remove_dock_widget(widget)
    widget.deleteLater()
    qtbot.wait(50)
    viewer.add_image(np.zeros((64, 64)), name="after")  # must not raise from a deleted combo box
    viewer.layers["after"].name = "renamed"
    assert [layer.name for layer in viewer.layers] == ["renamed"]


def test_layer_pairs_with_task_labels_become_one_mask_per_class(tmp_path):
    from napari_nanoscopy._widgets.train import write_layer_pairs
    from napari_nanoscopy.errors import NanoscopyError

    inputs = np.random.default_rng(0).random((2, 48, 48)).astype(np.float32)
    labels = np.zeros((48, 48), dtype=np.int32)
    labels[5:10, :] = 1
    labels[20:30, 20:30] = 2
    count = write_layer_pairs(tmp_path / "pairs", inputs, inputs * 2, labels, 25.0, ["rings", "fibres"])
    assert count == 2
    task = read_image(tmp_path / "pairs" / "task" / "plane_0001.ome.tif")
    assert task.axes == "CYX" and task.channel_names == ["rings", "fibres"] and task.pixel_size_nm == pytest.approx(25.0)
    np.testing.assert_array_equal(task.data[1], labels == 2)
    assert read_image(tmp_path / "pairs" / "target" / "plane_0000.ome.tif").pixel_size_nm == pytest.approx(25.0)
    with pytest.raises(NanoscopyError, match="same size"):
        write_layer_pairs(tmp_path / "bad", inputs, inputs[:, :40], None, 25.0, None)
