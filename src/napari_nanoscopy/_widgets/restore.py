"""The *Restore* dock widget: a layer and a model in; restored, uncertainty and segmentation layers out.

Everything heavy (loading the model, restoring) runs in a napari worker thread through the
one ``Restorer``; the GUI thread only reads the layer, and adds or updates result layers.
A translation model (``tagan-cycle``, a card with a ``cycle`` section) shows a *Direction* row:
A → B runs its generator, B → A its reverse one (:func:`~napari_nanoscopy.translation.translation_model`).
"""

from __future__ import annotations

import platform
from typing import Any

import napari
import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QLabel, QSpinBox

from .. import __version__
from ._common import Job, LayerCombo, is_image, layer_pixel_size_nm, note_label, notify_info, show_progress
from ._model_job import ModelEntry, ModelJobWidget
from ._results import UNCERTAINTY_COLORMAP, put_result, result_geometry, warm_up_label_colours

class RestoreWidget(ModelJobWidget):
    """Restore an image layer with a model package, off the GUI thread."""

    OPEN_TOOLTIP = ("Add a model: a package folder or .zip, a TA-GAN *_net_G.pth generator, a CSBDeep/CARE model "
                    "folder, or a bioimage.io package (.zip, folder or rdf.yaml)")
    OPEN_FOLDER = "Model folder (package, CSBDeep, bioimage.io)…"
    OPEN_FILE = "Model file (.zip, TA-GAN .pth, bioimage.io rdf.yaml)…"
    FILE_FILTER = ("Models (*.zip *.pth *.pt *.yaml);;Model packages and bioimage.io zips (*.zip);;"
                   "TA-GAN generators (*.pth *.pt);;bioimage.io descriptions (rdf.yaml bioimageio.yaml *.yaml);;"
                   "All files (*)")
    NO_MODEL = "No model: open a package with Open…."

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent=None):
        super().__init__(napari_viewer, parent)
        warm_up_label_colours()
        self._planes, self._running_text = 1, ""

        self._make_model_picker()
        self._make_inputs()
        self._make_settings()
        self._make_run_controls()
        self._lay_out()
        self._connect()
        self.refresh_models()
        self._pick_sample_input()

    def lists(self, card) -> bool:
        return card.segmenter is None  # a segmenter-only model opened in the Segment widget restores nothing

    def check_model(self, package) -> None:
        from ..packages import check_restores

        check_restores(package.card)  # a segmenter-only model: says to use the Segment widget

    def _make_inputs(self) -> None:
        self.input_combo = LayerCombo(self.viewer, self._accepts_layer)  # image layers the selected model takes

    def _make_settings(self) -> None:
        """Pixel size, channel axis, samples, tile size and device."""
        self._make_image_settings("The input's pixel size. The image is resampled to the model's pixel size and the "
                                  "results back. 'unknown': no resampling.")
        self.channel_combo = QComboBox()
        self.channel_combo.setToolTip("The axis of the layer that holds the model's input channels")
        self.samples_box = QSpinBox()
        self.samples_box.setRange(1, 500)
        self.samples_box.setToolTip(
            "Monte-Carlo dropout samples: their mean is the restored image, their spread the uncertainty. "
            "1 = one deterministic pass."
        )
        self.tile_box.setToolTip("Tile core size at the model's pixel size (tiles overlap and are blended seamlessly)")
        self.direction_label = QLabel("Direction")
        self.direction_combo = QComboBox()
        self.direction_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.direction_combo.setMinimumContentsLength(14)  # long domain names must not widen the dock
        self.direction_combo.addItem("A → B", "a2b")
        self.direction_combo.addItem("B → A", "b2a")
        self.direction_combo.setToolTip("A translation model (tagan-cycle) translates domain A images into domain B "
                                        "(its generator) or domain B images back into domain A (its reverse generator)")

    def _make_run_controls(self) -> None:
        self._make_job_controls("Restore")
        self.run_button.setToolTip("Restore the input layer (stacks plane by plane)")
        self.domain_note = note_label("")  # whether the last result should be believed: the domain check
        self.domain_note.setVisible(False)

    def _lay_out(self) -> None:
        form = self._model_form()
        form.addRow(self.direction_label, self.direction_combo)
        self.channel_label = QLabel("Channel axis")
        form.addRow(self.channel_label, self.channel_combo)
        form.addRow("MC samples", self.samples_box)
        form.addRow("Tile size", self.tile_box)
        form.addRow("Device", self.device_combo)
        layout = self._job_layout(form)
        layout.addWidget(self.domain_note)
        layout.addStretch(1)

    def _connect(self) -> None:
        self._connect_models()
        self.input_combo.layer_changed.connect(self._layer_changed)
        self.direction_combo.currentIndexChanged.connect(lambda _: (self.input_combo.refresh(), self._update_channel_axes()))

    def _pick_sample_input(self) -> None:
        """Select an opened sample's input layer, if there is one, and show the chosen layer's settings."""
        inputs = [l for l in self.input_combo.layers() if (l.metadata or {}).get("role") == "input"]
        if inputs:  # an opened sample: restore its input
            self.input_combo.set_layer(inputs[0])
        self._layer_changed(self.input_combo.layer())

    # -- models ----------------------------------------------------------------------------

    def _show_model(self, card) -> None:
        pixel = f"{card.pixel_size_nm:g} nm pixels" if card.pixel_size_nm else "any pixel size"
        task = f"; segments {', '.join(card.task.outputs)}" if card.task is not None else ""
        inputs = ", ".join(card.input_channels)
        self.model_info.setText(f"{card.family} · {pixel} · in: {inputs}{task}\n{card.description}")
        self._show_directions(card.cycle)
        self.samples_box.setValue(card.default_samples)
        self.input_combo.refresh()
        self._update_channel_axes()

    def _show_directions(self, cycle) -> None:
        """The Direction row, named by the domains, for a translation model only (others restore: A → B)."""
        for widget in (self.direction_label, self.direction_combo):
            widget.setVisible(cycle is not None)
        if cycle is None:
            self.direction_combo.setCurrentIndex(0)
            return
        for index, text in enumerate((f"A → B ({cycle.domain_a} → {cycle.domain_b})",
                                      f"B → A ({cycle.domain_b} → {cycle.domain_a})")):
            self.direction_combo.setItemText(index, text)
            self.direction_combo.setItemData(index, text, Qt.ItemDataRole.ToolTipRole)  # the combo may elide it

    def direction(self) -> str:
        """The chosen direction: "a2b" (the model's generator, what every model runs) or "b2a"."""
        return self.direction_combo.currentData()

    # -- input layer -------------------------------------------------------------------------

    def _in_channels(self) -> int:
        entry = self.selected_entry()
        if entry is None:
            return 1
        return len(entry.card.output_channels if self.direction() == "b2a" else entry.card.input_channels)

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
        direction = self.direction()
        data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data  # read in the worker (dask, zarr)
        key = (entry.source, device, direction)
        restorers = self._engines
        package = self._packages.get(entry.source)

        def work(progress, should_cancel):
            from ..inference import Restorer
            from ..restore_job import restore_array

            restorer = restorers.get(key)
            if restorer is None:
                model = package if package is not None else entry.source
                if direction != "a2b":
                    from ..translation import translation_model

                    model = translation_model(model, direction)  # says so when the model translates nothing back
                restorer = Restorer(model, device=device)
                restorers[key] = restorer
            result = restore_array(  # in memory, or block by block for a lazy layer too large for memory
                restorer, data, progress=lambda done, total: progress(done, total, None), should_cancel=should_cancel,
                **parameters,
            )
            return restorer, result

        def done(value):
            restorer, result = value
            self.last_result = result
            self._succeeded = True
            try:
                self._show_results(layer, entry, restorer, result, parameters, direction)
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
        if entry.card.cycle is not None:
            self._running_text = f"Translating {what}'{layer.name}' {self.direction_combo.currentText()} with {entry.card.name}"
        if parameters["pixel_size_nm"] is None and entry.card.pixel_size_nm:  # recorded as assumed, too
            self._running_text += f" at its {entry.card.pixel_size_nm:g} nm pixels (assumed: the layer has none)"
        self._set_status(self._running_text + "…")
        self.domain_note.setVisible(False)  # it spoke of the previous result
        self.last_error = None
        return self._start(Job(
            work, f"Restoring {layer.name} [{entry.card.name}]",
            on_progress=self._progress, on_done=done, on_cancelled=cancelled,
            on_error=self._failed("Restoration"), on_finally=self._idle,
        ))

    def _progress(self, done: int, total: int, _extra) -> None:
        show_progress(self.progress_bar, done, total)
        if done >= total:
            self._set_status(f"{self._running_text}: blending and adding the result layers…")
        elif self._planes > 1 and total:
            plane = min(self._planes, (done - 1) * self._planes // total + 1)
            self._set_status(f"{self._running_text}: plane {plane} of {self._planes}…")

    # -- results -----------------------------------------------------------------------------

    def _show_results(self, layer, entry: ModelEntry, restorer, result, parameters, direction: str = "a2b") -> None:
        card = restorer.card
        geometry = result_geometry(layer, parameters["channel_axis"])
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
        role = "restored"
        if card.cycle is not None:  # a translation: which way, between which domains
            role = "translated"
            provenance["translation"] = {"direction": direction, "from": card.cycle.domain_a, "to": card.cycle.domain_b}
        model = card.name
        shown = []
        restored = put_result(self.viewer, "image", layer, role, model, result.mean, provenance, geometry(result.mean),
                                   colormap=layer.colormap.name if hasattr(layer, "colormap") else "gray")
        shown.append(restored)
        if result.uncertainty is not None:
            shown.append(put_result(
                self.viewer, "image", layer, "uncertainty", model, result.uncertainty,
                provenance,  # its "uncertainty" names the estimator
                geometry(result.uncertainty), colormap=UNCERTAINTY_COLORMAP, visible=False,
            ))
        if result.labels is not None:
            classes = ["background", *result.task_names]
            thresholds = list(card.task.thresholds) if card.task is not None else []
            shown.append(put_result(
                self.viewer, "labels", layer, "segmentation", model, result.labels,
                {**provenance, "classes": classes, "thresholds": thresholds}, geometry(result.labels),
                classes=classes,
            ))
        names = ", ".join(f"'{item.name}'" for item in shown)
        self._set_status(f"Done: {names}.")
        self._show_domain(result.domain)

    def _show_domain(self, report) -> None:
        """Beside the result, and as a napari warning when the image is outside the model's training domain."""
        if report is None:  # a run block by block scores no domain
            self.domain_note.setVisible(False)
            return
        flagged = report.flagged
        self.domain_note.setText(("⚠ " if flagged else "") + report.message)
        self.domain_note.setStyleSheet("color: #ffb000; font-weight: bold;" if flagged else "")
        self.domain_note.setVisible(True)
        if flagged:
            from napari.utils.notifications import show_warning

            show_warning(report.message)


