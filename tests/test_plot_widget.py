"""The QPainter plot of the Train and Metrics widgets: every drawing step renders (under Xvfb)."""

import numpy as np
import pytest

pytest.importorskip("qtpy")


def _rendered(widget) -> np.ndarray:
    """The widget's pixels as (H, W, 4) uint8, painted by its paintEvent."""
    widget.resize(400, 240)
    image = widget.grab().toImage()
    from qtpy.QtGui import QImage

    image = image.convertToFormat(QImage.Format.Format_RGBA8888)
    height, width = image.height(), image.width()
    bits = image.constBits()
    if hasattr(bits, "setsize"):  # PyQt's sip.voidptr; PySide gives a memoryview
        bits.setsize(image.sizeInBytes())
    data = np.frombuffer(bits, dtype=np.uint8).copy()
    return data.reshape(height, image.bytesPerLine() // 4, 4)[:, :width]


def _has_colour(pixels: np.ndarray, hex_colour: str, tolerance: int = 8) -> bool:
    rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
    return bool(np.any(np.all(np.abs(pixels[..., :3].astype(int) - rgb) <= tolerance, axis=-1)))


def test_lines_on_a_log_axis_draw_their_curves_and_legend(qtbot):
    from napari_nanoscopy._widgets._plot import PALETTE, PlotWidget

    plot = PlotWidget("loss", "step", "loss", log_y=True, integer_x=True)
    qtbot.addWidget(plot)
    steps = np.arange(1, 301)
    noisy = 1.0 / steps + 0.05 * np.random.default_rng(0).random(steps.size)
    noisy[10] = np.nan  # a gap, not a crash
    plot.set_line("generator", steps, noisy, smooth=20)
    plot.set_line("discriminator", steps, np.linspace(0.5, 0.1, steps.size))
    pixels = _rendered(plot)
    assert _has_colour(pixels, PALETTE[0]) and _has_colour(pixels, PALETTE[1])
    assert all(float(value).is_integer() for value, _ in plot.x_ticks())


def test_histograms_and_markers_draw_and_an_empty_plot_says_so(qtbot):
    from napari_nanoscopy._widgets._plot import PlotWidget

    plot = PlotWidget("Bead FWHM", "FWHM [nm]", "beads")
    qtbot.addWidget(plot)
    empty = _rendered(plot)
    assert len(np.unique(empty.reshape(-1, 4), axis=0)) > 1  # the "No data yet" text
    widths = np.random.default_rng(1).normal(60.0, 8.0, 200)
    plot.set_histogram("result (n=200)", widths, np.arange(20.0, 110.0, 5.0))
    plot.add_marker(float(np.median(widths)), "median")
    drawn = _rendered(plot)
    assert not np.array_equal(drawn, empty)
    assert _has_colour(drawn, "#4fc3f7")  # the first series' colour: bars, marker and legend swatch
