"""The Train widget's ``tagan-cycle``: domain A and domain B, each a folder or a set of image layers,
against a frozen task network; its messages before any image is written; stop and resume; under Xvfb."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from napari_nanoscopy.formats import load_model
from napari_nanoscopy.io import read_image
from conftest import stop_after_first_step, wait_idle

TIMEOUT_MS = 180_000
FROZEN = "unet-live-factin"
SIZE = 48


def blobs(n, sigma, seed):
    """Unpaired toy images: spots, sharp (domain A) or blurred (domain B), (n, SIZE, SIZE)."""
    rng = np.random.default_rng(seed)
    spots = np.zeros((n, SIZE, SIZE), np.float32)
    for plane in spots:
        rows, cols = rng.integers(0, SIZE, (2, 10))
        plane[rows, cols] = rng.uniform(50, 100, 10)
    return np.stack([ndimage.gaussian_filter(p, sigma) * 10 for p in spots]) + rng.poisson(1.0, spots.shape)


@pytest.fixture
def registry(monkeypatch):
    from napari_nanoscopy._widgets._registry import REGISTRY

    monkeypatch.setattr(REGISTRY, "_models", {})
    return REGISTRY


@pytest.fixture(autouse=True)
def tiny_networks(monkeypatch):
    """Generators and discriminators of tiny widths (the widget trains the paper's sizes)."""
    from napari_nanoscopy.training import cycle

    defaults, build = cycle.paper_defaults, cycle.build_discriminator
    monkeypatch.setattr(cycle, "paper_defaults", lambda family: {**defaults(family), "ngf": 4, "n_blocks": 1})
    monkeypatch.setattr(cycle, "build_discriminator", lambda family, **kwargs: build(family, **{"ndf": 4, **kwargs}))


@pytest.fixture
def viewer(make_napari_viewer, registry):
    viewer = make_napari_viewer()
    viewer.add_image(blobs(2, 1.0, 0), name="sharp stack", scale=(1, 0.02, 0.02), units=("pixel", "um", "um"))
    viewer.add_image(blobs(1, 1.0, 1)[0], name="sharp single", scale=(0.02, 0.02), units=("um", "um"))
    viewer.add_image(blobs(1, 2.5, 2)[0], name="blurred 1", scale=(0.02, 0.02), units=("um", "um"))
    viewer.add_image(blobs(1, 2.5, 3)[0], name="blurred 2", scale=(0.02, 0.02), units=("um", "um"))
    return viewer


def cycle_widget(viewer, out: Path, steps: int = 2):
    from napari_nanoscopy._widgets.train import TrainWidget

    widget = TrainWidget(viewer)
    widget.family_combo.setCurrentText("tagan-cycle")
    widget.steps_box.setValue(steps)
    widget.patch_box.setValue(32)
    widget.device_combo.setCurrentText("cpu")
    widget.output_edit.setText(str(out))
    assert widget.select_task_network(FROZEN)
    return widget


def layers(viewer, *names):
    return [viewer.layers[name] for name in names]


def test_the_family_shows_two_domains_and_the_task_network(viewer):
    from napari_nanoscopy._widgets.train import TrainWidget

    widget = TrainWidget(viewer)
    widget.family_combo.setCurrentText("tagan-cycle")
    assert widget.cycle_sources.isVisibleTo(widget) and widget.task_network_row.isVisibleTo(widget)
    assert not widget.source_pages.isVisibleTo(widget) and not widget.source_combo.isVisibleTo(widget)
    assert not widget.start_combo.isEnabled()  # tagan-cycle starts from fresh networks
    assert "TA-CycleGAN" in widget.family_note.text()
    listed = widget.cycle_sources.domain_a.layer_list
    assert [listed.item(row).text() for row in range(listed.count())] == ["blurred 2", "blurred 1", "sharp single",
                                                                          "sharp stack"]
    widget.cycle_sources.domain_a.use_layers(layers(viewer, "sharp stack"))
    viewer.layers["sharp stack"].name = "renamed"  # the tick follows the layer
    assert [layer.name for layer in listed.ticked()] == ["renamed"]
    viewer.layers.remove("renamed")
    assert listed.ticked() == [] and listed.count() == 3
    widget.family_combo.setCurrentText("l2l")
    assert not widget.cycle_sources.isVisibleTo(widget) and widget.source_pages.isVisibleTo(widget)
    assert widget.start_combo.isEnabled() and widget.task_network() is None


def test_a_run_from_layers_saves_a_translation_package_and_resumes(viewer, qtbot, tmp_path):
    from napari_nanoscopy._widgets._train_sources import domain_folder

    out = tmp_path / "cycle"
    widget = cycle_widget(viewer, out, steps=12)
    widget.cycle_sources.domain_a.use_layers(layers(viewer, "sharp stack", "sharp single"))
    widget.cycle_sources.domain_b.use_layers(layers(viewer, "blurred 1", "blurred 2"))
    job = widget.train()
    stop_after_first_step(qtbot, widget, job, TIMEOUT_MS)
    assert widget.stopped and not out.exists(), widget.last_error
    assert (tmp_path / "cycle.checkpoint" / "checkpoint.pt").is_file()
    written = sorted(path.name for path in domain_folder(out, "a").iterdir())
    assert written == ["00_sharp_single_0000.ome.tif", "01_sharp_stack_0000.ome.tif", "01_sharp_stack_0001.ome.tif"]
    assert read_image(domain_folder(out, "b") / "01_blurred_1_0000.ome.tif").pixel_size_nm == pytest.approx(20.0)
    widget.train(resume=True)
    wait_idle(qtbot, widget, TIMEOUT_MS)
    assert widget.last_error is None, widget.last_error
    package = load_model(out)
    card = package.card
    assert card.training["method"] == "tagan-cycle" and card.training["resumed"] is True
    assert card.training["steps"] == 12 and card.training["n_images_a"] == 3
    assert card.generator.kwargs["ngf"] == 4  # the tiny widths
    assert card.training["domain_b"]["n_images"] == 2 and card.training["task_network"]["source"] == FROZEN
    assert card.cycle.domain_a == "cycle.domain_a" and package.reverse_generator is not None
    assert card.pixel_size_nm == pytest.approx(20.0)
    assert {"cycle_a", "cycle_b", "task"} <= set(widget.history)
    assert max(step for step, _ in widget.history["task"]) == 12
    assert "Restore lists it now" in widget.status.text()


def test_a_run_from_two_folders(viewer, qtbot, tmp_path):
    from napari_nanoscopy._widgets._train_sources import write_domain_layers

    write_domain_layers(tmp_path / "sim", [("a", blobs(2, 1.0, 4), 20.0)])
    write_domain_layers(tmp_path / "real", [("b", blobs(2, 2.5, 5), 20.0)])
    out = tmp_path / "from-folders.zip"
    widget = cycle_widget(viewer, out)
    widget.cycle_sources.domain_a.use_folder(tmp_path / "sim")
    widget.cycle_sources.domain_b.use_folder(tmp_path / "real")
    widget.train()
    wait_idle(qtbot, widget, TIMEOUT_MS)
    assert widget.last_error is None, widget.last_error
    card = load_model(out).card
    assert (card.cycle.domain_a, card.cycle.domain_b) == ("sim", "real")


@pytest.mark.parametrize("setup, message", [
    ("no task network", "tagan-cycle keeps a segmentation of domain A through the cycle: pick a Task network that "
                        "segments the domain A images (or open one with Open…)."),
    ("no layers", "Tick at least one image layer of domain A, or choose a folder of its images."),
    ("no folder", "Choose the folder of domain B images (TIFFs, or a dataset folder with target/), or tick image layers."),
    ("one layer twice", "The layer 'blurred 1' is ticked in both domains; each layer belongs to domain A or to domain B."),
    ("one folder twice", "Domain A and domain B are the same folder"),
    ("resume without layers", "There are no domain A images in"),
])
def test_messages_before_any_image_is_written(viewer, qtbot, tmp_path, setup, message):
    out = tmp_path / "refused"
    widget = cycle_widget(viewer, out)
    sources = widget.cycle_sources
    sources.domain_a.use_layers(layers(viewer, "sharp single"))
    sources.domain_b.use_layers(layers(viewer, "blurred 1"))
    resume = False
    if setup == "no task network":
        widget.select_task_network(None)
    elif setup == "no layers":
        sources.domain_a.use_layers([])
    elif setup == "no folder":
        sources.domain_b.use_folder("")
    elif setup == "one layer twice":
        sources.domain_a.use_layers(layers(viewer, "sharp single", "blurred 1"))
    elif setup == "one folder twice":
        sources.domain_a.use_folder(tmp_path)
        sources.domain_b.use_folder(tmp_path)
    else:
        resume = True
    assert widget.train(resume=resume) is None
    assert widget.last_error.startswith(message) and "\n" not in widget.last_error
    assert widget.status.text() == widget.last_error
    assert sorted(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize("setup, message", [
    ("missing folder", "The domain B folder {tmp}/absent does not exist; give a folder of TIFF images."),
    ("other pixel size", "Domain A has 20 nm pixels but domain B 30 nm; a translation keeps the pixel grid, so "
                         "resample one domain to the other's pixel size first."),
])
def test_the_runs_refusals_are_shown(viewer, qtbot, tmp_path, setup, message):
    """Checks made when the run reads the domains (in the worker), before any step."""
    out = tmp_path / "refused"
    widget = cycle_widget(viewer, out)
    widget.cycle_sources.domain_a.use_layers(layers(viewer, "sharp single"))
    if setup == "missing folder":
        widget.cycle_sources.domain_b.use_folder(tmp_path / "absent")
    else:
        viewer.add_image(blobs(1, 2.5, 6)[0], name="coarser", scale=(0.03, 0.03), units=("um", "um"))
        widget.cycle_sources.domain_b.use_layers(layers(viewer, "coarser"))
    widget.train()
    wait_idle(qtbot, widget, TIMEOUT_MS)
    assert widget.last_error == message.format(tmp=tmp_path) and widget.status.text() == message.format(tmp=tmp_path)
    assert not out.exists() and not (tmp_path / "refused.checkpoint").exists()
