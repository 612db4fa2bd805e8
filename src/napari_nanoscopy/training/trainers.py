"""Training of every family, each with its paper's losses and optimiser settings.

``train`` reads a paired folder (see ``datasets``), trains, checkpoints, and writes a model
package whose card records how to apply the model (normalisation, channels, pixel size, task
thresholds) and how it was made. A run depends only on its settings and seed: on the CPU a
resumed run ends bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import Cancelled, NanoscopyError
from ..inference import has_dropout, resolve_device, sampling_mode
from ..limits import MAX_SEED
from ..models import build_discriminator, build_generator, build_task_network, paper_defaults
from ..models.blocks import check_int
from ..packages import ModelCard, load_model, save_model
from .checkpoints import CHECKPOINT_FILE, Checkpoint, checkpoint_folder, load_checkpoint, save_checkpoint
from .datasets import PatchSampler, TrainingData, load_training_data, normalization_spec
from .losses import (
    MS_SSIM_WEIGHTS,
    gan_loss,
    ms_ssim,
    relativistic_discriminator_loss,
    relativistic_generator_loss,
    ssim,
    ssim_window_size,
    wang_ssim_loss,
    weighted_mse,
)
from . import TRAINING_FAMILIES

TANH_RANGE = (-1.0, 1.0)
UNIT_RANGE = (0.0, 1.0)
# Dice-calibrated thresholds are searched on this grid of tanh outputs (the paper found -0.53).
THRESHOLD_CANDIDATES = np.round(np.arange(-0.95, 0.951, 0.05), 2)
CALIBRATION_IMAGES = 32
CALIBRATION_SIZE = 512
FINAL_LOSS_FRACTION = 10  # the card's final losses average the last 1/10 of the steps
# Bounds of the training numbers, far above any recipe here (3000-9000 steps, 64-256 px patches,
# batches of 1-16): beyond them a value is a typo that would train for months or exhaust memory.
MAX_STEPS = 10_000_000
MAX_PATCH = 4096
MAX_BATCH = 1024
# A U-Net-Live package is applied like any other: an exact identity "generator" (a one-level
# residual CARE U-Net whose output conv is zero, so it returns its input) then the segmentation net.
IDENTITY_GENERATOR = dict(
    in_channels=1, out_channels=1, base_filters=1, depth=1, kernel_size=1, convs_per_level=1, residual=True, dropout=0.0
)

ProgressCallback = Callable[[int, int, dict[str, float]], None]


@dataclass(frozen=True)
class FamilySettings:
    """A family's training defaults, from its paper (``paper`` says which)."""

    package_family: str  # the model family written into the package
    paper: str
    patch: int
    batch: int
    lr: float  # generator (U-Net-Live: segmentation network)
    lr_discriminator: float | None
    betas: tuple[float, float]
    loss: dict[str, Any]
    lr_decay: bool  # pix2pix schedule: constant, then linear to 0 over the second half
    task_network: str | None  # default task network; None when the family has none
    input_name: str
    output_name: str


_TAGAN_PAPER = "Bouchard et al. 2023, Nat. Mach. Intell. (TA-GAN); pix2pix code base"
_TAGAN_OPTIMISER = dict(lr=2e-4, betas=(0.5, 0.999))
SETTINGS = {
    "tagan": FamilySettings(
        package_family="tagan", paper=_TAGAN_PAPER, patch=128, batch=1, **_TAGAN_OPTIMISER, lr_discriminator=2e-4,
        loss={"task_weight": 10.0}, lr_decay=True, task_network="resnet6", input_name="confocal", output_name="STED",
    ),
    "tagan-live": FamilySettings(
        package_family="tagan-live", paper=_TAGAN_PAPER, patch=256, batch=1, **_TAGAN_OPTIMISER, lr_discriminator=2e-4,
        loss={"task_weight": 10.0}, lr_decay=True, task_network="unet128", input_name="confocal", output_name="STED",
    ),
    "pix2pix": FamilySettings(
        package_family="tagan", paper=_TAGAN_PAPER + ", pix2pix baseline", patch=128, batch=1, **_TAGAN_OPTIMISER,
        lr_discriminator=2e-4, loss={"pixel_weight": 10.0}, lr_decay=True, task_network=None,
        input_name="confocal", output_name="STED",
    ),
    "unet-live": FamilySettings(
        package_family="l2l", paper=_TAGAN_PAPER + ", U-Net-Live", patch=128, batch=1, **_TAGAN_OPTIMISER,
        lr_discriminator=None, loss={"class_weights": None}, lr_decay=False, task_network="unet128",
        input_name="STED", output_name="STED",
    ),
    "tcan": FamilySettings(
        package_family="tcan", paper="Huang et al. 2023, PhotoniX (TCAN)", patch=256, batch=2, lr=1e-4, betas=(0.9, 0.999),
        lr_discriminator=5e-5, loss={"mse": 1.0, "ssim": 1.0, "adversarial": 1.0}, lr_decay=False, task_network=None,
        input_name="confocal", output_name="STED",
    ),
    "wang": FamilySettings(
        package_family="wang", paper="Wang et al. 2019, Nat. Methods", patch=64, batch=12, lr=1e-4, betas=(0.9, 0.999),
        lr_discriminator=1e-5, loss={"mse": 10.0, "ssim": 0.0, "adversarial": 1.0}, lr_decay=False, task_network=None,
        input_name="confocal", output_name="STED",
    ),
    "l2l": FamilySettings(
        package_family="l2l", paper="Kölln et al., J. Cell Sci. (label2label); CSBDeep/CARE settings", patch=128, batch=16,
        lr=4e-4, betas=(0.9, 0.999), lr_discriminator=None, loss={"kind": "ms-ssim", "scales": 3}, lr_decay=False,
        task_network=None, input_name="input label", output_name="target label",
    ),
}
_TASK_OPTIONS = ("network", "kwargs", "pretrained", "outputs", "thresholds", "invert")
_ABSENT = object()  # a setting the package does not record


def training_defaults(family: str) -> dict[str, Any]:
    """The defaults ``train`` uses for ``family`` (patch, batch, learning rates, loss settings...)."""
    return asdict(_settings(family))


def _settings(family: str) -> FamilySettings:
    if family not in SETTINGS:
        raise NanoscopyError(f"Unknown training family {family!r}; choose one of: {', '.join(TRAINING_FAMILIES)}.")
    return SETTINGS[family]


# --- initialisation, as each paper's framework does it -------------------------------------


def init_pix2pix(module: nn.Module) -> None:
    """pix2pix 'normal' init (gain 0.02), used by the public TA-GAN code."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def init_glorot(module: nn.Module) -> None:
    """Keras/TensorFlow defaults (CARE, Wang et al.): Glorot-uniform kernels, zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def identity_generator() -> nn.Module:
    generator = build_generator("l2l", **IDENTITY_GENERATOR)
    nn.init.zeros_(generator.final.weight)
    nn.init.zeros_(generator.final.bias)
    return generator


def _set_requires_grad(module: nn.Module, flag: bool) -> None:
    for parameter in module.parameters():
        parameter.requires_grad_(flag)


# --- task networks -------------------------------------------------------------------------


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


def _task_setup(family: str, settings: FamilySettings, options: dict[str, Any] | None) -> TaskSetup | None:
    if settings.task_network is None:
        if options:
            raise NanoscopyError(f"The {family} family trains no task network; leave task empty.")
        return None
    options = dict(options or {})
    unknown = sorted(set(options) - set(_TASK_OPTIONS))
    if unknown:
        raise NanoscopyError(f"Unknown task option(s) {', '.join(map(repr, unknown))}; the options are: {', '.join(_TASK_OPTIONS)}.")
    thresholds = options.get("thresholds")
    pretrained = options.get("pretrained")
    if pretrained is not None:
        if family == "unet-live":
            raise NanoscopyError("unet-live trains its segmentation network itself; give no pretrained task network.")
        clashing = sorted({"network", "kwargs", "invert"} & set(options))
        if clashing:
            raise NanoscopyError(
                f"A pretrained task network brings its own architecture and task scaling; drop {', '.join(clashing)}."
            )
        package = load_model(pretrained)
        if package.task_network is None or package.card.task is None:
            raise NanoscopyError(f"The model {pretrained} has no task network; give a U-Net-Live or TA-GAN package that has one.")
        card = package.card
        return TaskSetup(
            kind=card.task_network["kind"],
            kwargs=dict(card.task_network.get("kwargs", {})),
            network=package.task_network,
            trained=False,
            outputs=options.get("outputs") or list(card.task["outputs"]),
            thresholds=thresholds or list(card.task["thresholds"]),
            threshold_method="given" if thresholds else f"from the pretrained package {pretrained}",
            scaling=card.task.get("target_normalization"),
            source=str(pretrained),
            pretrained_card=dict(card.task),
        )
    return TaskSetup(
        kind=options.get("network", settings.task_network),
        kwargs=dict(options.get("kwargs") or {}),
        network=None,
        trained=True,
        outputs=options.get("outputs"),
        thresholds=thresholds,
        threshold_method="given" if thresholds else None,
        scaling=None,
        source=None,
        pretrained_card=None,
    )


def calibrate_thresholds(network: nn.Module, images: list[np.ndarray], masks: list[np.ndarray], device: torch.device) -> list[float]:
    """Per task output, the threshold (tanh scale) with the best Dice against the masks.

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
            above = output[:, np.newaxis] > THRESHOLD_CANDIDATES[np.newaxis, :, np.newaxis, np.newaxis]
            intersections += (above & mask[:, np.newaxis]).sum(axis=(2, 3))
            predicted += above.sum(axis=(2, 3))
            positives += mask.sum(axis=(1, 2))
    dice = 2 * intersections / np.maximum(predicted + positives[:, np.newaxis], 1)
    best = THRESHOLD_CANDIDATES[dice.argmax(axis=1)]
    return [float(threshold) if positives[c] else 0.0 for c, threshold in enumerate(best)]


# --- the families' optimisation steps ------------------------------------------------------


class _Trainer:
    """Networks and optimisers of a family; subclasses add ``step(batch) -> losses``.

    ``networks`` and ``optimizers`` hold everything a checkpoint must save; ``base_lr`` the
    learning rate of each optimiser before any decay.
    """

    def __init__(self) -> None:
        self.networks: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.base_lr: dict[str, float] = {}

    def add_optimizer(self, name: str, module: nn.Module, lr: float, betas: tuple[float, float]) -> None:
        self.optimizers[name] = torch.optim.Adam(module.parameters(), lr=lr, betas=betas)
        self.base_lr[name] = lr

    def scale_learning_rates(self, factor: float) -> None:
        for name, optimizer in self.optimizers.items():
            for group in optimizer.param_groups:
                group["lr"] = self.base_lr[name] * factor


class TaganTrainer(_Trainer):
    """TA-GAN, TA-GAN-Live and the pix2pix baseline, in the public code's order per step:
    discriminator, generator, then (when it learns) the task network.

    D: vanilla GAN loss on (input, real) vs (input, generated), halved as in pix2pix.
    G: GAN loss + weight x generation loss, where the generation loss is the MSE between the
    task network's output on the generated image and the reference: the task ground truth
    when the data has it, else the frozen task network's output on the real image
    (TA-GAN-Live). Without a task network (pix2pix) it is the pixel MSE to the real image.
    Task network: MSE between its output on the real image and the ground truth.
    """

    def __init__(self, generator, discriminator, task: TaskSetup | None, weight: float, lrs: dict[str, float], betas):
        super().__init__()
        self.generator, self.discriminator, self.task, self.weight = generator, discriminator, task, weight
        self.networks.update(generator=generator, discriminator=discriminator)
        self.add_optimizer("generator", generator, lrs["generator"], betas)
        self.add_optimizer("discriminator", discriminator, lrs["discriminator"], betas)
        if task is not None:
            self.networks["task"] = task.network
            if task.trained:
                self.add_optimizer("task", task.network, lrs["task"], betas)
            else:
                task.network.eval()
                _set_requires_grad(task.network, False)

    def step(self, batch):
        x, y = batch["input"], batch["target"]
        fake = self.generator(x)

        _set_requires_grad(self.discriminator, True)
        self.optimizers["discriminator"].zero_grad(set_to_none=True)
        d_fake = gan_loss(self.discriminator(torch.cat([x, fake.detach()], 1)), real=False)
        d_real = gan_loss(self.discriminator(torch.cat([x, y], 1)), real=True)
        (0.5 * (d_fake + d_real)).backward()
        self.optimizers["discriminator"].step()

        _set_requires_grad(self.discriminator, False)
        if self.task is not None and self.task.trained:
            _set_requires_grad(self.task.network, False)
        self.optimizers["generator"].zero_grad(set_to_none=True)
        adversarial = gan_loss(self.discriminator(torch.cat([x, fake], 1)), real=True)
        generation = self._generation_loss(fake, batch)
        (adversarial + self.weight * generation).backward()
        self.optimizers["generator"].step()
        losses = {"d_real": d_real.item(), "d_fake": d_fake.item(), "g_adversarial": adversarial.item()}
        losses["g_task" if self.task is not None else "g_pixel"] = generation.item()

        if self.task is not None and self.task.trained:
            _set_requires_grad(self.task.network, True)
            self.optimizers["task"].zero_grad(set_to_none=True)
            task_loss = F.mse_loss(self.task.network(y), batch["task"])
            task_loss.backward()
            self.optimizers["task"].step()
            losses["task"] = task_loss.item()
        return losses

    def _generation_loss(self, fake: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.task is None:
            return F.mse_loss(fake, batch["target"])
        if "task" in batch:
            reference = batch["task"]
        else:
            with torch.no_grad():
                reference = self.task.network(batch["target"])
        return F.mse_loss(self.task.network(fake), reference)


class SegmentationTrainer(_Trainer):
    """U-Net-Live: the task network alone, on real STED images and their masks, with a
    class-weighted MSE (the paper weights fibres 2.5x)."""

    def __init__(self, network: nn.Module, class_weights: list[float], lr: float, betas):
        super().__init__()
        self.network, self.class_weights = network, class_weights
        self.networks["task"] = network
        self.add_optimizer("task", network, lr, betas)

    def step(self, batch):
        self.optimizers["task"].zero_grad(set_to_none=True)
        loss = weighted_mse(self.network(batch["target"]), batch["task"], self.class_weights)
        loss.backward()
        self.optimizers["task"].step()
        return {"segmentation": loss.item()}


class ClassifierGanTrainer(_Trainer):
    """Wang et al. 2019 and TCAN: an image-level discriminator; per step the generator is
    updated with the discriminator fixed, then the discriminator with the generator fixed.

    Wang: G = adversarial (-log D(G(x))) + mse x MSE + ssim x -log((1 + SSIM) / 2);
    D = -log D(y) - log(1 - D(G(x))).
    TCAN (relativistic): G = adversarial x BCE(D(G(x)) - D(y), 1) + mse x MSE + ssim x (1 - SSIM);
    D = (BCE(D(G(x)) - D(y), 0) + BCE(D(y) - D(G(x)), 1)) / 2.
    """

    def __init__(self, generator, discriminator, relativistic: bool, weights: dict[str, float], lrs, betas):
        super().__init__()
        self.generator, self.discriminator = generator, discriminator
        self.relativistic, self.weights = relativistic, weights
        self.networks.update(generator=generator, discriminator=discriminator)
        self.add_optimizer("generator", generator, lrs["generator"], betas)
        self.add_optimizer("discriminator", discriminator, lrs["discriminator"], betas)

    def step(self, batch):
        x, y = batch["input"], batch["target"]
        fake = self.generator(x)

        _set_requires_grad(self.discriminator, False)
        self.optimizers["generator"].zero_grad(set_to_none=True)
        fake_logits = self.discriminator(fake)
        if self.relativistic:
            adversarial = relativistic_generator_loss(fake_logits, self.discriminator(y).detach())
        else:
            adversarial = gan_loss(fake_logits, real=True)
        mse = F.mse_loss(fake, y)
        total = self.weights["adversarial"] * adversarial + self.weights["mse"] * mse
        losses = {"g_adversarial": adversarial.item(), "mse": mse.item()}
        if self.weights["ssim"] > 0:
            ssim_term = 1 - ssim(fake, y, data_range=1.0) if self.relativistic else wang_ssim_loss(fake, y, data_range=1.0)
            total = total + self.weights["ssim"] * ssim_term
            losses["ssim_term"] = ssim_term.item()
        total.backward()
        self.optimizers["generator"].step()

        _set_requires_grad(self.discriminator, True)
        self.optimizers["discriminator"].zero_grad(set_to_none=True)
        fake_logits, real_logits = self.discriminator(fake.detach()), self.discriminator(y)
        if self.relativistic:
            d_loss = relativistic_discriminator_loss(fake_logits, real_logits)
        else:
            d_loss = gan_loss(real_logits, real=True) + gan_loss(fake_logits, real=False)
        d_loss.backward()
        self.optimizers["discriminator"].step()
        losses["discriminator"] = d_loss.item()
        return losses


class RestorationTrainer(_Trainer):
    """label2label / CARE: the generator alone with L1 or an M-scale MS-SSIM loss, 1 - MS-SSIM
    with shifted per-scale terms (see ``ms_ssim``: plain terms can turn negative and stall it)."""

    def __init__(self, generator: nn.Module, kind: str, scales: int, lr: float, betas):
        super().__init__()
        self.generator, self.kind, self.scales = generator, kind, scales
        self.networks["generator"] = generator
        self.add_optimizer("generator", generator, lr, betas)

    def step(self, batch):
        self.optimizers["generator"].zero_grad(set_to_none=True)
        restored = self.generator(batch["input"])
        if self.kind == "l1":
            loss = F.l1_loss(restored, batch["target"])
        else:
            loss = 1 - ms_ssim(restored, batch["target"], data_range=1.0, scales=self.scales, shifted=True)
        loss.backward()
        self.optimizers["generator"].step()
        return {"l1" if self.kind == "l1" else "ms_ssim_loss": loss.item()}


# --- settings checks -----------------------------------------------------------------------


def _loss_settings(family: str, settings: FamilySettings, loss: dict[str, Any] | None) -> dict[str, Any]:
    merged = dict(settings.loss)
    unknown = sorted(set(loss or {}) - set(merged))
    if unknown:
        raise NanoscopyError(
            f"The {family} loss has no setting {', '.join(map(repr, unknown))}; its settings are: {', '.join(merged)}."
        )
    merged.update(loss or {})
    for key, value in merged.items():
        if key in ("kind", "scales", "class_weights"):
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise NanoscopyError(f"The loss weight {key!r} must be a non-negative number, not {value!r}.")
        merged[key] = float(value)
    if family == "l2l":
        if merged["kind"] not in ("ms-ssim", "l1"):
            raise NanoscopyError(f"The l2l loss kind must be 'ms-ssim' or 'l1', not {merged['kind']!r}.")
        if merged["scales"] not in MS_SSIM_WEIGHTS:
            raise NanoscopyError(f"The l2l MS-SSIM uses 1, 3 or 5 scales, not {merged['scales']!r}.")
    return merged


def _agreeing_architecture(what: str, package_kwargs: dict[str, Any], given: dict[str, Any] | None, source,
                           option: str) -> dict[str, Any]:
    """The architecture ``package_kwargs`` of the package a run starts from; values ``given``
    (in the ``option`` argument) must agree with it, since its weights need it."""
    differing = sorted(key for key, value in (given or {}).items() if package_kwargs.get(key, _ABSENT) != value)
    if differing:
        detail = ", ".join(f"{key} ({package_kwargs.get(key, 'unset')} in the package, {given[key]} given)"
                           for key in differing)
        raise NanoscopyError(
            f"The {what} of {source} differs from this run's in {detail}; fine-tuning keeps the package's "
            f"architecture, so leave {'it' if len(differing) == 1 else 'them'} out of {option}."
        )
    return dict(package_kwargs)


def _channel_names(names: list[str] | None, count: int, default: str) -> list[str]:
    if names and len(names) == count:
        return list(names)
    return [default] if count == 1 else [f"{default} {i + 1}" for i in range(count)]


# --- the run -------------------------------------------------------------------------------


def train(
    family: str,
    data_dir,
    out_path,
    *,
    steps: int,
    patch: int | None = None,
    batch: int | None = None,
    device: str = "auto",
    seed: int = 0,
    resume: bool = False,
    generator_kwargs: dict[str, Any] | None = None,
    discriminator_kwargs: dict[str, Any] | None = None,
    task: dict[str, Any] | None = None,
    loss: dict[str, Any] | None = None,
    lr: float | None = None,
    normalization: dict[str, Any] | None = None,
    name: str | None = None,
    description: str = "",
    callback: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    checkpoint_every: int = 500,
    init_from=None,
) -> ModelCard:
    """Train ``family`` (one of TRAINING_FAMILIES) on the pairs in ``data_dir`` and write a
    model package to ``out_path`` (a folder, or a .zip); return its card.

    ``patch``/``batch``/``lr`` default to the family's paper (``training_defaults``); ``lr``
    sets the generator's (U-Net-Live: the segmentation network's) learning rate, and the
    discriminator keeps the paper's ratio to it. ``generator_kwargs`` and
    ``discriminator_kwargs`` override the paper-size networks. ``task`` (tagan, tagan-live,
    unet-live): ``network`` ("resnet6" | "unet128"), ``kwargs``, ``pretrained`` (a package
    with a task network, frozen during training), ``outputs`` (names), ``thresholds``
    (tanh scale), ``invert`` (map high task values to -1). ``loss``: the family's loss
    settings (see ``training_defaults``). ``normalization``: how input and target images are
    normalised (default percentiles 1-99.8), mapped to the generator's range.

    ``callback(step, steps, losses)`` is called after every step; ``should_stop()`` is polled
    before every step, and when it returns True a checkpoint is written and
    :class:`Cancelled` raised. Checkpoints go to ``<out_path>.checkpoint/`` every
    ``checkpoint_every`` steps and at the end; ``resume=True`` continues from there with the
    same settings. ``init_from`` (a model package of the same family, e.g. a bundled model's
    name) fine-tunes it: the generator takes that package's architecture and starts from its
    weights instead of a random initialisation (transfer learning, as TCAN trains on beads
    first and then on microtubules); a task network it trained does the same (one it kept
    frozen stays frozen), and the discriminator, which starts fresh, takes the size the package
    was trained with unless ``discriminator_kwargs`` is given. ``generator_kwargs`` and the
    task's ``network``/``kwargs`` may repeat the package's values but not contradict them.
    """
    settings = _settings(family)
    steps = check_int("steps", steps, maximum=MAX_STEPS)
    patch = check_int("patch", settings.patch if patch is None else patch, maximum=MAX_PATCH)
    batch = check_int("batch", settings.batch if batch is None else batch, maximum=MAX_BATCH)
    checkpoint_every = check_int("checkpoint_every", checkpoint_every)
    seed = check_int("seed", seed, minimum=0, maximum=MAX_SEED)
    lr = settings.lr if lr is None else lr
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < 1:
        raise NanoscopyError(f"The learning rate must be a number between 0 and 1, not {lr!r}.")
    loss_settings = _loss_settings(family, settings, loss)

    out_path = Path(out_path).expanduser()
    if out_path.exists():
        raise NanoscopyError(f"{out_path} already exists; choose another output path for the trained model.")
    if not out_path.parent.is_dir():
        raise NanoscopyError(f"The folder {out_path.parent} does not exist; create it first or choose another output path.")
    checkpoints = checkpoint_folder(out_path)
    if resume and not (checkpoints / CHECKPOINT_FILE).is_file():
        raise NanoscopyError(f"There is no checkpoint in {checkpoints} to resume; train with resume=False to start.")
    if not resume and checkpoints.exists():
        raise NanoscopyError(
            f"{checkpoints} holds the checkpoint of an earlier run; pass resume=True to continue it, "
            "or delete the folder to start again."
        )
    device = resolve_device(device)

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        run = _Run(family, settings, data_dir, patch, batch, seed, device, lr, loss_settings,
                   generator_kwargs, discriminator_kwargs, task, normalization, init_from)
        return run.execute(out_path, checkpoints, steps, resume, name, description, callback, should_stop, checkpoint_every)


class _Run:
    """One training run: networks, data and trainer built from the settings (seeded by the caller)."""

    def __init__(self, family, settings: FamilySettings, data_dir, patch, batch, seed, device, lr, loss_settings,
                 generator_kwargs, discriminator_kwargs, task_options, normalization, init_from=None):
        self.family, self.settings, self.patch, self.batch, self.seed = family, settings, patch, batch, seed
        self.device, self.loss_settings = device, loss_settings
        # Fine-tuning: the networks take the architecture of the package the run starts from.
        self.source = self._starting_package(init_from) if init_from is not None else None
        self.task_from_source = False
        if self.source is not None:
            discriminator_kwargs = self._source_discriminator(discriminator_kwargs)
            task_options = self._source_task_options(task_options, init_from)
        self.task = _task_setup(family, settings, task_options)
        if self.task_from_source:  # the task maps are scaled as the source's task network learnt them
            self.task.scaling = (self.source.card.task or {}).get("target_normalization")

        if family == "unet-live":
            if generator_kwargs:
                raise NanoscopyError("unet-live trains only a segmentation network; give its settings in task['kwargs'].")
            self.generator_kwargs = dict(IDENTITY_GENERATOR)
            self.generator = identity_generator()
            value_range = TANH_RANGE
        else:
            defaults = paper_defaults(settings.package_family)
            if self.source is not None:
                self.generator_kwargs = _agreeing_architecture(
                    "generator", {**defaults, **self.source.card.generator}, generator_kwargs, init_from,
                    "generator_kwargs",
                )
            else:
                self.generator_kwargs = {**defaults, **(generator_kwargs or {})}
            if family == "tagan-live" and self.generator_kwargs["in_channels"] != 3:
                raise NanoscopyError("The tagan-live generator takes 3 channels (confocal, STED patch, patch mask); leave in_channels at 3.")
            self.generator = build_generator(settings.package_family, **self.generator_kwargs)
            value_range = TANH_RANGE if self.generator.output_activation == "tanh" else UNIT_RANGE
        self.value_range = value_range
        self.spec = normalization_spec(normalization, value_range)
        # Tanh networks cannot reach beyond [-1, 1]: a discriminator could tell real images by such values.
        self.target_clip = TANH_RANGE if value_range == TANH_RANGE else None

        why_task = (
            f"; {family} trains its task network on them (or give task={{'pretrained': PACKAGE}})"
            if family != "unet-live"
            else "; unet-live learns to segment the target images into these masks"
        )
        self.data: TrainingData = load_training_data(
            data_dir,
            normalization=self.spec,
            need_input=family != "unet-live",
            need_task=self.task is not None and self.task.trained,
            use_task=self.task is not None,
            input_channels=1 if family == "tagan-live" else (None if family == "unet-live" else self.generator.in_channels),
            target_channels=self.generator.out_channels,
            task_channels=self._task_channels(),
            invert_task=bool((task_options or {}).get("invert", False)),
            task_scaling=self.task.scaling if self.task is not None else None,
            why_task=why_task,
        )
        if self.task is not None:
            self._complete_task()
        self._check_patch()
        self.lrs = self._learning_rates(lr)
        self.discriminator_kwargs, self.trainer = self._trainer(discriminator_kwargs)
        self.initialised_from = self._initialise_from_source() if self.source is not None else None
        for network in self.trainer.networks.values():
            network.to(device)
        self.sampler = PatchSampler(
            self.data, patch, batch, seed, target_clip=self.target_clip,
            live_spec=self.spec if family == "tagan-live" else None,
        )

    def _starting_package(self, source):
        """The package ``init_from`` names, refused unless this family can start from it."""
        package = load_model(source)
        card = package.card
        segmenter = card.family == "l2l" and card.task_network is not None  # a U-Net-Live package
        if self.family == "unet-live" and not segmenter:
            raise NanoscopyError(
                f"init_from needs a U-Net-Live package for unet-live (one with a segmentation network); "
                f"{source} is a {card.family} package without one."
            )
        if self.family != "unet-live" and (card.family != self.settings.package_family or segmenter):
            raise NanoscopyError(
                f"init_from needs a {self.settings.package_family} package to start the generator from; "
                f"{source} is a {'U-Net-Live' if segmenter else card.family} package."
            )
        return package

    def _source_discriminator(self, given: dict[str, Any] | None) -> dict[str, Any] | None:
        """The discriminator size the source package was trained with, unless one is given (it starts fresh)."""
        if given is not None or self.settings.lr_discriminator is None:
            return given
        recorded = self.source.card.training.get("discriminator") or {}
        # in_channels follows from the generator; the trainer sets it
        return {key: value for key, value in recorded.items() if key != "in_channels"} or None

    def _source_task_options(self, options: dict[str, Any] | None, source) -> dict[str, Any] | None:
        """The task options of a fine-tuning run: the source's task network, kept frozen if it was frozen."""
        card = self.source.card
        options = dict(options or {})
        if self.settings.task_network is None or card.task_network is None or "pretrained" in options:
            return options or None
        if (card.task or {}).get("network") == "pretrained, frozen":
            return {**options, "pretrained": source}
        if "invert" in options:
            raise NanoscopyError(
                f"The task network of {source} brings its own task scaling; leave invert out of task to fine-tune it."
            )
        given = {**({"network": options["network"]} if "network" in options else {}), **(options.get("kwargs") or {})}
        architecture = _agreeing_architecture(
            "task network", {"network": card.task_network["kind"], **card.task_network.get("kwargs", {})}, given,
            source, "task",
        )
        self.task_from_source = True
        network = architecture.pop("network")
        outputs = options.get("outputs") or (card.task or {}).get("outputs")
        return {**options, "network": network, "kwargs": architecture, **({"outputs": outputs} if outputs else {})}

    def _initialise_from_source(self) -> dict[str, str]:
        """Start the generator (and a task network of the source's architecture) from the source's weights."""
        card = self.source.card
        if self.family != "unet-live":
            self.generator.load_state_dict(self.source.generator.state_dict())
        if self.task_from_source:
            self.task.network.load_state_dict(self.source.task_network.state_dict())
            task_card = card.task or {}
            if self.task.thresholds is None and not self.data.task_is_mask and task_card.get("thresholds"):
                # continuous task maps have no mask to calibrate a threshold against: keep the source's
                self.task.thresholds = list(task_card["thresholds"])
                self.task.threshold_method = f"{task_card.get('threshold_method')} (kept from {card.name})"
        return {"name": card.name, "weights_sha256": card.weights_sha256}

    def _task_channels(self) -> int | None:
        if self.task is None:
            return None
        if not self.task.trained:
            return self.task.network.out_channels
        return self.task.kwargs.get("out_channels")

    def _complete_task(self) -> None:
        task, data = self.task, self.data
        if task.trained:
            channels = data.tasks[0].shape[0]
            task.kwargs = {**task.kwargs, "out_channels": channels}
            task.network = build_task_network(task.kind, **task.kwargs)
            init_pix2pix(task.network)
        if data.tasks is not None:
            task.scaling = data.task_scaling
        count = task.network.out_channels
        if task.outputs is not None and len(task.outputs) != count:
            raise NanoscopyError(f"The task network has {count} output(s) but {len(task.outputs)} output names were given.")
        task.outputs = list(task.outputs or _channel_names(data.task_names, count, "task"))
        if task.thresholds is not None and len(task.thresholds) != count:
            raise NanoscopyError(f"The task network has {count} output(s) but {len(task.thresholds)} thresholds were given.")
        if task.network.in_channels != self.generator.out_channels:
            raise NanoscopyError(
                f"The task network reads {task.network.in_channels} channel(s) but the generator writes "
                f"{self.generator.out_channels}; give a task network that fits."
            )
        if self.family == "unet-live":
            weights = self.loss_settings["class_weights"]
            if weights is None:
                weights = [1.0] * count
            valid = isinstance(weights, (list, tuple)) and len(weights) == count
            if not valid or not all(isinstance(w, (int, float)) and w >= 0 for w in weights):
                raise NanoscopyError(
                    f"class_weights needs one non-negative weight per task output ({count}), not {weights!r}."
                )
            self.loss_settings["class_weights"] = [float(w) for w in weights]

    def _check_patch(self) -> None:
        multiple = self.generator.size_multiple
        if self.task is not None:
            multiple = math.lcm(multiple, self.task.network.size_multiple)
        if self.patch % multiple:
            raise NanoscopyError(
                f"The patch size must be a multiple of {multiple} for these networks, not {self.patch}; "
                f"try {max(multiple, self.patch // multiple * multiple)}."
            )
        smallest = self.data.smallest_size
        if self.patch > smallest:
            raise NanoscopyError(
                f"The patch size {self.patch} is larger than the smallest training image ({smallest} pixels a side); "
                "choose a smaller patch or larger images."
            )
        if self.family == "l2l" and self.loss_settings["kind"] == "ms-ssim":
            ssim_window_size(self.patch, self.loss_settings["scales"])
        if self.family in ("tcan", "wang") and self.loss_settings["ssim"] > 0:
            ssim_window_size(self.patch)

    def _learning_rates(self, lr: float) -> dict[str, float]:
        lrs = {"generator" if self.family != "unet-live" else "task": lr}
        if self.settings.lr_discriminator is not None:
            # the paper's ratio, rounded so that the default rates read as the papers print them
            lrs["discriminator"] = float(f"{lr * self.settings.lr_discriminator / self.settings.lr:.12g}")
        if self.task is not None and self.task.trained and self.family != "unet-live":
            lrs["task"] = lr
        return lrs

    def _trainer(self, discriminator_kwargs) -> tuple[dict[str, Any] | None, _Trainer]:
        family, settings, betas = self.family, self.settings, self.settings.betas
        if family == "unet-live":
            return None, SegmentationTrainer(self.task.network, self.loss_settings["class_weights"], self.lrs["task"], betas)
        if family == "l2l":
            init_glorot(self.generator)
            return None, RestorationTrainer(
                self.generator, self.loss_settings["kind"], self.loss_settings["scales"], self.lrs["generator"], betas
            )
        conditional = family in ("tagan", "tagan-live", "pix2pix")
        channels = self.generator.in_channels + self.generator.out_channels if conditional else self.generator.out_channels
        kwargs = {"in_channels": channels, **(discriminator_kwargs or {})}
        if kwargs["in_channels"] != channels:
            raise NanoscopyError(
                f"The {family} discriminator reads {channels} channel(s) here (set by the generator); "
                "leave in_channels out of discriminator_kwargs."
            )
        discriminator = build_discriminator(settings.package_family, **kwargs)
        self._check_discriminator_fits(discriminator, channels)
        if conditional:
            init_pix2pix(self.generator)
            init_pix2pix(discriminator)
            weight = self.loss_settings["task_weight" if family != "pix2pix" else "pixel_weight"]
            return kwargs, TaganTrainer(self.generator, discriminator, self.task, weight, self.lrs, betas)
        if family == "wang":  # TensorFlow defaults; TCAN's PyTorch code keeps PyTorch's
            init_glorot(self.generator)
            init_glorot(discriminator)
        return kwargs, ClassifierGanTrainer(
            self.generator, discriminator, family == "tcan", self.loss_settings, self.lrs, betas
        )

    def _check_discriminator_fits(self, discriminator: nn.Module, channels: int) -> None:
        """Refuse, before training, a patch the discriminator's downsampling cannot take."""
        probe = torch.zeros(1, channels, self.patch, self.patch)
        try:
            with torch.no_grad(), sampling_mode(discriminator, None):
                discriminator(probe)
        except RuntimeError:
            raise NanoscopyError(
                f"The patch size {self.patch} is too small for the {self.family} discriminator; use larger patches "
                "or a discriminator with fewer downsampling layers (discriminator_kwargs)."
            ) from None

    def config(self) -> dict[str, Any]:
        """The settings a resumed run must share with the run it continues."""
        task = self.task
        return {
            "family": self.family,
            "data_dir": str(self.data.folder.resolve()),
            "pairs": self.data.names,
            "patch": self.patch,
            "batch": self.batch,
            "seed": self.seed,
            "generator": self.generator_kwargs,
            "discriminator": self.discriminator_kwargs,
            "task": None if task is None else {"kind": task.kind, "kwargs": task.kwargs, "pretrained": task.source},
            "loss": self.loss_settings,
            "learning_rates": self.lrs,
            "normalization": self.spec,
            "initialised_from": self.initialised_from,
        }

    def lr_factor(self, step: int, steps: int) -> float:
        if not self.settings.lr_decay:
            return 1.0
        decay_start = steps // 2
        return 1.0 - max(0, step - decay_start) / (steps - decay_start + 1)

    def checkpoint(self, step: int, history: dict[str, list[float]], wall_time_s: float, config) -> Checkpoint:
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return Checkpoint(
            config=config,
            step=step,
            networks={name: {k: v.detach().cpu() for k, v in net.state_dict().items()} for name, net in self.trainer.networks.items()},
            optimizers={name: optimizer.state_dict() for name, optimizer in self.trainer.optimizers.items()},
            rng=rng,
            history=history,
            wall_time_s=wall_time_s,
        )

    def restore(self, checkpoint: Checkpoint) -> None:
        for name, network in self.trainer.networks.items():
            network.load_state_dict(checkpoint.networks[name])
        for name, optimizer in self.trainer.optimizers.items():
            optimizer.load_state_dict(checkpoint.optimizers[name])
        torch.set_rng_state(checkpoint.rng["torch"])
        if "cuda" in checkpoint.rng:
            torch.cuda.set_rng_state(checkpoint.rng["cuda"], self.device)

    def execute(self, out_path, checkpoints, steps, resume, name, description, callback, should_stop, checkpoint_every) -> ModelCard:
        config = {**self.config(), "steps": steps}
        first_step, history, wall_before = 0, {}, 0.0
        if resume:
            saved = load_checkpoint(checkpoints, config)
            self.restore(saved)
            first_step, history, wall_before = saved.step, saved.history, saved.wall_time_s
        started = time.perf_counter()

        def save(step: int) -> None:
            wall = wall_before + time.perf_counter() - started
            save_checkpoint(checkpoints, self.checkpoint(step, history, wall, config))

        for step in range(first_step, steps):
            if should_stop is not None and should_stop():
                save(step)
                raise Cancelled(
                    f"Training stopped after {step} of {steps} steps; the checkpoint in {checkpoints} continues it with resume=True."
                )
            self.trainer.scale_learning_rates(self.lr_factor(step, steps))
            losses = self.trainer.step(self.sampler.batch_at(step, self.device))
            bad = [key for key, value in losses.items() if not math.isfinite(value)]
            if bad:
                raise NanoscopyError(
                    f"Training diverged at step {step + 1}: the {bad[0]} loss is {losses[bad[0]]}; "
                    "lower the learning rate or check the training images."
                )
            for key, value in losses.items():
                history.setdefault(key, []).append(value)
            if callback is not None:
                callback(step + 1, steps, losses)
            if (step + 1) % checkpoint_every == 0 or step + 1 == steps:
                save(step + 1)
        session_time = time.perf_counter() - started
        steps_per_s = (steps - first_step) / session_time if steps > first_step else None
        card = self._card(out_path, name, description, steps, history, wall_before + session_time, steps_per_s, resume)
        generator = self.generator.cpu()
        task_network = self.task.network.cpu() if self.task is not None else None
        return save_model(out_path, card, generator, task_network)

    def _card(self, out_path, name, description, steps, history, wall_time_s, steps_per_s, resumed) -> ModelCard:
        settings, data, family = self.settings, self.data, self.family
        output_spec = {"mode": "input"} if family == "l2l" else {"mode": "range", "range": list(self.value_range)}
        target_spec = dict(self.spec)
        if self.target_clip is not None:
            target_spec["clip"] = list(self.target_clip)
        normalization: dict[str, Any] = {"input": self.spec, "output": output_spec, "target": target_spec}
        if family == "tagan-live":
            # The live pipeline prepares channels 1-2 with datasets.sted_patch_channels and "sted_patch".
            normalization["input"] = [self.spec, {"mode": "none"}, {"mode": "none"}]
            normalization["sted_patch"] = {**self.spec, "over": "the revealed STED pixels"}
        if family == "unet-live":
            input_names = _channel_names(data.target_names, 1, settings.input_name)
        elif family == "tagan-live":
            input_names = [*_channel_names(data.input_names, 1, settings.input_name), "STED patch", "patch mask"]
        else:
            input_names = _channel_names(data.input_names, self.generator.in_channels, settings.input_name)
        output_names = _channel_names(data.target_names, self.generator.out_channels, settings.output_name)

        window = max(1, steps // FINAL_LOSS_FRACTION)
        training = {
            "method": family,
            "paper": settings.paper,
            "data_dir": str(data.folder.resolve()),
            "dataset_kind": data.manifest.get("kind"),
            "n_pairs": len(data.names),
            "steps": steps,
            "patch": self.patch,
            "batch": self.batch,
            "seed": self.seed,
            "optimizer": {"name": "Adam", "betas": list(settings.betas), "learning_rates": self.lrs,
                          "schedule": "linear decay over the second half" if settings.lr_decay else "constant"},
            "loss": self.loss_settings,
            "final_losses": {key: float(np.mean(values[-window:])) for key, values in history.items()},
            "final_losses_over_steps": window,
            "discriminator": self.discriminator_kwargs,
            "initialised_from": self.initialised_from,
            "wall_time_s": round(wall_time_s, 3),
            "steps_per_s": None if steps_per_s is None else round(steps_per_s, 4),
            "resumed": resumed,
            "device": str(self.device),
            "python_version": platform.python_version(),
            "numpy_version": np.__version__,
        }
        task_card, task_network_card = None, None
        if self.task is not None:
            task_card = self._task_card()
            task_network_card = {"kind": self.task.kind, "kwargs": self.task.kwargs}
            if self.task.source is not None:
                training["task_network_source"] = self.task.source
        stochastic = has_dropout(self.generator) or (self.task is not None and has_dropout(self.task.network))
        base_name = out_path.name[: -len(".zip")] if out_path.name.lower().endswith(".zip") else out_path.name
        return ModelCard(
            name=name or base_name,
            family=settings.package_family,
            generator=self.generator_kwargs,
            task_network=task_network_card,
            task=task_card,
            input_channels=input_names,
            output_channels=output_names,
            pixel_size_nm=data.pixel_size_nm,
            normalization=normalization,
            description=description or self._description(),
            default_samples=10 if stochastic else 1,
            acquisition=dict(data.manifest.get("conditions") or {}),
            training=training,
            metrics={},
        )

    def _task_card(self) -> dict[str, Any]:
        task, data = self.task, self.data
        common = {"outputs": task.outputs, "target_normalization": task.scaling}
        if not task.trained:
            return {**task.pretrained_card, **common, "thresholds": [float(t) for t in task.thresholds],
                    "threshold_method": task.threshold_method, "network": "pretrained, frozen"}
        thresholds, method = task.thresholds, task.threshold_method
        if thresholds is None and data.task_is_mask:
            images = [np.clip(t, *TANH_RANGE) for t in data.targets]
            # The task network's positive class is the +1 side of the scaled masks.
            thresholds = calibrate_thresholds(task.network, images, [t > 0 for t in data.tasks], self.device)
            method = f"best Dice against the task masks of {min(len(images), CALIBRATION_IMAGES)} training images"
        elif thresholds is None:
            thresholds = [0.0] * task.network.out_channels
            method = "middle of the tanh range (continuous task maps have no mask to calibrate against)"
        return {
            "kind": "segmentation" if data.task_is_mask else "regression",
            **common,
            "thresholds": [float(t) for t in thresholds],
            "threshold_method": method,
            "network": "trained alone" if self.family == "unet-live" else "trained with the generator",
        }

    def _description(self) -> str:
        what = {
            "unet-live": "U-Net-Live segmentation of STED images (identity generator + segmentation network)",
            "pix2pix": "pix2pix baseline (TA-GAN architecture, pixel MSE)",
        }.get(self.family, f"{self.family} model")
        kind = self.data.manifest.get("kind")
        return f"{what} trained on {len(self.data.names)} pairs from {self.data.folder.name}" + (f" ({kind})" if kind else "") + "."
