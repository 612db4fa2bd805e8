"""The Train widget's *Task network* row: a frozen segmenting model scores the generator of the
families that take one (``TrainingConfig.task_network``), under Xvfb."""

from pathlib import Path

import pytest

from napari_nanoscopy.formats import bundled_models_dir, list_models, load_model
from napari_nanoscopy.segmentation import can_segment
from napari_nanoscopy.training.config import FROZEN_TASK_FAMILIES, UNPAIRED_FAMILIES
from conftest import wait_idle

FROZEN = "unet-live-factin"
DENDRITE_UNET = Path(__file__).resolve().parents[2] / "shared" / "real" / "STEDActinFCN" / "dendrite" / "network"


@pytest.fixture
def registry(monkeypatch):
    """The session's model registry, emptied for this test and restored after it."""
    from napari_nanoscopy._widgets._registry import REGISTRY

    monkeypatch.setattr(REGISTRY, "_models", {})
    return REGISTRY


@pytest.fixture
def widget(make_napari_viewer, registry):
    from napari_nanoscopy._widgets.train import TrainWidget

    viewer = make_napari_viewer()
    viewer.open_sample("napari-nanoscopy", "twolabel")  # an input and a target layer, no task labels
    return TrainWidget(viewer)


def listed(widget) -> list:
    combo = widget.task_network_combo
    return [combo.itemData(index) for index in range(combo.count())]


def test_the_row_shows_for_the_frozen_task_families_only(widget):
    from napari_nanoscopy._widgets.train import NO_TASK_NETWORK

    families = [widget.family_combo.itemText(index) for index in range(widget.family_combo.count())]
    assert set(FROZEN_TASK_FAMILIES) < set(families)
    for family in families:
        widget.family_combo.setCurrentText(family)
        takes_one = family in FROZEN_TASK_FAMILIES + UNPAIRED_FAMILIES  # tagan-cycle: its domain A segmenter
        assert widget.task_network_row.isVisibleTo(widget) == takes_one, family
        assert widget.task_network_label.isVisibleTo(widget) == takes_one, family
    widget.family_combo.setCurrentText("tagan")
    assert widget.task_network_combo.itemText(0) == NO_TASK_NETWORK and widget.task_network() is None
    assert widget.select_task_network(FROZEN) and widget.task_network() == FROZEN
    widget.family_combo.setCurrentText("l2l")  # hidden: the run gets none, so the config has nothing to refuse
    assert not widget.task_network_row.isVisibleTo(widget) and widget.task_network() is None


def test_it_lists_the_models_that_segment_and_the_opened_ones(widget, registry, tmp_path):
    bundled = {card.name: card for card in list_models()}
    assert listed(widget) == [None] + [name for name, card in bundled.items() if can_segment(card)]
    assert FROZEN in listed(widget) and "l2l-twolabel" not in listed(widget)
    # A model opened or trained elsewhere in the session is listed if it segments, as in the Segment widget.
    segmenting, restoring = tmp_path / "segmenting", tmp_path / "restoring"
    registry.add(segmenting, bundled[FROZEN])
    registry.add(restoring, bundled["l2l-twolabel"])
    assert str(segmenting.resolve()) in listed(widget) and str(restoring.resolve()) not in listed(widget)
    # Open… lists a folder (a params.net folder, a package) and selects it.
    widget.family_combo.setCurrentText("tagan-live")
    folder = tmp_path / "network"
    folder.mkdir()
    widget.add_task_network(folder)
    assert widget.task_network() == str(folder.resolve()) and listed(widget)[-1] == str(folder.resolve())
    registry.add(tmp_path / "another", bundled[FROZEN])  # relisting keeps the choice
    assert widget.task_network() == str(folder.resolve())


def configure_short_tagan(widget, out: Path) -> None:
    widget.family_combo.setCurrentText("tagan")
    widget.steps_box.setValue(2)
    widget.patch_box.setValue(64)
    widget.batch_box.setValue(1)
    widget.device_combo.setCurrentText("cpu")
    widget.output_edit.setText(str(out))


def test_a_tagan_run_against_a_frozen_task_network(widget, qtbot, tmp_path):
    out = tmp_path / "tagan-frozen"
    configure_short_tagan(widget, out)
    assert widget.task_combo.layer() is None  # no task labels: the frozen network's segmentation replaces them
    assert widget.select_task_network(FROZEN)
    widget.train()
    wait_idle(qtbot, widget)
    assert widget.last_error is None, widget.last_error
    card = load_model(out).card
    record = card.training["task_network"]
    assert record["source"] == FROZEN and record["weights_sha256"] == load_model(FROZEN).card.weights_sha256
    assert record["classes"] == ["rings", "fibres"] and card.training["final_losses"]["g_task"] > 0
    assert card.task_network is None  # frozen: the package does not carry it


def test_a_model_that_does_not_segment_is_refused_with_the_training_message(widget, qtbot, tmp_path):
    out = tmp_path / "refused"
    configure_short_tagan(widget, out)
    widget.add_task_network(bundled_models_dir() / "l2l-twolabel")
    widget.train()
    wait_idle(qtbot, widget)
    assert widget.last_error.startswith("The model 'l2l-twolabel' does not segment"), widget.last_error
    assert widget.status.text() == widget.last_error and not out.exists()


@pytest.mark.skipif(not DENDRITE_UNET.is_dir(), reason="the authors' dendrite U-Net is not in ../shared/real")
def test_an_opened_params_net_folder_as_task_network(widget, qtbot, tmp_path):
    out = tmp_path / "tagan-dendrite-unet"
    configure_short_tagan(widget, out)
    widget.add_task_network(DENDRITE_UNET)
    widget.train()
    wait_idle(qtbot, widget)
    assert widget.last_error is None, widget.last_error
    record = load_model(out).card.training["task_network"]
    assert record["source"] == str(DENDRITE_UNET.resolve()) and record["probability_thresholds"] == [0.25, 0.4]
