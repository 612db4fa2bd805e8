"""Shared pieces of the dock widgets: layer pickers, pixel sizes, notifications, workers.

Only this package (and ``_napari_io``) may import Qt and napari; everything it runs comes
from the headless core, whose ``NanoscopyError`` messages are shown as they are.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from napari.qt.threading import create_worker
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtWidgets import QComboBox, QDoubleSpinBox, QLabel, QSizePolicy

from .._napari_io import pixel_size_from_meta
from ..errors import Cancelled, NanoscopyError

PROGRESS_INTERVAL_S = 0.05  # the worker forwards progress at most this often (the last step always)


def notify_error(error: BaseException, what: str) -> str:
    """Show an error as a napari notification and return the message shown.

    A ``NanoscopyError`` carries a sentence meant for the user and is shown as it is; anything
    else is a bug or an environment problem, shown with its type and logged with its traceback.
    """
    if isinstance(error, NanoscopyError):
        message = str(error)
    else:
        message = f"{what} failed unexpectedly ({type(error).__name__}: {error})."
        traceback.print_exception(type(error), error, error.__traceback__)
    show_error(message)
    return message


def notify_info(message: str) -> None:
    show_info(message)


def notify_warning(message: str) -> None:
    show_warning(message)


def layer_pixel_size_nm(layer) -> tuple[float | None, str]:
    """The layer's Y/X pixel size in nm and a short note saying where it came from."""
    meta = {"scale": tuple(layer.scale), "units": tuple(str(u) for u in getattr(layer, "units", ()) or ()),
            "metadata": dict(layer.metadata or {})}
    units = meta["units"]
    try:
        size = pixel_size_from_meta(meta)
    except NanoscopyError as error:
        return None, str(error)
    if size is None:
        return None, "the layer's scale has no physical unit: enter its pixel size"
    unit = units[-1] if units else "pixel"
    source = "layer scale" if unit not in ("pixel", "") else "layer metadata"
    return size, f"from the {source}"


class LayerCombo(QComboBox):
    """A combo box of the viewer's layers that pass ``accept``, kept in sync with the viewer.

    The selection follows the layer object (not its name or position), so renaming or
    reordering layers keeps it; ``none_text`` adds a first "no layer" entry.
    """

    layer_changed = Signal(object)

    def __init__(self, viewer, accept: Callable[[Any], bool], none_text: str | None = None, parent=None):
        super().__init__(parent)
        self.viewer = viewer
        self.accept = accept
        self.none_text = none_text
        self._layers: list = []
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(14)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        events = viewer.layers.events
        self._emitters = [events.inserted, events.removed, events.moved, events.changed]
        for emitter in self._emitters:
            emitter.connect(self.refresh)
        viewer.layers.events.inserted.connect(self._watch_names)
        for layer in viewer.layers:
            layer.events.name.connect(self.refresh)
        self.currentIndexChanged.connect(lambda _: self.layer_changed.emit(self.layer()))
        self.refresh()

    def _watch_names(self, event=None) -> None:
        if event is not None and getattr(event, "value", None) is not None:
            event.value.events.name.connect(self.refresh)

    def _disconnect(self) -> None:
        for emitter in self._emitters:
            emitter.disconnect(self.refresh)
        self.viewer.layers.events.inserted.disconnect(self._watch_names)
        for layer in self.viewer.layers:
            layer.events.name.disconnect(self.refresh)

    def refresh(self, event=None) -> None:
        try:
            self._refresh()
        except RuntimeError:  # the Qt side was deleted (the dock widget was removed): stop listening
            self._disconnect()

    def _refresh(self) -> None:
        current = self.layer()
        layers = [layer for layer in reversed(list(self.viewer.layers)) if self.accept(layer)]
        self.blockSignals(True)
        self.clear()
        self._layers = ([None] if self.none_text is not None else []) + layers
        if self.none_text is not None:
            self.addItem(self.none_text)
        for layer in layers:
            self.addItem(layer.name)
        index = self._layers.index(current) if current in self._layers else (0 if self._layers else -1)
        if current is None and self.none_text is None and layers:
            index = 0
        self.setCurrentIndex(index)
        self.blockSignals(False)
        if self.layer() is not current:
            self.layer_changed.emit(self.layer())

    def layer(self):
        index = self.currentIndex()
        if 0 <= index < len(self._layers):
            return self._layers[index]
        return None

    def set_layer(self, layer) -> None:
        if layer in self._layers:
            self.setCurrentIndex(self._layers.index(layer))

    def layers(self) -> list:
        return [layer for layer in self._layers if layer is not None]


def is_image(layer) -> bool:
    from napari.layers import Image

    return isinstance(layer, Image) and not layer.rgb and layer.ndim >= 2


def is_labels(layer) -> bool:
    from napari.layers import Labels

    return isinstance(layer, Labels)


def pixel_size_box(parent=None) -> QDoubleSpinBox:
    """A pixel size in nm, 0 meaning "not known" (shown as the given special text)."""
    box = QDoubleSpinBox(parent)
    box.setRange(0.0, 100000.0)
    box.setDecimals(2)
    box.setSingleStep(1.0)
    box.setSuffix(" nm")
    box.setSpecialValueText("unknown")
    box.setKeyboardTracking(False)
    return box


def note_label(text: str = "") -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    font = label.font()
    font.setPointSizeF(max(font.pointSizeF() * 0.9, 7.0))
    label.setFont(font)
    return label


def show_progress(bar, done: int, total: int) -> None:
    """Show ``done`` of ``total`` steps on a QProgressBar, short of 100 % while the job runs.

    The bar counts one step more than the work reports: after its last step the result is
    still blended, segmented or saved and handed to the GUI thread. The widget sets the bar
    full when it has shown the result.
    """
    bar.setRange(0, max(total, 1) + 1)
    bar.setValue(done)


class _Bridge(QObject):
    """Carries progress from a worker thread to the GUI thread (queued signal)."""

    progressed = Signal(int, int, object)


class Job:
    """One long operation run in a napari worker thread, with progress and cancellation.

    ``function(progress, should_cancel)`` runs off the GUI thread; ``progress(done, total,
    extra)`` may be called as often as it likes (forwarded at most every 50 ms, plus the last
    step); ``should_cancel()`` turns True after :meth:`cancel`. The progress bar in napari's
    activity dock shows ``description`` and counts one step more than ``total`` (the end,
    ``on_done``), so that it never shows 100 % while the job runs. Exactly one of ``on_done(result)``,
    ``on_cancelled(exception)`` or ``on_error(exception)`` runs on the GUI thread at the end,
    then ``on_finally()``.
    """

    def __init__(
        self,
        function: Callable[[Callable, Callable[[], bool]], Any],
        description: str,
        *,
        on_progress: Callable[[int, int, Any], None] | None = None,
        on_done: Callable[[Any], None] | None = None,
        on_cancelled: Callable[[BaseException], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        on_finally: Callable[[], None] | None = None,
    ):
        self._cancel = threading.Event()
        self._bridge = _Bridge()
        self._bridge.progressed.connect(self._on_progress)
        self._on_progress_callback = on_progress
        self._last_emit = 0.0
        self.description = description
        self.finished = False
        self.bar = napari_progress(total=0, desc=description)

        def forward(done: int, total: int, extra: Any = None) -> None:
            now = time.monotonic()
            if done >= total or now - self._last_emit >= PROGRESS_INTERVAL_S:
                self._last_emit = now
                self._bridge.progressed.emit(int(done), int(total), extra)

        def run():
            return function(forward, self._cancel.is_set)

        self.worker = create_worker(run, _start_thread=False, _ignore_errors=True)

        def returned(value):
            if on_done is not None:
                on_done(value)

        def errored(error):
            if isinstance(error, Cancelled):
                if on_cancelled is not None:
                    on_cancelled(error)
            elif on_error is not None:
                on_error(error)

        def finished():
            self.finished = True
            self.bar.close()
            if on_finally is not None:
                on_finally()

        self.worker.returned.connect(returned)
        self.worker.errored.connect(errored)
        self.worker.finished.connect(finished)

    def start(self) -> "Job":
        self.worker.start()
        return self

    def cancel(self) -> None:
        self._cancel.set()
        self.bar.set_description(f"{self.description} (cancelling…)")

    @property
    def cancelling(self) -> bool:
        return self._cancel.is_set()

    def _on_progress(self, done: int, total: int, extra: Any) -> None:
        if self.finished:
            return
        if self.bar.total != total + 1:  # as show_progress: the end of the job is one more step
            self.bar.total = total + 1
        if done != self.bar.n:
            self.bar.update(done - self.bar.n)
        if self._on_progress_callback is not None:
            self._on_progress_callback(done, total, extra)
