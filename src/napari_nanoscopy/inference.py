"""One restoration engine for every front end (widget, CLI, live pipeline, benchmarks).

normalise -> resample to the model's pixel size -> tile with halos -> batch -> Monte-Carlo
samples -> blend -> mean / std / task outputs -> back to the input grid and intensity units.

Tiles overlap by a halo at least as wide as the network's receptive radius, so the blended
result equals an untiled pass up to floating-point noise; tile origins sit on the network's
stride grid, and the blending weights are separable, so they are normalised with two 1D sums
instead of a full-size weight image.
"""

from __future__ import annotations

import copy
import ctypes
import math
import os
import shutil
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from . import __version__
from .blocks import round_up
from .errors import Cancelled, NanoscopyError
from .formats import load_model
from .limits import MAX_RESAMPLED_PIXELS, MAX_TILE, MAX_ZOOM, check_int, check_pixel_size, check_samples, check_seed
from .limits import available_memory as _available_memory
from .normalisation import Normaliser
from .packages import ModelPackage

MIN_SIZE = 32  # pixels, at the model's pixel size: below this no model here has context to work with
BLEND_WIDTH = 32  # pixels over which neighbouring tiles cross-fade (hides MC-dropout seams)
MC_MODES = ("dropout", "train")
MIN_TILE = 2 * BLEND_WIDTH
# Splits of one axis the automatic tiling weighs (64-px cores up to a 65536-px axis): bounds its
# search, which grows with the square of this, whatever the image's size.
MAX_AXIS_WINDOWS = 1024
# Fourier channel attention (TCAN) pools over the whole field, so tiles change its result:
# such models run untiled up to this size, and are tiled (approximately) only beyond it.
GLOBAL_CONTEXT_TILE = 2048
# Pixels of input (batch x window area) per forward pass: the largest window the automatic tiling
# uses for speed (a 2048x2048 image is one window on a CPU); memory may cap it lower (below).
BATCH_PIXELS = {"cpu": 1 << 22, "cuda": 1 << 23, "mps": 1 << 22}
PRECISIONS = ("fp32", "bf16")
# Memory of a restoration on the host: at most max(PEAK_FACTOR x its input, SMALL_JOB_BYTES) in all
# (input, outputs, network activations), so large images stay near 3x their size (the 0.5 margin
# is for the allocator and the window copies) while small ones may use big, cheap-to-tile windows.
PEAK_FACTOR = 2.5
SMALL_JOB_BYTES = 640 << 20  # = PEAK_FACTOR x an 8192x8192 float32 image
MIN_ACTIVATION_BYTES = 64 << 20  # the activations always get this much, whatever the rule gives
AVAILABLE_FRACTION = 0.5  # of the memory available now (host RAM, or the GPU's free memory)
# Memory frugality may cost at most this many computed pixels per image pixel (wide-halo models
# in small windows would otherwise recompute halos several times over); beyond it the windows
# grow, within AVAILABLE_FRACTION of the available memory.
MAX_MEMORY_OVERHEAD = 2.0
PROBE_SIZE = 64  # pixels: side of the window whose forward pass measures activation bytes per pixel
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
    samples (``None`` for a single deterministic pass). ``task`` holds the task network's mean
    outputs in its own units (leading axes, task channel, Y, X), ``segmentation`` their
    binarisation with the card's thresholds, ``labels`` one integer label per pixel (0 =
    background, k = task output k-1, the most confident class where several pass).
    """

    mean: np.ndarray
    std: np.ndarray | None = None
    samples: np.ndarray | None = None
    task: np.ndarray | None = None
    task_samples: np.ndarray | None = None
    segmentation: np.ndarray | None = None
    labels: np.ndarray | None = None
    task_names: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise NanoscopyError(f"'{device}' is not a device name; use auto, cpu, cuda, cuda:N or mps.") from None
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
    }
    if not available.get(resolved.type, False):
        raise NanoscopyError(f"The device '{device}' is not available on this machine; use auto or cpu.")
    return resolved


def _is_dropout(module: nn.Module) -> bool:
    return isinstance(module, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout))


def has_dropout(module: nn.Module) -> bool:
    return any(_is_dropout(m) and m.p > 0 for m in module.modules())


@contextmanager
def sampling_mode(module: nn.Module, mode: str | None) -> Iterator[None]:
    """Put a network in the state for deterministic (None) or Monte-Carlo sampling.

    ``"dropout"``: BatchNorm uses its running statistics and only dropout is active, so a
    sample does not depend on which tiles share its batch. ``"train"``: the public TA-GAN
    code's way, everything in train mode, BatchNorm normalising with each image's own
    statistics; running statistics are left untouched.
    """
    was_training = {m: m.training for m in module.modules()}
    tracked = {m: m.track_running_stats for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    try:
        module.eval()
        if mode == "dropout":
            for m in module.modules():
                if _is_dropout(m):
                    m.train()
        elif mode == "train":
            module.train()
            for m in tracked:
                m.track_running_stats = False  # use batch statistics without updating the buffers
        yield
    finally:
        for m, training in was_training.items():
            m.train(training)
        for m, value in tracked.items():
            m.track_running_stats = value


# --- resampling ----------------------------------------------------------------------------


def _resize(array: np.ndarray, shape: tuple[int, int], order: int = 1) -> np.ndarray:
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


# --- tiling --------------------------------------------------------------------------------


def _blend_ramp(width: int) -> np.ndarray:
    """sin^2 ramp sampled at pixel centres: ramp(u) + ramp(width-1-u) == 1, never exactly 0."""
    u = (np.arange(width) + 0.5) / width
    return np.sin(u * np.pi / 2) ** 2


@dataclass
class _AxisPlan:
    """Tile windows along one axis and their normalised blending weights."""

    starts: list[int]  # window starts, inside [0, padded length - window]
    window: int  # the longest window
    weights: list[np.ndarray]  # per window, weights over the image pixels it covers (already normalised)
    spans: list[tuple[int, int]]  # per window, the image pixel range [a, b) its weights cover
    lengths: list[int] = field(default_factory=list)  # per window, its length (``window`` unless trimmed)
    core: int = 0  # the core size the plan was made for


def _plan_axis(length: int, core: int, halo: int, blend: int, multiple: int, trim: bool = False) -> _AxisPlan:
    """Windows of ``core + 2 * halo`` pixels on a grid of ``core``, kept inside the image.

    The image is padded (reflected) only up to the network's size multiple. A window is
    shifted inward at the image's edges, so the border pixels see the same context as in an
    untiled pass, and each weighted region keeps at least ``halo - blend / 2`` pixels of
    real context from the window edges that lie inside the image. With ``trim``, the windows
    at the image's edges are instead cut to ``core + halo`` (no halo is needed beyond the
    image), which computes fewer pixels for the same result.
    """
    padded = round_up(length, multiple)
    core_starts = list(range(0, length, core))
    if len(core_starts) > 1 and length - core_starts[-1] < blend:
        core_starts.pop()  # a last core narrower than the cross-fade joins its neighbour (its window grows)
    if core + 2 * halo >= padded or len(core_starts) == 1:
        core_starts, window, starts, lengths = [0], padded, [0], [padded]
    else:
        window = core + 2 * halo
        if trim:
            starts = [max(start - halo, 0) for start in core_starts]
            lengths = [min(start + core + halo, padded) - begin for start, begin in zip(core_starts, starts)]
        else:
            starts = [min(max(start - halo, 0), padded - window) for start in core_starts]
            lengths = [window] * len(starts)
        if starts[-1] + lengths[-1] < padded:  # the joined last core: its window reaches the image's end
            starts[-1] = max(core_starts[-1] - halo, 0)
            lengths[-1] = padded - starts[-1]
        window = max(lengths)
    raw = []
    for index, start in enumerate(core_starts):
        last = index == len(core_starts) - 1
        weight_start = 0 if index == 0 else start - blend // 2
        weight_end = length if last else min(start + core, length) + blend // 2
        weight = np.ones(weight_end - weight_start, dtype=np.float64)
        if index > 0:
            weight[:blend] = _blend_ramp(blend)
        if not last:
            weight[-blend:] = _blend_ramp(blend)[::-1]
        raw.append((weight_start, weight_end, weight))
    total = np.zeros(length, dtype=np.float64)
    for a, b, weight in raw:
        total[a:b] += weight
    return _AxisPlan(
        starts=starts,
        window=window,
        weights=[(w / total[a:b]).astype(np.float32) for a, b, w in raw],
        spans=[(a, b) for a, b, _ in raw],
        lengths=lengths,
        core=core,
    )


def _axis_options(length: int, halo: int, multiple: int) -> list[tuple[int, int, int, int]]:
    """(core, longest window, pixels computed, windows) for each split of an axis into equal cores."""
    padded = round_up(length, multiple)
    options = {(padded, padded, padded, 1)}  # one window over the whole (padded) axis
    smallest = round_up(MIN_TILE, multiple)
    for n in range(2, min(max(2, math.ceil(length / smallest)), MAX_AXIS_WINDOWS) + 1):
        core = max(smallest, round_up(math.ceil(length / n), multiple))
        if core + 2 * halo >= padded:
            continue
        core_starts = range(0, length, core)
        if length - core_starts[-1] < BLEND_WIDTH:  # a last core narrower than the cross-fade
            continue
        lengths = [min(start + core + halo, padded) - max(start - halo, 0) for start in core_starts]
        options.add((core, max(lengths), sum(lengths), len(lengths)))
    return sorted(options)


def _auto_cores(shape: tuple[int, int], halo: int, multiple: int, budget: int) -> tuple[int, int]:
    """Core sizes (Y, X) of the tiling that computes the fewest window pixels, each window within ``budget``.

    Equal cores split each axis evenly (a 2048-px axis with 1248-px cores would compute two
    1448-px windows; two 1024-px cores with trimmed edge windows need two of 1124 px), and the
    windows need not be square (row bands), so the halos recomputed around the tiles cost as
    little as the budget allows. The windows are those of :func:`_plan_axis`, so results do not
    depend on this choice beyond floating-point noise.
    """
    best = None
    options_x = _axis_options(shape[1], halo, multiple)
    for core_y, window_y, total_y, n_y in _axis_options(shape[0], halo, multiple):
        for core_x, window_x, total_x, n_x in options_x:
            area = window_y * window_x
            key = (area > budget, total_y * total_x if area <= budget else area, n_y * n_x)
            if best is None or key < best[0]:
                best = (key, (core_y, core_x))
    return best[1]


def _computed_pixels(plans) -> float:
    """Window pixels a plan computes per image pixel (1.0 = no tiling overhead)."""
    plan_y, plan_x = plans
    length_y, length_x = plan_y.spans[-1][1], plan_x.spans[-1][1]
    return sum(plan_y.lengths) * sum(plan_x.lengths) / (length_y * length_x)


# --- memory ----------------------------------------------------------------------------------


class _PeakTensorBytes(TorchDispatchMode):
    """The peak bytes of live tensor storages created by the operations run under it."""

    def __init__(self):
        super().__init__()
        self.created: list[weakref.ref] = []
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in torch.utils._pytree.tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                self.created.append(weakref.ref(tensor))
        self.created = [ref for ref in self.created if ref() is not None]
        storages = {}  # views share a storage: count each once
        for ref in self.created:
            storage = ref().untyped_storage()
            storages[storage._cdata] = storage.nbytes()
        self.peak = max(self.peak, sum(storages.values()))
        return out


def _load_malloc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim  # glibc (Linux); elsewhere there is nothing to do
    except (OSError, AttributeError):
        return None


_malloc_trim = _load_malloc_trim()


def _release_freed_memory() -> None:
    """Return freed heap pages to the OS between batches.

    glibc keeps freed blocks below its (growing) mmap threshold in the heap, and windows of
    changing shapes fragment it, so without this the resident memory of a long tiled run grows
    well past its live arrays (measured: 4.1x instead of about 2.75x the input at 8192x8192).
    """
    if _malloc_trim is not None:
        _malloc_trim(0)


def _compile_problem(device: torch.device) -> str | None:
    """Why torch.compile cannot run on ``device`` here (None when it can)."""
    if device.type == "cpu":
        # Inductor's CPU backend builds C++ kernels with the compiler torch is configured to use
        compilers = [os.environ.get("CXX"), "g++", "clang++"]
        if not any(c and shutil.which(c) for c in compilers):
            return "its CPU backend needs a C++ compiler and none was found (Debian: apt install g++)"
        return None
    if device.type == "cuda":
        return None
    return f"compiled restoration is not supported on {device.type} devices here"


def _bf16_problem(device: torch.device) -> str | None:
    """Why bfloat16 would not help on ``device`` (None when it is supported natively)."""
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return None
        return f"the GPU {torch.cuda.get_device_name(device)} has no bfloat16 arithmetic"
    if device.type == "cpu":
        # Without AVX-512 BF16 or AMX the CPU emulates bfloat16, which is slower than float32.
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        if any(getattr(torch.cpu, check, lambda: False)() for check in checks):
            return None
        return "this CPU has no native bfloat16 arithmetic (AVX-512 BF16 or AMX)"
    return f"bfloat16 restoration is not supported on {device.type} devices here"


def _fold_batchnorm(network: nn.Module) -> nn.Module:
    """A copy of ``network`` with each BatchNorm2d that follows a convolution in an nn.Sequential
    folded into that convolution's weights and bias, and replaced by an Identity (so module
    indices stay put). Valid wherever BatchNorm uses its running statistics: deterministic
    passes and "dropout" sampling. It saves one pass over every feature map (8-10 % of a
    TA-GAN generator's time on a CPU); dropout masks are drawn as before, so seeded samples
    are unchanged up to float32 rounding.
    """
    network = copy.deepcopy(network)
    with torch.no_grad():
        for sequence in [m for m in network.modules() if isinstance(m, nn.Sequential)]:
            names = list(sequence._modules)
            for name, following in zip(names, names[1:]):
                conv, norm = sequence._modules[name], sequence._modules[following]
                if not (isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) and conv.groups == 1
                        and isinstance(norm, nn.BatchNorm2d) and norm.running_mean is not None):
                    continue
                scale = (norm.weight if norm.affine else torch.ones_like(norm.running_var)) / torch.sqrt(
                    norm.running_var + norm.eps)
                shift = (norm.bias if norm.affine else torch.zeros_like(scale)) - norm.running_mean * scale
                # output channels are dim 0 of a Conv2d weight and dim 1 of a ConvTranspose2d's
                shape = (-1, 1, 1, 1) if isinstance(conv, nn.Conv2d) else (1, -1, 1, 1)
                conv.weight.mul_(scale.view(shape))
                bias = conv.bias if conv.bias is not None else torch.zeros_like(scale)
                conv.bias = nn.Parameter(bias * scale + shift)
                sequence._modules[following] = nn.Identity()
    return network


class _Network(nn.Module):
    """Generator followed by the task network (when there is one), as one tiled unit."""

    def __init__(self, generator: nn.Module, task_network: nn.Module | None):
        super().__init__()
        self.generator = generator
        self.task_network = task_network

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        restored = self.generator(x)
        return restored, None if self.task_network is None else self.task_network(restored)


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
        self.normaliser = Normaliser.from_card(self.card)
        self.device = resolve_device(device)
        self.mc_mode = mc_mode
        self.precision = precision
        if precision == "bf16" and (problem := _bf16_problem(self.device)) is not None:
            raise NanoscopyError(
                f"bf16 precision needs native bfloat16 support, but {problem}; use precision fp32 (the default) "
                "or a device that has it (a CPU with AVX-512 BF16 or AMX, or a CUDA GPU of compute capability 8 or newer)."
            )
        self.dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        # Channels-last (NHWC) convolutions are faster on CPUs and GPUs (measured per family in
        # docs/performance.md); results agree with the NCHW ones to float32 rounding.
        self.memory_format = torch.channels_last if self.device.type in ("cpu", "cuda") else torch.contiguous_format
        network = _Network(self.package.generator, self.package.task_network)
        # "train" sampling normalises with batch statistics, which cannot be folded; either way
        # the package keeps its own (float32, unfolded) modules
        if mc_mode == "dropout":
            network = _fold_batchnorm(network)
        elif self.dtype != torch.float32:
            network = copy.deepcopy(network)
        self.network = network.to(self.device, dtype=self.dtype, memory_format=self.memory_format).eval()
        self.compiled = bool(compile)
        if self.compiled and (problem := _compile_problem(self.device)) is not None:
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
        self.task_names = list(self.card.task["outputs"]) if self.card.task else []
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
        normalised with its whole plane's statistics).
        """
        samples = check_samples(self.card.default_samples if samples is None else samples)
        seed = check_seed(seed)
        if normaliser is not None and (not normaliser.fitted or len(normaliser.affines) != self.in_channels):
            raise NanoscopyError(f"The normaliser given to restore() must be fitted to {self.in_channels} input "
                                 "channel(s); pass Normaliser.from_card(card).fit(plane) for this model.")
        frames, lead_shape = self._frames(image, channel_axis)
        factor = self._zoom_factor(pixel_size_nm)
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
        core = max(plans[0].core, plans[1].core)
        n_tiles = len(plans[0].starts) * len(plans[1].starts)
        total_steps = len(_batches(plans, passes, batch)) * len(frames)

        mean, std, sample_out, task_mean, task_sample_out = self._outputs(len(frames), (height, width), samples,
                                                                          keep_samples)
        in_place = model_shape == (height, width)

        done = 0

        def step() -> None:
            nonlocal done
            if should_cancel is not None and should_cancel():
                raise Cancelled("Restoration cancelled.")
            done += 1
            if progress is not None:
                progress(done, total_steps)

        with self._rng(seed):
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
                run = _FrameRun(self, _FrameSource(frame, fitted, model_shape), plans, passes, batch, keep_samples,
                                targets)
                run.run(step)
                if in_place:
                    self._finish_in_place(index, passes, fitted.output_affine, mean, std, sample_out, task_sample_out)
                else:
                    self._finish_resampled(index, run.accumulators, fitted, mean, std, sample_out, task_mean,
                                           task_sample_out)
                # a given normaliser may come from a larger image, of which this may be a flat block
                varying_input = normaliser is None and self.normaliser.depends_on_data(0)
                self._check_output(mean[index], None if task_mean is None else task_mean[index], index, varying_input)

        return self._result(
            lead_shape, mean, std, sample_out, task_mean, task_sample_out,
            dict(pixel_size_nm=pixel_size_nm, samples=samples, tile_size=core, batch_size=batch,
                 zoom=factor, seed=seed, stochastic_passes=passes, windows=n_tiles, precision=self.precision,
                 compiled=self.compiled,
                 computed_pixels=round(_computed_pixels(plans), 4)),
        )

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
        mean[index] = fitted.invert(_resize(accum.mean, shape))
        if std is not None:
            spread = accum.std if accum.passes > 1 else np.zeros_like(accum.mean)
            std[index] = _resize(spread, shape) * np.float32(abs(fitted.output_affine.scale))
        if sample_out is not None:
            for k in range(sample_out.shape[0]):
                sample_out[k, index] = fitted.invert(_resize(accum.sample(k), shape))
        if task_mean is not None:
            task_mean[index] = _resize(accum.task_mean, shape)
        if task_sample_out is not None:
            for k in range(task_sample_out.shape[0]):
                task_sample_out[k, index] = _resize(accum.task_sample(k), shape)

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
        planes = self.out_channels * (1 + (samples > 1) + kept) + len(self.task_names) * (1 + kept)
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

    def _zoom_factor(self, pixel_size_nm: float | None) -> float:
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
            while _computed_pixels(plans) > MAX_MEMORY_OVERHEAD and budget < hard_cap:
                budget = min(2 * budget, hard_cap)
                plans = self._auto_plans(model_shape, budget)
            allowance = max(allowance, budget * (item_bytes + tile_bytes))
        window_pixels = plans[0].window * plans[1].window
        fits = (allowance - window_pixels * tile_bytes) // (window_pixels * item_bytes)
        batch = int(max(1, min(MC_BATCH_PIXELS.get(self.device.type, 1 << 22) // window_pixels, fits)))
        return plans, batch

    def _auto_plans(self, model_shape, budget: int):
        cores = _auto_cores(model_shape, self.halo, self.size_multiple, budget)
        return self._plans(model_shape, cores, trim=True)

    def _plans(self, model_shape, cores, trim: bool):
        return tuple(_plan_axis(length, core, self.halo, BLEND_WIDTH, self.size_multiple, trim)
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
            counter = _PeakTensorBytes()
            mode = self.mc_mode if self.stochastic else None
            with torch.inference_mode(), sampling_mode(self.network, mode), self._rng(0), counter:
                self.network.forward(probe)  # not __call__: hooks on the network see only real windows
            self._probed_bytes = counter.peak / (side * side)
        return self._probed_bytes

    def _run(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
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
            samples=shaped(sample_out, single, leading=(sample_out.shape[0],)) if sample_out is not None else None,
            task=shaped(task_mean, False),
            task_samples=(
                shaped(task_sample_out, False, leading=(task_sample_out.shape[0],)) if task_sample_out is not None else None
            ),
            task_names=self.task_names,
        )
        if result.task is not None:
            thresholds = np.asarray(self.card.task["thresholds"], dtype=np.float32)[:, None, None]
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
            **parameters,
        }
        return result


class _FrameSource:
    """Normalised (and resampled) windows of one (C, Y, X) plane, extracted on demand.

    Without resampling no normalised copy of the whole plane is made: each window is cut
    from the raw data and normalised on its own, which keeps the peak memory near the
    size of the outputs.
    """

    def __init__(self, frame: np.ndarray, normaliser: Normaliser, model_shape: tuple[int, int]):
        self.normaliser = normaliser
        if frame.shape[-2:] != tuple(model_shape):
            self.data = _resize(normaliser.apply(frame), model_shape)
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
class _Accumulators:
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


class _FrameRun:
    """Runs every tile x sample of one plane in batches and blends them into accumulators."""

    def __init__(self, restorer: Restorer, source: _FrameSource, plans, passes: int, batch: int, keep_samples: bool,
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
        self.accumulators = _Accumulators(passes=passes, **arrays)

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
            for chunk in _batches(self.plans, self.passes, self.batch):
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
                restored, task = restorer._run(batch)
                restored = restored.float().cpu().contiguous().numpy()
                task = None if task is None else task.float().cpu().contiguous().numpy()
                for position, (tile, k) in enumerate(chunk):
                    outputs = pending.setdefault(tile, [])
                    outputs.append((k, restored[position], None if task is None else task[position]))
                    if len(outputs) == self.passes:
                        self._blend(tile, pending.pop(tile))
                del batch, restored, task, windows
                if tiled:
                    _release_freed_memory()

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


def _batches(plans, passes: int, batch: int) -> list[list[tuple[tuple[int, int], int]]]:
    """(tile, sample) jobs in forward-pass batches of at most ``batch`` windows of one shape.

    Tiles are ordered by window shape (trimmed edge windows differ from inner ones), so that
    batches stay full; every sample of a tile is in consecutive jobs.
    """
    plan_y, plan_x = plans
    tiles = [(iy, ix) for iy in range(len(plan_y.starts)) for ix in range(len(plan_x.starts))]
    tiles.sort(key=lambda tile: (plan_y.lengths[tile[0]], plan_x.lengths[tile[1]]))  # stable
    batches: list[list] = []
    current: list = []
    shape = None
    for tile in tiles:
        tile_shape = (plan_y.lengths[tile[0]], plan_x.lengths[tile[1]])
        for k in range(passes):
            if current and (len(current) == batch or tile_shape != shape):
                batches.append(current)
                current = []
            current.append((tile, k))
            shape = tile_shape
    if current:
        batches.append(current)
    return batches


def _sample_mean(arrays: list[np.ndarray]) -> np.ndarray:
    """The mean of same-shaped float32 arrays as a new float32 array."""
    total = arrays[0].astype(np.float32, copy=True)
    for array in arrays[1:]:
        total += array
    if len(arrays) > 1:
        total *= np.float32(1.0 / len(arrays))
    return total


def restore(image: np.ndarray, model: ModelPackage | str, device: str | None = "auto", precision: str = "fp32",
            compile: bool = False, **options) -> RestorationResult:
    """Restore ``image`` with ``model`` (a package, a path or a bundled name); see :class:`Restorer`
    for ``precision`` and ``compile``, and :meth:`Restorer.restore` for the options."""
    return Restorer(model, device=device, precision=precision, compile=compile).restore(image, **options)
