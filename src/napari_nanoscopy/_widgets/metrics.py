"""The *Metrics* dock widget: quality of a result against a reference, bead FWHM and resolution.

PSNR, SSIM, MS-SSIM, NRMSE (images), Dice and IoU (labels), bead FWHM from automatic
detection of isolated spots and 2D Gaussian fits (with a histogram, as in the papers' FWHM
figures) and the decorrelation-analysis resolution (Descloux et al. 2019). All numbers come
from ``napari_nanoscopy.analysis`` and are computed in a worker thread; the table copies as
tab-separated text (Copy button or Ctrl+C) for a spreadsheet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import napari
import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtGui import QGuiApplication, QKeySequence, QShortcut
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..errors import NanoscopyError, StepCounter
from ._common import Job, LayerCombo, is_image, is_labels, layer_pixel_size_nm, note_label, notify_error, pixel_size_box
from ._plot import PlotWidget

FWHM_BINS_NM = 5.0


@dataclass
class MetricsReport:
    """What one Compute produced: table rows and the FWHM of every fitted bead per layer."""

    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    fwhm_nm: dict[str, np.ndarray] = field(default_factory=dict)

    def as_tsv(self) -> str:
        return "\n".join("\t".join(row) for row in [self.columns, *self.rows]) + "\n"

    def add_comparison(self, name: str, function, *args, **kwargs) -> None:
        """A row comparing result and reference; a metric that cannot be computed says why in its cell."""
        try:
            value = _fmt(function(*args, **kwargs))
        except NanoscopyError as error:
            value = f"n/a: {error}"
        self.rows.append([name, value, ""])


def _is_measurable(layer) -> bool:
    return is_image(layer) or is_labels(layer)


def _planes(array: np.ndarray) -> np.ndarray:
    return array.reshape((-1,) + array.shape[-2:])


def _fmt(value: float, digits: int = 4) -> str:
    if value is None:
        return "—"
    if np.isinf(value):
        return "inf"
    return f"{value:.{digits}g}"


def compute_report(result: np.ndarray, reference: np.ndarray | None, *, result_name: str, reference_name: str | None,
                   result_is_labels: bool, reference_is_labels: bool, pixel_size_nm: float | None,
                   similarity: bool, fwhm: bool, resolution: bool, min_separation_nm: float,
                   normalise: bool = False, progress=None, should_cancel=None) -> MetricsReport:
    """Every metric asked for, as table rows (headless: the widget runs it in a worker)."""
    columns = ["Metric", result_name] + ([reference_name] if reference is not None else [])
    report = MetricsReport(columns)
    comparison = _comparison(result_is_labels, reference_is_labels) if reference is not None and similarity else None
    images = [(result_name, result, result_is_labels)]
    if reference is not None:
        images.append((reference_name, reference, reference_is_labels))
    if fwhm or resolution:
        if not pixel_size_nm:
            raise NanoscopyError("Bead FWHM and resolution need the pixel size; enter it (in nm) above.")
    per_image = [(name, array) for name, array, labels in images if not labels]
    total = (comparison is not None) + (len(per_image) if fwhm else 0) + (len(per_image) if resolution else 0)
    step = StepCounter(max(total, 1), lambda done, steps: progress(done, steps, None), should_cancel, "Metrics")
    if comparison == "images":
        _compare_images(report, result, reference, normalise)
        step()
    if comparison == "masks":
        _compare_masks(report, result, reference)
        step()
    if fwhm:
        _add_bead_fwhm(report, images, per_image, pixel_size_nm, min_separation_nm, step)
    if resolution:
        _add_resolution(report, images, per_image, pixel_size_nm, step)
    if not report.rows:
        raise NanoscopyError("Nothing to measure: pick a reference layer for PSNR/SSIM/Dice, or tick FWHM or resolution.")
    return report


def _comparison(result_is_labels: bool, reference_is_labels: bool) -> str:
    """'images' (PSNR, SSIM...) or 'masks' (Dice): the two layers must be of one kind."""
    if result_is_labels and reference_is_labels:
        return "masks"
    if not result_is_labels and not reference_is_labels:
        return "images"
    raise NanoscopyError(
        "One layer is a Labels layer and the other an image; compare two images (PSNR, SSIM...) "
        "or two Labels layers (Dice)."
    )


def _compare_images(report: MetricsReport, result: np.ndarray, reference: np.ndarray, normalise: bool) -> None:
    from ..analysis import ms_ssim, nrmse, psnr, ssim

    first, second = reference, result
    if normalise:
        first, second = _normalised(reference), _normalised(result)
    report.rows.append(["Intensities", "normalised (1–99.8 %)" if normalise else "as they are", ""])
    report.add_comparison("PSNR [dB]", psnr, first, second)
    report.add_comparison("SSIM", ssim, first, second)
    # 5 scales need images of 176 px or more; smaller ones get the 3-scale variant
    scales = 5 if min(np.shape(first)[-2:]) >= 176 else 3
    report.add_comparison(f"MS-SSIM ({scales} scales)", ms_ssim, first, second, scales=scales)
    report.add_comparison("NRMSE", nrmse, first, second)


def _compare_masks(report: MetricsReport, result: np.ndarray, reference: np.ndarray) -> None:
    from ..analysis import dice, iou

    report.add_comparison("Dice (foreground)", dice, reference, result)
    report.add_comparison("IoU (foreground)", iou, reference, result)
    classes = sorted((set(np.unique(result).tolist()) | set(np.unique(reference).tolist())) - {0})
    if len(classes) > 1:
        for k in classes:
            report.add_comparison(f"Dice (label {k})", dice, reference == k, result == k)


def _add_bead_fwhm(report: MetricsReport, images, per_image, pixel_size_nm: float, min_separation_nm: float,
                   step: StepCounter) -> None:
    """Fit every isolated spot of every plane; one cell per image: median, IQR and count."""
    from ..analysis.fwhm import measure_spots

    for name, array in per_image:
        fits = []
        for plane in _planes(array):
            fits.extend(measure_spots(plane, pixel_size_nm, min_separation_nm=min_separation_nm))
        report.fwhm_nm[name] = np.array([fit.fwhm_nm for fit in fits])
        step()
    cells = []
    for name, _ in per_image:
        widths = report.fwhm_nm[name]
        cells.append(f"{np.median(widths):.1f} (IQR {np.percentile(widths, 25):.1f}–{np.percentile(widths, 75):.1f}), "
                     f"n = {len(widths)}" if len(widths) else "no isolated spots found")
    report.rows.append(["Bead FWHM, median [nm]", *_by_layer(images, cells)])


def _add_resolution(report: MetricsReport, images, per_image, pixel_size_nm: float, step: StepCounter) -> None:
    """Decorrelation resolution per image: one plane's value, or the mean and spread over planes."""
    from ..analysis import decorrelation_resolution

    cells = []
    for name, array in per_image:
        estimates = [decorrelation_resolution(plane, pixel_size_nm) for plane in _planes(array)]
        values = [e.resolution_nm for e in estimates if e.resolution_nm is not None]
        if not values:
            cells.append("no structure above noise")
        elif len(estimates) == 1:
            cells.append(f"{values[0]:.1f} (A0 = {estimates[0].amplitude:.2f})")
        else:
            cells.append(f"{np.mean(values):.1f} ± {np.std(values):.1f} over {len(values)} planes")
        step()
    report.rows.append(["Resolution, decorrelation [nm]", *_by_layer(images, cells)])


def _normalised(array: np.ndarray) -> np.ndarray:
    """Each plane mapped from its 1st-99.8th percentiles to 0-1 (CSBDeep's evaluation convention),
    so that images in different intensity units compare by structure."""
    planes = _planes(np.asarray(array, dtype=np.float64))
    out = np.empty_like(planes)
    for index, plane in enumerate(planes):
        low, high = np.percentile(plane, [1.0, 99.8])
        out[index] = (plane - low) / (high - low) if high > low else plane - low
    return out.reshape(np.shape(array))


def _by_layer(images, cells: list[str]) -> list[str]:
    """Place per-image cells in the columns of the image layers ('—' for Labels layers)."""
    out, values = [], iter(cells)
    for _, _, labels in images:
        out.append("—" if labels else next(values))
    return out


class MetricsWidget(QWidget):
    """Compare a result layer with a reference; measure bead FWHM and resolution."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.job: Job | None = None
        self.report: MetricsReport | None = None
        self.last_error: str | None = None

        self._make_controls()
        self._make_results()
        self._lay_out()
        self._connect()
        self._result_changed(self.result_combo.layer())

    def _make_controls(self) -> None:
        """The layers, pixel size and measurement choices."""
        self.result_combo = LayerCombo(self.viewer, _is_measurable)
        self.reference_combo = LayerCombo(self.viewer, _is_measurable, none_text="(none)")
        self.scope_combo = QComboBox()
        self.scope_combo.addItems(["Whole layer", "Displayed plane"])
        self.scope_combo.setToolTip("For stacks: every plane (metrics are averaged over planes) or the one on screen")
        self.pixel_box = pixel_size_box()
        self.pixel_note = note_label()
        self.similarity_box = QCheckBox("PSNR, SSIM, MS-SSIM, NRMSE / Dice (needs a reference)")
        self.similarity_box.setChecked(True)
        self.normalise_box = QCheckBox("Normalise intensities first (percentiles 1–99.8)")
        self.normalise_box.setChecked(True)
        self.normalise_box.setToolTip(
            "Compare structure, not intensity units: each image is mapped from its 1st-99.8th percentiles to 0-1 "
            "before PSNR, SSIM, MS-SSIM and NRMSE (as CSBDeep evaluates restorations)"
        )
        self.fwhm_box = QCheckBox("Bead FWHM (isolated spots, 2D Gaussian fits)")
        self.resolution_box = QCheckBox("Resolution by decorrelation analysis")
        self.resolution_box.setChecked(True)
        self.separation_box = QDoubleSpinBox()
        self.separation_box.setRange(10.0, 100000.0)
        self.separation_box.setValue(500.0)
        self.separation_box.setSuffix(" nm")
        self.separation_box.setToolTip("Spots closer than this to another spot are not isolated and are not fitted")

    def _make_results(self) -> None:
        """Buttons, the table of figures and the FWHM histogram."""
        self.compute_button = QPushButton("Compute")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.table = QTableWidget(0, 2)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().setDefaultAlignment(Qt.AlignmentFlag.AlignLeft)
        self.table.setWordWrap(True)
        self.table.setMinimumHeight(190)
        self.caption = note_label()
        self.copy_button = QPushButton("Copy table")
        self.copy_button.setToolTip("Copy the table as tab-separated text (paste into a spreadsheet)")
        self.copy_button.setEnabled(False)
        self.histogram = PlotWidget("Bead FWHM", "FWHM [nm]", "beads")
        self.histogram.empty_text = "No isolated spots found"
        self.histogram.setVisible(False)  # shown once bead FWHM have been measured
        self.status = note_label()

    def _lay_out(self) -> None:
        form = QFormLayout()
        form.addRow("Result layer", self.result_combo)
        form.addRow("Reference", self.reference_combo)
        form.addRow("Planes", self.scope_combo)
        form.addRow("Pixel size", self.pixel_box)
        form.addRow("", self.pixel_note)
        form.addRow(self.similarity_box)
        form.addRow(self.normalise_box)
        form.addRow(self.fwhm_box)
        form.addRow("Min. spot distance", self.separation_box)
        form.addRow(self.resolution_box)
        buttons = QHBoxLayout()
        buttons.addWidget(self.compute_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.caption)
        layout.addWidget(self.table, 1)
        copy_row = QHBoxLayout()
        copy_row.addStretch(1)
        copy_row.addWidget(self.copy_button)
        layout.addLayout(copy_row)
        layout.addWidget(self.histogram)
        layout.addWidget(self.status)

    def _connect(self) -> None:
        self.result_combo.layer_changed.connect(self._result_changed)
        self.compute_button.clicked.connect(self.compute)
        self.cancel_button.clicked.connect(self.cancel)
        self.copy_button.clicked.connect(lambda: self.copy())
        QShortcut(QKeySequence.StandardKey.Copy, self.table, activated=lambda: self.copy(selection=True))

    def _result_changed(self, layer) -> None:
        if layer is None:
            self.pixel_note.setText("Add an image or Labels layer to measure.")
            return
        size, note = layer_pixel_size_nm(layer)
        self.pixel_box.setValue(size or 0.0)
        self.pixel_note.setText(note)
        source = (layer.metadata or {}).get("source_layer")
        if source:  # a Restore result: the reference is often the sample's target, else its input
            candidates = [l for l in self.reference_combo.layers() if l is not layer]
            target = sorted((l for l in candidates if (l.metadata or {}).get("role") in ("target", "truth")),
                            key=lambda l: l.metadata["role"] != "target")
            if target and self.reference_combo.layer() is None:
                self.reference_combo.set_layer(target[0])

    def _data(self, layer) -> np.ndarray:
        data = np.asarray(layer.data[0] if getattr(layer, "multiscale", False) else layer.data)
        if self.scope_combo.currentIndex() == 1 and data.ndim > 2:
            point = layer.world_to_data(self.viewer.dims.point)
            index = tuple(int(np.clip(round(p), 0, n - 1)) for p, n in zip(point[: data.ndim - 2], data.shape))
            data = data[index]
        return data

    def compute(self) -> Job | None:
        if self.job is not None:
            return None
        result_layer = self.result_combo.layer()
        reference_layer = self.reference_combo.layer()
        if result_layer is None:
            self._report_error(NanoscopyError("Pick a result layer to measure."))
            return None
        if reference_layer is result_layer:
            reference_layer = None
        arguments: dict[str, Any] = dict(
            result=self._data(result_layer),
            reference=None if reference_layer is None else self._data(reference_layer),
            result_name=result_layer.name,
            reference_name=None if reference_layer is None else reference_layer.name,
            result_is_labels=is_labels(result_layer),
            reference_is_labels=reference_layer is not None and is_labels(reference_layer),
            pixel_size_nm=self.pixel_box.value() or None,
            similarity=self.similarity_box.isChecked(),
            fwhm=self.fwhm_box.isChecked(),
            resolution=self.resolution_box.isChecked(),
            min_separation_nm=self.separation_box.value(),
            normalise=self.normalise_box.isChecked(),
        )

        def work(progress, should_cancel):
            return compute_report(**arguments, progress=progress, should_cancel=should_cancel)

        self.last_error = None
        self.status.setText(f"Measuring '{result_layer.name}'…")
        self.job = Job(work, f"Metrics of {result_layer.name}", on_done=self._show, on_error=self._report_error,
                       on_cancelled=lambda e: self.status.setText("Cancelled."), on_finally=self._idle)
        self.compute_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        return self.job.start()

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def _idle(self) -> None:
        self.job = None
        self.compute_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _report_error(self, error) -> None:
        self.last_error = notify_error(error, "Measuring")
        self.status.setText(self.last_error)

    def _show(self, report: MetricsReport) -> None:
        self.report = report
        self.table.clear()
        self.table.setColumnCount(len(report.columns))
        self.table.setRowCount(len(report.rows))
        # short headers on screen (the copied text keeps the layer names)
        headers = ["Metric", "result", "reference"][: len(report.columns)]
        self.table.setHorizontalHeaderLabels(headers)
        caption = "; ".join(f"{h}: {name}" for h, name in zip(headers[1:], report.columns[1:]))
        if len(report.columns) > 2:
            caption += ". PSNR, SSIM, MS-SSIM, NRMSE and Dice compare the result with the reference."
        self.caption.setText(caption)
        for r, row in enumerate(report.rows):
            for c, text in enumerate(row):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                self.table.setItem(r, c, item)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        for column in range(1, len(report.columns)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Stretch)
        self.table.resizeRowsToContents()
        self.copy_button.setEnabled(True)
        self.histogram.clear()
        fitted = [v for v in report.fwhm_nm.values() if len(v)]
        if fitted:
            high = max(float(np.percentile(v, 99)) for v in fitted)
            low = min(float(v.min()) for v in fitted)
            step = max(FWHM_BINS_NM, (high - low) / 30)
            edges = np.arange(np.floor(low / step) * step, high + 2 * step, step)
            for name, values in report.fwhm_nm.items():
                if len(values):
                    self.histogram.set_histogram(f"{name} (n={len(values)})", values, edges)
                    self.histogram.add_marker(float(np.median(values)), "median")
        self.histogram.setVisible(bool(report.fwhm_nm))
        self.status.setText("Select cells and press Ctrl+C, or Copy table, to paste them into a spreadsheet.")

    def copy(self, selection: bool = False) -> str:
        """Copy the table (or, with ``selection``, the selected cells) as tab-separated text."""
        if self.report is None:
            return ""
        ranges = self.table.selectedRanges() if selection else []
        if ranges:
            rows = sorted({r for rng in ranges for r in range(rng.topRow(), rng.bottomRow() + 1)})
            cols = sorted({c for rng in ranges for c in range(rng.leftColumn(), rng.rightColumn() + 1)})
            lines = ["\t".join(self.report.columns[c] for c in cols)]
            lines += ["\t".join(self.report.rows[r][c] for c in cols) for r in rows]
            text = "\n".join(lines) + "\n"
        else:
            text = self.report.as_tsv()
        QGuiApplication.clipboard().setText(text)
        self.status.setText("Copied the table as tab-separated text.")
        return text
