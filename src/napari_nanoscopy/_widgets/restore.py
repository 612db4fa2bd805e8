"""The *Restore* dock widget: a layer and a model in; restored, uncertainty and segmentation layers out.

Everything heavy (loading the model, restoring) runs in a napari worker thread through the
one ``Restorer``; the GUI thread only reads the layer, and adds or updates result layers.
"""

from __future__ import annotations

import platform
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import napari
import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QMenu,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .. import __version__
from ._common import (
    Job,
    LayerCombo,
    is_image,
    layer_pixel_size_nm,
    note_label,
    notify_error,
    notify_info,
    pixel_size_box,
    show_progress,
)
from ._registry import REGISTRY

UNCERTAINTY_COLORMAP = "inferno"
# Labels colours per task class (1, 2, ...): distinct on dark and grey backgrounds.
CLASS_COLORS = ("#ff3df2", "#30e0ff", "#ffd400", "#7dff4a", "#ff7a1a", "#b58cff")
ROLE_KEY = "nanoscopy_role"  # metadata key that marks our result layers


@dataclass
class ModelEntry:
    label: str
    source: str  # a bundled name or a package path: what load_model takes
    card: Any  # ModelCard
    bundled: bool


def device_choices() -> list[str]:
    import torch

    choices = ["auto", "cpu"]
    if torch.cuda.is_available():
        choices += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())] * (torch.cuda.device_count() > 1)
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        choices.append("mps")
    return choices


def result_name(input_name: str, role: str, model: str | None = None) -> str:
    """The role first: napari's layer list elides long names in the middle, so the results of
    one input must differ in their first word. The model is named only when it is needed to
    tell two models' results of the same input apart (it is always in the metadata)."""
    return f"{role}: {input_name}" + (f" [{model}]" if model else "")


class RestoreWidget(QWidget):
    """Restore an image layer with a model package, off the GUI thread."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        _warm_up_label_colours()
        self.job: Job | None = None
        self._restorers: dict[tuple[str, str], Any] = {}
        self._entries: list[ModelEntry] = []
        self._packages: dict[str, Any] = {}  # path -> ModelPackage, for models opened here
        self.last_error: str | None = None
        self.last_result = None
        self._planes, self._running_text = 1, ""
        self._succeeded = False

        self._make_model_picker()
        self._make_settings()
        self._make_run_controls()
        self._lay_out()
        self._connect()
        self.refresh_models()
        self._pick_sample_input()

    def _make_model_picker(self) -> None:
        """The model list with its Open… menu, and the input layer."""
        self.model_combo = QComboBox()
        self.model_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model_combo.setMinimumContentsLength(14)
        self.open_button = QToolButton()
        self.open_button.setText("Open…")
        self.open_button.setToolTip(
            "Add a model: a package folder or .zip, a TA-GAN *_net_G.pth generator, a CSBDeep/CARE model folder, "
            "or a bioimage.io package (.zip, folder or rdf.yaml)"
        )
        self.open_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.open_button)
        menu.addAction("Model folder (package, CSBDeep, bioimage.io)…", self._open_folder)
        menu.addAction("Model file (.zip, TA-GAN .pth, bioimage.io rdf.yaml)…", self._open_file)
        self.open_button.setMenu(menu)
        self.model_info = note_label()
        self.input_combo = LayerCombo(self.viewer, self._accepts_layer)

    def _make_settings(self) -> None:
        """Pixel size, channel axis, samples, tile size and device."""
        self.pixel_box = pixel_size_box()
        self.pixel_box.setToolTip(
            "The input's pixel size. The image is resampled to the model's pixel size and the results back. "
            "'unknown': no resampling."
        )
        self.pixel_note = note_label()
        self.channel_combo = QComboBox()
        self.channel_combo.setToolTip("The axis of the layer that holds the model's input channels")
        self.samples_box = QSpinBox()
        self.samples_box.setRange(1, 500)
        self.samples_box.setToolTip(
            "Monte-Carlo dropout samples: their mean is the restored image, their spread the uncertainty. "
            "1 = one deterministic pass."
        )
        self.tile_box = QSpinBox()
        self.tile_box.setRange(0, 16384)
        self.tile_box.setSingleStep(64)
        self.tile_box.setSpecialValueText("automatic")
        self.tile_box.setSuffix(" px")
        self.tile_box.setToolTip("Tile core size at the model's pixel size (tiles overlap and are blended seamlessly)")
        self.device_combo = QComboBox()
        self.device_combo.addItems(device_choices())

    def _make_run_controls(self) -> None:
        self.run_button = QPushButton("Restore")
        self.run_button.setToolTip("Restore the input layer (stacks plane by plane)")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setTextVisible(True)
        self.status = note_label("")

    def _lay_out(self) -> None:
        form = QFormLayout()
        form.addRow("Input layer", self.input_combo)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_combo, 1)
        model_row.addWidget(self.open_button)
        form.addRow("Model", model_row)
        form.addRow("", self.model_info)
        form.addRow("Pixel size", self.pixel_box)
        form.addRow("", self.pixel_note)
        self.channel_label = QLabel("Channel axis")
        form.addRow(self.channel_label, self.channel_combo)
        form.addRow("MC samples", self.samples_box)
        form.addRow("Tile size", self.tile_box)
        form.addRow("Device", self.device_combo)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status)
        layout.addStretch(1)

    def _connect(self) -> None:
        self.model_combo.currentIndexChanged.connect(self._model_changed)
        self.input_combo.layer_changed.connect(self._layer_changed)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        REGISTRY.added.connect(self._registry_added)
        self.destroyed.connect(lambda *_: REGISTRY.added.disconnect(self._registry_added))

    def _pick_sample_input(self) -> None:
        """Select an opened sample's input layer, if there is one, and show the chosen layer's settings."""
        inputs = [l for l in self.input_combo.layers() if (l.metadata or {}).get("role") == "input"]
        if inputs:  # an opened sample: restore its input
            self.input_combo.set_layer(inputs[0])
        self._layer_changed(self.input_combo.layer())

    # -- models ----------------------------------------------------------------------------

    def refresh_models(self) -> None:
        """List the bundled models and every model opened or trained in this session."""
        from ..formats import list_models

        try:
            cards = list_models()
        except Exception as error:  # a damaged bundled card must not take the widget down
            notify_error(error, "Listing the bundled models")
            cards = []
        current = self.selected_entry()
        entries = [ModelEntry(card.name, card.name, card, True) for card in cards]
        for path, card in REGISTRY.items():
            entries.append(ModelEntry(f"{card.name} ({Path(path).name})", path, card, False))
        self._entries = entries
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        for entry in entries:
            self.model_combo.addItem(entry.label)
            self.model_combo.setItemData(self.model_combo.count() - 1, self._tooltip(entry.card), Qt.ItemDataRole.ToolTipRole)
        if current is not None:
            self.select_model(current.source)
        self.model_combo.blockSignals(False)
        self._model_changed()

    def _registry_added(self, path: str) -> None:
        try:
            self.refresh_models()
        except RuntimeError:  # this widget's Qt side is gone
            REGISTRY.added.disconnect(self._registry_added)

    def _tooltip(self, card) -> str:
        return f"{card.summary()}\n\n{card.description}".strip()

    def selected_entry(self) -> ModelEntry | None:
        index = self.model_combo.currentIndex()
        return self._entries[index] if 0 <= index < len(self._entries) else None

    def select_model(self, source: str) -> bool:
        for index, entry in enumerate(self._entries):
            if entry.source == source or entry.card.name == source:
                self.model_combo.setCurrentIndex(index)
                return True
        return False

    def add_model(self, path) -> None:
        """Load a package folder, .zip or TA-GAN .pth (in a worker) and select it."""
        path = str(Path(path).expanduser())

        def load(progress, should_cancel):
            from ..formats import load_model

            return load_model(path)

        def done(package):
            key = REGISTRY.add(path, package.card)
            self._restorers.pop((key, self.device_combo.currentText()), None)
            self._packages[key] = package
            self.refresh_models()
            self.select_model(key)
            self._set_status(f"Added model '{package.card.name}' from {path}.")

        self._start(Job(load, f"Loading model {Path(path).name}", on_done=done,
                        on_error=self._failed("Loading the model"), on_finally=self._idle))

    def _open_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a model folder")
        if path:
            self.add_model(path)

    def _open_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a model", "",
            "Models (*.zip *.pth *.pt *.yaml);;Model packages and bioimage.io zips (*.zip);;"
            "TA-GAN generators (*.pth *.pt);;bioimage.io descriptions (rdf.yaml bioimageio.yaml *.yaml);;All files (*)",
        )
        if path:
            self.add_model(path)

    def _model_changed(self, *_) -> None:
        entry = self.selected_entry()
        if entry is None:
            self.model_info.setText("No model: open a package with Open….")
            self.run_button.setEnabled(False)
            return
        card = entry.card
        pixel = f"{card.pixel_size_nm:g} nm pixels" if card.pixel_size_nm else "any pixel size"
        task = f"; segments {', '.join(card.task.outputs)}" if card.task is not None else ""
        inputs = ", ".join(card.input_channels)
        self.model_info.setText(f"{card.family} · {pixel} · in: {inputs}{task}\n{card.description}")
        self.model_info.setToolTip(self._tooltip(card))
        self.samples_box.setValue(card.default_samples)
        self.run_button.setEnabled(self.job is None)
        self.input_combo.refresh()
        self._update_channel_axes()

    # -- input layer -------------------------------------------------------------------------

    def _in_channels(self) -> int:
        entry = self.selected_entry()
        return len(entry.card.input_channels) if entry is not None else 1

    def _accepts_layer(self, layer) -> bool:
        """Image layers (not RGB); for a multichannel model only those with an axis of that length."""
        if not is_image(layer):
            return False
        channels = self._in_channels()
        return channels == 1 or any(n == channels for n in layer.data.shape[:-2])

    def _layer_changed(self, layer) -> None:
        if layer is None:
            self.pixel_note.setText("Add or open an image layer (File > Open Sample > Nanoscopy).")
            return
        size, note = layer_pixel_size_nm(layer)
        self.pixel_box.setValue(size or 0.0)
        self.pixel_note.setText(note)
        sample_model = (layer.metadata or {}).get("model")
        if sample_model:
            self.select_model(sample_model)
        self._update_channel_axes()

    def _update_channel_axes(self) -> None:
        channels = self._in_channels()
        layer = self.input_combo.layer()
        self.channel_combo.clear()
        visible = channels > 1
        self.channel_combo.setVisible(visible)
        self.channel_label.setVisible(visible)
        if not visible or layer is None:
            return
        axes = [axis for axis, n in enumerate(layer.data.shape[:-2]) if n == channels]
        for axis in reversed(axes):  # nearest to Y first
            name = layer.axis_labels[axis] if hasattr(layer, "axis_labels") else str(axis)
            self.channel_combo.addItem(f"axis {axis} ({name}, {channels} channels)", axis)

    # -- running -----------------------------------------------------------------------------

    def parameters(self) -> dict[str, Any]:
        pixel = self.pixel_box.value()
        tile = self.tile_box.value()
        channel_axis = self.channel_combo.currentData() if self._in_channels() > 1 else None
        return {
            "pixel_size_nm": pixel if pixel > 0 else None,
            "samples": self.samples_box.value(),
            "tile_size": tile if tile > 0 else None,
            "channel_axis": channel_axis,
        }

    def run(self) -> Job | None:
        """Start restoring the selected layer with the selected model; returns the job."""
        if self.job is not None:
            return None
        layer = self.input_combo.layer()
        entry = self.selected_entry()
        if layer is None:
            self._report("Pick an image layer to restore (File > Open Sample > Nanoscopy has examples).")
            return None
        if entry is None:
            self._report("Pick a model, or open one with Open….")
            return None
        parameters = self.parameters()
        device = self.device_combo.currentText()
        data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data  # read in the worker (dask, zarr)
        key = (entry.source, device)
        restorers = self._restorers
        package = self._packages.get(entry.source)

        def work(progress, should_cancel):
            from ..inference import Restorer

            restorer = restorers.get(key)
            if restorer is None:
                restorer = Restorer(package if package is not None else entry.source, device=device)
                restorers[key] = restorer
            result = restorer.restore(
                np.asarray(data), progress=lambda done, total: progress(done, total, None), should_cancel=should_cancel,
                **parameters,
            )
            return restorer, result

        def done(value):
            restorer, result = value
            self.last_result = result
            self._succeeded = True
            try:
                self._show_results(layer, entry, restorer, result, parameters)
            except Exception as error:  # never let a display problem escape into napari's event loop
                self._failed("Showing the results")(error)

        def cancelled(error):
            self._set_status("Cancelled; no layers were changed.")
            notify_info("Restoration cancelled.")

        stack = len(data.shape) - 2 - (parameters["channel_axis"] is not None)
        planes = int(np.prod(data.shape[:stack])) if stack > 0 else 1
        what = f"{planes} planes of " if planes > 1 else ""
        self._planes = planes
        self._running_text = f"Restoring {what}'{layer.name}' with {entry.card.name}"
        if parameters["pixel_size_nm"] is None and entry.card.pixel_size_nm:  # recorded as assumed, too
            self._running_text += f" at its {entry.card.pixel_size_nm:g} nm pixels (assumed: the layer has none)"
        self._set_status(self._running_text + "…")
        self.last_error = None
        return self._start(Job(
            work, f"Restoring {layer.name} [{entry.card.name}]",
            on_progress=self._progress, on_done=done, on_cancelled=cancelled,
            on_error=self._failed("Restoration"), on_finally=self._idle,
        ))

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self._set_status("Cancelling…")

    def _start(self, job: Job) -> Job:
        self.job = job
        self._succeeded = False
        self.run_button.setEnabled(False)
        self.open_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress_bar.setRange(0, 0)  # busy until the first progress report
        job.start()
        return job

    def _idle(self) -> None:
        self.job = None
        self.run_button.setEnabled(self.selected_entry() is not None)
        self.open_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(1 if self._succeeded else 0)

    def _progress(self, done: int, total: int, _extra) -> None:
        show_progress(self.progress_bar, done, total)
        if done >= total:
            self._set_status(f"{self._running_text}: blending and adding the result layers…")
        elif self._planes > 1 and total:
            plane = min(self._planes, (done - 1) * self._planes // total + 1)
            self._set_status(f"{self._running_text}: plane {plane} of {self._planes}…")

    def _failed(self, what: str):
        def handler(error):
            self.last_error = notify_error(error, what)
            self._set_status(self.last_error)

        return handler

    def _report(self, message: str) -> None:
        from napari.utils.notifications import show_warning

        self.last_error = message
        show_warning(message)
        self._set_status(message)

    def _set_status(self, text: str) -> None:
        self.status.setText(text)

    # -- results -----------------------------------------------------------------------------

    def _show_results(self, layer, entry: ModelEntry, restorer, result, parameters) -> None:
        card = restorer.card
        channel_axis = parameters["channel_axis"]
        scale, translate, units = list(layer.scale), list(layer.translate), list(getattr(layer, "units", []) or [])
        if channel_axis is not None:
            for values in (scale, translate, units):
                if values:
                    del values[channel_axis]
        provenance = {
            **result.provenance,
            "source_layer": layer.name,
            "input_pixel_size_nm": parameters["pixel_size_nm"],
            "model_source": entry.source,
            "model_description": card.description,
            "versions": {
                "napari_nanoscopy": __version__,
                "napari": napari.__version__,
                "numpy": np.__version__,
                "torch": result.provenance.get("torch"),
                "python": platform.python_version(),
            },
        }
        if parameters["pixel_size_nm"]:
            provenance["pixel_size_nm"] = parameters["pixel_size_nm"]
        model = card.name

        def geometry(data):
            extra = data.ndim - len(scale)  # a model with several output channels adds an axis before Y, X
            return {
                "scale": scale[:-2] + [1.0] * extra + scale[-2:],
                "translate": translate[:-2] + [0.0] * extra + translate[-2:],
                **({"units": units[:-2] + ["pixel"] * extra + units[-2:]} if units else {}),
            }

        shown = []
        restored = self._put_layer("image", layer, "restored", model, result.mean, provenance, geometry(result.mean),
                                   colormap=layer.colormap.name if hasattr(layer, "colormap") else "gray")
        shown.append(restored)
        if result.std is not None:
            shown.append(self._put_layer(
                "image", layer, "uncertainty", model, result.std,
                {**provenance, "uncertainty": "per-pixel standard deviation of the Monte-Carlo samples"},
                geometry(result.std), colormap=UNCERTAINTY_COLORMAP, visible=False,
            ))
        if result.labels is not None:
            classes = ["background", *result.task_names]
            thresholds = list(card.task.thresholds) if card.task is not None else []
            shown.append(self._put_layer(
                "labels", layer, "segmentation", model, result.labels,
                {**provenance, "classes": classes, "thresholds": thresholds}, geometry(result.labels),
                classes=classes,
            ))
        names = ", ".join(f"'{item.name}'" for item in shown)
        self._set_status(f"Done: {names}.")

    def _find_result(self, role: str, source, model: str):
        for candidate in self.viewer.layers:
            meta = candidate.metadata or {}
            if meta.get(ROLE_KEY) == role and meta.get("source_layer") == source.name and meta.get("model") == model:
                return candidate
        return None

    def _put_layer(self, kind, source, role, model, data, provenance, geometry, colormap=None, visible=True, classes=None):
        """Add the result layer, or update the one an earlier run made for this input and model."""
        metadata = {**provenance, ROLE_KEY: role}
        existing = self._find_result(role, source, model)
        expected_type = napari.layers.Labels if kind == "labels" else napari.layers.Image
        if existing is not None and (not isinstance(existing, expected_type) or existing.ndim != data.ndim):
            index = list(self.viewer.layers).index(existing)
            self.viewer.layers.remove(existing)
            existing = None
        else:
            index = None
        if existing is not None:
            existing.data = data
            existing.scale = geometry["scale"]
            existing.translate = geometry["translate"]
            if "units" in geometry:
                existing.units = geometry["units"]
            existing.metadata = metadata
            if kind == "labels":
                existing.features = _class_features(classes)
            else:
                existing.reset_contrast_limits()
            existing.refresh()
            return existing
        name = result_name(source.name, role)
        if name in self.viewer.layers:  # another model's result of this input: name the model
            name = result_name(source.name, role, model)
        if kind == "labels":
            new = self.viewer.add_labels(
                data, name=name, metadata=metadata, opacity=0.55, features=_class_features(classes),
                colormap=class_colormap(len(classes) - 1), **geometry,
            )
        else:
            new = self.viewer.add_image(
                data, name=name, metadata=metadata, colormap=colormap, visible=visible, blending="translucent",
                **geometry,
            )
        if index is not None:
            self.viewer.layers.move(list(self.viewer.layers).index(new), index)
        return new

    def closeEvent(self, event) -> None:
        self.cancel()
        super().closeEvent(event)


_label_colours_warm = threading.Event()


def _warm_up_label_colours() -> None:
    """Map a few pixels through a class colormap once, in a background thread.

    With numba installed (live assist needs it), napari compiles its label-colouring loop on
    first use, per label dtype: over a second on two cores, which would otherwise freeze the
    viewer the first time a segmentation layer appears.
    """
    if _label_colours_warm.is_set():
        return
    _label_colours_warm.set()

    def warm() -> None:
        colormap = class_colormap(2)
        for dtype in (np.uint8, np.int32):  # our segmentations, and Labels layers read from files
            colormap.map(np.zeros((2, 2), dtype))

    threading.Thread(target=warm, name="nanoscopy-label-colours", daemon=True).start()


def _class_features(classes: list[str]) -> dict[str, list]:
    return {"index": list(range(len(classes))), "class": list(classes)}


def class_colormap(n_classes: int):
    from napari.utils.colormaps import DirectLabelColormap

    colors = {None: "transparent", 0: "transparent"}
    for k in range(1, n_classes + 1):
        colors[k] = CLASS_COLORS[(k - 1) % len(CLASS_COLORS)]
    return DirectLabelColormap(color_dict=colors)
