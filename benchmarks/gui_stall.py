"""Longest GUI-thread stall while the Restore widget restores an image in a real napari viewer.

A QTimer fires every 10 ms on the GUI thread and records the time between its ticks; a tick
that comes late means the GUI thread was busy (or starved) for that long, and the viewer did
not repaint or react to the mouse meanwhile. Three phases are reported separately:

- ``idle``: the viewer with the image, nothing running (the baseline of this machine);
- ``restoring``: from pressing Restore until the worker thread returns (model loading and
  the restoration itself run in the worker);
- ``showing``: adding the result layers on the GUI thread (napari computes contrast limits and
  uploads textures there).

Each phase gives the longest gap beyond the 10 ms period and the 99th percentile; on a
machine shared with other work the idle phase shows how much of that is the machine. The time
the plugin's own GUI-thread callbacks take (progress updates, adding the result layers) is
reported too, since it does not depend on other load. The image
is the bundled twolabel sample tiled to ``--size`` pixels a side, restored with ``--model``
(a bundled name or a package path) and ``--samples`` Monte-Carlo samples.

    xvfb-run -a python3 benchmarks/gui_stall.py [--size 2048] [--model l2l-twolabel] [--samples 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

PERIOD_MS = 10


class StallRecorder:
    def __init__(self):
        from qtpy.QtCore import QTimer

        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(PERIOD_MS)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))

    def start(self):
        self.ticks.clear()
        self.timer.start()

    def stop(self) -> dict:
        self.timer.stop()
        gaps = np.diff(self.ticks) * 1000.0 - PERIOD_MS if len(self.ticks) > 1 else np.zeros(1)
        gaps = np.maximum(gaps, 0.0)
        return {
            "ticks": len(self.ticks),
            "longest_stall_ms": round(float(gaps.max()), 1),
            "p99_stall_ms": round(float(np.percentile(gaps, 99)), 1),
            "duration_s": round(self.ticks[-1] - self.ticks[0], 2) if len(self.ticks) > 1 else 0.0,
        }


def pump(until, timeout_s: float = 1800.0) -> None:
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    start = time.monotonic()
    while not until():
        app.processEvents()
        time.sleep(0.001)
        if time.monotonic() - start > timeout_s:
            raise TimeoutError("the restoration did not finish in time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--model", default="l2l-twolabel")
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import napari
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from napari_nanoscopy._widgets._sample_data import load_sample
    from napari_nanoscopy._widgets.restore import RestoreWidget

    viewer = napari.Viewer(title="gui stall benchmark")
    [(data, kwargs, _)] = [layer for layer in load_sample("twolabel") if layer[1]["metadata"]["role"] == "input"]
    reps = -(-args.size // data.shape[0])
    image = np.tile(data, (reps, reps))[: args.size, : args.size]
    kwargs = {k: v for k, v in kwargs.items() if k != "metadata"}
    layer = viewer.add_image(image, **{**kwargs, "name": "input"})
    widget = RestoreWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.input_combo.set_layer(layer)
    if os.path.exists(args.model):
        widget.add_model(args.model)
        pump(lambda: widget.job is None)
    elif not widget.select_model(args.model):
        raise SystemExit(f"unknown model {args.model}")
    if args.samples:
        widget.samples_box.setValue(args.samples)

    recorder = StallRecorder()
    pump(lambda: True)
    recorder.start()
    end = time.monotonic() + 2.0
    pump(lambda: time.monotonic() > end)
    idle = recorder.stop()

    phases = {}
    callbacks: dict[str, list[float]] = {"progress": [], "show_results": []}
    original_show = widget._show_results

    def timed_show(*a, **k):
        phases["restoring"] = recorder.stop()
        recorder.start()
        begin = time.perf_counter()
        original_show(*a, **k)
        callbacks["show_results"].append(time.perf_counter() - begin)

    widget._show_results = timed_show
    from napari_nanoscopy._widgets import _common

    original_progress = _common.Job._on_progress

    def timed_progress(self, *a):
        begin = time.perf_counter()
        original_progress(self, *a)
        callbacks["progress"].append(time.perf_counter() - begin)

    _common.Job._on_progress = timed_progress
    recorder.start()
    started = time.perf_counter()
    widget.run()
    pump(lambda: widget.job is None)
    # let napari draw the new layers before closing the "showing" phase
    end = time.monotonic() + 1.0
    pump(lambda: time.monotonic() > end)
    phases["showing"] = recorder.stop()
    total_s = time.perf_counter() - started
    if widget.last_error:
        raise SystemExit(f"restoration failed: {widget.last_error}")
    result = {
        "image": f"{args.size}x{args.size}",
        "model": args.model,
        "samples": widget.samples_box.value(),
        "device": widget.last_result.provenance.get("device"),
        "total_s": round(total_s, 2),
        "idle": idle,
        **phases,
        # what the plugin itself runs on the GUI thread (independent of other load on the machine)
        "plugin_gui_callbacks_ms": {
            name: {"count": len(v), "longest": round(1000 * max(v), 1) if v else 0.0} for name, v in callbacks.items()
        },
        "cpu_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "napari": napari.__version__,
    }
    viewer.close()
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['image']} with {args.model}, {result['samples']} sample(s), {result['device']}, {total_s:.1f} s in all")
    for phase in ("idle", "restoring", "showing"):
        r = result[phase]
        print(f"  {phase:10s} longest GUI stall {r['longest_stall_ms']:7.1f} ms   p99 {r['p99_stall_ms']:6.1f} ms   "
              f"over {r['duration_s']:.1f} s")
    for name, r in result["plugin_gui_callbacks_ms"].items():
        print(f"  plugin GUI callback {name}: {r['count']} calls, longest {r['longest']:.1f} ms")


if __name__ == "__main__":
    main()
