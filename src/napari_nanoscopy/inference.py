"""One restoration engine for every front end (widget, CLI, live pipeline, benchmarks).

normalise -> resample to the model's pixel size -> tile with halos -> batch -> Monte-Carlo
samples -> blend -> mean / std / task outputs -> back to the input grid and intensity units.

The tiling lives in :mod:`.tiling`, the per-plane window runs and blending in :mod:`.tile_run`,
the memory budget's constants and probe in :mod:`.memory`, and device, precision and sampling
mode in :mod:`.network_runtime`.
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch

from . import __version__
from .blocks import round_up
from .domain import DomainReport, check_frames
from .errors import NanoscopyError, StepCounter
from .formats import load_model
from .limits import MAX_RESAMPLED_PIXELS, MAX_TILE, MAX_ZOOM, check_int, check_pixel_size, check_samples, check_seed
from .limits import available_memory as _available_memory
from .memory import (AVAILABLE_FRACTION, MAX_MEMORY_OVERHEAD, MIN_ACTIVATION_BYTES, PEAK_FACTOR, PROBE_SIZE,
                     SMALL_JOB_BYTES, PeakTensorBytes)
from .network_runtime import (RestorationNetwork, bf16_problem, compile_problem, fold_batchnorm, has_dropout,
                              resolve_device, sampling_mode)
from .normalisation import Normaliser
from .packages import ModelPackage, check_restores
from .tile_run import FrameRun, FrameSource, resize_planes
from .tiling import BLEND_WIDTH, MIN_TILE, auto_cores, computed_pixels, plan_axis, tile_batches
from .uncertainty import ESTIMATOR, pooled_spread, pooling_sigma

MIN_SIZE = 32  # pixels, at the model's pixel size: below this no model here has context to work with
MC_MODES = ("dropout", "train")
# Fourier channel attention (TCAN) pools over the whole field, so tiles change its result:
# such models run untiled up to this size, and are tiled (approximately) only beyond it.
GLOBAL_CONTEXT_TILE = 2048
# Pixels of input (batch x window area) per forward pass: the largest window the automatic tiling
# uses for speed (a 2048x2048 image is one window on a CPU); memory may cap it lower (below).
BATCH_PIXELS = {"cpu": 1 << 22, "cuda": 1 << 23, "mps": 1 << 22}
PRECISIONS = ("fp32", "bf16")
# Pixels of input per forward pass when batching windows (MC samples, small tiles), within the
# memory budget too. On an idle 2-core CPU, 10 samples of a 500x500 image (tagan-live-factin,
# channels-last) took 4.0-4.3 s in one batch and 2.9 s one window at a time in float32 (equal in
# bfloat16): large windows leave the caches, so a CPU batches only small ones (64x64 tiles);
# batching 512x512 looked 1.6x faster only on a heavily shared CPU (docs/performance.md).
MC_BATCH_PIXELS = {"cpu": 1 << 18, "cuda": 1 << 23, "mps": 1 << 22}

ProgressCallback = Callable[[int, int], None]


@dataclass
class RestorationResult:
    """What a restoration returns; every array is on the input image's pixel grid.

    ``mean`` and ``std`` have the input's leading (stack) axes, then the output channels when
    the model has more than one, then Y, X. ``std`` is the per-pixel spread of the Monte-Carlo
    samples (``None`` for a single deterministic pass); ``uncertainty``, the uncertainty layer, is
    ``std`` pooled over about the STED resolution (:mod:`.uncertainty`). ``task`` holds the task network's mean
    outputs in its own units (leading axes, task channel, Y, X), ``segmentation`` their
    binarisation with the card's thresholds, ``labels`` one integer label per pixel (0 =
    background, k = task output k-1, the most confident class where several pass).
    """

    mean: np.ndarray
    std: np.ndarray | None = None
    uncertainty: np.ndarray | None = None
    samples: np.ndarray | None = None
    task: np.ndarray | None = None
    task_samples: np.ndarray | None = None
    segmentation: np.ndarray | None = None
    labels: np.ndarray | None = None
    task_names: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    domain: DomainReport | None = None  # the image against the model's training inputs (napari_nanoscopy.domain)


class Restorer:
    """Apply one model package to images of any size, with Monte-Carlo uncertainty."""

    def __init__(self, model: ModelPackage | str, device: str | torch.device | None = "auto", mc_mode: str = "dropout",
                 precision: str = "fp32", compile: bool = False):
        """``precision``: ``"fp32"`` (default) or ``"bf16"``, bfloat16 weights and activations (about
        2x faster on CPUs with AVX-512 BF16 or AMX and on recent GPUs; outputs stay float32, within
        about 0.02 of float32 on a [-1, 1] output, see docs/performance.md).

        ``compile=True`` runs the network through ``torch.compile``, which fuses each convolution's
        pointwise tail (activation, dropout, padding): 1.3-1.45x faster forward passes on this CPU,
        but the first pass for each window shape and sampling mode compiles (10-30 s). It suits
        repeated restorations of one size, such as the live loop. Dropout then draws its masks with
        the compiler's generator: seeded samples are reproducible, but not the eager ones."""
        if mc_mode not in MC_MODES:
            raise NanoscopyError(f"mc_mode must be one of {', '.join(MC_MODES)}, not '{mc_mode}'.")
        if precision not in PRECISIONS:
            raise NanoscopyError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}.")
        self.package = model if isinstance(model, ModelPackage) else load_model(model)
        self.card = self.package.card
        check_restores(self.card)
        self.normaliser = Normaliser.from_card(self.card)
        self.device = resolve_device(device)
        self.mc_mode = mc_mode
        self.precision = precision
        if precision == "bf16" and (problem := bf16_problem(self.device)) is not None:
            raise NanoscopyError(
                f"bf16 precision needs native bfloat16 support, but {problem}; use precision fp32 (the default) "
                "or a device that has it (a CPU with AVX-512 BF16 or AMX, or a CUDA GPU of compute capability 8 or newer)."
            )
        self.dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        # Channels-last (NHWC) convolutions are faster on CPUs and GPUs (measured per family in
        # docs/performance.md); results agree with the NCHW ones to float32 rounding.
        self.memory_format = torch.channels_last if self.device.type in ("cpu", "cuda") else torch.contiguous_format
        network = RestorationNetwork(self.package.generator, self.package.task_network)
        # "train" sampling normalises with batch statistics, which cannot be folded; either way
        # the package keeps its own (float32, unfolded) modules
        if mc_mode == "dropout":
            network = fold_batchnorm(network)
        elif self.dtype != torch.float32:
            network = copy.deepcopy(network)
        self.network = network.to(self.device, dtype=self.dtype, memory_format=self.memory_format).eval()
        self.compiled = bool(compile)
        if self.compiled and (problem := compile_problem(self.device)) is not None:
            raise NanoscopyError(f"Compiled restoration uses torch.compile, but {problem}; restore without compile "
                                 "(the default), which needs no compiler and is only a little slower.")
        self._forward = torch.compile(self.network) if self.compiled else self.network
        self._probed_bytes: float | None = None
        generator, task_network = self.package.generator, self.package.task_network
        self.in_channels = generator.in_channels
        self.out_channels = generator.out_channels
        self.size_multiple = math.lcm(generator.size_multiple, task_network.size_multiple if task_network else 1)
        radius = generator.receptive_radius + (task_network.receptive_radius if task_network else 0)
        self.halo = round_up(radius + BLEND_WIDTH // 2, self.size_multiple)
        self.stochastic = has_dropout(generator) or (task_network is not None and has_dropout(task_network))
        self.task_names = list(self.card.task.outputs) if self.card.task is not None else []
        self.global_context = any(
            getattr(net, "global_context", False) for net in (generator, task_network) if net is not None
        )

    # -- public ------------------------------------------------------------------------------

    def restore(
        self,
        image: np.ndarray,
        *,
        pixel_size_nm: float | None = None,
        channel_axis: int | None = None,
        samples: int | None = None,
        tile_size: int | None = None,
        batch_size: int | None = None,
        keep_samples: bool = False,
        seed: int | None = None,
        progress: ProgressCallback | None = None,
        should_cancel: Callable[[], bool] | None = None,
        normaliser: Normaliser | None = None,
        check_domain: bool = True,
    ) -> RestorationResult:
        """Restore a 2D image, a 2D multichannel image or a stack (T or Z) of either.

        ``channel_axis`` says which axis holds the model's input channels (needed only for
        models with several inputs; default: the axis just before Y); the last two of the
        remaining axes are Y and X. ``pixel_size_nm`` is the
        image's pixel size: when given and different from the model's, the image is resampled
        to the model's pixel size and the results back to the image's grid. ``samples`` is the
        number of Monte-Carlo dropout samples (default: the card's; 1 = one deterministic pass).
        ``should_cancel`` is polled between batches; when it returns True, :class:`Cancelled`
        is raised and nothing is returned. ``normaliser``: a fitted :class:`Normaliser` used for
        every plane instead of the card's fitted to each plane (a block of a larger image is
        normalised with its whole plane's statistics). ``check_domain``: False where the caller
        scored the image already (``result.domain`` is then None).
        """
        samples = check_samples(self.card.default_samples if samples is None else samples)
        seed = check_seed(seed)
        if normaliser is not None and (not normaliser.fitted or len(normaliser.affines) != self.in_channels):
            raise NanoscopyError(f"The normaliser given to restore() must be fitted to {self.in_channels} input "
                                 "channel(s); pass Normaliser.from_card(card).fit(plane) for this model.")
        frames, lead_shape = self._frames(image, channel_axis)
        factor = self.zoom_factor(pixel_size_nm)
        height, width = frames.shape[-2:]
        model_shape = self._model_shape((height, width), factor, pixel_size_nm)
        self._check_output_memory(len(frames), (height, width), samples, keep_samples)
        if min(model_shape) < MIN_SIZE:
            raise NanoscopyError(
                f"The image is {height}x{width} pixels ({model_shape[0]}x{model_shape[1]} at the model's pixel size), "
                f"smaller than the {MIN_SIZE}x{MIN_SIZE} minimum; give a larger field of view."
            )
        passes = samples if self.stochastic else 1  # without dropout every sample is the same
        if self.mc_mode == "train" and passes > 1:
            batch_size = 1  # the public code's behaviour: BatchNorm statistics of one image at a time
        elif batch_size is not None and batch_size < 1:
            raise NanoscopyError(f"The batch size must be at least 1, not {batch_size}.")
        plans, batch = self.plan(model_shape, tile_size=tile_size, samples=samples, keep_samples=keep_samples,
                                 frames=len(frames), image_shape=(height, width))
        batch = batch_size or batch
        total_steps = len(tile_batches(plans, passes, batch)) * len(frames)
        outputs = self._outputs(len(frames), (height, width), samples, keep_samples)
        with self._rng(seed):
            self._restore_frames(frames, model_shape, plans, passes, batch, keep_samples, outputs, normaliser,
                                 StepCounter(total_steps, progress, should_cancel))
        result = self._result(
            lead_shape, *outputs,
            dict(pixel_size_nm=pixel_size_nm, samples=samples, tile_size=max(plans[0].core, plans[1].core),
                 batch_size=batch, zoom=factor, seed=seed, stochastic_passes=passes,
                 windows=len(plans[0].starts) * len(plans[1].starts), precision=self.precision,
                 compiled=self.compiled,
                 computed_pixels=round(computed_pixels(plans), 4)),
        )
        if check_domain and normaliser is None:  # a block of a larger image is checked by its job, whole
            result.domain = check_frames(self.card, frames, factor)
            result.provenance["domain"] = result.domain.to_dict()
        return result

    def _restore_frames(self, frames, model_shape, plans, passes: int, batch: int, keep_samples: bool, outputs,
                        normaliser: Normaliser | None, step: Callable[[], None]) -> None:
        """Run, blend and finish each (C, Y, X) plane into ``outputs`` (from :meth:`_outputs`), checking each."""
        mean, std, sample_out, task_mean, task_sample_out = outputs
        in_place = tuple(model_shape) == mean.shape[-2:]
        for index, frame in enumerate(frames):
            self._check_finite(frame, index)
            fitted = normaliser or self.normaliser.fit(frame, plane=index)
            targets = None
            if in_place:
                targets = dict(
                    mean=mean[index], var=std[index] if std is not None and passes > 1 else None,
                    samples=sample_out[:passes, index] if sample_out is not None else None,
                    task_mean=task_mean[index] if task_mean is not None else None,
                    task_samples=task_sample_out[:passes, index] if task_sample_out is not None else None,
                )
            run = FrameRun(self, FrameSource(frame, fitted, model_shape), plans, passes, batch, keep_samples, targets)
            run.run(step)
            if in_place:
                self._finish_in_place(index, passes, fitted.output_affine, mean, std, sample_out, task_sample_out)
            else:
                self._finish_resampled(index, run.accumulators, fitted, mean, std, sample_out, task_mean,
                                       task_sample_out)
            # a given normaliser may come from a larger image, of which this may be a flat block
            varying_input = normaliser is None and self.normaliser.depends_on_data(0)
            self._check_output(mean[index], None if task_mean is None else task_mean[index], index, varying_input)

    def _outputs(self, n_frames: int, shape: tuple[int, int], samples: int, keep_samples: bool):
        """Zeroed mean, std, samples, task mean and task samples (None where not wanted).

        Zeroed by calloc: pages are touched only when written. Without resampling the tiles are
        blended straight into these arrays and mapped to output units in place, so the peak
        memory is the input, the outputs and one batch of network activations.
        """
        out_c, task_c = self.out_channels, len(self.task_names)
        mean = np.zeros((n_frames, out_c, *shape), dtype=np.float32)
        std = np.zeros_like(mean) if samples > 1 else None
        sample_out = np.zeros((samples, n_frames, out_c, *shape), dtype=np.float32) if keep_samples else None
        task_mean = np.zeros((n_frames, task_c, *shape), dtype=np.float32) if task_c else None
        task_sample_out = np.zeros((samples, n_frames, task_c, *shape), dtype=np.float32) if keep_samples and task_c else None
        return mean, std, sample_out, task_mean, task_sample_out

    @staticmethod
    def _finish_resampled(index, accum, fitted: Normaliser, mean, std, sample_out, task_mean, task_sample_out) -> None:
        """Resample one plane's accumulators (at the model's pixel size) to the image's grid, in output units."""
        shape = mean.shape[-2:]
        mean[index] = fitted.invert(resize_planes(accum.mean, shape))
        if std is not None:
            spread = accum.std if accum.passes > 1 else np.zeros_like(accum.mean)
            std[index] = resize_planes(spread, shape) * np.float32(abs(fitted.output_affine.scale))
        if sample_out is not None:
            for k in range(sample_out.shape[0]):
                sample_out[k, index] = fitted.invert(resize_planes(accum.sample(k), shape))
        if task_mean is not None:
            task_mean[index] = resize_planes(accum.task_mean, shape)
        if task_sample_out is not None:
            for k in range(task_sample_out.shape[0]):
                task_sample_out[k, index] = resize_planes(accum.task_sample(k), shape)

    @staticmethod
    def _finish_in_place(index, passes, output_affine, mean, std, sample_out, task_sample_out) -> None:
        """Map one plane's blended accumulators (the outputs themselves) to output units, in place."""
        scale, offset = np.float32(output_affine.scale), np.float32(output_affine.offset)
        plane = mean[index]
        plane *= scale
        plane += offset
        if std is not None and passes > 1:  # std holds the blended variance
            spread = std[index]
            np.maximum(spread, 0.0, out=spread)
            np.sqrt(spread, out=spread)
            spread *= np.float32(abs(output_affine.scale))
        if sample_out is not None:
            for k in range(sample_out.shape[0]):
                if k >= passes:  # a model without dropout: every sample is the one pass
                    sample_out[k, index] = sample_out[passes - 1, index]
                else:
                    sample_out[k, index] *= scale
                    sample_out[k, index] += offset
        if task_sample_out is not None:
            for k in range(passes, task_sample_out.shape[0]):
                task_sample_out[k, index] = task_sample_out[passes - 1, index]

    # -- helpers -----------------------------------------------------------------------------

    def _frames(self, image: np.ndarray, channel_axis: int | None) -> tuple[np.ndarray, tuple[int, ...]]:
        """View the image as (frames, channels, Y, X) and return the leading stack shape."""
        array = np.asarray(image)
        if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
            raise NanoscopyError(
                f"The image has data type {array.dtype}; give a real-valued integer or floating-point image."
            )
        if array.ndim < 2:
            raise NanoscopyError(f"The image has {array.ndim} dimension(s); give at least a 2D (Y, X) image.")
        if array.size == 0:
            raise NanoscopyError(f"The image is empty (shape {array.shape}); give an image with pixels.")
        expected = self.in_channels
        if channel_axis is None and expected > 1:
            if array.ndim >= 3 and array.shape[-3] == expected:
                channel_axis = array.ndim - 3
            else:
                raise NanoscopyError(
                    f"The model '{self.card.name}' takes {expected} channels ({', '.join(self.card.input_channels)}) "
                    f"but the image of shape {array.shape} has no axis of length {expected} before Y, X; "
                    "give a multichannel image and its channel axis."
                )
        if channel_axis is not None:
            axis = channel_axis + array.ndim if channel_axis < 0 else channel_axis
            if array.ndim < 3 or not 0 <= axis < array.ndim:
                raise NanoscopyError(
                    f"The channel axis {channel_axis} is not an axis of an image of shape {array.shape} "
                    "that also has Y and X; give the index of the channel axis."
                )
            channel_axis = axis
            if array.shape[channel_axis] != expected:
                raise NanoscopyError(
                    f"The model '{self.card.name}' takes {expected} channel(s) "
                    f"({', '.join(self.card.input_channels)}) but the image has {array.shape[channel_axis]} "
                    f"along its channel axis; pick the matching channel(s) or another model."
                )
            array = np.moveaxis(array, channel_axis, -3)
        else:
            array = array[..., np.newaxis, :, :]
        lead_shape = array.shape[:-3]
        return array.reshape((-1,) + array.shape[-3:]), lead_shape

    def _check_finite(self, frame: np.ndarray, index: int) -> None:
        if np.issubdtype(frame.dtype, np.floating):
            bad = frame.size - int(np.count_nonzero(np.isfinite(frame)))
            if bad:
                where = f" (plane {index})" if index else ""
                raise NanoscopyError(
                    f"The image{where} contains {bad} NaN or infinite pixel(s); replace them (for example with 0) "
                    "before restoring."
                )

    def _check_output_memory(self, frames: int, shape: tuple[int, int], samples: int, keep_samples: bool) -> None:
        """Refuse, before allocating them, outputs larger than the memory available now."""
        kept = samples if keep_samples else 0
        planes = self.out_channels * (1 + 2 * (samples > 1) + kept) + len(self.task_names) * (1 + kept)  # + uncertainty
        needed = 4 * frames * planes * shape[0] * shape[1]
        available = _available_memory()
        if available is not None and needed > available:
            stack = f"{frames} planes of " if frames > 1 else ""
            raise NanoscopyError(
                f"Restoring {stack}{shape[0]}x{shape[1]} pixels needs {needed / 1e9:.1f} GB for the outputs, more than "
                f"the {available / 1e9:.1f} GB of memory available; restore it block by block (restore --block with an "
                "OME-Zarr output, or large.restore_chunked)."
            )

    def _check_output(self, restored: np.ndarray, task: np.ndarray | None, index: int, varying_input: bool) -> None:
        """Refuse a restored plane with NaN or infinite pixels, or a constant one from a varying input:
        the weights are broken or do not belong to this architecture, and such a file must not be written.

        A constant output is refused only when ``varying_input``: the first input channel was
        normalised from the plane itself (so it varies, or normalising would have refused it); with
        a fixed normalisation, or a given one, the input may be a flat block of a larger image. Segmentations may be empty; only the task
        network's scores are checked, for NaN.
        """
        where = f" (plane {index})" if index else ""
        remedy = "its weights are broken or do not fit its model.json; use another model or re-export this one"
        ranges = {}
        for name, plane in (("restored image", restored), ("task network's output", task)):
            if plane is None:
                continue
            ranges[name] = float(plane.min()), float(plane.max())  # NaN propagates; no temporary array
            if not all(math.isfinite(value) for value in ranges[name]):
                bad = plane.size - int(np.count_nonzero(np.isfinite(plane)))
                raise NanoscopyError(
                    f"The model '{self.card.name}' gave {bad} NaN or infinite pixel(s) in its {name}{where}; {remedy}."
                )
        low, high = ranges["restored image"]
        if low == high and varying_input:
            raise NanoscopyError(
                f"The model '{self.card.name}' gave a constant restored image{where} (every pixel is {low:g}) "
                f"from a varying input; {remedy}."
            )

    def zoom_factor(self, pixel_size_nm: float | None) -> float:
        if pixel_size_nm is None:
            return 1.0
        pixel_size_nm = check_pixel_size(pixel_size_nm, "The image's pixel size",
                                         "give the image's pixel size in nanometres (--pixel-size on the command line)")
        if self.card.pixel_size_nm is None:
            return 1.0
        factor = pixel_size_nm / self.card.pixel_size_nm
        return 1.0 if abs(factor - 1.0) < 1e-3 else factor

    def _model_shape(self, image_shape: tuple[int, int], factor: float, pixel_size_nm: float | None) -> tuple[int, int]:
        """The image's (Y, X) size at the model's pixel size; refuses, before anything is allocated,
        a resampling so strong that the pixel size is surely wrong, or whose copy would not fit."""
        height, width = image_shape
        model_shape = (max(1, round(height * factor)), max(1, round(width * factor)))
        if factor != 1.0 and (max(factor, 1 / factor) > MAX_ZOOM or model_shape[0] * model_shape[1] > MAX_RESAMPLED_PIXELS):
            model_nm = self.card.pixel_size_nm
            # the usual slip is a unit: a value in um or pm read as nm
            guesses = [f"{pixel_size_nm * scale:g} nm if it was given in {unit}"
                       for scale, unit in ((1e3, "um"), (1e-3, "pm"))
                       if 1 / MAX_ZOOM <= pixel_size_nm * scale / model_nm <= MAX_ZOOM]
            hint = guesses[0] if guesses else f"the model expects about {model_nm:g} nm"
            raise NanoscopyError(
                f"With {pixel_size_nm:g} nm pixels the {height}x{width} image would be resampled to "
                f"{model_shape[0]}x{model_shape[1]} pixels for the model '{self.card.name}' ({model_nm:g} nm pixels), "
                f"a factor of {factor:.3g}; check the pixel size ({hint}; at most {MAX_ZOOM:g}x coarser or finer than "
                f"the model's, and at most {MAX_RESAMPLED_PIXELS} pixels once resampled)."
            )
        return model_shape

    def plan(self, model_shape: tuple[int, int], *, tile_size: int | None = None, samples: int = 1,
             keep_samples: bool = False, frames: int = 1, image_shape: tuple[int, int] | None = None):
        """The tiling (Y and X axis plans) and the automatic batch size for one restoration.

        ``model_shape`` is the image at the model's pixel size, ``image_shape`` at its own (the
        outputs' grid; default the same). A given ``tile_size`` keeps every window the same size.
        Otherwise the windows are the fewest computed pixels within a memory budget (see
        :meth:`activation_allowance`), never larger than one forward pass's speed budget.
        """
        image_shape = tuple(image_shape or model_shape)
        passes = samples if self.stochastic else 1
        allowance = self.activation_allowance(model_shape, image_shape, samples, keep_samples, frames)
        item_bytes, tile_bytes = self._window_bytes(passes)
        if tile_size is not None:
            core = self._given_core(tile_size)
            plans = self._plans(model_shape, (core, core), trim=False)
        else:
            speed_cap = BATCH_PIXELS.get(self.device.type, 1 << 21)
            budget = min(speed_cap, int(allowance / (item_bytes + tile_bytes)))
            hard = self.activation_allowance(model_shape, image_shape, samples, keep_samples, frames, hard=True)
            hard_cap = min(speed_cap, int(hard / (item_bytes + tile_bytes)))
            if self.global_context:  # Fourier attention sees the whole field: untiled up to its size
                budget = max(budget, GLOBAL_CONTEXT_TILE**2)
            plans = self._auto_plans(model_shape, budget)
            while computed_pixels(plans) > MAX_MEMORY_OVERHEAD and budget < hard_cap:
                budget = min(2 * budget, hard_cap)
                plans = self._auto_plans(model_shape, budget)
            allowance = max(allowance, budget * (item_bytes + tile_bytes))
        window_pixels = plans[0].window * plans[1].window
        fits = (allowance - window_pixels * tile_bytes) // (window_pixels * item_bytes)
        batch = int(max(1, min(MC_BATCH_PIXELS.get(self.device.type, 1 << 22) // window_pixels, fits)))
        return plans, batch

    def _auto_plans(self, model_shape, budget: int):
        cores = auto_cores(model_shape, self.halo, self.size_multiple, budget)
        return self._plans(model_shape, cores, trim=True)

    def _plans(self, model_shape, cores, trim: bool):
        return tuple(plan_axis(length, core, self.halo, BLEND_WIDTH, self.size_multiple, trim)
                     for length, core in zip(model_shape, cores))

    def activation_allowance(self, model_shape, image_shape, samples: int = 1, keep_samples: bool = False,
                             frames: int = 1, hard: bool = False) -> int:
        """Bytes the network's activations (one batch of windows) may take in this restoration.

        On a GPU: ``AVAILABLE_FRACTION`` of its free memory. On the host, the whole restoration
        (input, outputs, activations) stays within max(``PEAK_FACTOR`` x the input's float32 size,
        ``SMALL_JOB_BYTES``), never below ``MIN_ACTIVATION_BYTES`` and never above
        ``AVAILABLE_FRACTION`` of the memory available (``hard``: that last limit only).
        """
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            return int(AVAILABLE_FRACTION * free)
        plane = 4 * image_shape[0] * image_shape[1]  # one float32 plane on the output grid
        input_bytes = frames * self.in_channels * plane
        outputs = self.out_channels * (1 + (samples > 1) + (samples if keep_samples else 0))
        outputs += len(self.task_names) * (1 + (samples if keep_samples else 0))
        fixed = input_bytes + frames * outputs * plane
        if tuple(model_shape) != tuple(image_shape):  # a resampled copy and accumulators at the model's size
            fixed += 4 * model_shape[0] * model_shape[1] * (self.in_channels + outputs)
        available = _available_memory()
        limit = None if available is None else int(AVAILABLE_FRACTION * max(available - frames * outputs * plane, 0))
        if hard:
            return max(MIN_ACTIVATION_BYTES, limit) if limit is not None else 1 << 62
        allowance = max(MIN_ACTIVATION_BYTES, int(max(PEAK_FACTOR * input_bytes, SMALL_JOB_BYTES) - fixed))
        return max(MIN_ACTIVATION_BYTES, min(allowance, limit)) if limit is not None else allowance

    def _window_bytes(self, passes: int) -> tuple[float, float]:
        """Bytes per window pixel: per batch item (activations and copies) and per tile (its samples)."""
        outputs = self.out_channels + len(self.task_names)
        # the window and its batch tensor; each output copied off the device and made contiguous
        item = self.activation_bytes_per_pixel() + 4 * (2 * self.in_channels + 2 * outputs)
        # a tile's samples wait until all are done, then blend with a few tile-sized temporaries
        return item, 4.0 * outputs * (passes + 3)

    def activation_bytes_per_pixel(self) -> float:
        """Peak bytes of network activations per window pixel, measured once on a small window.

        Activations grow with the window's area, so one forward pass of a ``PROBE_SIZE`` window
        on this device, in this precision and memory format (with dropout active when the model
        has it), with its live tensors counted, gives the bytes per pixel of any window (a little
        more: the padding is a larger share of a small window).
        """
        if self._probed_bytes is None:
            side = round_up(PROBE_SIZE, self.size_multiple)
            probe = torch.zeros((1, self.in_channels, side, side), device=self.device, dtype=self.dtype)
            probe = probe.contiguous(memory_format=self.memory_format)
            counter = PeakTensorBytes()
            mode = self.mc_mode if self.stochastic else None
            with torch.inference_mode(), sampling_mode(self.network, mode), self._rng(0), counter:
                self.network.forward(probe)  # not __call__: hooks on the network see only real windows
            self._probed_bytes = counter.peak / (side * side)
        return self._probed_bytes

    def forward_batch(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One forward pass; a failed compilation (it happens at the first pass) says what to do."""
        if not self.compiled:
            return self.network(batch)
        try:
            return self._forward(batch)
        except torch._dynamo.exc.TorchDynamoException as error:
            detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise NanoscopyError(f"torch.compile could not compile the model '{self.card.name}' ({detail}); "
                                 "restore without compile (the default).") from error

    def _given_core(self, tile_size: int) -> int:
        tile_size = check_int("The tile size", tile_size, MIN_TILE, MAX_TILE, "leave it empty for an automatic choice")
        return round_up(tile_size, self.size_multiple)

    @contextmanager
    def _rng(self, seed: int | None) -> Iterator[None]:
        if seed is None:
            yield
            return
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield

    def _result(self, lead_shape, mean, std, sample_out, task_mean, task_sample_out, parameters) -> RestorationResult:
        def shaped(array: np.ndarray | None, squeeze: bool, leading: tuple[int, ...] = ()) -> np.ndarray | None:
            if array is None:
                return None
            reshaped = array.reshape(leading + lead_shape + array.shape[len(leading) + 1:])
            return reshaped[..., 0, :, :] if squeeze else reshaped

        single = self.out_channels == 1
        result = RestorationResult(
            mean=shaped(mean, single),
            std=shaped(std, single),
            uncertainty=pooled_spread(shaped(std, single), pooling_sigma(parameters["zoom"])),
            samples=shaped(sample_out, single, leading=(sample_out.shape[0],)) if sample_out is not None else None,
            task=shaped(task_mean, False),
            task_samples=(
                shaped(task_sample_out, False, leading=(task_sample_out.shape[0],)) if task_sample_out is not None else None
            ),
            task_names=self.task_names,
        )
        if result.task is not None:
            thresholds = np.asarray(self.card.task.thresholds, dtype=np.float32)[:, None, None]
            margin = result.task - thresholds
            result.segmentation = margin > 0
            best = np.argmax(margin, axis=-3)
            result.labels = np.where(result.segmentation.any(axis=-3), best + 1, 0).astype(np.uint8)
        result.provenance = {
            "model": self.card.name,
            "family": self.card.family,
            "weights_sha256": self.card.weights_sha256,
            "model_pixel_size_nm": self.card.pixel_size_nm,
            # no pixel size given: the image was taken to be at the model's, not measured to be
            "pixel_size_assumed": parameters["pixel_size_nm"] is None and self.card.pixel_size_nm is not None,
            "mc_mode": self.mc_mode if parameters["samples"] > 1 else "deterministic",
            "device": str(self.device),
            "napari_nanoscopy": __version__,
            "torch": torch.__version__,
            **({"uncertainty": ESTIMATOR} if std is not None else {}),
            **parameters,
        }
        return result
