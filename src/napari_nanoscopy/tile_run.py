"""One plane of a restoration, window by window: normalised (and resampled) windows cut on
demand, forward passes in batches, and the Monte-Carlo samples of each tile blended into
mean, variance and task accumulators."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from .memory import release_freed_memory
from .network_runtime import sampling_mode
from .normalisation import Normaliser
from .tiling import tile_batches

if TYPE_CHECKING:
    from .inference import Restorer


def resize_planes(array: np.ndarray, shape: tuple[int, int], order: int = 1) -> np.ndarray:
    """Resize the last two axes of (C, Y, X) to ``shape`` (anti-aliased when shrinking)."""
    from skimage.transform import resize

    if array.shape[-2:] == tuple(shape):
        return array
    shrinking = shape[0] < array.shape[-2] or shape[1] < array.shape[-1]
    out = np.empty(array.shape[:-2] + tuple(shape), dtype=np.float32)
    for index in np.ndindex(array.shape[:-2]):
        out[index] = resize(
            array[index], shape, order=order, mode="reflect", anti_aliasing=shrinking, preserve_range=True
        )
    return out


class FrameSource:
    """Normalised (and resampled) windows of one (C, Y, X) plane, extracted on demand.

    Without resampling no normalised copy of the whole plane is made: each window is cut
    from the raw data and normalised on its own, which keeps the peak memory near the
    size of the outputs.
    """

    def __init__(self, frame: np.ndarray, normaliser: Normaliser, model_shape: tuple[int, int]):
        self.normaliser = normaliser
        if frame.shape[-2:] != tuple(model_shape):
            self.data = resize_planes(normaliser.apply(frame), model_shape)
            self.normaliser = None  # already normalised
        else:
            self.data = frame
        self.shape = tuple(model_shape)

    def window(self, y0: int, x0: int, height: int, width: int) -> np.ndarray:
        """The window [y0, y0+height) x [x0, x0+width), reflected beyond the plane's edges."""
        ya, yb = max(0, y0), min(self.shape[0], y0 + height)
        xa, xb = max(0, x0), min(self.shape[1], x0 + width)
        crop = self.data[:, ya:yb, xa:xb]
        if self.normaliser is not None:
            crop = self.normaliser.apply(crop)
        pad = ((0, 0), (ya - y0, y0 + height - yb), (xa - x0, x0 + width - xb))
        if any(p for pair in pad for p in pair):
            crop = np.pad(crop, pad, mode="reflect" if min(crop.shape[-2:]) > 1 else "edge")
        return crop


@dataclass
class Accumulators:
    mean: np.ndarray
    var: np.ndarray | None
    samples: np.ndarray | None
    task_mean: np.ndarray | None
    task_samples: np.ndarray | None
    passes: int

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(np.maximum(self.var, 0.0))

    def sample(self, k: int) -> np.ndarray:
        return self.samples[min(k, self.passes - 1)]

    def task_sample(self, k: int) -> np.ndarray:
        return self.task_samples[min(k, self.passes - 1)]


class FrameRun:
    """Runs every tile x sample of one plane in batches and blends them into accumulators."""

    def __init__(self, restorer: Restorer, source: FrameSource, plans, passes: int, batch: int, keep_samples: bool,
                 targets: dict[str, np.ndarray | None] | None = None):
        """``targets``: zeroed float32 arrays (views of the outputs) to blend into instead of new ones."""
        self.restorer, self.source, self.plans = restorer, source, plans
        self.passes, self.batch, self.keep_samples = passes, batch, keep_samples
        height, width = source.shape
        out_c, task_c = restorer.out_channels, len(restorer.task_names)
        wanted = {
            "mean": (out_c, height, width),
            "var": (out_c, height, width) if passes > 1 else None,
            "samples": (passes, out_c, height, width) if keep_samples else None,
            "task_mean": (task_c, height, width) if task_c else None,
            "task_samples": (passes, task_c, height, width) if keep_samples and task_c else None,
        }
        arrays = {}
        for name, shape in wanted.items():
            given = None if targets is None else targets.get(name)
            if shape is None:
                arrays[name] = None
            elif given is not None:
                assert given.shape == shape and given.dtype == np.float32, (name, given.shape, shape)
                arrays[name] = given
            else:
                arrays[name] = np.zeros(shape, dtype=np.float32)
        self.accumulators = Accumulators(passes=passes, **arrays)

    def run(self, step: Callable[[], None]) -> None:
        """Process all batches; ``step`` is called before each (progress, cancellation)."""
        restorer = self.restorer
        plan_y, plan_x = self.plans
        mode = restorer.mc_mode if self.passes > 1 else None
        # trimming returns a tiled run's fragmented heap; one window reuses its memory each pass
        # (trimming there cost 0.3 s of 2.9 s per 10-sample 500x500 restoration: page faults)
        tiled = len(plan_y.starts) * len(plan_x.starts) > 1
        pending: dict[tuple[int, int], list] = {}
        with torch.inference_mode(), sampling_mode(restorer.network, mode):
            for chunk in tile_batches(self.plans, self.passes, self.batch):
                step()
                windows = {}
                for tile, _ in chunk:
                    if tile not in windows:
                        iy, ix = tile
                        windows[tile] = self.source.window(
                            plan_y.starts[iy], plan_x.starts[ix], plan_y.lengths[iy], plan_x.lengths[ix]
                        )
                batch = torch.from_numpy(np.stack([windows[tile] for tile, _ in chunk])).to(restorer.device)
                batch = batch.to(dtype=restorer.dtype, memory_format=restorer.memory_format)
                restored, task = restorer.forward_batch(batch)
                restored = restored.float().cpu().contiguous().numpy()
                task = None if task is None else task.float().cpu().contiguous().numpy()
                for position, (tile, k) in enumerate(chunk):
                    outputs = pending.setdefault(tile, [])
                    outputs.append((k, restored[position], None if task is None else task[position]))
                    if len(outputs) == self.passes:
                        self._blend(tile, pending.pop(tile))
                del batch, restored, task, windows
                if tiled:
                    release_freed_memory()

    def _blend(self, tile: tuple[int, int], outputs: list) -> None:
        plan_y, plan_x = self.plans
        iy, ix = tile
        (ya, yb), (xa, xb) = plan_y.spans[iy], plan_x.spans[ix]
        # window coordinates of the weighted span
        wy0, wx0 = ya - plan_y.starts[iy], xa - plan_x.starts[ix]
        weight = plan_y.weights[iy][:, None] * plan_x.weights[ix][None, :]
        crop = (slice(None), slice(wy0, wy0 + yb - ya), slice(wx0, wx0 + xb - xa))
        region = (slice(None), slice(ya, yb), slice(xa, xb))
        acc = self.accumulators
        # Mean and (two-pass, so numerically stable) variance over the samples in float32, one
        # tile-sized temporary at a time: no stack of all samples, no float64 copies.
        mean = _sample_mean([o[1][crop] for o in outputs])
        if acc.var is not None:
            var = np.zeros_like(mean)
            for _, restored, _ in outputs:
                deviation = restored[crop] - mean
                deviation *= deviation
                var += deviation
            var *= weight * np.float32(1.0 / (len(outputs) - 1))  # ddof=1
            acc.var[region] += var
        mean *= weight
        acc.mean[region] += mean
        if outputs[0][2] is not None:
            task_mean = _sample_mean([o[2][crop] for o in outputs])
            task_mean *= weight
            acc.task_mean[region] += task_mean
            if acc.task_samples is not None:
                for k, _, task in outputs:
                    acc.task_samples[k][region] += weight * task[crop]
        if acc.samples is not None:
            for k, restored, _ in outputs:
                acc.samples[k][region] += weight * restored[crop]



def _sample_mean(arrays: list[np.ndarray]) -> np.ndarray:
    """The mean of same-shaped float32 arrays as a new float32 array."""
    total = arrays[0].astype(np.float32, copy=True)
    for array in arrays[1:]:
        total += array
    if len(arrays) > 1:
        total *= np.float32(1.0 / len(arrays))
    return total
