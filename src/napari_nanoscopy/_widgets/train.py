"""The *Train* dock widget: train any family on pairs from two layers or a folder, with a live loss plot.

Training runs ``napari_nanoscopy.training.train`` in a worker thread; *Start from* fine-tunes a
model (its architecture and weights). *Stop* writes a checkpoint (``<output>.checkpoint/``) and
*Resume* continues it exactly. The finished package is added to every *Restore* widget's model list.
For the families that take one, *Task network* picks a frozen segmenting model that scores the
generator instead of a task network trained on task labels (``TrainingConfig.task_network``).
``tagan-cycle`` trains on two unpaired domains instead of pairs, each a folder or a set of image
layers (``_train_sources``), against the frozen task network of domain A.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import napari
import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..errors import NanoscopyError
from ..training import ALL_TRAINING_FAMILIES, UNPAIRED_FAMILIES, TrainingConfig, command_line_options, family_settings
from ..training.config import FROZEN_TASK_FAMILIES, bounds
from ._common import (Job, LayerCombo, is_image, is_labels, layer_pixel_size_nm, note_label, notify_error, notify_info,
                      show_progress)
from ._plot import PlotWidget
from ._registry import REGISTRY
from ._model_job import device_choices
from ._train_sources import CycleSources

FAMILY_NOTES = {
    "l2l": "label2label / CARE U-Net: input → target, no discriminator (fast; good first choice)",
    "tagan": "TA-GAN: GAN + task network; needs a task layer (segmentation of the target) or a frozen task network",
    "tagan-live": "TA-GAN Live: confocal + STED patches; needs a task layer or a frozen task network",
    "unet-live": "U-Net-Live: segmentation of target images; needs a task layer",
    "pix2pix": "pix2pix baseline (TA-GAN generator, pixel loss)",
    "tcan": "TCAN: residual U-Net + Fourier channel attention, classifier GAN",
    "wang": "Wang et al. 2019: residual U-Net GAN",
    "tagan-cycle": "TA-CycleGAN: unpaired translation A ↔ B; needs a task network that segments domain A",
}
NO_TASK_NETWORK = "none (train the family's own)"
# Steps offered for a new model and for fine-tuning one: 200 steps on 4 pairs of another microscope recovered
# 91 % of the gap to a model trained on 200 of its pairs (docs/training.md, benchmarks/few_pair_adaptation.py).
NEW_MODEL_STEPS, FINE_TUNING_STEPS = 2000, 200
PAIRS_SUFFIX = ".pairs"  # layer pairs are written beside the output, so that a resumed run finds them


def pairs_folder(out_path) -> Path:
    out_path = Path(out_path).expanduser()
    return out_path.with_name(out_path.name + PAIRS_SUFFIX)


def write_layer_pairs(folder: Path, input_data, target_data, task_data, pixel_size_nm, task_names) -> int:
    """Write the layers as a training folder (input/, target/, task/); one pair per plane of a stack."""
    from ..io import write_image

    inputs = np.asarray(input_data)
    targets = np.asarray(target_data)
    if inputs.shape != targets.shape:
        raise NanoscopyError(
            f"The input layer has shape {inputs.shape} but the target layer {targets.shape}; "
            "training pairs must be registered images of the same size."
        )
    inputs = inputs.reshape((-1,) + inputs.shape[-2:])
    targets = targets.reshape((-1,) + targets.shape[-2:])
    tasks = None
    if task_data is not None:
        task = np.asarray(task_data)
        if task.shape[-2:] != inputs.shape[-2:] or int(np.prod(task.shape[:-2])) not in (1, len(inputs)):
            raise NanoscopyError(
                f"The task layer has shape {task.shape}, which does not match the input layer's {np.asarray(input_data).shape}."
            )
        task = task.reshape((-1,) + task.shape[-2:])
        if len(task) == 1 and len(inputs) > 1:
            task = np.repeat(task, len(inputs), axis=0)
        tasks = task
    if folder.exists():
        shutil.rmtree(folder)
    for sub in ("input", "target") + (("task",) if tasks is not None else ()):
        (folder / sub).mkdir(parents=True)
    for index in range(len(inputs)):
        name = f"plane_{index:04d}.ome.tif"
        write_image(folder / "input" / name, inputs[index].astype(np.float32), pixel_size_nm=pixel_size_nm, axes="YX")
        write_image(folder / "target" / name, targets[index].astype(np.float32), pixel_size_nm=pixel_size_nm, axes="YX")
        if tasks is not None:
            classes = task_names or [f"class {k}" for k in range(1, int(tasks.max()) + 1)] or ["class 1"]
            masks = np.stack([(tasks[index] == k + 1).astype(np.uint8) for k in range(len(classes))])
            write_image(folder / "task" / name, masks, pixel_size_nm=pixel_size_nm, axes="CYX", channel_names=classes)
    return len(inputs)


class TrainWidget(QWidget):
    """Train a model from two layers (or a folder of pairs) and add it to Restore."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.job: Job | None = None
        self.history: dict[str, list[tuple[int, float]]] = {}
        self.last_error: str | None = None
        self.last_card = None
        self.stopped = False

        self._build_source(napari_viewer)
        self.cycle_sources = CycleSources(napari_viewer)
        output_row = self._build_settings()
        task_network_row = self._build_task_network()

        self.train_button = QPushButton("Train")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop after the current step and write a checkpoint (Resume continues it)")
        self.stop_button.setEnabled(False)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue the run whose checkpoint is beside the output path (same settings)")
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.plot = PlotWidget("Training losses", "step", "loss", log_y=True, integer_x=True)
        self.plot.empty_text = "The losses appear here while training"
        self.status = note_label()

        form = QFormLayout()
        form.addRow(self.source_label, self.source_combo)
        form.addRow(self.source_pages)
        form.addRow(self.cycle_sources)
        form.addRow("Family", self.family_combo)
        form.addRow("", self.family_note)
        form.addRow(self.task_network_label, task_network_row)
        form.addRow("Start from", self.start_combo)
        form.addRow("Steps", self.steps_box)
        form.addRow("Patch", self.patch_box)
        form.addRow("Batch", self.batch_box)
        form.addRow("Device", self.device_combo)
        form.addRow("Save to", output_row)
        form.addRow("Name", self.name_edit)
        buttons = QHBoxLayout()
        for button in (self.train_button, self.stop_button, self.resume_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.status)

        self.family_combo.currentTextChanged.connect(self._family_changed)
        self.start_combo.currentTextChanged.connect(self._start_changed)
        self.train_button.clicked.connect(lambda: self.train())
        self.resume_button.clicked.connect(lambda: self.train(resume=True))
        self.stop_button.clicked.connect(self.stop)
        self._family_changed(self.family_combo.currentText())
        self._list_task_networks()
        REGISTRY.added.connect(self._registry_added)
        self.destroyed.connect(lambda *_: REGISTRY.added.disconnect(self._registry_added))
        inputs = [l for l in self.input_combo.layers() if (l.metadata or {}).get("role") == "input"]
        if inputs:  # an opened sample: its input and target
            self.input_combo.set_layer(inputs[0])
        self._guess_target(prefer_sample=True)
        self.input_combo.layer_changed.connect(lambda _: self._guess_target())

    def _build_source(self, napari_viewer) -> None:
        """Where the pairs come from: two (or three) layers, or a folder."""
        self.source_label = QLabel("Pairs from")
        self.source_combo = QComboBox()
        self.source_combo.addItems(["Two layers", "Folder of pairs"])
        self.input_combo = LayerCombo(napari_viewer, is_image)
        self.target_combo = LayerCombo(napari_viewer, is_image)
        self.task_combo = LayerCombo(napari_viewer, is_labels, none_text="(none)")
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("folder with input/ and target/ (and task/) TIFFs")
        browse_folder = QPushButton("Browse…")
        browse_folder.clicked.connect(self._browse_folder)

        layers_page = QWidget()
        layers_form = QFormLayout(layers_page)
        layers_form.setContentsMargins(0, 0, 0, 0)
        layers_form.addRow("Input layer", self.input_combo)
        layers_form.addRow("Target layer", self.target_combo)
        layers_form.addRow("Task labels", self.task_combo)
        folder_page = QWidget()
        folder_row = QHBoxLayout(folder_page)
        folder_row.setContentsMargins(0, 0, 0, 0)
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(browse_folder)
        for page in (layers_page, folder_page):
            page.setMinimumHeight(page.sizeHint().height())
        self.source_pages = QStackedWidget()
        self.source_pages.addWidget(layers_page)
        self.source_pages.addWidget(folder_page)
        self.source_combo.currentIndexChanged.connect(self.source_pages.setCurrentIndex)

    def _build_settings(self) -> QHBoxLayout:
        """The family and the run's settings; returns the output path's row."""
        self.family_combo = QComboBox()
        for family in ALL_TRAINING_FAMILIES:
            self.family_combo.addItem(family)
            self.family_combo.setItemData(self.family_combo.count() - 1, FAMILY_NOTES.get(family, ""), Qt.ItemDataRole.ToolTipRole)
        self.family_combo.setCurrentText("l2l")
        self.family_note = note_label()
        self.start_combo = QComboBox()  # editable: a listed model, or any package path typed in
        self.start_combo.setEditable(True)
        self.start_combo.lineEdit().setPlaceholderText("a new model (or a model to fine-tune)")
        self.start_combo.setToolTip(
            "Fine-tune a model: its architecture and weights are the start (bundled models and models of this "
            "session of the chosen family are listed; type a package folder or .zip for another). Empty: a new model."
        )
        # The ranges are TrainingConfig's own; 0 in patch and batch stands for the family's default.
        self.steps_box = QSpinBox()
        self.steps_box.setRange(*bounds("steps"))
        self.steps_box.setValue(NEW_MODEL_STEPS)
        self.steps_box.setSingleStep(100)
        self.patch_box = QSpinBox()
        self.patch_box.setRange(0, bounds("patch")[1])
        self.patch_box.setSingleStep(16)
        self.patch_box.setSuffix(" px")
        self.batch_box = QSpinBox()
        self.batch_box.setRange(0, bounds("batch")[1])
        self.device_combo = QComboBox()
        self.device_combo.addItems(device_choices())
        self.output_edit = QLineEdit()
        self.output_edit.setPlaceholderText("where to save the model package (a new folder, or .zip)")
        browse_output = QPushButton("Browse…")
        browse_output.clicked.connect(self._browse_output)
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("model name (default: the output's name)")
        output_row = QHBoxLayout()
        output_row.addWidget(self.output_edit, 1)
        output_row.addWidget(browse_output)
        return output_row

    def _build_task_network(self) -> QWidget:
        """The frozen task network row (shown for the families that take one); returns the row."""
        self.task_network_label = QLabel("Task network")
        self.task_network_combo = QComboBox()
        self.task_network_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.task_network_combo.setMinimumContentsLength(14)
        # The command line's help for the same setting (train --task-network).
        self.task_network_combo.setToolTip(next(option.help for option in command_line_options()
                                                if option.name == "task_network"))
        self._opened_task_networks: list[str] = []  # paths picked with Open…, listed after the known models
        open_button = QToolButton()
        open_button.setText("Open…")
        open_button.setToolTip("Add a segmenting model as task network: an authors' U-Net folder (params.net), "
                               "a package folder or .zip with a task network, or a TA-GAN *_net_G.pth")
        open_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(open_button)
        menu.addAction("Model folder (U-Net params.net, package)…", self._open_task_network_folder)
        menu.addAction("Model file (.zip, TA-GAN .pth)…", self._open_task_network_file)
        open_button.setMenu(menu)
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.task_network_combo, 1)
        layout.addWidget(open_button)
        self.task_network_row = row
        return row

    # -- settings ----------------------------------------------------------------------------

    def _family_changed(self, family: str) -> None:
        try:
            defaults = family_settings(family)
        except NanoscopyError as error:
            self.family_note.setText(str(error))
            return
        self.patch_box.setSpecialValueText(f"paper default ({defaults.patch} px)")
        self.batch_box.setSpecialValueText(f"paper default ({defaults.batch})")
        self.patch_box.setValue(0)
        self.batch_box.setValue(0)
        self.family_note.setText(f"{FAMILY_NOTES.get(family, '')}. {defaults.paper}.")
        self._list_start_models(family)
        for widget in (self.task_network_label, self.task_network_row):
            widget.setVisible(family in FROZEN_TASK_FAMILIES + UNPAIRED_FAMILIES)
        unpaired = family in UNPAIRED_FAMILIES
        for widget in (self.source_label, self.source_combo, self.source_pages):
            widget.setVisible(not unpaired)
        self.cycle_sources.setVisible(unpaired)
        self.start_combo.setEnabled(not unpaired)  # its networks start fresh

    @staticmethod
    def _bundled_cards() -> list:
        """The bundled models' cards; none (with a notification) when one cannot be read."""
        from ..formats import list_models

        try:
            return list_models()
        except Exception as error:  # a damaged bundled card must not take the widget down
            notify_error(error, "Listing the bundled models")
            return []

    def _start_changed(self, text: str) -> None:
        """Fine-tuning needs a tenth of the steps: swap the offered default (a number the user typed stays)."""
        fine_tuning = bool(text.strip())
        if self.steps_box.value() == (NEW_MODEL_STEPS if fine_tuning else FINE_TUNING_STEPS):
            self.steps_box.setValue(FINE_TUNING_STEPS if fine_tuning else NEW_MODEL_STEPS)

    def _list_start_models(self, family: str) -> None:
        """Offer the bundled and session models that ``family`` can fine-tune (trained by that family)."""
        cards = [(card.name, card) for card in self._bundled_cards()]
        chosen = self.start_combo.currentText()
        listed = {self.start_combo.itemText(index) for index in range(self.start_combo.count())}
        self.start_combo.clear()
        self.start_combo.addItem("")
        for source, card in cards + REGISTRY.items():
            if card.training.get("method") == family:
                self.start_combo.addItem(source)
        if chosen in listed and self.start_combo.findText(chosen) < 0:
            chosen = ""  # a listed model of the previous family; a typed path stays
        self.start_combo.setCurrentText(chosen)

    def _list_task_networks(self, select: str | None = None) -> None:
        """Offer the models that segment, as the Segment widget lists them (bundled, then this session's),
        then the folders and files picked with Open…; keep the choice, or select ``select``."""
        from ..segmentation import can_segment

        combo = self.task_network_combo
        chosen = combo.currentData() if select is None else select
        entries = [(NO_TASK_NETWORK, None)]
        entries += [(card.name, card.name) for card in self._bundled_cards() if can_segment(card)]
        entries += [(f"{card.name} ({Path(path).name})", path) for path, card in REGISTRY.items() if can_segment(card)]
        listed = {source for _, source in entries}
        entries += [(path, path) for path in self._opened_task_networks if path not in listed]
        combo.blockSignals(True)
        combo.clear()
        for label, source in entries:
            combo.addItem(label, source)
            combo.setItemData(combo.count() - 1, source or NO_TASK_NETWORK, Qt.ItemDataRole.ToolTipRole)
        combo.setCurrentIndex(max(0, combo.findData(chosen)))
        combo.blockSignals(False)

    def select_task_network(self, source: str | None) -> bool:
        """Select the task network ``source`` (a listed model's name or path; None: train the family's own)."""
        index = self.task_network_combo.findData(source)
        if index >= 0:
            self.task_network_combo.setCurrentIndex(index)
        return index >= 0

    def task_network(self) -> str | None:
        """The frozen task network the run uses: None unless the family takes one and one is chosen."""
        if self.family_combo.currentText() not in FROZEN_TASK_FAMILIES + UNPAIRED_FAMILIES:
            return None
        return self.task_network_combo.currentData()

    def add_task_network(self, path) -> None:
        """List a model folder or file picked with Open… and select it (training says if it cannot segment)."""
        path = str(Path(path).expanduser().resolve())  # as the session registry keys its models
        if path not in self._opened_task_networks:
            self._opened_task_networks.append(path)
        self._list_task_networks(select=path)

    def _open_task_network_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a segmenting model folder (U-Net params.net, package)")
        if path:
            self.add_task_network(path)

    def _open_task_network_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a segmenting model", "", "Models (*.zip *.pth *.pt);;All files (*)")
        if path:
            self.add_task_network(path)

    def _registry_added(self, _path: str) -> None:
        try:
            self._list_start_models(self.family_combo.currentText())
            self._list_task_networks()
        except RuntimeError:  # this widget's Qt side is gone
            REGISTRY.added.disconnect(self._registry_added)

    def _guess_target(self, prefer_sample: bool = False) -> None:
        """Keep the target apart from the input; with a sample open, pick its target layer."""
        chosen = self.input_combo.layer()
        current = self.target_combo.layer()
        targets = [l for l in self.target_combo.layers() if (l.metadata or {}).get("role") == "target" and l is not chosen]
        if targets and (prefer_sample or current is chosen or current is None):
            self.target_combo.set_layer(targets[0])
        elif self.target_combo.layer() is chosen:
            others = [l for l in self.target_combo.layers() if l is not chosen]
            if others:
                self.target_combo.set_layer(others[0])

    def _browse_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder of training pairs (input/, target/)")
        if path:
            self.folder_edit.setText(path)

    def _browse_output(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the trained model package as", "", "Model package (folder or .zip) (*)")
        if path:
            self.output_edit.setText(path)

    def config(self, data_dir: Path, out_path: Path, resume: bool, domain_b: Path | None = None) -> TrainingConfig:
        """The run the widget's settings describe, checked before any pair is written."""
        steps = self.steps_box.value()
        return TrainingConfig(
            self.family_combo.currentText(), data_dir, out_path, steps=steps,
            patch=self.patch_box.value() or None, batch=self.batch_box.value() or None,
            device=self.device_combo.currentText(), resume=resume, name=self.name_edit.text().strip() or None,
            init_from=(self.start_combo.isEnabled() and self.start_combo.currentText().strip()) or None,
            checkpoint_every=max(1, min(500, steps // 4)), task_network=self.task_network(), domain_b=domain_b,
        )

    # -- running -----------------------------------------------------------------------------

    def train(self, resume: bool = False) -> Job | None:
        if self.job is not None:
            return None
        try:
            out_text = self.output_edit.text().strip()
            if not out_text:
                raise NanoscopyError("Choose where to save the model (Save to) before training.")
            out_path = Path(out_text).expanduser()
            domain_b = None
            if self.family_combo.currentText() in UNPAIRED_FAMILIES:
                data_dir, domain_b, write_pairs = self.cycle_sources.prepare(out_path, resume, self.task_network())
            else:
                data_dir, write_pairs = self._prepare_data(out_path, resume)
            config = self.config(data_dir, out_path, resume, domain_b)
        except NanoscopyError as error:
            self._failed(error)
            return None
        if not resume:
            self.history = {}
            self.plot.clear()
        history = self.history

        def work(progress, should_stop):
            from ..training import train

            if write_pairs is not None:
                write_pairs()

            def callback(step, steps, losses):
                for key, value in losses.items():
                    history.setdefault(key, []).append((step, float(value)))
                progress(step, steps, None)

            return train(config, callback=callback, should_stop=should_stop)

        def done(card):
            self.last_card = card
            REGISTRY.add(out_path, card)
            message = f"Saved the model '{card.name}' to {out_path}; Restore lists it now."
            self.status.setText(message)
            notify_info(message)

        def cancelled(error):
            self.stopped = True
            self.status.setText(str(error))
            notify_info(str(error))

        self.stopped = False
        self.last_error = None
        self.status.setText(("Resuming" if resume else "Preparing") + f" {config.family} training…")
        self.job = Job(work, f"Training {config.family} → {out_path.name}", on_progress=self._progress,
                       on_done=done, on_cancelled=cancelled, on_error=self._failed, on_finally=self._idle)
        for button in (self.train_button, self.resume_button):
            button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.progress_bar.setRange(0, 0)
        return self.job.start()

    def _prepare_data(self, out_path: Path, resume: bool) -> tuple[Path, Callable[[], None] | None]:
        """The training folder, and the function (run in the worker) that writes it from the layers, if need be."""
        if self.source_combo.currentIndex() == 1:
            folder = self.folder_edit.text().strip()
            if not folder:
                raise NanoscopyError("Choose the folder of training pairs (with input/ and target/ subfolders).")
            return Path(folder).expanduser(), None
        input_layer, target_layer = self.input_combo.layer(), self.target_combo.layer()
        if input_layer is None or target_layer is None:
            raise NanoscopyError("Pick an input and a target image layer (or train from a folder of pairs).")
        if input_layer is target_layer:
            raise NanoscopyError("The input and target layers are the same layer; pick the image to learn as target.")
        folder = pairs_folder(out_path)
        if resume:
            if not folder.is_dir():
                raise NanoscopyError(f"There are no layer pairs in {folder} to resume from; start a new training.")
            return folder, None
        if not out_path.parent.is_dir():
            raise NanoscopyError(f"The folder {out_path.parent} does not exist; create it first or choose another output path.")
        pixel, _ = layer_pixel_size_nm(input_layer)
        task_layer = self.task_combo.layer()
        inputs, targets = np.asarray(input_layer.data), np.asarray(target_layer.data)
        task = None if task_layer is None else np.asarray(task_layer.data)
        task_names = None
        if task_layer is not None:
            features = getattr(task_layer, "features", None)
            if features is not None and "class" in getattr(features, "columns", []):
                task_names = [str(name) for name in list(features["class"])[1:]] or None

        return folder, lambda: write_layer_pairs(folder, inputs, targets, task, pixel, task_names)

    def stop(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.status.setText("Stopping after this step; writing a checkpoint…")

    def _idle(self) -> None:
        self.job = None
        self.train_button.setEnabled(True)
        self.resume_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(1 if self.last_card is not None and not self.stopped else 0)

    def _failed(self, error) -> None:
        self.last_error = notify_error(error, "Training")
        self.status.setText(self.last_error)

    def _progress(self, done: int, total: int, _extra) -> None:
        show_progress(self.progress_bar, done, total)  # the package is still saved after the last step
        for key, values in list(self.history.items()):
            points = values[:]  # the worker appends concurrently
            if points:
                steps, losses = zip(*points)
                self.plot.set_line(key, steps, losses, smooth=max(1, len(points) // 20))
        latest = ", ".join(f"{k} {v[-1][1]:.4g}" for k, v in self.history.items() if v)
        self.status.setText(f"Step {done} / {total}: {latest}")

    def closeEvent(self, event) -> None:
        self.stop()
        super().closeEvent(event)
