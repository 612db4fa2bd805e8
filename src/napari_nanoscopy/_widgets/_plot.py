"""A small QPainter plot (lines or histograms, axes with ticks, legend) for loss curves and FWHM
histograms: no plotting library, cheap enough to redraw at every progress report."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from qtpy.QtCore import QPointF, QRectF, QSize, Qt
from qtpy.QtGui import QColor, QFont, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

PALETTE = ("#4fc3f7", "#ff8a65", "#aed581", "#ba68c8", "#ffd54f", "#f06292", "#90a4ae")


@dataclass
class _Series:
    name: str
    color: QColor
    x: np.ndarray = field(default_factory=lambda: np.empty(0))
    y: np.ndarray = field(default_factory=lambda: np.empty(0))
    smooth: int = 0


@dataclass
class _Canvas:
    """One paint pass: the painter, the plot rectangle and the data ranges it maps onto it."""

    painter: QPainter
    plot: QRectF
    left: float  # width of the y tick label column
    line_height: float
    text_color: QColor
    ranges: tuple[float, float, float, float] = (0.0, 1.0, 0.0, 1.0)  # x_low, x_high, y_low, y_high

    def to_point(self, x: float, y: float) -> QPointF:
        x_low, x_high, y_low, y_high = self.ranges
        px = self.plot.left() + (x - x_low) / (x_high - x_low) * self.plot.width()
        py = self.plot.bottom() - (y - y_low) / (y_high - y_low) * self.plot.height()
        return QPointF(px, py)

    def draw_curve(self, xs, ys, pen: QPen) -> None:
        """A polyline through the finite points, broken at NaN (log of a non-positive value)."""
        path = QPainterPath()
        started = False
        step = max(1, len(xs) // 2000)  # at most ~2000 vertices per curve
        for x_value, y_value in zip(xs[::step], ys[::step]):
            if not np.isfinite(y_value):
                started = False
                continue
            point = self.to_point(x_value, y_value)
            if started:
                path.lineTo(point)
            else:
                path.moveTo(point)
                started = True
        self.painter.setPen(pen)
        self.painter.drawPath(path)


def running_mean(y: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` values at each point (fewer at the start)."""
    if window <= 1 or y.size == 0:
        return y
    cumulative = np.cumsum(np.insert(y, 0, 0.0))
    counts = np.minimum(np.arange(1, y.size + 1), window)
    return (cumulative[1:] - cumulative[np.arange(1, y.size + 1) - counts]) / counts


def nice_ticks(low: float, high: float, count: int = 5, integer: bool = False) -> list[float]:
    """Round tick values covering [low, high]; with ``integer`` only whole numbers (frames, steps)."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low]
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    steps = [m * magnitude for m in (1, 2, 2.5, 5, 10)]
    if integer:
        steps = [s for s in steps if s >= 1 and float(s).is_integer()] or [1.0]
    step = next((s for s in steps if s >= raw), steps[-1])
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + 1e-9 * step:
        ticks.append(round(value, 12))
        value += step
    return ticks


def log_ticks(low: float, high: float) -> list[float]:
    """Ticks (as log10 values) for a log axis spanning log10 values [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low]
    if high - low >= 1.5:  # decades, thinned to at most 5
        decades = list(range(math.ceil(low), math.floor(high) + 1))
        step = max(1, math.ceil(len(decades) / 5))
        return [float(d) for d in decades[::step]]
    ticks = []
    for decade in range(math.floor(low), math.ceil(high) + 1):
        for mantissa in (1, 2, 5):
            value = math.log10(mantissa) + decade
            if low <= value <= high:
                ticks.append(value)
    if len(ticks) < 3:  # less than a factor of ~2.5: round values in linear space
        ticks = [math.log10(v) for v in nice_ticks(10**low, 10**high, 4) if v > 0]
    return ticks


def _format(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e4 or abs(value) < 1e-3:
        return f"{value:.0e}"
    return f"{value:g}"


class PlotWidget(QWidget):
    """Line plot (``set_line``) or overlaid histograms (``set_histogram``); ``integer_x`` puts
    the x ticks on whole numbers only (frames, steps)."""

    def __init__(self, title: str = "", x_label: str = "", y_label: str = "", log_y: bool = False,
                 integer_x: bool = False, parent=None):
        super().__init__(parent)
        self.title, self.x_label, self.y_label, self.log_y = title, x_label, y_label, log_y
        self.integer_x = integer_x
        self.lines: dict[str, _Series] = {}
        self.histograms: list[tuple[str, QColor, np.ndarray, np.ndarray]] = []  # name, colour, edges, counts
        self.markers: list[tuple[float, str, QColor]] = []  # vertical lines (x, label, colour)
        self.empty_text = "No data yet"
        self.setMinimumHeight(150)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def sizeHint(self) -> QSize:
        return QSize(320, 190)

    # -- data --------------------------------------------------------------------------------

    def clear(self) -> None:
        self.lines.clear()
        self.histograms.clear()
        self.markers.clear()
        self.update()

    def set_line(self, name: str, x, y, smooth: int = 0) -> None:
        """Set a curve; ``smooth`` > 0 draws the raw values faintly under their running mean
        over that many points (a noisy training loss)."""
        series = self.lines.get(name)
        if series is None:
            series = self.lines[name] = _Series(name, QColor(PALETTE[len(self.lines) % len(PALETTE)]))
        series.x, series.y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        series.smooth = int(smooth)
        self.update()

    def set_histogram(self, name: str, values, edges) -> None:
        values = np.asarray(values, dtype=float)
        counts, edges = np.histogram(values, bins=edges)
        color = QColor(PALETTE[len(self.histograms) % len(PALETTE)])
        self.histograms.append((name, color, edges, counts))
        self.update()

    def add_marker(self, x: float, label: str) -> None:
        color = QColor(self.histograms[-1][1]) if self.histograms else QColor("#ffffff")
        self.markers.append((float(x), label, color))
        self.update()

    # -- drawing -----------------------------------------------------------------------------

    def _ranges(self):
        if self.histograms:
            x_low = min(float(h[2][0]) for h in self.histograms)
            x_high = max(float(h[2][-1]) for h in self.histograms)
            y_low, y_high = 0.0, max(1.0, max(float(h[3].max()) if h[3].size else 0 for h in self.histograms) * 1.1)
            return x_low, x_high, y_low, y_high
        xs = [s.x for s in self.lines.values() if s.x.size]
        ys = [self._y(s.y) for s in self.lines.values() if s.y.size]
        ys = [y[np.isfinite(y)] for y in ys]
        ys = [y for y in ys if y.size]
        if not xs or not ys:
            return None
        x_low, x_high = min(x.min() for x in xs), max(x.max() for x in xs)
        y_low, y_high = min(y.min() for y in ys), max(y.max() for y in ys)
        if x_high <= x_low:
            x_high = x_low + 1
        if y_high <= y_low:
            y_low, y_high = y_low - 0.5, y_high + 0.5
        margin = 0.05 * (y_high - y_low)
        return float(x_low), float(x_high), float(y_low - margin), float(y_high + margin)

    def x_ticks(self) -> list[tuple[float, str]]:
        """The x axis ticks drawn now: (value, label) pairs."""
        ranges = self._ranges()
        if ranges is None:
            return []
        return [(tick, _format(tick)) for tick in nice_ticks(ranges[0], ranges[1], 5, integer=self.integer_x)]

    def _y(self, y: np.ndarray) -> np.ndarray:
        if not self.log_y:
            return y
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(y > 0, np.log10(np.where(y > 0, y, 1)), np.nan)

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        text_color = palette.color(palette.ColorRole.WindowText)
        painter.fillRect(self.rect(), palette.color(palette.ColorRole.Base))
        font = QFont(self.font())
        font.setPointSizeF(max(font.pointSizeF() * 0.85, 7.0))
        painter.setFont(font)
        canvas = self._lay_out(painter, text_color)
        painter.setPen(text_color)
        if self.title:
            painter.drawText(QRectF(0, 2, self.width(), canvas.line_height), Qt.AlignmentFlag.AlignHCenter, self.title)
        ranges = self._ranges()
        if ranges is None or canvas.plot.width() < 20 or canvas.plot.height() < 20:
            painter.drawText(canvas.plot, Qt.AlignmentFlag.AlignCenter, self.empty_text)
            painter.end()
            return
        canvas.ranges = ranges
        self._draw_axes(canvas)
        painter.setClipRect(canvas.plot)
        self._draw_histograms(canvas)
        self._draw_markers(canvas)
        self._draw_lines(canvas)
        painter.setClipping(False)
        self._draw_legend(canvas)
        painter.end()

    def _lay_out(self, painter: QPainter, text_color: QColor) -> _Canvas:
        """Room for the title above, the y tick labels on the left and the x ticks and label below."""
        metrics = painter.fontMetrics()
        line_height = metrics.height()
        left = metrics.horizontalAdvance("0.0000") + line_height + 10
        top = line_height + 6 if self.title else 6
        plot = QRectF(left, top, self.width() - left - 10, self.height() - top - 2 * line_height - 8)
        return _Canvas(painter, plot, left, line_height, text_color)

    def _draw_axes(self, canvas: _Canvas) -> None:
        """Grid lines with tick labels, the frame, and the axis labels."""
        painter, plot, line_height, text_color = canvas.painter, canvas.plot, canvas.line_height, canvas.text_color
        x_low, _, y_low, y_high = canvas.ranges
        grid = QColor(text_color)
        grid.setAlpha(40)
        for tick in log_ticks(y_low, y_high) if self.log_y else nice_ticks(y_low, y_high, 4):
            point = canvas.to_point(x_low, tick)
            painter.setPen(QPen(grid, 1))
            painter.drawLine(QPointF(plot.left(), point.y()), QPointF(plot.right(), point.y()))
            painter.setPen(text_color)
            label = _format(float(f"{10 ** tick:.3g}")) if self.log_y else _format(tick)
            painter.drawText(QRectF(0, point.y() - line_height / 2, canvas.left - 4, line_height),
                             Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, label)
        for tick, label in self.x_ticks():
            point = canvas.to_point(tick, y_low)
            painter.setPen(QPen(grid, 1))
            painter.drawLine(QPointF(point.x(), plot.top()), QPointF(point.x(), plot.bottom()))
            painter.setPen(text_color)
            painter.drawText(QRectF(point.x() - 40, plot.bottom() + 2, 80, line_height),
                             Qt.AlignmentFlag.AlignHCenter, label)
        painter.setPen(QPen(text_color, 1))
        painter.drawRect(plot)
        painter.drawText(QRectF(plot.left(), self.height() - line_height - 2, plot.width(), line_height),
                         Qt.AlignmentFlag.AlignHCenter, self.x_label)
        painter.save()
        painter.translate(2, plot.center().y())
        painter.rotate(-90)
        painter.drawText(QRectF(-plot.height() / 2, 0, plot.height(), line_height), Qt.AlignmentFlag.AlignHCenter,
                         self.y_label + (" (log)" if self.log_y else ""))
        painter.restore()

    def _draw_histograms(self, canvas: _Canvas) -> None:
        painter = canvas.painter
        for name, color, edges, counts in self.histograms:
            fill = QColor(color)
            fill.setAlpha(110)
            painter.setPen(QPen(color, 1))
            painter.setBrush(fill)
            for a, b, count in zip(edges[:-1], edges[1:], counts):
                if count:
                    painter.drawRect(QRectF(canvas.to_point(a, count), canvas.to_point(b, 0)))
        painter.setBrush(Qt.BrushStyle.NoBrush)

    def _draw_markers(self, canvas: _Canvas) -> None:
        _, _, y_low, y_high = canvas.ranges
        for x, label, color in self.markers:
            canvas.painter.setPen(QPen(color, 1.5, Qt.PenStyle.DashLine))
            canvas.painter.drawLine(canvas.to_point(x, y_low), canvas.to_point(x, y_high))

    def _draw_lines(self, canvas: _Canvas) -> None:
        for series in self.lines.values():
            if series.smooth > 1:
                faint = QColor(series.color)
                faint.setAlpha(70)
                canvas.draw_curve(series.x, self._y(series.y), QPen(faint, 1))
                canvas.draw_curve(series.x, self._y(running_mean(series.y, series.smooth)), QPen(series.color, 2))
            else:
                canvas.draw_curve(series.x, self._y(series.y), QPen(series.color, 1.5))

    def _draw_legend(self, canvas: _Canvas) -> None:
        """One colour swatch and name per series, top right inside the plot."""
        painter, line_height = canvas.painter, canvas.line_height
        metrics = painter.fontMetrics()
        legend = [(s.name, s.color) for s in self.lines.values()] + [(h[0], h[1]) for h in self.histograms]
        y = canvas.plot.top() + 3
        for name, color in legend:
            width = metrics.horizontalAdvance(name)
            x = canvas.plot.right() - width - 18
            painter.fillRect(QRectF(x, y + line_height / 2 - 2, 10, 4), color)
            painter.setPen(canvas.text_color)
            painter.drawText(QPointF(x + 14, y + metrics.ascent()), name)
            y += line_height
