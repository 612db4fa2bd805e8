"""The training run of every family: ``train(TrainingConfig)``.

``train`` reads a paired folder (see ``datasets``), trains (the families' steps are in
``steps``, the task network in ``tasks``, the settings in ``config``), checkpoints, and writes a
model package whose card records how to apply the model (normalisation, channels, pixel size,
task thresholds) and how it was made. A run depends only on its settings and seed: on the CPU a
resumed run ends bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import Cancelled, NanoscopyError
from ..formats import load_model
from ..inference import has_dropout, resolve_device, sampling_mode
from ..models import build_discriminator, build_generator, build_task_network, paper_defaults
from ..fingerprint import training_fingerprint
from ..packages import ModelCard, save_model
from .checkpoints import CHECKPOINT_FILE, Checkpoint, checkpoint_folder, load_checkpoint, save_checkpoint
from .config import UNPAIRED_FAMILIES, TaskOptions, TrainingConfig, family_settings
from .datasets import PatchSampler, TrainingData, load_training_data, normalization_spec
from .losses import ssim_window_size
from .steps import (
    ClassifierGanTrainer,
    FamilyTrainer,
    RestorationTrainer,
    SegmentationTrainer,
    TaganTrainer,
    init_glorot,
    init_pix2pix,
)
from .tasks import CALIBRATION_IMAGES, calibrate_thresholds, frozen_segmenter_setup, task_setup

TANH_RANGE = (-1.0, 1.0)
UNIT_RANGE = (0.0, 1.0)
FINAL_LOSS_FRACTION = 10  # the card's final losses average the last 1/10 of the steps
# A U-Net-Live package is applied like any other: an exact identity "generator" (a one-level
# residual CARE U-Net whose output conv is zero, so it returns its input) then the segmentation net.
IDENTITY_GENERATOR = dict(
    in_channels=1, out_channels=1, base_filters=1, depth=1, kernel_size=1, convs_per_level=1, residual=True, dropout=0.0
)

ProgressCallback = Callable[[int, int, dict[str, float]], None]
_ABSENT = object()  # a setting the package does not record


def training_defaults(family: str) -> dict[str, Any]:
    """The defaults ``train`` uses for ``family`` (patch, batch, learning rates, loss settings...)."""
    return asdict(family_settings(family))


def identity_generator() -> nn.Module:
    generator = build_generator("l2l", **IDENTITY_GENERATOR)
    nn.init.zeros_(generator.final.weight)
    nn.init.zeros_(generator.final.bias)
    return generator


# --- settings checks -----------------------------------------------------------------------


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


def train(config: TrainingConfig | str, data_dir=None, out_path=None, *, callback: ProgressCallback | None = None,
          should_stop: Callable[[], bool] | None = None, **settings) -> ModelCard:
    """Run the training ``config`` describes and write its model package; return its card.

    ``config`` is a :class:`TrainingConfig`, or a family name followed by the config's other
    settings: ``train(family, data_dir, out_path, steps=..., ...)`` is
    ``train(TrainingConfig(family, data_dir, out_path, steps=..., ...))``. It trains ``family``
    (one of TRAINING_FAMILIES) on the pairs in ``data_dir`` and writes a model package to
    ``out_path`` (a folder, or a .zip).

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
    if not isinstance(config, TrainingConfig):
        config = TrainingConfig(config, data_dir, out_path, **settings)
    elif data_dir is not None or out_path is not None or settings:
        raise TypeError("train(config) takes every setting from the config; change them with dataclasses.replace.")
    out_path = config.out_path
    if out_path.exists():
        raise NanoscopyError(f"{out_path} already exists; choose another output path for the trained model.")
    if not out_path.parent.is_dir():
        raise NanoscopyError(f"The folder {out_path.parent} does not exist; create it first or choose another output path.")
    checkpoints = checkpoint_folder(out_path)
    if config.resume and not (checkpoints / CHECKPOINT_FILE).is_file():
        raise NanoscopyError(f"There is no checkpoint in {checkpoints} to resume; train with resume=False to start.")
    if not config.resume and checkpoints.exists():
        raise NanoscopyError(
            f"{checkpoints} holds the checkpoint of an earlier run; pass resume=True to continue it, "
            "or delete the folder to start again."
        )
    device = resolve_device(config.device)

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        if config.family in UNPAIRED_FAMILIES:
            from .cycle import CycleRun  # imports this module

            return CycleRun(config, device).execute(checkpoints, callback, should_stop)
        return TrainingRun(config, device).execute(checkpoints, callback, should_stop)


class TrainingRun:
    """One training run: networks, data and trainer built from the config (seeded by the caller)."""

    def __init__(self, config: TrainingConfig, device: torch.device):
        family, settings = config.family, config.settings
        self.config, self.family, self.settings = config, family, settings
        self.patch, self.batch, self.seed, self.device, self.loss = config.patch, config.batch, config.seed, device, config.loss
        # Fine-tuning: the networks take the architecture of the package the run starts from.
        init_from, task_options = config.init_from, config.task
        discriminator_kwargs = config.discriminator_kwargs
        self.source = self._starting_package(init_from) if init_from is not None else None
        self.task_from_source = False
        if self.source is not None:
            discriminator_kwargs = self._source_discriminator(discriminator_kwargs)
            if config.task_network is None:  # a frozen segmenting model replaces the source's task network
                task_options = self._source_task_options(task_options, init_from)
        self.task = (task_setup(family, settings, task_options) if config.task_network is None
                     else frozen_segmenter_setup(config.task_network, device))
        if self.task_from_source:  # the task maps are scaled as the source's task network learnt them
            self.task.scaling = (self.source.card.task or {}).get("target_normalization")

        self.generator_kwargs, self.generator, value_range = self._generator(config.generator_kwargs, init_from)
        self.value_range = value_range
        self.spec = normalization_spec(config.normalization, value_range)
        # Tanh networks cannot reach beyond [-1, 1]: a discriminator could tell real images by such values.
        self.target_clip = TANH_RANGE if value_range == TANH_RANGE else None

        why_task = (
            f"; {family} trains its task network on them (or give task={{'pretrained': PACKAGE}})"
            if family != "unet-live"
            else "; unet-live learns to segment the target images into these masks"
        )
        self.data: TrainingData = load_training_data(
            config.data_dir,
            normalization=self.spec,
            need_input=family != "unet-live",
            need_task=self.task is not None and self.task.trained,
            use_task=self.task is not None and self.task.in_package,
            input_channels=1 if family == "tagan-live" else (None if family == "unet-live" else self.generator.in_channels),
            target_channels=self.generator.out_channels,
            task_channels=self._task_channels(),
            invert_task=bool(task_options and task_options.invert),
            task_scaling=self.task.scaling if self.task is not None else None,
            why_task=why_task,
            unannotated_tasks=family == "unet-live",
        )
        if self.task is not None:
            self._complete_task()
        self._check_patch()
        self.lrs = self._learning_rates(config.lr)
        self.discriminator_kwargs, self.trainer = self._trainer(discriminator_kwargs)
        self.initialised_from = self._initialise_from_source() if self.source is not None else None
        for network in self.trainer.networks.values():
            network.to(device)
        self.sampler = PatchSampler(
            self.data, self.patch, self.batch, self.seed, target_clip=self.target_clip,
            live_spec=self.spec if family == "tagan-live" else None,
        )

    def _generator(self, given: dict[str, Any] | None, init_from) -> tuple[dict[str, Any], nn.Module, tuple[float, float]]:
        """The generator's architecture, the generator, and the value range it writes."""
        if self.family == "unet-live":
            if given:
                raise NanoscopyError("unet-live trains only a segmentation network; give its settings in task['kwargs'].")
            return dict(IDENTITY_GENERATOR), identity_generator(), TANH_RANGE
        defaults = paper_defaults(self.settings.package_family)
        if self.source is not None:
            kwargs = _agreeing_architecture(
                "generator", {**defaults, **self.source.card.generator.kwargs}, given, init_from, "generator_kwargs",
            )
        else:
            kwargs = {**defaults, **(given or {})}
        if self.family == "tagan-live" and kwargs["in_channels"] != 3:
            raise NanoscopyError("The tagan-live generator takes 3 channels (confocal, STED patch, patch mask); leave in_channels at 3.")
        generator = build_generator(self.settings.package_family, **kwargs)
        return kwargs, generator, TANH_RANGE if generator.output_activation == "tanh" else UNIT_RANGE

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

    def _source_task_options(self, options: TaskOptions | None, source) -> TaskOptions | None:
        """The task options of a fine-tuning run: the source's task network, kept frozen if it was frozen."""
        card = self.source.card
        options = options or TaskOptions()
        if self.settings.task_network is None or card.task_network is None or options.pretrained is not None:
            return options or None
        if card.task is not None and card.task.network == "pretrained, frozen":
            return replace(options, pretrained=source)
        if options.invert is not None:
            raise NanoscopyError(
                f"The task network of {source} brings its own task scaling; leave invert out of task to fine-tune it."
            )
        given = {**({"network": options.network} if options.network is not None else {}), **(options.kwargs or {})}
        architecture = _agreeing_architecture(
            "task network", {"network": card.task_network.kind, **card.task_network.kwargs}, given,
            source, "task",
        )
        self.task_from_source = True
        network = architecture.pop("network")
        outputs = options.outputs or (list(card.task.outputs) if card.task is not None else None)
        return replace(options, network=network, kwargs=architecture, outputs=outputs)

    def _initialise_from_source(self) -> dict[str, str]:
        """Start the generator (and a task network of the source's architecture) from the source's weights."""
        card = self.source.card
        if self.family != "unet-live":
            self.generator.load_state_dict(self.source.generator.state_dict())
        if self.task_from_source:
            self.task.network.load_state_dict(self.source.task_network.state_dict())
            if self.task.thresholds is None and not self.data.task_is_mask and card.task is not None:
                # continuous task maps have no mask to calibrate a threshold against: keep the source's
                self.task.thresholds = list(card.task.thresholds)
                self.task.threshold_method = f"{card.task.threshold_method} (kept from {card.name})"
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
            weights = self.loss.class_weights
            if weights is None:
                weights = [1.0] * count
            valid = isinstance(weights, (list, tuple)) and len(weights) == count
            if not valid or not all(isinstance(w, (int, float)) and w >= 0 for w in weights):
                raise NanoscopyError(
                    f"class_weights needs one non-negative weight per task output ({count}), not {weights!r}."
                )
            self.loss = replace(self.loss, class_weights=[float(w) for w in weights])

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
        if self.family == "l2l" and self.loss.kind == "ms-ssim":
            ssim_window_size(self.patch, self.loss.scales)
        if self.family in ("tcan", "wang") and self.loss.ssim > 0:
            ssim_window_size(self.patch)

    def _learning_rates(self, lr: float) -> dict[str, float]:
        lrs = {"generator" if self.family != "unet-live" else "task": lr}
        if self.settings.lr_discriminator is not None:
            # the paper's ratio, rounded so that the default rates read as the papers print them
            lrs["discriminator"] = float(f"{lr * self.settings.lr_discriminator / self.settings.lr:.12g}")
        if self.task is not None and self.task.trained and self.family != "unet-live":
            lrs["task"] = lr
        return lrs

    def _trainer(self, discriminator_kwargs) -> tuple[dict[str, Any] | None, FamilyTrainer]:
        family, settings, betas = self.family, self.settings, self.settings.betas
        if family == "unet-live":
            return None, SegmentationTrainer(self.task.network, self.loss.class_weights, self.lrs["task"], betas)
        if family == "l2l":
            init_glorot(self.generator)
            return None, RestorationTrainer(
                self.generator, self.loss.kind, self.loss.scales, self.lrs["generator"], betas
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
            weight = self.loss.pixel_weight if family == "pix2pix" else self.loss.task_weight
            return kwargs, TaganTrainer(self.generator, discriminator, self.task, weight, self.lrs, betas)
        if family == "wang":  # TensorFlow defaults; TCAN's PyTorch code keeps PyTorch's
            init_glorot(self.generator)
            init_glorot(discriminator)
        return kwargs, ClassifierGanTrainer(
            self.generator, discriminator, family == "tcan", self.loss, self.lrs, betas
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

    def checkpoint_settings(self) -> dict[str, Any]:
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
            "loss": self.loss.as_dict(),
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

    def execute(self, checkpoints: Path, callback, should_stop) -> ModelCard:
        steps, resume, checkpoint_every = self.config.steps, self.config.resume, self.config.checkpoint_every
        config = {**self.checkpoint_settings(), "steps": steps}
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
        return self.save(self._card(history, wall_before + session_time, steps_per_s))

    def save(self, card: ModelCard) -> ModelCard:
        """Write the package of the trained networks (the last step of ``execute``)."""
        card.domain = training_fingerprint(card, self.data.folder)  # the domain check's reference (docs/domain.md)
        task_network = self.task.network.cpu() if self.task is not None and self.task.in_package else None
        return save_model(self.config.out_path, card, self.generator.cpu(), task_network)

    def _card(self, history, wall_time_s, steps_per_s) -> ModelCard:
        settings, data, family, options = self.settings, self.data, self.family, self.config
        out_path, steps = options.out_path, options.steps
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
            "loss": self.loss.as_dict(),
            "final_losses": {key: float(np.mean(values[-window:])) for key, values in history.items()},
            "final_losses_over_steps": window,
            "discriminator": self.discriminator_kwargs,
            "initialised_from": self.initialised_from,
            "wall_time_s": round(wall_time_s, 3),
            "steps_per_s": None if steps_per_s is None else round(steps_per_s, 4),
            "resumed": options.resume,
            "device": str(self.device),
            "python_version": platform.python_version(),
            "numpy_version": np.__version__,
        }
        task_card, task_network_card = None, None
        if self.task is not None and not self.task.in_package:  # it scored the generator; the package lacks it
            training["task_network"] = self.task.frozen_model
        elif self.task is not None:
            task_card = self._task_card()
            task_network_card = {"kind": self.task.kind, "kwargs": self.task.kwargs}
            if self.task.source is not None:
                training["task_network_source"] = self.task.source
        stochastic = has_dropout(self.generator) or (task_network_card is not None and has_dropout(self.task.network))
        base_name = out_path.name[: -len(".zip")] if out_path.name.lower().endswith(".zip") else out_path.name
        return ModelCard(
            name=options.name or base_name,
            family=settings.package_family,
            generator=self.generator_kwargs,
            task_network=task_network_card,
            task=task_card,
            input_channels=input_names,
            output_channels=output_names,
            pixel_size_nm=data.pixel_size_nm,
            normalization=normalization,
            description=options.description or self._description(),
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
            thresholds = calibrate_thresholds(task.network, images, data.tasks, self.device)
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
