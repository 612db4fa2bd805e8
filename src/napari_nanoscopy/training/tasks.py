"""The task (segmentation / localisation) network of a TA-GAN or U-Net-Live run: how it is
obtained (trained, or a pretrained package's, frozen) and how its thresholds are calibrated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import NanoscopyError
from ..formats import load_model
from ..inference import sampling_mode
from ..segmentation import Segmenter
from .config import FamilySettings, TaskOptions

# Dice-calibrated thresholds are searched on this grid of tanh outputs (the paper found -0.53).
THRESHOLD_CANDIDATES = np.round(np.arange(-0.95, 0.951, 0.05), 2)
CALIBRATION_IMAGES = 32
CALIBRATION_SIZE = 512


@dataclass
class TaskSetup:
    """The task (segmentation / localisation) network of a TA-GAN run and how it was obtained."""

    kind: str  # the task network: "resnet6" | "unet128"
    kwargs: dict[str, Any]
    network: nn.Module | None  # None until the data says how many task channels there are
    trained: bool  # False: pretrained and frozen
    outputs: list[str] | None
    thresholds: list[float] | None
    threshold_method: str | None
    scaling: dict[str, Any] | None  # raw task map -> tanh range, when known before reading the data
    source: str | None  # the pretrained package
    pretrained_card: dict[str, Any] | None  # the pretrained package's task description
    # A frozen segmenting model (``task_network=MODEL``): its record for the trained card. Such a
    # network only scores the generator in training; the package does not carry it.
    frozen_model: dict[str, Any] | None = None

    @property
    def in_package(self) -> bool:
        """Whether the trained package carries this task network (a frozen segmenting model it does not)."""
        return self.frozen_model is None


class FrozenSegmenter(nn.Module):
    """A segmenting model (:class:`~napari_nanoscopy.segmentation.Segmenter`) as a frozen task
    network: images on the tanh generators' [-1, 1] scale in, class probabilities out, differentiable.

    Its network is a submodule, so moving, freezing and checkpointing this module act on it.
    """

    size_multiple = 1  # probabilities_unit pads to its network's multiple itself
    in_channels = 1
    receptive_radius = 0  # not tiled: it scores whole training patches
    dropout = 0.0

    def __init__(self, segmenter):
        super().__init__()
        self.segmenter = segmenter
        package = segmenter.package
        # A segmenter-only model runs its generator slot; a package with a task network, that network.
        self.network = package.generator if package.card.segmenter is not None else package.task_network
        self.out_channels = len(segmenter.class_names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.segmenter.probabilities_unit((x + 1) / 2)


def frozen_segmenter_setup(model: str, device: torch.device) -> TaskSetup:
    """The task of a run whose generator is trained against a frozen segmenting ``model``'s
    segmentation of the real STED (TA-GAN Live's way), with the model's record for the card
    (the config has checked the family and that no other task options are given)."""
    segmenter = Segmenter(model, device=str(device))
    card = segmenter.card
    return TaskSetup(
        kind="frozen segmenter", kwargs={"weights_sha256": card.weights_sha256}, network=FrozenSegmenter(segmenter),
        trained=False, outputs=list(segmenter.class_names), thresholds=list(segmenter.thresholds),
        threshold_method=f"from the frozen task network {model}", scaling=None, source=str(model),
        pretrained_card=None,
        frozen_model={"source": str(model), "name": card.name, "family": card.family,
                      "weights_sha256": card.weights_sha256, "classes": list(segmenter.class_names),
                      "probability_thresholds": list(segmenter.thresholds), "card": card.to_dict()},
    )


def task_setup(family: str, settings: FamilySettings, options: TaskOptions | None) -> TaskSetup | None:
    if settings.task_network is None:  # the config refused task options for such a family
        return None
    options = options or TaskOptions()
    thresholds = options.thresholds
    pretrained = options.pretrained
    if pretrained is not None:
        if family == "unet-live":
            raise NanoscopyError("unet-live trains its segmentation network itself; give no pretrained task network.")
        clashing = sorted({"network", "kwargs", "invert"} & options.given())
        if clashing:
            raise NanoscopyError(
                f"A pretrained task network brings its own architecture and task scaling; drop {', '.join(clashing)}."
            )
        package = load_model(pretrained)
        if package.task_network is None or package.card.task is None:
            raise NanoscopyError(f"The model {pretrained} has no task network; give a U-Net-Live or TA-GAN package that has one.")
        card = package.card
        return TaskSetup(
            kind=card.task_network.kind,
            kwargs=dict(card.task_network.kwargs),
            network=package.task_network,
            trained=False,
            outputs=options.outputs or list(card.task.outputs),
            thresholds=thresholds or list(card.task.thresholds),
            threshold_method="given" if thresholds else f"from the pretrained package {pretrained}",
            scaling=card.task.get("target_normalization"),
            source=str(pretrained),
            pretrained_card=card.task.to_dict(),
        )
    return TaskSetup(
        kind=options.network or settings.task_network,
        kwargs=dict(options.kwargs or {}),
        network=None,
        trained=True,
        outputs=options.outputs,
        thresholds=thresholds,
        threshold_method="given" if thresholds else None,
        scaling=None,
        source=None,
        pretrained_card=None,
    )


def calibrate_thresholds(network: nn.Module, images: list[np.ndarray], masks: list[np.ndarray], device: torch.device) -> list[float]:
    """Per task output, the threshold (tanh scale) with the best Dice against the masks.

    ``masks`` are the scaled task masks (positive above 0; NaN where unannotated, left out).
    The paper's way for U-Net-Live (it found -0.53), here over the central crops (at most
    CALIBRATION_SIZE a side) of the first CALIBRATION_IMAGES (C, Y, X) images, each
    reflect-padded to the network's size multiple. An output whose masks are empty
    everywhere gets 0, the middle of the tanh range.
    """
    channels = masks[0].shape[0]
    intersections = np.zeros((channels, len(THRESHOLD_CANDIDATES)))
    predicted = np.zeros_like(intersections)
    positives = np.zeros(channels)
    multiple = network.size_multiple
    with torch.no_grad(), sampling_mode(network, None):
        for image, mask in zip(images[:CALIBRATION_IMAGES], masks[:CALIBRATION_IMAGES]):
            height, width = (min(size, CALIBRATION_SIZE) for size in image.shape[-2:])
            y0, x0 = (image.shape[-2] - height) // 2, (image.shape[-1] - width) // 2
            image, mask = image[:, y0:y0 + height, x0:x0 + width], mask[:, y0:y0 + height, x0:x0 + width]
            padded = np.pad(image, ((0, 0), (0, -height % multiple), (0, -width % multiple)), mode="reflect")
            output = network(torch.from_numpy(padded[np.newaxis]).to(device))[0, :, :height, :width].float().cpu().numpy()
            annotated = ~np.isnan(mask)
            above = (output[:, np.newaxis] > THRESHOLD_CANDIDATES[np.newaxis, :, np.newaxis, np.newaxis]) & annotated[:, np.newaxis]
            positive = mask > 0  # NaN compares False
            intersections += (above & positive[:, np.newaxis]).sum(axis=(2, 3))
            predicted += above.sum(axis=(2, 3))
            positives += positive.sum(axis=(1, 2))
    dice = 2 * intersections / np.maximum(predicted + positives[:, np.newaxis], 1)
    best = THRESHOLD_CANDIDATES[dice.argmax(axis=1)]
    return [float(threshold) if positives[c] else 0.0 for c, threshold in enumerate(best)]
