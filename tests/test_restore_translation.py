"""Translation in napari: the Restore widget's *Direction* row for a tagan-cycle package (A → B, B → A),
the result at the input's geometry with its provenance, and a refused direction shown as a message; under Xvfb."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SMALL_TAGAN, make_card, wait_idle

from napari_nanoscopy.models import build_generator
from napari_nanoscopy.packages import save_model
from napari_nanoscopy.translation import translate

TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def cycle_package(tmp_path_factory):
    """A small translation package with two different generators (sim -> real and back)."""
    torch.manual_seed(0)
    card = make_card(name="sim-to-real", generator=SMALL_TAGAN, input_channels=["domain A"],
                     output_channels=["domain B"],
                     cycle={"domains": {"a": "sim", "b": "real"}, "reverse_generator": dict(SMALL_TAGAN)})
    path = tmp_path_factory.mktemp("cycle") / "sim-to-real"
    save_model(path, card, build_generator("tagan", **SMALL_TAGAN), reverse_generator=build_generator("tagan", **SMALL_TAGAN))
    return path


@pytest.fixture
def notifications():
    from napari.utils.notifications import notification_manager

    seen = []
    notification_manager.notification_ready.connect(seen.append)
    yield seen
    notification_manager.notification_ready.disconnect(seen.append)


@pytest.fixture
def setup(make_napari_viewer, qtbot, monkeypatch, cycle_package):
    from napari_nanoscopy._widgets._registry import REGISTRY
    from napari_nanoscopy._widgets.restore import RestoreWidget

    monkeypatch.setattr(REGISTRY, "_models", {})
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    image = rng.gamma(2.0, 10.0, (2, 64, 64)).astype(np.float32)
    viewer.add_image(image, name="real stack", scale=(1.0, 0.02, 0.02), translate=(0.0, 1.5, -0.7),
                     units=("pixel", "um", "um"))
    widget = RestoreWidget(viewer)
    widget.add_model(cycle_package)
    wait_idle(qtbot, widget, TIMEOUT_MS)
    widget.input_combo.set_layer(viewer.layers["real stack"])
    widget.device_combo.setCurrentText("cpu")
    return viewer, widget, image


def run(widget, qtbot):
    widget.run()
    wait_idle(qtbot, widget, TIMEOUT_MS)


def translated_layers(viewer):
    return [layer for layer in viewer.layers if (layer.metadata or {}).get("nanoscopy_role") == "translated"]


def test_the_direction_row_shows_for_translation_models_only(setup):
    _, widget, _ = setup
    assert widget.selected_entry().card.name == "sim-to-real"
    assert widget.direction_combo.isVisibleTo(widget) and widget.direction_label.isVisibleTo(widget)
    texts = [widget.direction_combo.itemText(index) for index in range(2)]
    assert texts == ["A → B (sim → real)", "B → A (real → sim)"]
    widget.select_model("l2l-twolabel")
    assert not widget.direction_combo.isVisibleTo(widget) and widget.direction() == "a2b"


def test_both_directions_at_the_input_geometry_with_provenance(setup, qtbot, cycle_package):
    viewer, widget, image = setup
    widget.samples_box.setValue(1)
    run(widget, qtbot)
    assert widget.last_error is None, widget.last_error
    widget.direction_combo.setCurrentIndex(1)
    assert "real → sim" in widget.direction_combo.currentText()
    run(widget, qtbot)
    assert widget.last_error is None, widget.last_error
    a2b, b2a = sorted(translated_layers(viewer), key=lambda layer: layer.metadata["translation"]["direction"])
    source = viewer.layers["real stack"]
    for layer in (a2b, b2a):
        assert layer.data.shape == image.shape
        np.testing.assert_allclose(layer.scale, source.scale)
        np.testing.assert_allclose(layer.translate, source.translate)
        assert layer.metadata["source_layer"] == "real stack" and layer.metadata["model_source"] == str(cycle_package)
    assert a2b.metadata["translation"] == {"direction": "a2b", "from": "sim", "to": "real"}
    assert b2a.metadata["translation"] == {"direction": "b2a", "from": "real", "to": "sim"}
    assert b2a.metadata["model"] == "sim-to-real (b2a)" and a2b.metadata["model"] == "sim-to-real"
    assert not np.allclose(a2b.data, b2a.data)  # the reverse generator ran
    expected = translate(image[1], cycle_package, "b2a", device="cpu", pixel_size_nm=20.0, samples=1).mean
    np.testing.assert_allclose(b2a.data[1], expected, rtol=1e-4, atol=1e-4)
    assert "Done:" in widget.status.text()


def test_a_model_that_translates_nothing_back_is_a_message(setup, qtbot, notifications):
    viewer, widget, _ = setup
    layers_before = list(viewer.layers)
    assert widget.select_model("l2l-twolabel")
    widget.direction_combo.setCurrentIndex(1)  # the row is hidden for it; asked anyway (e.g. from a script)
    run(widget, qtbot)
    assert widget.last_error.startswith("The model 'l2l-twolabel' has one generator and translates nothing back")
    assert widget.status.text() == widget.last_error and "\n" not in widget.last_error
    assert any("translates nothing back" in str(n.message) for n in notifications)
    assert list(viewer.layers) == layers_before and widget.run_button.isEnabled()
