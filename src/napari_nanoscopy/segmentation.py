"""Segmentation of STED images into classes (F-actin rings, fibres) by a model that segments.

Two kinds of model segment:

- a segmenter-only model (a card with a ``segmenter`` section: the U-Nets of Lavoie-Cardinal et
  al. 2020) runs exactly as its authors ran it: their fixed input scaling, crops on a fixed grid
  from the top-left corner (zero-padded past the edge), overlapping predictions averaged, and
  a sigmoid or softmax of the scores;
- a package with a task network (``unet-live-factin``, a TA-GAN with its task network) runs
  its task network alone on the given STED image, normalised as the task network saw real STED
  in training (the card's ``normalization.target``), through the restoration engine's tiling;
  its outputs are mapped back to probabilities with ``task.target_normalization``.

A pixel gets the class whose probability passes its threshold (the card's); where several
pass, the most probable one. :meth:`Segmenter.probabilities_unit` is the same network as a
differentiable function of an image already in [0, 1], for use as a frozen task network or scorer.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import __version__
from .card import Fixed, NoNormalisation, SegmenterSection
from .errors import Cancelled, NanoscopyError, StepCounter
from .formats import load_model
from .inference import Restorer
from .limits import MAX_ZOOM, check_pixel_size
from .network_runtime import resolve_device
from .normalisation import Normaliser
from .packages import ModelCard, ModelPackage
from .tile_run import resize_planes

CROPS_PER_BATCH = 16  # 16 crops of 128x128 through the authors' U-Net: ~0.3 GB of activations


@dataclass(frozen=True)
class SegmentationResult:
    """``probabilities`` (float32, ``(*lead, K, Y, X)``: one map per class), ``labels`` (uint8,
    ``(*lead, Y, X)``: 0 = background, k = ``class_names[k-1]``), the classes' ``thresholds``
    (probabilities, from the card) and JSON-able ``provenance``."""

    probabilities: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    thresholds: tuple[float, ...]
    provenance: dict


def can_segment(card: ModelCard) -> bool:
    """Whether the model of ``card`` segments: a segmenter-only model, or one with a task network."""
    return card.segmenter is not None or (card.task is not None and card.task_network is not None)


def label_classes(probabilities: np.ndarray, thresholds) -> np.ndarray:
    """Labels (uint8, 0 = background, k = class k-1) of probabilities ``(..., K, Y, X)``: the most
    probable class among those whose probability passes its threshold."""
    limits = np.asarray(thresholds, dtype=np.float32)[:, None, None]
    passing = probabilities > limits
    best = np.argmax(np.where(passing, probabilities, -np.inf), axis=-3)
    return np.where(passing.any(axis=-3), best + 1, 0).astype(np.uint8)


class Segmenter:
    """Segments STED images with one model (a package, a path or a bundled name)."""

    def __init__(self, model: ModelPackage | str, device: str = "auto"):
        self.package = model if isinstance(model, ModelPackage) else load_model(model)
        self.card = self.package.card
        if not can_segment(self.card):
            raise NanoscopyError(
                f"The model '{self.card.name}' does not segment (it has neither a segmenter section nor a task "
                "network); choose one that does, such as unet-live-factin or an authors' U-Net folder (params.net)."
            )
        self.device = resolve_device(device)
        spec = self.card.segmenter
        self._engine = _CropAverage(self.package, spec, self.device) if spec is not None else \
            _TaskNetwork(self.package, self.device)
        self.class_names: tuple[str, ...] = self._engine.class_names
        self.thresholds: tuple[float, ...] = self._engine.thresholds

    def segment(self, image: np.ndarray, *, pixel_size_nm: float | None = None, tile_size: int | None = None,
                progress: Callable[[int, int], None] | None = None,
                should_cancel: Callable[[], bool] | None = None) -> SegmentationResult:
        """Segment a 2D image or a stack of them (leading axes kept). ``pixel_size_nm``: the image's
        pixel size; when it differs from the model's, the image is resampled to the model's and the
        results back. ``tile_size`` applies to task networks (a segmenter-only model uses its
        card's crops, which its results depend on). ``should_cancel`` is polled between batches."""
        image = _checked_image(image)
        if pixel_size_nm is not None:
            pixel_size_nm = check_pixel_size(pixel_size_nm)
        probabilities, tiling = self._engine.probabilities(image, pixel_size_nm, tile_size, progress, should_cancel)
        provenance = {
            "model": self.card.name, "family": self.card.family, "weights_sha256": self.card.weights_sha256,
            "classes": list(self.class_names), "thresholds": list(self.thresholds),
            "pixel_size_nm": pixel_size_nm, "model_pixel_size_nm": self.card.pixel_size_nm,
            "pixel_size_assumed": pixel_size_nm is None and self.card.pixel_size_nm is not None,
            "tiling": tiling, "device": str(self.device), "napari_nanoscopy": __version__, "torch": torch.__version__,
        }
        return SegmentationResult(probabilities=probabilities, labels=label_classes(probabilities, self.thresholds),
                                  class_names=self.class_names, thresholds=self.thresholds, provenance=provenance)

    def probabilities_unit(self, batch: torch.Tensor) -> torch.Tensor:
        """Differentiable probabilities ``(N, K, Y, X)`` of ``batch`` ``(N, 1, Y, X)``, an image already
        scaled to [0, 1] (the network's input range); sides are padded to the network's size multiple."""
        if batch.ndim != 4 or batch.shape[1] != 1:
            raise NanoscopyError(f"probabilities_unit takes a (N, 1, Y, X) batch, not shape {tuple(batch.shape)}.")
        return self._engine.unit(batch)


def segment(image: np.ndarray, model: ModelPackage | str, device: str = "auto", **options) -> SegmentationResult:
    """Segment ``image`` with ``model`` (a package, a path or a bundled name); see :meth:`Segmenter.segment`."""
    return Segmenter(model, device=device).segment(image, **options)


def _checked_image(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim < 2 or 0 in image.shape or not (np.issubdtype(image.dtype, np.integer)
                                                 or np.issubdtype(image.dtype, np.floating)):
        raise NanoscopyError(
            f"A segmentation takes a numeric image of at least two axes (Y, X), not a {image.dtype} array of shape "
            f"{image.shape}; give one STED image (or a stack of them)."
        )
    return image


def _zoom(pixel_size_nm: float | None, model_pixel_size_nm: float | None) -> float:
    """How much larger the image's pixels are than the model's (1 when either is unknown)."""
    if pixel_size_nm is None or model_pixel_size_nm is None or math.isclose(pixel_size_nm, model_pixel_size_nm, rel_tol=1e-3):
        return 1.0
    zoom = pixel_size_nm / model_pixel_size_nm
    if not 1 / MAX_ZOOM <= zoom <= MAX_ZOOM:
        raise NanoscopyError(
            f"The image's pixels ({pixel_size_nm:g} nm) are {max(zoom, 1 / zoom):.1f} times the model's "
            f"({model_pixel_size_nm:g} nm), beyond the {MAX_ZOOM:g}x this resamples; check the pixel size or use a "
            "model trained at a pixel size nearer the image's."
        )
    return zoom


def _pad_to(batch: torch.Tensor, multiple: int, mode: str) -> torch.Tensor:
    height, width = batch.shape[-2:]
    extra = (-width % multiple, -height % multiple)
    if not any(extra):
        return batch
    return F.pad(batch, (0, extra[0], 0, extra[1]), mode=mode)


class _CropAverage:
    """The authors' prediction of a segmenter-only model (see the module docstring)."""

    def __init__(self, package: ModelPackage, spec: SegmenterSection, device: torch.device):
        self.spec, self.device = spec, device
        self.pixel_size_nm = package.card.pixel_size_nm
        self.network = package.generator.to(device).eval()
        self.class_names, self.thresholds = spec.classes, spec.thresholds

    def scaled(self, plane: np.ndarray) -> np.ndarray:
        """One plane in the network's input range: the uint16 offset rule, then the fixed scaling."""
        spec = self.spec
        values = plane.astype(np.float32)
        if plane.dtype == np.uint16 and plane.min() != 0:  # stored with an offset (ImageJ c0 = -32768)
            values -= np.float32(spec.unsigned_offset)
        values /= np.float32(spec.factor * spec.maximum)
        return np.clip(values, *spec.clip)

    def probabilities(self, image, pixel_size_nm, tile_size, progress, should_cancel):
        planes = image.reshape(-1, *image.shape[-2:])
        zoom = _zoom(pixel_size_nm, self.pixel_size_nm)
        height, width = image.shape[-2:]
        model_shape = (max(1, round(height * zoom)), max(1, round(width * zoom)))
        starts = [range(0, side, self.spec.step) for side in model_shape]
        total = len(planes) * math.ceil(len(starts[0]) * len(starts[1]) / CROPS_PER_BATCH)
        steps = StepCounter(total, progress, should_cancel, "Segmentation")
        out = np.empty((len(planes), len(self.spec.classes), height, width), dtype=np.float32)
        for index, plane in enumerate(planes):
            scaled = resize_planes(self.scaled(plane)[None], model_shape)[0] if zoom != 1.0 else self.scaled(plane)
            result = self._plane(scaled, starts, steps)
            out[index] = resize_planes(result, (height, width)) if zoom != 1.0 else result
        tiling = {"method": "crop-and-average", "crop": self.spec.crop, "step": self.spec.step, "padding": "zeros",
                  "zoom": zoom, "input_scaling": {"maximum": self.spec.maximum, "factor": self.spec.factor,
                                                  "clip": list(self.spec.clip)}}
        return out.reshape(*image.shape[:-2], *out.shape[1:]), tiling

    def _plane(self, scaled: np.ndarray, starts, steps: StepCounter) -> np.ndarray:
        crop, step = self.spec.crop, self.spec.step
        rows, cols = starts
        padded_shape = (len(rows) * step + crop - step, len(cols) * step + crop - step)
        padded = np.zeros(padded_shape, dtype=np.float32)
        padded[: scaled.shape[0], : scaled.shape[1]] = scaled
        total = np.zeros((len(self.spec.classes), *padded_shape), dtype=np.float64)
        count = np.zeros(padded_shape, dtype=np.float64)
        corners = [(top, left) for top in rows for left in cols]
        for first in range(0, len(corners), CROPS_PER_BATCH):
            steps()
            chunk = corners[first:first + CROPS_PER_BATCH]
            crops = np.stack([padded[top:top + crop, left:left + crop] for top, left in chunk])[:, None]
            with torch.no_grad():
                scores = self.network(torch.from_numpy(crops).to(self.device))
                probabilities = self._activate(scores).cpu().numpy()
            for (top, left), values in zip(chunk, probabilities):
                total[:, top:top + crop, left:left + crop] += values
                count[top:top + crop, left:left + crop] += 1
        return (total / np.maximum(count, 1))[:, : scaled.shape[0], : scaled.shape[1]].astype(np.float32)

    def _activate(self, scores: torch.Tensor) -> torch.Tensor:
        values = torch.sigmoid(scores) if self.spec.activation == "sigmoid" else torch.softmax(scores, dim=1)
        return values[:, list(self.spec.class_channels)]

    def unit(self, batch: torch.Tensor) -> torch.Tensor:
        height, width = batch.shape[-2:]
        padded = _pad_to(batch.to(self.device, torch.float32), self.network.size_multiple, "constant")
        return self._activate(self.network(padded))[..., :height, :width]


class _PassThrough(nn.Module):
    """The identity in the generator's place, so the engine runs a task network on the image itself."""

    output_activation = "linear"
    dropout = 0.0
    size_multiple = 1
    receptive_radius = 0

    def __init__(self, channels: int):
        super().__init__()
        self.in_channels = self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class _TaskNetwork:
    """A package's task network run alone on the STED image (see the module docstring)."""

    def __init__(self, package: ModelPackage, device: torch.device):
        card = package.card
        self.target = card.normalization.extras.get("target") or card.input_normalizations()[0].to_dict()
        self.spec = Normaliser((self.target,)).inputs[0]
        self.clip = self.target.get("clip")
        scaling = card.task.target_normalization or {"mode": "fixed", "min": 0.0, "max": 1.0, "range": [-1.0, 1.0]}
        self.scaling = Fixed(min=scaling.get("min", 0.0), max=scaling.get("max", 1.0),
                             range=tuple(scaling.get("range", (-1.0, 1.0))))
        self.class_names = tuple(card.task.outputs)
        self.thresholds = tuple(float(t) for t in self._to_probability(np.asarray(card.task.thresholds, np.float64)))
        network = package.task_network
        # The engine sees the image already normalised, so the card's input normalisation and its
        # fingerprint of the generator's training inputs (confocal, for a TA-GAN) do not apply.
        runner_card = dataclasses.replace(
            card, input_channels=["STED"], output_channels=["STED"], domain=None,
            normalization={"input": NoNormalisation().to_dict(), "output": {"mode": "range", "range": [0.0, 1.0]}})
        runner = ModelPackage(card=runner_card, generator=_PassThrough(network.in_channels), task_network=network,
                              source=package.source)
        self.restorer = Restorer(runner, device=device)
        self.network = network

    def _to_probability(self, values):
        low, high = self.scaling.range
        return self.scaling.min + (values - low) * (self.scaling.max - self.scaling.min) / (high - low)

    def normalised(self, plane: np.ndarray) -> np.ndarray:
        values = Normaliser((self.spec,)).fit([plane]).apply([plane])[0]
        return np.clip(values, *self.clip) if self.clip else values

    def probabilities(self, image, pixel_size_nm, tile_size, progress, should_cancel):
        planes = image.reshape(-1, *image.shape[-2:])
        normalised = np.stack([self.normalised(plane) for plane in planes])
        try:
            result = self.restorer.restore(normalised, pixel_size_nm=pixel_size_nm, samples=1, tile_size=tile_size,
                                           progress=progress, should_cancel=should_cancel)
        except Cancelled:
            raise Cancelled("Segmentation cancelled.") from None
        probabilities = np.clip(self._to_probability(result.task), 0.0, 1.0).astype(np.float32)
        provenance = result.provenance
        tiling = {"method": "tiled task network", "tile_size": provenance["tile_size"], "windows": provenance["windows"],
                  "zoom": provenance["zoom"], "input_normalization": self.target}
        return probabilities.reshape(*image.shape[:-2], *probabilities.shape[-3:]), tiling

    def unit(self, batch: torch.Tensor) -> torch.Tensor:
        low, high = self.spec.range
        height, width = batch.shape[-2:]
        device = next(self.network.parameters()).device
        padded = _pad_to(low + batch.to(device, torch.float32) * (high - low), self.network.size_multiple, "replicate")
        return self._to_probability(self.network(padded)[..., :height, :width]).clamp(0.0, 1.0)


__all__ = ["SegmentationResult", "Segmenter", "can_segment", "label_classes", "segment"]
