"""The Live assist dock widget: connect a microscope (or the simulator), arm, run the TA-GAN loop.

Everything here is presentation: the adapters, the runner and its engine, the policies and the
recorder are the headless ``napari_nanoscopy.live`` package. The runner runs in a worker thread;
each finished frame is handed to the GUI thread, which updates the layers (confocal,
synthetic STED mean, disparity map, segmentation, last real STED), the score plot and the
dose counter, at most every 50 ms.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..analysis.variability import DISPARITY_METHODS
from ..errors import NanoscopyError
from ..inference import PRECISIONS
from ..live.connection import ADAPTERS, AdapterSettings, make_adapter
from ..live.policies import DEFAULT_THRESHOLDS, POLICIES
from ..live.runner import FinishReason, RunState
from ..live.settings import (DEFAULT_GENERATOR, DEFAULT_SEGMENT_CLASS, DEFAULT_SEGMENTER, REFERENCES, LiveSettings,
                             bundled_live_segmenters)
from ._common import Job, note_label, notify_error, notify_info
from ._plot import PlotWidget

# The live layers from bottom to top and how each looks when it first appears: the synthetic STED
# (the model's current view of the sample) over the confocal, the last real STED over the ROI, the
# ROI's segmentation as outlines on top, and the two diagnostic maps hidden. Every image is opaque
# ("translucent" at full opacity): adding full-field layers on top of each other washed them out.
LIVE_LAYERS = {
    "live confocal": {"colormap": "gray"},
    "live synthetic STED": {"colormap": "magma"},
    "live disparity": {"colormap": "viridis", "visible": False},
    "live variability": {"colormap": "inferno", "visible": False},
    "live real STED": {"colormap": "magma"},
    "live segmentation": {},
}
SEGMENTATION_COLOR = "#30e0ff"  # outlines that stand out on gray and magma


class LiveWidget(QWidget):
    """Adapter and connection, policy and thresholds, arm / start / pause / stop, live layers."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.adapter = None
        self.pipeline = None
        self.job: Job | None = None
        self.results: list = []  # FrameResults in order, appended by the worker
        self._shown = 0
        self._lock = threading.Lock()
        self.last_summary: dict[str, Any] | None = None
        self.last_error: str | None = None

        self.adapter_combo = QComboBox()
        self.adapter_combo.addItems(ADAPTERS)
        self.size_box = _spin(64, 2048, 500, " px")
        self.frames_box = _spin(1, 10_000, 15)
        self.stimulus_box = _spin(0, 10_000, 5)
        self.seed_box = _spin(0, 2**31 - 1, 0)
        self.conditions_edit = QLineEdit()
        self.conditions_edit.setPlaceholderText("standard")
        self.conditions_edit.setToolTip("standard, seed-live-cell or a .yaml/.json condition file (docs/simulation.md)")
        self.config_edit = QLineEdit()
        self.config_edit.setPlaceholderText("Micro-Manager .cfg (pymmcore)")
        self.connect_button = QPushButton("Connect")
        self.arm_box = QCheckBox("Armed (the microscope may illuminate the sample)")
        self.arm_box.setEnabled(False)

        self.policy_combo = QComboBox()
        self.policy_combo.addItems(POLICIES)
        self.threshold_box = QDoubleSpinBox()
        self.threshold_box.setRange(0.0, 1.0)
        self.threshold_box.setDecimals(3)
        self.threshold_box.setSingleStep(0.05)
        self.threshold_box.setValue(0.5)
        self.threshold_box.setToolTip("set to the policy's default when the policy changes (0.5, the paper's, for "
                                      "dice and variability; 0.2 for area); benchmarks/live_targets.py --calibrate "
                                      "measures thresholds for your models (docs/live.md)")
        self.reference_combo = QComboBox()
        self.reference_combo.addItems(REFERENCES)
        self.reference_combo.setToolTip("dice and area compare with the segmentation of the last real STED (the "
                                        "paper) or with the synthetic one of the frame it was acquired at")
        self.samples_box = _spin(2, 100, 10)
        self.precision_combo = QComboBox()
        self.precision_combo.addItems(list(PRECISIONS))
        self.precision_combo.setToolTip("bf16 runs both networks in bfloat16: about 1.7x faster on CPUs with "
                                        "AVX-512 BF16 or AMX and on GPUs; refused where not supported")
        self.compile_box = QCheckBox("Compile the networks (first frame slower)")
        self.compile_box.setToolTip("torch.compile: decisions about 1.3x faster; the first frame compiles "
                                    "(10-60 s) and needs a C++ compiler on a CPU")
        self.disparity_combo = QComboBox()
        self.disparity_combo.addItems(DISPARITY_METHODS)
        self.patch_box = _spin(8, 2048, 100, " px")
        self.roi_box = _spin(8, 2048, 300, " px")
        self.max_sted_box = _spin(0, 10_000, 0)
        self.max_sted_box.setSpecialValueText("no cap")
        self._make_model_choices()
        self.out_edit = QLineEdit()
        self.out_edit.setPlaceholderText("new folder for the session (default: a temporary one)")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)

        self.start_button = QPushButton("Start")
        self.pause_button = QPushButton("Pause")
        self.stop_button = QPushButton("Stop")
        for button in (self.start_button, self.pause_button, self.stop_button):
            button.setEnabled(False)
        self.plot = PlotWidget("Decision score per frame", "frame", "score", integer_x=True)
        self.plot.empty_text = "Dice, variability or area change per frame appears here"
        self.dose_label = QLabel("dose: –")
        self.status = note_label("Choose an adapter and connect.")

        self._lay_out(browse)

        self.connect_button.clicked.connect(self.connect_adapter)
        self.arm_box.toggled.connect(self._arm_toggled)
        self.policy_combo.currentTextChanged.connect(self._policy_changed)
        self.start_button.clicked.connect(self.start)
        self.pause_button.clicked.connect(self.pause)
        self.stop_button.clicked.connect(self.stop)

    def _lay_out(self, browse: QPushButton) -> None:
        """The settings form, the run buttons, the dose, the score plot and the status line, top to bottom."""
        form = QFormLayout()
        form.addRow("Adapter", self.adapter_combo)
        form.addRow("Field (simulator)", self.size_box)
        form.addRow("Frames", self.frames_box)
        form.addRow("Stimulus frame (simulator)", self.stimulus_box)
        form.addRow("Conditions (simulator)", self.conditions_edit)
        form.addRow("Seed", self.seed_box)
        form.addRow("Configuration", self.config_edit)
        form.addRow(self.connect_button)
        form.addRow(self.arm_box)
        form.addRow("Policy", self.policy_combo)
        form.addRow("Threshold", self.threshold_box)
        form.addRow("Reference", self.reference_combo)
        form.addRow("MC samples", self.samples_box)
        form.addRow("Precision", self.precision_combo)
        form.addRow(self.compile_box)
        form.addRow("Disparity", self.disparity_combo)
        form.addRow("STED patch", self.patch_box)
        form.addRow("ROI", self.roi_box)
        form.addRow("Max full STED", self.max_sted_box)
        form.addRow("TA-GAN Live model", self.generator_edit)
        form.addRow("U-Net-Live model", self.segmenter_combo)
        form.addRow("Segment class", self.segment_class_combo)
        out_row = QHBoxLayout()
        out_row.addWidget(self.out_edit, 1)
        out_row.addWidget(browse)
        form.addRow("Record to", out_row)
        buttons = QHBoxLayout()
        for button in (self.start_button, self.pause_button, self.stop_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.dose_label)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.status)

    # -- connection ---------------------------------------------------------------------------

    def connect_adapter(self) -> None:
        """Create the chosen adapter (the simulator needs no arming; hardware starts disarmed)."""
        self.disconnect_adapter()
        frames = self.frames_box.value()
        try:
            self.adapter = make_adapter(AdapterSettings(
                kind=self.adapter_combo.currentText(), frames=frames, stimulus_frame=min(self.stimulus_box.value(), frames),
                size=self.size_box.value(), seed=self.seed_box.value(), mm_config=self.config_edit.text().strip() or None,
                conditions=self.conditions_edit.text().strip() or None,
            ))
        except NanoscopyError as error:
            self.last_error = notify_error(error, "Connecting")
            self.status.setText(self.last_error)
            return
        caps = self.adapter.capabilities()
        self.arm_box.setEnabled(caps.requires_arming)
        self.arm_box.setChecked(self.adapter.armed)
        self.start_button.setEnabled(True)
        self.status.setText(f"Connected: {caps.description or self.adapter.name}. "
                            + ("Arm it to acquire." if not self.adapter.armed else "Ready."))

    def disconnect_adapter(self) -> None:
        if self.adapter is not None:
            self.adapter.close()
        self.adapter = None
        self.start_button.setEnabled(False)

    def _arm_toggled(self, armed: bool) -> None:
        if self.adapter is None:
            return
        if armed:
            self.adapter.arm()
        else:
            self.adapter.disarm()
            self.adapter.safe_state()

    # -- running ------------------------------------------------------------------------------

    def _make_model_choices(self) -> None:
        """The TA-GAN Live generator, the bundled U-Net-Live models to pick from (or a typed name, folder or
        .zip) and the class to watch."""
        self.generator_edit = QLineEdit(DEFAULT_GENERATOR)
        self.generator_edit.setToolTip("tagan-live-factin-synthetic (default): simulated dendrites; tagan-live-factin: "
                                       "also real structures, invents less on real images (docs/live.md)")
        self._segmenter_classes = bundled_live_segmenters()
        self.segmenter_combo = QComboBox()
        self.segmenter_combo.setEditable(True)
        self.segmenter_combo.addItems(sorted(self._segmenter_classes))
        self.segmenter_combo.setToolTip("unet-live-factin-synthetic (default): simulated dendrites, rings and fibres, "
                                        "the bundled generators' task network; unet-live-factin: also real axonal "
                                        "rings; unet-live-axons: axons, rings only (docs/live.md)")
        self.segmenter_edit = self.segmenter_combo.lineEdit()
        self.segmenter_edit.setText(DEFAULT_SEGMENTER)
        self.segment_class_combo = QComboBox()
        self.segment_class_combo.setEditable(True)
        self.segment_class_combo.addItems(self._segmenter_classes.get(DEFAULT_SEGMENTER, [DEFAULT_SEGMENT_CLASS]))
        self.segment_class_combo.setCurrentText(DEFAULT_SEGMENT_CLASS)
        self.segmenter_combo.currentTextChanged.connect(self._segmenter_changed)

    def _segmenter_changed(self, name: str) -> None:
        # a bundled segmenter offers its own classes; the watched one stays where that segmenter has it
        classes = self._segmenter_classes.get(name.strip())
        if not classes:
            return
        watched = self.segment_class_combo.currentText()
        self.segment_class_combo.clear()
        self.segment_class_combo.addItems(classes)
        self.segment_class_combo.setCurrentText(watched if watched in classes else classes[0])

    def _policy_changed(self, policy: str) -> None:
        # each policy's score has its own scale: start from that policy's default threshold
        self.threshold_box.setValue(DEFAULT_THRESHOLDS[policy])
        # the variability policy compares with no reference
        self.reference_combo.setEnabled(policy != "variability")

    def settings(self) -> LiveSettings:
        return LiveSettings(
            policy=self.policy_combo.currentText(), threshold=self.threshold_box.value(),
            reference=self.reference_combo.currentText() if self.reference_combo.isEnabled() else "sted",
            samples=self.samples_box.value(), disparity=self.disparity_combo.currentText(),
            patch=self.patch_box.value(), roi=self.roi_box.value(), generator=self.generator_edit.text().strip(),
            segmenter=self.segmenter_edit.text().strip(), segment_class=self.segment_class_combo.currentText().strip(),
            seed=self.seed_box.value(),
            precision=self.precision_combo.currentText(), compile=self.compile_box.isChecked(),
        )

    def start(self) -> Job | None:
        """Start a session, or continue a paused one."""
        if self.job is not None and not self.job.finished:
            return None
        if self.adapter is None:
            self.connect_adapter()
            if self.adapter is None:
                return None
        frames = self.frames_box.value()
        if self.pipeline is None:
            from ..live.budget import DoseBudget
            from ..live.pipeline import open_session

            out = self.out_edit.text().strip() or str(Path(tempfile.mkdtemp(prefix="live-")) / "session")
            try:
                self.pipeline = open_session(
                    self.adapter, out, self.settings(),
                    budget=DoseBudget(max_sted_frames=self.max_sted_box.value() or None),
                )
            except NanoscopyError as error:
                self.last_error = notify_error(error, "Starting the live session")
                self.status.setText(self.last_error)
                return None
            self.pipeline.frame_finished.connect(self._frame_done)
            self.results, self._shown = [], 0
            self.plot.clear()
            run = self.pipeline.run
        else:
            run = self.pipeline.resume
        pipeline = self.pipeline

        def work(progress, should_cancel):
            self._progress = progress
            return run(frames)

        self.job = Job(work, "Live assist", on_progress=lambda *_: self._show_new(),
                       on_done=self._finished, on_error=self._failed, on_finally=self._idle)
        self._set_running(True)
        self.status.setText(f"Running; recording to {pipeline.status.folder}")
        return self.job.start()

    def pause(self) -> None:
        """Stop at the next step boundary; Start continues the same session."""
        if self.pipeline is not None:
            self.pipeline.pause()
            self.status.setText("Pausing after the current step…")

    def stop(self) -> None:
        """Stop at the next step boundary and end the session (the next Start begins a new one)."""
        if self.pipeline is not None:
            self.pipeline.stop()
            self.status.setText("Pausing after the current step…")

    def _frame_done(self, result) -> None:  # worker thread
        with self._lock:
            self.results.append(result)
        progress = getattr(self, "_progress", None)
        if progress is not None:
            progress(len(self.results), max(len(self.results), self.frames_box.value()), None)

    def _show_new(self) -> None:  # GUI thread
        with self._lock:
            new = self.results[self._shown:]
            self._shown = len(self.results)
        if not new:
            return
        self._update_layers(new[-1])
        frames = [r.frame for r in self.results[: self._shown]]
        scores = [np.nan if r.decision.score is None else r.decision.score for r in self.results[: self._shown]]
        self.plot.set_line(self.policy_combo.currentText(), np.asarray(frames, float), np.asarray(scores, float))
        self.plot.set_line("threshold", np.asarray([frames[0], max(frames[-1], frames[0] + 1)], float),
                           np.full(2, self.threshold_box.value()))
        for result in new:
            if result.sted is not None:
                self.plot.add_marker(result.frame, "STED")
        self.dose_label.setText(f"dose: {new[-1].dose_photons:.3g} photons; "
                                f"full STED: {sum(r.sted is not None for r in self.results[: self._shown])} "
                                f"of {self._shown} frames")

    def _update_layers(self, result) -> None:
        pixel = self.adapter.capabilities().pixel_size_nm if self.adapter is not None else 1.0
        scale = (pixel, pixel)
        y0, x0 = result.roi[:2]
        roi_translate = (y0 * pixel, x0 * pixel)
        _set_image(self.viewer, "live confocal", result.confocal, scale, (0.0, 0.0))
        _set_image(self.viewer, "live synthetic STED", result.synthetic, scale, (0.0, 0.0))
        _set_image(self.viewer, "live disparity", result.disparity, scale, (0.0, 0.0))
        high = result.decision.maps.get("high_variability")
        if high is not None:
            _set_image(self.viewer, "live variability", high.astype(np.float32), scale, roi_translate)
        if result.segmentation is not None:
            _set_labels(self.viewer, "live segmentation", result.segmentation.astype(np.uint8), scale, roi_translate)
        if result.sted is not None:
            _set_image(self.viewer, "live real STED", result.sted, scale, roi_translate)

    def _finished(self, summary) -> None:
        self._show_new()
        self.last_summary = summary
        state = summary["state"]
        self.status.setText(
            f"{state}: {summary['frames']} frames, {summary['sted_acquisitions']} full STED, "
            f"dose {summary['dose_relative_to_sted_every_frame'] or 0:.2f} of STED at every frame. "
            f"Session: {summary['session']}"
        )
        run = self.pipeline.status
        if run.state is RunState.FAULTED:
            notify_info("The microscope reported a fault and was put in its safe state; fix it, then Start resumes.")
        if run.state is RunState.DONE or run.finish_reason is FinishReason.STOPPED:
            self.pipeline.close()
            self.pipeline = None

    def _failed(self, error) -> None:
        self.last_error = notify_error(error, "The live session")
        self.status.setText(self.last_error)

    def _idle(self) -> None:
        self._set_running(False)

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running and self.adapter is not None)
        self.pause_button.setEnabled(running)
        self.stop_button.setEnabled(running)
        self.connect_button.setEnabled(not running)
        self.adapter_combo.setEnabled(not running)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for the live session")
        if folder:
            self.out_edit.setText(str(Path(folder) / f"session-{time.strftime('%Y%m%d-%H%M%S')}"))

    def closeEvent(self, event) -> None:
        if self.pipeline is not None:
            self.pipeline.stop()
        if self.job is not None and not self.job.finished:
            self.job.worker.quit()
        self.disconnect_adapter()
        super().closeEvent(event)


def _spin(low: int, high: int, value: int, suffix: str = "") -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setValue(value)
    if suffix:
        box.setSuffix(suffix)
    return box


def _set_image(viewer, name, data, scale, translate) -> None:
    if name in viewer.layers:
        layer = viewer.layers[name]
        layer.data = data
        layer.translate = translate
    else:
        _place(viewer, viewer.add_image(data, name=name, scale=scale, translate=translate, blending="translucent",
                                        units=("nm", "nm"), **LIVE_LAYERS[name]))


def _set_labels(viewer, name, data, scale, translate) -> None:
    from napari.utils.colormaps import DirectLabelColormap

    if name in viewer.layers:
        viewer.layers[name].data = data
    else:
        colormap = DirectLabelColormap(color_dict={None: "transparent", 0: "transparent", 1: SEGMENTATION_COLOR})
        layer = viewer.add_labels(data, name=name, scale=scale, translate=translate, units=("nm", "nm"),
                                  colormap=colormap, opacity=1.0, **LIVE_LAYERS[name])
        layer.contour = 1  # outlines: the image under the mask stays visible
        _place(viewer, layer)


def _place(viewer, layer) -> None:
    """Move a new live layer below the live layers that LIVE_LAYERS puts above it."""
    order = list(LIVE_LAYERS)
    above = [index for index, other in enumerate(viewer.layers)
             if other.name in LIVE_LAYERS and order.index(other.name) > order.index(layer.name)]
    if above:
        viewer.layers.move(viewer.layers.index(layer), min(above))
