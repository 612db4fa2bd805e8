"""Typed training settings: each family's paper defaults, its loss settings, the task options
and the run's :class:`TrainingConfig`, validated when they are built, before any data is read.

The command line's options and the Train widget's choices and ranges are derived from here
(:func:`command_line_options`, :func:`bounds`, :func:`family_settings`). No PyTorch at import:
the command line reads this module to build its parser; the checks that need the model code
import it when a config is built.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import KW_ONLY, MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar

from ..errors import NanoscopyError
from ..limits import MAX_SEED, check_int

# Bounds of the training numbers, far above any recipe here (3000-9000 steps, 64-256 px patches,
# batches of 1-16): beyond them a value is a typo that would train for months or exhaust memory.
MAX_STEPS = 10_000_000
MAX_PATCH = 4096
MAX_BATCH = 1024


# --- loss settings, one type per loss ------------------------------------------------------


@dataclass(frozen=True)
class LossSettings:
    """A family's loss settings; ``WEIGHTS`` names the fields that are non-negative weights."""

    WEIGHTS: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        for name in self.WEIGHTS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise NanoscopyError(f"The loss weight {name!r} must be a non-negative number, not {value!r}.")
            object.__setattr__(self, name, float(value))

    def merged(self, family: str, given: Mapping[str, Any] | LossSettings | None) -> LossSettings:
        """These defaults with the ``given`` settings (a mapping, as the Python API takes them) applied."""
        if isinstance(given, LossSettings):
            given = asdict(given)
        given = dict(given or {})
        names = [item.name for item in fields(self)]
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise NanoscopyError(
                f"The {family} loss has no setting {', '.join(map(repr, unknown))}; its settings are: {', '.join(names)}."
            )
        return replace(self, **given)

    def as_dict(self) -> dict[str, Any]:
        """The settings as the card and the checkpoint record them."""
        return asdict(self)


@dataclass(frozen=True)
class TaskWeightLoss(LossSettings):
    """TA-GAN: GAN loss + ``task_weight`` x the task network's MSE on the generated image."""

    WEIGHTS: ClassVar[tuple[str, ...]] = ("task_weight",)
    task_weight: float = 10.0


@dataclass(frozen=True)
class PixelWeightLoss(LossSettings):
    """pix2pix: GAN loss + ``pixel_weight`` x the pixel MSE."""

    WEIGHTS: ClassVar[tuple[str, ...]] = ("pixel_weight",)
    pixel_weight: float = 10.0


@dataclass(frozen=True)
class CycleLoss(LossSettings):
    """TA-CycleGAN: GAN loss each way + ``cycle_weight`` x the L1 of each cycle's reconstruction +
    ``task_weight`` x the MSE between the frozen task network's segmentations of real A and of its reconstruction."""

    WEIGHTS: ClassVar[tuple[str, ...]] = ("cycle_weight", "task_weight")
    cycle_weight: float = 10.0
    task_weight: float = 1.0


@dataclass(frozen=True)
class SegmentationLoss(LossSettings):
    """U-Net-Live: class-weighted MSE; ``class_weights`` (one per task output, checked once the
    data says how many) default to 1 each."""

    class_weights: list[float] | None = None


@dataclass(frozen=True)
class ClassifierGanLoss(LossSettings):
    """Wang et al. and TCAN: ``mse`` x MSE + ``ssim`` x the SSIM term + ``adversarial`` x the GAN loss."""

    WEIGHTS: ClassVar[tuple[str, ...]] = ("mse", "ssim", "adversarial")
    mse: float
    ssim: float
    adversarial: float


@dataclass(frozen=True)
class RestorationLoss(LossSettings):
    """label2label / CARE: ``kind`` "ms-ssim" (over 1, 3 or 5 ``scales``) or "l1"."""

    kind: str = "ms-ssim"
    scales: int = 3

    KINDS: ClassVar[tuple[str, ...]] = ("ms-ssim", "l1")
    SCALES: ClassVar[tuple[int, ...]] = (1, 3, 5)  # those losses.MS_SSIM_WEIGHTS has (a test keeps them equal)

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise NanoscopyError(f"The l2l loss kind must be 'ms-ssim' or 'l1', not {self.kind!r}.")
        if self.scales not in self.SCALES:
            raise NanoscopyError(f"The l2l MS-SSIM uses 1, 3 or 5 scales, not {self.scales!r}.")


# --- the families' paper defaults ----------------------------------------------------------


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
    loss: LossSettings
    lr_decay: bool  # pix2pix schedule: constant, then linear to 0 over the second half
    task_network: str | None  # default task network; None when the family has none
    input_name: str
    output_name: str


_TAGAN_PAPER = "Bouchard et al. 2023, Nat. Mach. Intell. (TA-GAN); pix2pix code base"
_TAGAN_OPTIMISER = dict(lr=2e-4, betas=(0.5, 0.999))
# In the order the command line and the widget list them.
FAMILIES: dict[str, FamilySettings] = {
    "tagan": FamilySettings(
        package_family="tagan", paper=_TAGAN_PAPER, patch=128, batch=1, **_TAGAN_OPTIMISER, lr_discriminator=2e-4,
        loss=TaskWeightLoss(), lr_decay=True, task_network="resnet6", input_name="confocal", output_name="STED",
    ),
    "tagan-live": FamilySettings(
        package_family="tagan-live", paper=_TAGAN_PAPER, patch=256, batch=1, **_TAGAN_OPTIMISER, lr_discriminator=2e-4,
        loss=TaskWeightLoss(), lr_decay=True, task_network="unet128", input_name="confocal", output_name="STED",
    ),
    "unet-live": FamilySettings(
        package_family="l2l", paper=_TAGAN_PAPER + ", U-Net-Live", patch=128, batch=1, **_TAGAN_OPTIMISER,
        lr_discriminator=None, loss=SegmentationLoss(), lr_decay=False, task_network="unet128",
        input_name="STED", output_name="STED",
    ),
    "tcan": FamilySettings(
        package_family="tcan", paper="Huang et al. 2023, PhotoniX (TCAN)", patch=256, batch=2, lr=1e-4, betas=(0.9, 0.999),
        lr_discriminator=5e-5, loss=ClassifierGanLoss(mse=1.0, ssim=1.0, adversarial=1.0), lr_decay=False,
        task_network=None, input_name="confocal", output_name="STED",
    ),
    "wang": FamilySettings(
        package_family="wang", paper="Wang et al. 2019, Nat. Methods", patch=64, batch=12, lr=1e-4, betas=(0.9, 0.999),
        lr_discriminator=1e-5, loss=ClassifierGanLoss(mse=10.0, ssim=0.0, adversarial=1.0), lr_decay=False,
        task_network=None, input_name="confocal", output_name="STED",
    ),
    "l2l": FamilySettings(
        package_family="l2l", paper="Kölln et al., J. Cell Sci. (label2label); CSBDeep/CARE settings", patch=128, batch=16,
        lr=4e-4, betas=(0.9, 0.999), lr_discriminator=None, loss=RestorationLoss(), lr_decay=False,
        task_network=None, input_name="input label", output_name="target label",
    ),
    "pix2pix": FamilySettings(
        package_family="tagan", paper=_TAGAN_PAPER + ", pix2pix baseline", patch=128, batch=1, **_TAGAN_OPTIMISER,
        lr_discriminator=2e-4, loss=PixelWeightLoss(), lr_decay=True, task_network=None,
        input_name="confocal", output_name="STED",
    ),
    # TA-CycleGAN (REFERENCE.md): 224-px patches, batch 1; its task network is always a frozen segmenting model.
    "tagan-cycle": FamilySettings(
        package_family="tagan", paper=_TAGAN_PAPER + ", TA-CycleGAN", patch=224, batch=1, **_TAGAN_OPTIMISER,
        lr_discriminator=2e-4, loss=CycleLoss(), lr_decay=True, task_network=None,
        input_name="domain A", output_name="domain B",
    ),
}
UNPAIRED_FAMILIES = ("tagan-cycle",)  # trained on two unpaired image folders (data_dir: domain A, domain_b)
TRAINING_FAMILIES = tuple(family for family in FAMILIES if family not in UNPAIRED_FAMILIES)  # on pairs
ALL_TRAINING_FAMILIES = TRAINING_FAMILIES + UNPAIRED_FAMILIES  # the train command's choices
FROZEN_TASK_FAMILIES = ("tagan", "tagan-live")  # whose generator a frozen segmenting model can score (on pairs)


def family_settings(family: str) -> FamilySettings:
    """The paper defaults of ``family``, or NanoscopyError naming the families."""
    if family not in FAMILIES:
        raise NanoscopyError(f"Unknown training family {family!r}; choose one of: {', '.join(TRAINING_FAMILIES)}.")
    return FAMILIES[family]


# --- the task network's options ------------------------------------------------------------


@dataclass(frozen=True)
class TaskOptions:
    """The task network of tagan, tagan-live and unet-live; None: not given (the family's default)."""

    network: str | None = None  # "resnet6" | "unet128"
    kwargs: dict[str, Any] | None = None  # its architecture
    pretrained: str | Path | None = None  # a package whose task network is used frozen
    outputs: list[str] | None = None  # output names
    thresholds: list[float] | None = None  # tanh scale
    invert: bool | None = None  # map high task values to -1

    @classmethod
    def from_dict(cls, options: Mapping[str, Any] | TaskOptions | None) -> TaskOptions | None:
        """The options of the Python API's ``task`` dict; None when none is given."""
        if isinstance(options, TaskOptions) or not options:
            return options or None
        names = [item.name for item in fields(cls)]
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise NanoscopyError(f"Unknown task option(s) {', '.join(map(repr, unknown))}; the options are: {', '.join(names)}.")
        return cls(**options)

    def given(self) -> set[str]:
        return {item.name for item in fields(self) if getattr(self, item.name) is not None}

    def __bool__(self) -> bool:
        return bool(self.given())


# --- the run's configuration ---------------------------------------------------------------


def _option(help: str, *, flag: str | None = None, bounds: tuple[int, int] | None = None, metavar: str | None = None,
            aliases: tuple[str, ...] = ()):
    """Field metadata: the command-line help (and flag, its aliases, metavar) and, for whole numbers, the bounds."""
    return {"help": help, "flag": flag, "bounds": bounds, "metavar": metavar, "aliases": aliases}


@dataclass(frozen=True)
class TrainingConfig:
    """Everything one training run needs, checked when built (``NanoscopyError`` says what to fix).

    ``patch``, ``batch``, ``lr`` and ``loss`` left out take the family's paper defaults
    (:func:`family_settings`); ``loss`` and ``task`` may be given as dicts, as the Python API
    takes them, and are kept as :class:`LossSettings` and :class:`TaskOptions`. See
    ``trainers.train`` for what each setting does.
    """

    family: str
    data_dir: str | Path = field(metadata=_option("dataset folder (tagan-cycle: the folder of domain A images)",
                                                  flag="--data", aliases=("--domain-a",)))
    out_path: str | Path = field(metadata=_option("model package folder (or .zip) to write", flag="--out"))
    _: KW_ONLY
    steps: int = field(metadata=_option("optimisation steps", bounds=(1, MAX_STEPS)))
    patch: int | None = field(default=None, metadata=_option("patch size in pixels (default: the family's)",
                                                             bounds=(1, MAX_PATCH)))
    batch: int | None = field(default=None, metadata=_option("batch size (default: the family's)", bounds=(1, MAX_BATCH)))
    device: str = field(default="auto", metadata=_option("auto (default), cpu, cuda, cuda:N or mps"))
    seed: int = field(default=0, metadata=_option("seed; the same seed gives the same model on a CPU",
                                                   bounds=(0, MAX_SEED)))
    resume: bool = field(default=False, metadata=_option("continue from the checkpoint beside --out"))
    init_from: str | Path | None = field(default=None, metadata=_option(
        "fine-tune MODEL (a bundled model name, package folder or .zip of the same family): the "
        "networks take its architecture and start from its weights", metavar="MODEL"))
    task_network: str | Path | None = field(default=None, metadata=_option(
        "tagan and tagan-live: train the generator against this frozen segmenting MODEL's segmentation of the real "
        "STED (an authors' U-Net folder, unet-live-factin, a TA-GAN with its task network), as TA-GAN Live is "
        "trained, instead of training a task network on task/ masks; tagan-cycle (required): the segmenter of "
        "domain A whose segmentation the cycle keeps", metavar="MODEL"))
    domain_b: str | Path | None = field(default=None, metadata=_option(
        "tagan-cycle: the folder of domain B images (unpaired with domain A, unannotated)", metavar="DIR"))
    generator_kwargs: dict[str, Any] | None = None
    discriminator_kwargs: dict[str, Any] | None = None
    task: TaskOptions | Mapping[str, Any] | None = None
    loss: LossSettings | Mapping[str, Any] | None = None
    lr: float | None = None
    normalization: dict[str, Any] | None = None
    name: str | None = None
    description: str = ""
    checkpoint_every: int = field(default=500, metadata={"bounds": (1, None)})

    def __post_init__(self) -> None:
        settings = family_settings(self.family)
        defaults = {"patch": settings.patch, "batch": settings.batch}
        for name in ("steps", "patch", "batch", "checkpoint_every", "seed"):
            value = getattr(self, name)
            low, high = bounds(name)
            value = defaults[name] if value is None and name in defaults else value
            object.__setattr__(self, name, check_int(name, value, low, high))
        lr = settings.lr if self.lr is None else self.lr
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < 1:
            raise NanoscopyError(f"The learning rate must be a number between 0 and 1, not {lr!r}.")
        object.__setattr__(self, "lr", lr)
        object.__setattr__(self, "loss", settings.loss.merged(self.family, self.loss))
        task = TaskOptions.from_dict(self.task)
        if task and settings.task_network is None:
            raise NanoscopyError(f"The {self.family} family trains no task network; leave task empty.")
        object.__setattr__(self, "task", task)
        from ..models import check_arguments  # imports PyTorch

        check_arguments(settings.package_family, self.generator_kwargs, self.discriminator_kwargs)
        self._check_frozen_task_network()
        self._check_domains()
        object.__setattr__(self, "out_path", Path(self.out_path).expanduser())

    def _check_domains(self) -> None:
        """tagan-cycle needs its domain B folder and its frozen task network; the paired families take neither."""
        if self.family not in UNPAIRED_FAMILIES:
            if self.domain_b is not None:
                raise NanoscopyError(f"{self.family} trains on pairs in one folder; drop domain_b (--domain-b), "
                                     "which only tagan-cycle takes.")
            return
        if self.domain_b is None or not str(self.domain_b).strip():
            raise NanoscopyError(f"{self.family} translates between two image folders; give the domain B folder "
                                 "(domain_b, --domain-b DIR) beside the domain A one.")
        if self.task_network is None:
            raise NanoscopyError(f"{self.family} keeps a frozen task network's segmentation of domain A through the cycle; "
                                 "give task_network (--task-network MODEL), a model that segments domain A images.")

    def _check_frozen_task_network(self) -> None:
        if self.task_network is None:
            return
        if self.family not in FROZEN_TASK_FAMILIES + UNPAIRED_FAMILIES:
            raise NanoscopyError(
                f"A frozen task network scores the generator of {' and '.join(FROZEN_TASK_FAMILIES)}; {self.family} "
                "has none it scores, so drop task_network (--task-network)."
            )
        if self.task:
            raise NanoscopyError(
                f"task_network {self.task_network} replaces the task network and its options; drop the task options "
                f"({', '.join(sorted(self.task.given()))})."
            )
        if not str(self.task_network).strip():
            raise NanoscopyError("task_network is empty; give a segmenting model (a bundled name, package or folder).")

    @property
    def settings(self) -> FamilySettings:
        return FAMILIES[self.family]

    @classmethod
    def from_card(cls, card, out_path, *, data_dir=None, **changes) -> TrainingConfig:
        """The settings a model package (``card``, a ``ModelCard``) was trained with, to train it
        again (on ``data_dir``, by default the folder it records) into ``out_path``; ``changes``
        replace settings (a fine-tuned package records its start by name only: give ``init_from``)."""
        record = card.training or {}
        family = record.get("method")
        if family not in FAMILIES or "steps" not in record:
            raise NanoscopyError(
                f"The model {card.name!r} records no napari-nanoscopy training run; give the settings to train() instead."
            )
        rates = record["optimizer"]["learning_rates"]
        discriminator = {k: v for k, v in (record.get("discriminator") or {}).items() if k != "in_channels"}
        task = None
        if card.task_network is not None and (card.task is None or card.task.network != "pretrained, frozen"):
            task = {"network": card.task_network.kind, "kwargs": dict(card.task_network.kwargs)}
        elif record.get("task_network_source"):
            task = {"pretrained": record["task_network_source"]}
        if task is not None:
            task["outputs"] = list(card.task.outputs)
            if card.task.threshold_method == "given":
                task["thresholds"] = list(card.task.thresholds)
        spec = card.normalization.inputs[0].to_dict()
        settings = dict(
            steps=record["steps"], patch=record["patch"], batch=record["batch"], seed=record["seed"],
            generator_kwargs=None if family == "unet-live" else dict(card.generator.kwargs),
            discriminator_kwargs=discriminator or None, task=task, loss=record["loss"],
            task_network=(record.get("task_network") or {}).get("source"),
            domain_b=(record.get("domain_b") or {}).get("data_dir"),  # tagan-cycle's second folder
            lr=rates["task" if family == "unet-live" else "generator"],
            normalization={k: v for k, v in spec.items() if k != "range"},
        )
        return cls(family, record["data_dir"] if data_dir is None else data_dir, out_path, **{**settings, **changes})


def bounds(name: str) -> tuple[int, int | None]:
    """The (smallest, largest) value of the whole-number setting ``name`` (None: no largest)."""
    return next(item.metadata["bounds"] for item in fields(TrainingConfig) if item.name == name)


@dataclass(frozen=True)
class CommandLineOption:
    """One ``napari-nanoscopy train`` option, derived from a :class:`TrainingConfig` field."""

    name: str  # the field, and the parsed argument's name
    flag: str
    help: str
    kind: str  # "whole number" | "switch" | "text"
    default: Any
    required: bool
    metavar: str
    aliases: tuple[str, ...] = ()  # other flags for the same option


def command_line_options() -> list[CommandLineOption]:
    """The ``train`` command's options (after FAMILY), in the order its help lists them."""
    options = []
    for item in fields(TrainingConfig):
        if not item.metadata.get("help"):
            continue
        flag = item.metadata["flag"] or "--" + item.name.replace("_", "-")
        required = item.default is MISSING
        kind = "whole number" if item.metadata["bounds"] else "switch" if item.default is False else "text"
        options.append(CommandLineOption(
            name=item.name, flag=flag, help=item.metadata["help"], kind=kind,
            default=None if required else item.default, required=required,
            metavar=item.metadata["metavar"] or flag.lstrip("-").replace("-", "_").upper(),
            aliases=item.metadata.get("aliases", ()),
        ))
    return options
