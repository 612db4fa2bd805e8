"""Capture the screenshots in docs/screenshots/ from a real napari viewer.

Run it under a virtual screen whenever the widgets change::

    xvfb-run -a -s "-screen 0 1600x1000x24" python3 docs/make_screenshots.py

It opens the bundled sample(s), runs each widget as a user would (Restore with the sample's
model, Metrics of the restored image against the target, Live assist on the pySTED simulator
with the bundled live models, Train for a few steps) and saves the whole window, dock widgets
included. Models and samples are found through the
packages and samples APIs, so new bundled models show up without editing this script.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

OUT = Path(__file__).parent / "screenshots"
WINDOW = (1500, 920)
TRAIN_STEPS = 40
CYCLE_STEPS = 20  # tagan-cycle, paper-size networks on 128-px patches: about 7 s a step on the shared 2-core CPU
LIVE_FRAMES = 6
# The real axonal STED images (and the authors' network and polygons) of ../shared/real/STEDActinFCN
REAL_AXON = Path(__file__).resolve().parents[2] / "shared" / "real" / "STEDActinFCN" / "axon"


def wait(widget, timeout_s: float = 1800.0) -> None:
    app = QApplication.instance()
    start = time.monotonic()
    while widget.job is not None and not widget.job.finished:  # Live assist keeps its finished job
        app.processEvents()
        time.sleep(0.02)
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"{type(widget).__name__} did not finish within {timeout_s:.0f} s")
    settle()


def settle(seconds: float = 0.5) -> None:
    app = QApplication.instance()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def save(viewer, name: str) -> Path:
    settle()
    path = OUT / name
    image = viewer.window._qt_window.grab()
    image.save(str(path))
    print(f"wrote {path} ({image.width()}x{image.height()})")
    return path


def role_of(layer) -> str:
    meta = layer.metadata or {}
    return meta.get("nanoscopy_role") or meta.get("role") or ""


def show_in_grid(viewer, roles: list[str]) -> None:
    """Show the layers of these roles side by side, in this order, with their names on top."""
    chosen = [next(l for l in viewer.layers if role_of(l) == role) for role in roles
              if any(role_of(l) == role for l in viewer.layers)]
    for layer in viewer.layers:
        layer.visible = layer in chosen
    for position, layer in enumerate(chosen):  # the grid fills in layer-list order, bottom layer first
        viewer.layers.move(viewer.layers.index(layer), position)
    columns = min(len(chosen), 3)
    viewer.grid.shape = (-(-len(chosen) // columns), columns)
    viewer.grid.enabled = True
    names = [role_of(layer) for layer in chosen]
    rows = [names[i:i + columns] for i in range(0, len(names), columns)]
    where = ["top", "bottom"] if len(rows) == 2 else [f"row {i + 1}" for i in range(len(rows))]
    caption(viewer, "   |   ".join(rows[0]) if len(rows) == 1
            else "      ".join(f"{w}: {' | '.join(r)}" for w, r in zip(where, rows)))


def caption(viewer, text: str) -> None:
    """A caption centred above the canvas, and the view fitted to the visible layers."""
    viewer.text_overlay.text = text
    viewer.text_overlay.position = "top_center"
    viewer.text_overlay.font_size = 10
    viewer.text_overlay.visible = True
    viewer.reset_view()


def pick_sample() -> tuple[str, dict]:
    """The sample whose model is bundled, preferring one with a task network (segmentation)."""
    from napari_nanoscopy._widgets._sample_data import sample_descriptions
    from napari_nanoscopy.formats import list_models

    cards = {card.name: card for card in list_models()}
    samples = [(key, sample) for key, sample in sample_descriptions().items() if sample.get("model") in cards]
    if not samples:
        raise SystemExit("No sample in samples.json has a bundled model; nothing to show.")
    def rank(item):
        card = cards[item[1]["model"]]
        return (-len((card.task or {}).get("outputs", [])), card.default_samples == 1)

    samples.sort(key=rank)
    return samples[0]


def bead_sample() -> tuple[str, dict] | None:
    """A bead sample whose model is bundled, for the FWHM histogram."""
    from napari_nanoscopy._widgets._sample_data import sample_descriptions
    from napari_nanoscopy.packages import bundled_model_names

    names = set(bundled_model_names())
    for key, sample in sample_descriptions().items():
        if "bead" in key and sample.get("model") in names:
            return key, sample
    return None


def new_viewer():
    viewer = napari.Viewer(title="napari-nanoscopy")
    viewer.window._qt_window.resize(*WINDOW)
    return viewer


def real_axons_present(screenshots: str) -> bool:
    if (REAL_AXON / "images" / "actin_1.tiff").is_file():
        return True
    print(f"skipped {screenshots}: the real images are not in {REAL_AXON / 'images'}")
    return False


def add_real_axon(viewer, index: int, name: str):
    """The real axonal STED image actin_<index> as a layer at its 20 nm pixels."""
    from napari_nanoscopy.io import read_image

    data = read_image(REAL_AXON / "images" / f"actin_{index}.tiff").data.astype("float32")
    return viewer.add_image(data, name=name, scale=(20.0, 20.0), units=("nm", "nm"), colormap="gray")


def segment_screenshot() -> None:
    """Segment: the authors' axon U-Net (U-Net-Live where their folder is absent) on a real axonal STED
    image, its rings over the image with the expert polygons (opened from *.polys.txt) as outlines."""
    from napari_nanoscopy._napari_io import read_polygon_file
    from napari_nanoscopy._widgets.segment import SegmentWidget

    if not real_axons_present("segment.png"):
        return
    viewer = new_viewer()
    add_real_axon(viewer, 1, "actin_1 (STED)")
    segment = SegmentWidget(viewer)
    viewer.window.add_dock_widget(segment, name="Segment", area="right")
    network = REAL_AXON / "network"
    if network.is_dir():
        segment.add_model(str(network))
        wait(segment)
    if segment.last_error or not network.is_dir():
        segment.select_model("unet-live-factin")
    segment.probabilities_box.setChecked(True)
    segment.run()
    wait(segment)
    if segment.last_error:
        raise SystemExit(f"Segment failed: {segment.last_error}")
    [(polygons, kwargs, _)] = read_polygon_file(str(REAL_AXON / "annotations" / "actin_1.polys.txt"))
    viewer.add_shapes(polygons, **kwargs, scale=(20.0, 20.0), units=("nm", "nm"))  # in the image's pixels, as read
    model = segment.selected_entry().card.name
    caption(viewer, f"real axonal STED: {model} rings (magenta), expert polygons (yellow)")
    save(viewer, "segment.png")
    viewer.close()


def domain_screenshot() -> None:
    """Restore's domain check: a real axonal STED image given to a confocal -> STED model is flagged
    beside the result (and as a napari notification)."""
    from napari_nanoscopy._widgets.restore import RestoreWidget

    if not real_axons_present("domain.png"):
        return
    viewer = new_viewer()
    add_real_axon(viewer, 1, "actin_1 (real STED)")
    restore = RestoreWidget(viewer)
    viewer.window.add_dock_widget(restore, name="Restore", area="right")
    restore.select_model("tagan-factin")
    restore.run()
    wait(restore)
    if restore.last_error or not restore.domain_note.text().startswith("⚠"):
        raise SystemExit(f"the domain check did not flag the real image: {restore.last_error or restore.domain_note.text()}")
    for layer in viewer.layers:  # the real image beside what the model made of it
        layer.visible = role_of(layer) in ("", "restored")
    viewer.grid.shape, viewer.grid.enabled = (1, 2), True
    caption(viewer, "real axonal STED   |   tagan-factin's output: flagged, outside its training domain")
    save(viewer, "domain.png")
    viewer.close()


def cycle_screenshots(steps: int = CYCLE_STEPS) -> None:
    """Train with tagan-cycle from layers (domain A: the simulated F-actin sample's STED; domain B: real
    axonal STED), then Restore's Direction row translating the simulation A -> B with the package."""
    from napari_nanoscopy._widgets.restore import RestoreWidget
    from napari_nanoscopy._widgets.train import TrainWidget

    if not real_axons_present("train-cycle.png and translate.png"):
        return
    viewer = new_viewer()
    viewer.open_sample("napari-nanoscopy", "factin")
    simulated = next(layer for layer in viewer.layers if role_of(layer) == "target")
    simulated.name, simulated.visible = "simulated STED (domain A)", True
    for layer in list(viewer.layers):
        if layer is not simulated:
            viewer.layers.remove(layer)
    real_layers = [add_real_axon(viewer, i, f"real actin_{i}") for i in (1, 2, 3)]
    train = TrainWidget(viewer)
    viewer.window.add_dock_widget(train, name="Train", area="right")
    train.family_combo.setCurrentText("tagan-cycle")
    train.cycle_sources.domain_a.use_layers([simulated])
    train.cycle_sources.domain_b.use_layers(real_layers)
    train.select_task_network("unet-live-factin")
    train.steps_box.setValue(steps)
    train.patch_box.setValue(128)
    out = Path(tempfile.mkdtemp(prefix="nanoscopy-screenshots-")) / "sim-to-real"
    train.output_edit.setText(str(out))
    train.train()
    wait(train)
    if train.last_error:
        raise SystemExit(f"Train (tagan-cycle) failed: {train.last_error}")
    viewer.grid.shape, viewer.grid.enabled = (2, 2), True
    caption(viewer, "A: simulated STED (top left)   B: real axonal STED, unpaired")
    save(viewer, "train-cycle.png")
    viewer.window.remove_dock_widget(train)

    restore = RestoreWidget(viewer)
    viewer.window.add_dock_widget(restore, name="Restore", area="right")
    restore.input_combo.set_layer(simulated)  # selects the sample's own model: choose the package after it
    restore.select_model(str(out.resolve()))
    restore.samples_box.setValue(1)
    restore.run()
    wait(restore)
    if restore.last_error:
        raise SystemExit(f"Translate failed: {restore.last_error}")
    translated = next(layer for layer in viewer.layers if role_of(layer) == "translated")
    for position, layer in enumerate((simulated, translated, real_layers[0])):  # the grid fills in this order
        viewer.layers.move(viewer.layers.index(layer), position)
    for layer in viewer.layers:
        layer.visible = layer in (simulated, translated, real_layers[0])
    viewer.grid.shape = (1, 3)
    caption(viewer, f"simulated (A)   |   translated A → B, {steps} steps   |   real (B)")
    save(viewer, "translate.png")
    viewer.close()


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Capture docs/screenshots/ from a real napari viewer.")
    parser.add_argument("--skip-train", action="store_true", help="keep the existing train.png (training is slow)")
    parser.add_argument("--only", choices=("segment", "domain", "cycle"), help="capture only this screenshot")
    args = parser.parse_args()
    if args.only == "cycle" or (args.only is None and not args.skip_train):
        cycle_screenshots()
    if args.only in (None, "segment"):
        segment_screenshot()
    if args.only in (None, "domain"):
        domain_screenshot()
    if args.only:
        return 0
    from napari_nanoscopy._widgets.live import LiveWidget
    from napari_nanoscopy._widgets.metrics import MetricsWidget
    from napari_nanoscopy._widgets.restore import RestoreWidget
    from napari_nanoscopy._widgets.train import TrainWidget

    OUT.mkdir(exist_ok=True)
    key, sample = pick_sample()
    viewer = new_viewer()
    viewer.open_sample("napari-nanoscopy", key)
    settle(1.0)
    show_in_grid(viewer, [layer.get("role", "") for layer in sample["layers"]])
    save(viewer, "sample.png")
    viewer.grid.enabled = False
    viewer.text_overlay.visible = False

    # Restore with the sample's model; the grid shows input, restored (and uncertainty) side by side.
    restore = RestoreWidget(viewer)
    viewer.window.add_dock_widget(restore, name="Restore", area="right")
    restore.input_combo.set_layer(next(l for l in viewer.layers if role_of(l) == "input"))
    if restore.selected_entry().card.default_samples > 1:
        restore.samples_box.setValue(max(restore.samples_box.value(), 8))
    restore.run()
    wait(restore)
    if restore.last_error:
        raise SystemExit(f"Restore failed: {restore.last_error}")
    show_in_grid(viewer, ["input", "restored", "uncertainty", "segmentation", "target"])
    save(viewer, "restore.png")
    viewer.grid.enabled = False
    viewer.text_overlay.visible = False

    # Metrics: on a bead sample when there is one (bead FWHM histogram), restored vs target.
    beads = bead_sample()
    if beads is not None:
        key, sample = beads
        viewer.layers.clear()
        viewer.open_sample("napari-nanoscopy", key)
        restore.input_combo.set_layer(next(l for l in viewer.layers if role_of(l) == "input"))
        restore.run()
        wait(restore)
        if restore.last_error:
            raise SystemExit(f"Restore failed: {restore.last_error}")
    viewer.window.remove_dock_widget(restore)
    metrics = MetricsWidget(viewer)
    viewer.window.add_dock_widget(metrics, name="Metrics", area="right")
    restored = [l for l in viewer.layers if (l.metadata or {}).get("nanoscopy_role") == "restored"][0]
    target = sorted((l for l in viewer.layers if (l.metadata or {}).get("role") in ("target", "truth")),
                    key=lambda l: l.metadata["role"] != "target")[0]
    metrics.result_combo.set_layer(restored)
    metrics.reference_combo.set_layer(target)
    metrics.fwhm_box.setChecked(beads is not None)
    metrics.compute()
    wait(metrics)
    if metrics.last_error:
        raise SystemExit(f"Metrics failed: {metrics.last_error}")
    show_in_grid(viewer, ["restored", target.metadata["role"]])
    save(viewer, "metrics.png")
    viewer.grid.enabled = False
    viewer.text_overlay.visible = False
    viewer.window.remove_dock_widget(metrics)
    for layer in viewer.layers:
        layer.visible = (layer.metadata or {}).get("role") == "input"

    # Live assist: a short simulated session with the bundled live models (docs/live.md's example).
    live = LiveWidget(viewer)
    viewer.window.add_dock_widget(live, name="Live assist", area="right")
    live.adapter_combo.setCurrentText("simulator")
    live.size_box.setValue(160)
    live.frames_box.setValue(LIVE_FRAMES)
    live.stimulus_box.setValue(3)
    live.roi_box.setValue(128)
    live.patch_box.setValue(16)
    live.policy_combo.setCurrentText("area")
    live.reference_combo.setCurrentText("synthetic")
    live.threshold_box.setValue(0.098)  # the default pair's calibrated threshold (docs/live.md)
    live.out_edit.setText(str(Path(tempfile.mkdtemp(prefix="nanoscopy-screenshots-")) / "session"))
    live.connect_adapter()
    live.start()
    wait(live)
    if live.last_error:
        raise SystemExit(f"Live assist failed: {live.last_error}")
    others = [layer for layer in viewer.layers if not layer.name.startswith("live ")]
    for layer in others:  # out of the canvas while the small live field is shown
        viewer.layers.remove(layer)
    viewer.reset_view()  # the layers as the widget shows them during a session, not a grid
    save(viewer, "live.png")
    viewer.window.remove_dock_widget(live)
    for layer in [layer for layer in viewer.layers if layer.name.startswith("live ")]:
        viewer.layers.remove(layer)
    for layer in others:
        viewer.add_layer(layer)
    for layer in viewer.layers:
        layer.visible = (layer.metadata or {}).get("role") == "input"

    if args.skip_train:
        viewer.close()
        return 0

    # Train: a short l2l run on the sample's input and target layers.
    train = TrainWidget(viewer)
    viewer.window.add_dock_widget(train, name="Train", area="right")
    scratch = Path(tempfile.mkdtemp(prefix="nanoscopy-screenshots-"))
    train.family_combo.setCurrentText("l2l")
    train.steps_box.setValue(TRAIN_STEPS)
    train.patch_box.setValue(64)
    train.batch_box.setValue(2)
    train.output_edit.setText(str(scratch / f"{key}-l2l"))
    train.name_edit.setText(f"{key}-l2l-demo")
    train.train()
    wait(train)
    if train.last_error:
        raise SystemExit(f"Train failed: {train.last_error}")
    save(viewer, "train.png")

    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
