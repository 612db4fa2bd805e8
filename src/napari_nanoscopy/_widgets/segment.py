"""The *Segment* dock widget: a STED image layer and a segmenting model in; class labels (and probabilities) out.

The model runs in a napari worker thread through the one
:class:`~napari_nanoscopy.segmentation.Segmenter`; the GUI thread only reads the layer and adds
or updates the result layers, at the input layer's scale and translate. *Shapes to labels* fills
a Shapes layer's polygons (such as a ``*.polys.txt`` file opened in napari) into a Labels layer
on the input image's pixel grid, with :func:`~napari_nanoscopy.annotations.polygons_to_mask`.
"""

from __future__ import annotations

import napari
import numpy as np
from qtpy.QtWidgets import QCheckBox, QHBoxLayout, QPushButton

from .. import __version__
from ._common import Job, LayerCombo, is_image, layer_pixel_size_nm, show_progress
from ._model_job import ModelEntry, ModelJobWidget
from ._results import class_colormap, class_features, put_result, result_geometry

PROBABILITY_COLORMAP = "magma"
FILLED_SHAPES = ("polygon", "rectangle")  # shapes whose vertices outline the area they cover


class SegmentWidget(ModelJobWidget):
    """Segment an image layer with a model that segments, off the GUI thread."""

    OPEN_TOOLTIP = ("Add a segmenting model: a U-Net folder (params.net) of Lavoie-Cardinal et al., a package folder "
                    "or .zip with a task network, or a TA-GAN *_net_G.pth")
    OPEN_FOLDER = "Model folder (U-Net params.net, package)…"
    OPEN_FILE = "Model file (.zip, TA-GAN .pth)…"
    NO_MODEL = "No segmenting model: open a U-Net folder (params.net) with Open…."

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent=None):
        super().__init__(napari_viewer, parent)
        self._make_controls()
        self._lay_out()
        self._connect_models()
        self.input_combo.layer_changed.connect(self._layer_changed)
        self.shapes_button.clicked.connect(self.shapes_to_labels)
        self.refresh_models()
        self._layer_changed(self.input_combo.layer())

    def lists(self, card) -> bool:
        from ..segmentation import can_segment

        return can_segment(card)

    def check_model(self, package) -> None:
        from ..errors import NanoscopyError

        if not self.lists(package.card):
            raise NanoscopyError(f"The model '{package.card.name}' has no segmentation network; open a U-Net folder "
                                 "(params.net), a package with a task network or a TA-GAN with its *_net_S.pth.")

    def _make_controls(self) -> None:
        self.input_combo = LayerCombo(self.viewer, is_image)
        self._make_model_picker()
        self._make_image_settings("The input's pixel size; the image is resampled to the model's and the results back")
        self.probabilities_box = QCheckBox("Add a probability layer per class")
        self._make_job_controls("Segment")
        self.shapes_combo = LayerCombo(self.viewer, lambda layer: isinstance(layer, napari.layers.Shapes))
        self.shapes_button = QPushButton("Shapes to labels")
        self.shapes_button.setToolTip("Fill the polygons of the Shapes layer into a Labels layer on the input "
                                      "layer's pixels (a *.polys.txt file's labels 0 and 1: rings, 3: fibres)")

    def _lay_out(self) -> None:
        form = self._model_form()
        form.addRow("Tile size", self.tile_box)
        form.addRow("Device", self.device_combo)
        form.addRow("", self.probabilities_box)
        shapes_row = QHBoxLayout()
        shapes_row.addWidget(self.shapes_combo, 1)
        shapes_row.addWidget(self.shapes_button)
        layout = self._job_layout(form)
        layout.addLayout(shapes_row)
        layout.addStretch(1)

    # -- input -----------------------------------------------------------------------------

    def _layer_changed(self, layer) -> None:
        if layer is None:
            self.pixel_note.setText("Add or open a STED image layer.")
            return
        size, note = layer_pixel_size_nm(layer)
        self.pixel_box.setValue(size or 0.0)
        self.pixel_note.setText(note)

    # -- running -----------------------------------------------------------------------------

    def run(self) -> Job | None:
        """Start segmenting the selected layer with the selected model; returns the job."""
        if self.job is not None:
            return None
        layer, entry = self.input_combo.layer(), self.selected_entry()
        if layer is None or entry is None:
            self._report("Pick an image layer to segment." if layer is None else
                         "Pick a segmenting model, or open one with Open….")
            return None
        pixel, tile = self.pixel_box.value() or None, self.tile_box.value() or None
        device, probabilities = self.device_combo.currentText(), self.probabilities_box.isChecked()
        data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data  # read in the worker (dask, zarr)
        segmenters, key = self._engines, (entry.source, device)
        model = self._packages.get(entry.source, entry.source)  # one opened here is loaded already

        def work(progress, should_cancel):
            from ..segmentation import Segmenter

            if key not in segmenters:
                segmenters[key] = Segmenter(model, device=device)
            return segmenters[key].segment(np.asarray(data), pixel_size_nm=pixel, tile_size=tile,
                                           progress=lambda done, total: progress(done, total, None),
                                           should_cancel=should_cancel)

        def done(result):
            self.last_result, self._succeeded = result, True
            try:
                self._show_results(layer, entry, result, pixel, probabilities)
            except Exception as error:  # never let a display problem escape into napari's event loop
                self._failed("Showing the results")(error)

        def cancelled(error):
            self._set_status("Cancelled; no layers were changed.")

        self.last_error = None
        assumed = f" at its {entry.card.pixel_size_nm:g} nm pixels (assumed: the layer has none)" if (
            pixel is None and entry.card.pixel_size_nm) else ""
        self._set_status(f"Segmenting '{layer.name}' with {entry.card.name}{assumed}…")
        return self._start(Job(work, f"Segmenting {layer.name} [{entry.card.name}]",
                               on_progress=lambda done, total, _: show_progress(self.progress_bar, done, total),
                               on_done=done, on_cancelled=cancelled, on_error=self._failed("Segmentation"),
                               on_finally=self._idle))

    # -- results -----------------------------------------------------------------------------

    def _show_results(self, layer, entry: ModelEntry, result, pixel, probabilities: bool) -> None:
        classes = ["background", *result.class_names]
        model = entry.card.name
        provenance = {**result.provenance, "source_layer": layer.name, "model": model,
                      "model_source": entry.source, "classes": classes, "thresholds": list(result.thresholds),
                      "versions": {**result.provenance.get("versions", {}), "napari_nanoscopy": __version__,
                                   "napari": napari.__version__}}
        if pixel:
            provenance["pixel_size_nm"] = pixel
        geometry = result_geometry(layer)
        shown = [put_result(self.viewer, "labels", layer, "segmentation", model, result.labels, provenance,
                            geometry(result.labels), classes=classes)]
        if probabilities:
            for index, name in enumerate(result.class_names):
                data = result.probabilities[..., index, :, :]
                shown.append(put_result(self.viewer, "image", layer, f"{name} probability", model, data,
                                        {**provenance, "class": name}, geometry(data), colormap=PROBABILITY_COLORMAP,
                                        visible=False, contrast_limits=(0.0, 1.0), blending="additive"))
        self._set_status("Done: " + ", ".join(f"'{item.name}'" for item in shown) + ".")

    # -- annotations -------------------------------------------------------------------------

    def shapes_to_labels(self):
        """Fill the chosen Shapes layer's polygons into a Labels layer on the input layer's pixel grid."""
        from ..annotations import DENDRITE_CLASSES, Polygon, polygons_to_mask

        shapes, image = self.shapes_combo.layer(), self.input_combo.layer()
        if shapes is None or image is None:
            self._report("Pick a Shapes layer (open a *.polys.txt file) and the image layer whose pixels it labels.")
            return None
        labelled = "label" in shapes.features
        # A *.polys.txt file's labels: 0 and 1 rings, 3 fibres; shapes drawn by hand are all one class.
        classes = ["background", "rings", "fibres"] if labelled else ["background", "annotated"]
        polygons, skipped = [], 0
        for index, (vertices, kind) in enumerate(zip(shapes.data, shapes.shape_type)):
            if kind not in FILLED_SHAPES:
                skipped += 1
                continue
            world = np.asarray(vertices)[:, -2:] * np.asarray(shapes.scale[-2:]) + np.asarray(shapes.translate[-2:])
            pixels = (world - np.asarray(image.translate[-2:])) / np.asarray(image.scale[-2:])
            label = int(shapes.features["label"][index]) if labelled else 1
            polygons.append(Polygon(label=label, vertices=pixels))
        shape = tuple(int(n) for n in image.data.shape[-2:])
        mask = polygons_to_mask(polygons, shape, labels=DENDRITE_CLASSES if labelled else None)
        geometry = {"scale": list(image.scale[-2:]), "translate": list(image.translate[-2:])}
        layer = self.viewer.add_labels(mask, name=f"labels: {shapes.name}", features=class_features(classes),
                                       colormap=class_colormap(len(classes) - 1), opacity=0.55,
                                       metadata={"source_shapes": shapes.name, "classes": classes}, **geometry)
        note = f"; {skipped} shapes that are not polygons or rectangles were left out" if skipped else ""
        self._set_status(f"Filled {len(polygons)} polygons of '{shapes.name}' into '{layer.name}'{note}.")
        return layer
