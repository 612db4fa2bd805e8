"""What the Restore and Segment widgets share: a model list with an Open… menu, and one job at a time.

The list holds the bundled models and those opened or trained in this napari session (the
shared :data:`~napari_nanoscopy._widgets._registry.REGISTRY`) that the widget can run
(:meth:`ModelJobWidget.lists`); a model opened here is loaded in a worker and refused with one
sentence when the widget cannot run it (:meth:`ModelJobWidget.check_model`). A job runs in a
worker thread with a busy-then-determinate progress bar, a Cancel button and a status line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QMenu,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ._common import Job, note_label, notify_error, pixel_size_box
from ._registry import REGISTRY


def device_choices() -> list[str]:
    import torch

    choices = ["auto", "cpu"]
    if torch.cuda.is_available():
        choices += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())] * (torch.cuda.device_count() > 1)
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        choices.append("mps")
    return choices


@dataclass
class ModelEntry:
    label: str
    source: str  # a bundled name or a model path: what load_model takes
    card: Any  # ModelCard
    bundled: bool


class ModelJobWidget(QWidget):
    """A dock widget that runs one model on a layer, off the GUI thread.

    Subclasses build their controls with :meth:`_make_model_picker` and :meth:`_make_job_controls`,
    call :meth:`_connect_models`, and define ``run`` (start the job; return it), and may override
    :meth:`lists`, :meth:`check_model` and :meth:`_show_model`.
    """

    OPEN_TOOLTIP = "Add a model"
    OPEN_FOLDER = "Model folder…"
    OPEN_FILE = "Model file…"
    FILE_FILTER = "Models (*.zip *.pth *.pt);;All files (*)"
    NO_MODEL = "No model: open one with Open…."

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.job: Job | None = None
        self._entries: list[ModelEntry] = []
        self._packages: dict[str, Any] = {}  # path -> ModelPackage, for models opened here
        self._engines: dict[tuple[str, str], Any] = {}  # (model source, device) -> a ready Restorer or Segmenter
        self.last_error: str | None = None
        self.last_result = None
        self._succeeded = False

    def lists(self, card) -> bool:
        """Whether the model list offers the model of ``card``."""
        return True

    def check_model(self, package) -> None:
        """Refuse (NanoscopyError) a model opened here that this widget cannot run."""

    # -- building ----------------------------------------------------------------------------

    def _make_model_picker(self) -> None:
        """The model list with its Open… menu and a line about the selected model."""
        self.model_combo = QComboBox()
        self.model_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model_combo.setMinimumContentsLength(14)
        self.open_button = QToolButton()
        self.open_button.setText("Open…")
        self.open_button.setToolTip(self.OPEN_TOOLTIP)
        self.open_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.open_button)
        menu.addAction(self.OPEN_FOLDER, self._open_folder)
        menu.addAction(self.OPEN_FILE, self._open_file)
        self.open_button.setMenu(menu)
        self.model_info = note_label()

    def _make_image_settings(self, pixel_tooltip: str) -> None:
        """The input's pixel size (with a note on where it came from), the tile size and the device."""
        self.pixel_box = pixel_size_box()
        self.pixel_box.setToolTip(pixel_tooltip)
        self.pixel_note = note_label()
        self.tile_box = QSpinBox()
        self.tile_box.setRange(0, 16384)
        self.tile_box.setSingleStep(64)
        self.tile_box.setSpecialValueText("automatic")
        self.tile_box.setSuffix(" px")
        self.device_combo = QComboBox()
        self.device_combo.addItems(device_choices())

    def _model_form(self) -> QFormLayout:
        """A form that starts with the input layer, the model (and its Open… button) and the pixel size."""
        form = QFormLayout()
        form.addRow("Input layer", self.input_combo)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_combo, 1)
        model_row.addWidget(self.open_button)
        form.addRow("Model", model_row)
        form.addRow("", self.model_info)
        form.addRow("Pixel size", self.pixel_box)
        form.addRow("", self.pixel_note)
        return form

    def _job_layout(self, form: QFormLayout) -> QVBoxLayout:
        """The widget's layout: ``form``, then Run and Cancel, the progress bar and the status line."""
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status)
        return layout

    def _make_job_controls(self, run_text: str) -> None:
        """Run and Cancel, the progress bar and the status line."""
        self.run_button = QPushButton(run_text)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setTextVisible(True)
        self.status = note_label("")

    def _connect_models(self) -> None:
        self.model_combo.currentIndexChanged.connect(self._model_changed)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        REGISTRY.added.connect(self._registry_added)
        self.destroyed.connect(lambda *_: REGISTRY.added.disconnect(self._registry_added))

    # -- models ------------------------------------------------------------------------------

    def refresh_models(self) -> None:
        """List the bundled models and every model opened or trained in this session that this widget runs."""
        from ..formats import list_models

        try:
            cards = list_models()
        except Exception as error:  # a damaged bundled card must not take the widget down
            notify_error(error, "Listing the bundled models")
            cards = []
        current = self.selected_entry()
        entries = [ModelEntry(card.name, card.name, card, True) for card in cards if self.lists(card)]
        entries += [ModelEntry(f"{card.name} ({Path(path).name})", path, card, False) for path, card in REGISTRY.items()
                    if self.lists(card)]
        self._entries = entries
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        for entry in entries:
            self.model_combo.addItem(entry.label)
            self.model_combo.setItemData(self.model_combo.count() - 1, self._tooltip(entry.card),
                                         Qt.ItemDataRole.ToolTipRole)
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

    def add_model(self, path) -> Job | None:
        """Load a model (in a worker), refuse it unless this widget runs it, and select it."""
        path = str(Path(path).expanduser())
        check = self.check_model

        def load(progress, should_cancel):
            from ..formats import load_model

            package = load_model(path)
            check(package)
            return package

        def done(package):
            key = REGISTRY.add(path, package.card)
            self._engines = {k: v for k, v in self._engines.items() if k[0] != key}  # the file may have changed
            self._packages[key] = package
            self.refresh_models()
            self.select_model(key)
            self._set_status(f"Added model '{package.card.name}' from {path}.")

        return self._start(Job(load, f"Loading model {Path(path).name}", on_done=done,
                               on_error=self._failed("Loading the model"), on_finally=self._idle))

    def _open_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a model folder")
        if path:
            self.add_model(path)

    def _open_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a model", "", self.FILE_FILTER)
        if path:
            self.add_model(path)

    def _model_changed(self, *_) -> None:
        entry = self.selected_entry()
        self.run_button.setEnabled(entry is not None and self.job is None)
        if entry is None:
            self.model_info.setText(self.NO_MODEL)
            return
        self.model_info.setToolTip(self._tooltip(entry.card))
        self._show_model(entry.card)

    def _show_model(self, card) -> None:
        """Describe the selected model (and adapt the settings to it)."""
        pixel = f"{card.pixel_size_nm:g} nm pixels" if card.pixel_size_nm else "any pixel size"
        self.model_info.setText(f"{pixel}\n{card.description}")

    # -- the job -----------------------------------------------------------------------------

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self._set_status("Cancelling…")

    def _start(self, job: Job) -> Job:
        self.job, self._succeeded = job, False
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

    def closeEvent(self, event) -> None:
        self.cancel()
        super().closeEvent(event)
