"""The Train widget's two domains of an unpaired (``tagan-cycle``) run: each a folder or a set of image layers.

TA-CycleGAN reads only the images of its domains: domain A's are segmented by the frozen task
network, so neither domain needs masks or pairs (``training/cycle.py``). Ticked layers are written
plane by plane, at each layer's pixel size, to ``<output>.domain_a/`` and ``<output>.domain_b/``
beside the output, so that *Resume* finds the same images the run started with.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QStackedWidget,
    QWidget,
)

from ..errors import NanoscopyError
from ._common import is_image, layer_pixel_size_nm, note_label

FROM_LAYERS, FROM_FOLDER = "Layers", "Folder"
DOMAIN_NOTE = ("A: images the task network segments (e.g. simulations); B: the other domain's (e.g. your "
               "microscope's). No pairs, no masks.")


def domain_folder(out_path, domain: str) -> Path:
    """Where the ticked layers of ``domain`` ("a" or "b") are written: beside the output."""
    out_path = Path(out_path).expanduser()
    return out_path.with_name(f"{out_path.name}.domain_{domain}")


def write_domain_layers(folder: Path, layers: list[tuple[str, object, float | None]]) -> int:
    """Write every plane of each (name, data, pixel size) as ``folder/NN_NAME_PPPP.ome.tif`` (float32);
    returns the number of images written. The folder is replaced."""
    from ..io import write_image

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    written = 0
    for index, (name, data, pixel_size_nm) in enumerate(layers):
        planes = np.asarray(data)
        planes = planes.reshape((-1,) + planes.shape[-2:])
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "layer"
        for plane_index, plane in enumerate(planes):
            write_image(folder / f"{index:02d}_{stem}_{plane_index:04d}.ome.tif", plane.astype(np.float32),
                        pixel_size_nm=pixel_size_nm, axes="YX")
            written += 1
    return written


class LayerChecklist(QListWidget):
    """The viewer's image layers with a tick box each, kept in sync with the viewer; the ticks follow
    the layer objects, so renaming or reordering keeps them."""

    def __init__(self, viewer, parent=None):
        super().__init__(parent)
        self.viewer = viewer
        self._layers: list = []
        self._ticked: list = []
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # long names are elided
        self.setFixedHeight(3 * (self.fontMetrics().height() + 5) + 2 * self.frameWidth())  # three layers in view
        events = viewer.layers.events
        self._emitters = [events.inserted, events.removed, events.moved, events.changed]
        for emitter in self._emitters:
            emitter.connect(self.refresh)
        events.inserted.connect(self._watch_name)
        for layer in viewer.layers:
            layer.events.name.connect(self.refresh)
        self.itemChanged.connect(self._item_changed)
        self.refresh()

    def _watch_name(self, event=None) -> None:
        if getattr(event, "value", None) is not None:
            event.value.events.name.connect(self.refresh)

    def refresh(self, event=None) -> None:
        try:
            self._refresh()
        except RuntimeError:  # the Qt side was deleted: stop listening
            for emitter in self._emitters:
                emitter.disconnect(self.refresh)
            self.viewer.layers.events.inserted.disconnect(self._watch_name)

    def _refresh(self) -> None:
        self._layers = [layer for layer in reversed(list(self.viewer.layers)) if is_image(layer)]
        self._ticked = [layer for layer in self._ticked if layer in self._layers]
        self.blockSignals(True)
        self.clear()
        for layer in self._layers:
            item = QListWidgetItem(layer.name)
            item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if layer in self._ticked else Qt.CheckState.Unchecked)
            self.addItem(item)
        self.blockSignals(False)

    def _item_changed(self, item: QListWidgetItem) -> None:
        layer = self._layers[self.row(item)]
        ticked = item.checkState() == Qt.CheckState.Checked
        self._ticked = [l for l in self._ticked if l is not layer] + ([layer] if ticked else [])

    def set_ticked(self, layers) -> None:
        self._ticked = [layer for layer in layers if layer in self._layers]
        self._refresh()
        self._show_first_ticked()

    def _show_first_ticked(self) -> None:
        if self._ticked:
            self.scrollToItem(self.item(self._layers.index(self.ticked()[0])))

    def resizeEvent(self, event) -> None:  # a list laid out after its ticks were set scrolls to them then
        super().resizeEvent(event)
        self._show_first_ticked()

    def ticked(self) -> list:
        """The ticked layers, in the list's order."""
        return [layer for layer in self._layers if layer in self._ticked]


class DomainSource(QWidget):
    """One domain's images: a set of image layers, or a folder of TIFFs (or a dataset folder with target/)."""

    def __init__(self, viewer, domain: str, parent=None):
        super().__init__(parent)
        self.domain = domain  # "a" or "b"
        self.name = f"domain {domain.upper()}"
        self.mode_combo = QComboBox()
        self.mode_combo.addItems([FROM_LAYERS, FROM_FOLDER])
        self.layer_list = LayerChecklist(viewer)
        self.layer_list.setToolTip(f"Tick the image layers of {self.name}; each plane of a stack is one image")
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText(f"folder of {self.name} TIFFs (or a dataset folder with target/)")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        folder_page = QWidget()
        folder_row = QHBoxLayout(folder_page)
        folder_row.setContentsMargins(0, 0, 0, 0)
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(browse)
        self.pages = QStackedWidget()
        self.pages.addWidget(self.layer_list)
        self.pages.addWidget(folder_page)
        self.pages.setMaximumHeight(self.layer_list.height())
        self.mode_combo.currentIndexChanged.connect(self.pages.setCurrentIndex)
        layout = QHBoxLayout(self)  # side by side: the Train widget is tall already
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.mode_combo, 0, Qt.AlignmentFlag.AlignTop)
        layout.addWidget(self.pages, 1)

    def from_folder(self) -> bool:
        return self.mode_combo.currentText() == FROM_FOLDER

    def use_folder(self, folder) -> None:
        self.mode_combo.setCurrentText(FROM_FOLDER)
        self.folder_edit.setText(str(folder))

    def use_layers(self, layers) -> None:
        self.mode_combo.setCurrentText(FROM_LAYERS)
        self.layer_list.set_ticked(layers)

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, f"Folder of {self.name} images")
        if path:
            self.folder_edit.setText(path)

    def prepare(self, out_path: Path, resume: bool) -> tuple[Path, list[tuple[str, object, float | None]] | None]:
        """The domain's folder, and the layers to write there first (None: the folder is used as it is)."""
        if self.from_folder():
            text = self.folder_edit.text().strip()
            if not text:
                raise NanoscopyError(f"Choose the folder of {self.name} images (TIFFs, or a dataset folder with target/), "
                                     "or tick image layers.")
            return Path(text).expanduser(), None
        folder = domain_folder(out_path, self.domain)
        if resume:
            if not folder.is_dir():
                raise NanoscopyError(f"There are no {self.name} images in {folder} to resume from; start a new training.")
            return folder, None
        layers = self.layer_list.ticked()
        if not layers:
            raise NanoscopyError(f"Tick at least one image layer of {self.name}, or choose a folder of its images.")
        return folder, [(layer.name, layer.data[0] if layer.multiscale else layer.data, layer_pixel_size_nm(layer)[0])
                        for layer in layers]


class CycleSources(QWidget):
    """Domain A and domain B of a tagan-cycle run, each from layers or a folder."""

    def __init__(self, viewer, parent=None):
        super().__init__(parent)
        self.domain_a = DomainSource(viewer, "a")
        self.domain_b = DomainSource(viewer, "b")
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Domain A", self.domain_a)
        form.addRow("Domain B", self.domain_b)
        form.addRow("", note_label(DOMAIN_NOTE))

    def prepare(self, out_path: Path, resume: bool, task_network) -> tuple[Path, Path, Callable[[], None] | None]:
        """Domain A's and domain B's folders, and the function (run in the worker) that writes ticked layers
        there; every check is made here, before any image is written."""
        if task_network is None:
            raise NanoscopyError("tagan-cycle keeps a segmentation of domain A through the cycle: pick a Task network "
                                 "that segments the domain A images (or open one with Open…).")
        folder_a, layers_a = self.domain_a.prepare(out_path, resume)
        folder_b, layers_b = self.domain_b.prepare(out_path, resume)
        if layers_a is not None and layers_b is not None:
            ticked_a = {id(layer) for layer in self.domain_a.layer_list.ticked()}
            shared = [layer.name for layer in self.domain_b.layer_list.ticked() if id(layer) in ticked_a]
            if shared:
                raise NanoscopyError(f"The layer '{shared[0]}' is ticked in both domains; each layer belongs to "
                                     "domain A or to domain B.")
        if folder_a.resolve() == folder_b.resolve():
            raise NanoscopyError(f"Domain A and domain B are the same folder ({folder_a}); give each domain its own images.")
        if (layers_a or layers_b) and not out_path.parent.is_dir():
            raise NanoscopyError(f"The folder {out_path.parent} does not exist; create it first or choose another output path.")

        def write() -> None:
            for folder, layers in ((folder_a, layers_a), (folder_b, layers_b)):
                if layers is not None:
                    write_domain_layers(folder, layers)

        return folder_a, folder_b, write if layers_a or layers_b else None
