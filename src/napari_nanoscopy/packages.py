"""Model packages: a folder (or a .zip of it) holding ``model.json`` and ``weights.safetensors``.

The card (``model.json``) carries everything a front end needs to apply a model correctly:
family and architecture, channel meaning, pixel size, normalisation, task outputs and their
binarisation thresholds, acquisition conditions, training provenance, metrics and the
sha256 of the weights. Weights never go through pickle: they are safetensors.

This module is napari-nanoscopy's own format only: :class:`ModelCard`, :class:`ModelPackage`,
reading a package folder and writing one. Which format a model source is in, and loading it
whatever it is (``load_model``), is :mod:`napari_nanoscopy.formats`; foreign formats are in
:mod:`napari_nanoscopy.interop`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import __version__
from .errors import NanoscopyError
from .io import read_json_object
from .limits import MAX_SAMPLES, PIXEL_SIZE_RANGE_NM
from .models import FAMILIES, TASK_NETWORKS, build_generator, build_task_network
from .safety import inside

CARD_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"
FORMAT_VERSION = 1
GENERATOR_PREFIX = "generator."
TASK_PREFIX = "task."

NORMALIZATION_MODES = ("percentile", "minmax", "meanstd", "fixed", "none")
OUTPUT_MODES = ("range", "input")
# A tanh generator sees and produces [-1, 1]; a linear one (CARE) works in [0, 1] units.
DEFAULT_INPUT_NORMALIZATION = {"mode": "percentile", "low": 1.0, "high": 99.8, "range": [-1.0, 1.0]}
DEFAULT_OUTPUT_NORMALIZATION = {"mode": "range", "range": [-1.0, 1.0]}


@dataclass
class ModelCard:
    """The contents of ``model.json``; see ``docs/model-packages.md`` for every field."""

    name: str
    family: str
    generator: dict[str, Any]
    input_channels: list[str]
    output_channels: list[str]
    pixel_size_nm: float | None
    normalization: dict[str, Any]
    description: str = ""
    task_network: dict[str, Any] | None = None
    task: dict[str, Any] | None = None
    default_samples: int = 1
    acquisition: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str = ""
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "name": self.name,
            "family": self.family,
            "description": self.description,
            "architecture": {"generator": self.generator, "task_network": self.task_network},
            "channels": {"input": self.input_channels, "output": self.output_channels},
            "pixel_size_nm": self.pixel_size_nm,
            "normalization": self.normalization,
            "task": self.task,
            "default_samples": self.default_samples,
            "acquisition": self.acquisition,
            "training": self.training,
            "metrics": self.metrics,
            "weights": {"file": WEIGHTS_FILE, "sha256": self.weights_sha256},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "model.json") -> "ModelCard":
        def need(mapping: dict, key: str, where: str):
            if not isinstance(mapping, dict) or key not in mapping:
                raise NanoscopyError(
                    f"The model card {source} has no '{where}{key}' entry; "
                    "re-export the model with napari-nanoscopy or add the field (see docs/model-packages.md)."
                )
            return mapping[key]

        def typed(value, kind: type, where: str, expected: str):
            if not isinstance(value, kind):
                raise NanoscopyError(
                    f"The model card {source} is malformed: {where} is {_shown(value)}, not {expected}; "
                    "fix model.json or re-export the package (see docs/model-packages.md)."
                )
            return value

        version = data.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise NanoscopyError(
                f"The model card {source} has format_version {version}, but this napari-nanoscopy "
                f"reads version {FORMAT_VERSION}; upgrade napari-nanoscopy or re-export the model."
            )
        architecture = need(data, "architecture", "")
        channels = need(data, "channels", "")
        weights = need(data, "weights", "")
        card = cls(
            name=str(need(data, "name", "")),
            family=str(need(data, "family", "")),
            generator=dict(typed(need(architecture, "generator", "architecture."), dict, "architecture.generator",
                                 "an object of the generator's arguments")),
            task_network=architecture.get("task_network"),
            input_channels=list(typed(need(channels, "input", "channels."), list, "channels.input", "a list of names")),
            output_channels=list(typed(need(channels, "output", "channels."), list, "channels.output", "a list of names")),
            pixel_size_nm=data.get("pixel_size_nm"),
            normalization=dict(typed(need(data, "normalization", ""), dict, "normalization", "an object")),
            description=str(data.get("description", "")),
            task=data.get("task"),
            default_samples=data.get("default_samples", 1),
            acquisition=dict(typed(data.get("acquisition") or {}, dict, "acquisition", "an object")),
            training=dict(typed(data.get("training") or {}, dict, "training", "an object")),
            metrics=dict(typed(data.get("metrics") or {}, dict, "metrics", "an object")),
            weights_sha256=str(need(weights, "sha256", "weights.")),
        )
        card.validate(source)
        if card.pixel_size_nm is not None:
            card.pixel_size_nm = float(card.pixel_size_nm)
        card.default_samples = int(card.default_samples)
        return card

    def validate(self, source: str = "model.json") -> None:
        """Check the card's own consistency, field types and ranges included (the network's sizes are
        checked when it is built, the weights when they are loaded)."""

        def fail(problem: str) -> None:
            raise NanoscopyError(
                f"The model card {source} is invalid: {problem}; the package is malformed, fix model.json "
                "or re-export it."
            )

        def number(where: str, value, low: float = -math.inf, high: float = math.inf) -> float:
            if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or not low <= value <= high:
                bounds = f" from {low:g} to {high:g}" if math.isfinite(low) and math.isfinite(high) else ""
                fail(f"{where} must be a finite number{bounds}, not {_shown(value)}")
            return float(value)

        def interval(where: str, value) -> None:  # a [low, high] pair of distinct finite numbers
            if not isinstance(value, (list, tuple)) or len(value) != 2:
                fail(f"{where} must be a list of two numbers, not {_shown(value)}")
            if number(f"{where}[0]", value[0]) == number(f"{where}[1]", value[1]):
                fail(f"{where} must hold two different numbers, not {_shown(value)}")

        def names(where: str, value) -> None:
            if not isinstance(value, (list, tuple)) or not all(isinstance(name, str) for name in value):
                fail(f"{where} must be a list of names, not {_shown(value)}")

        if self.family not in FAMILIES:
            fail(f"unknown family '{self.family}' (known: {', '.join(FAMILIES)})")
        if self.pixel_size_nm is not None:
            number("pixel_size_nm", self.pixel_size_nm, *PIXEL_SIZE_RANGE_NM)
        names("channels.input", self.input_channels)
        names("channels.output", self.output_channels)
        if not self.input_channels or not self.output_channels:
            fail("channels.input and channels.output must each name at least one channel")
        if not isinstance(self.normalization.get("input", {}), (dict, list)):
            fail(f"normalization.input must be an object or a list of them, not {_shown(self.normalization['input'])}")
        input_norms = self.input_normalizations()
        if len(input_norms) != len(self.input_channels):
            fail(
                f"normalization.input lists {len(input_norms)} channels but channels.input has "
                f"{len(self.input_channels)}"
            )
        for index, norm in enumerate(input_norms):
            where = "normalization.input" + (f"[{index}]" if isinstance(self.normalization.get("input"), list) else "")
            if not isinstance(norm, dict):
                fail(f"{where} must be an object, not {_shown(norm)}")
            mode = norm.get("mode")
            if mode not in NORMALIZATION_MODES:
                fail(f"normalization mode '{mode}' is not one of {', '.join(NORMALIZATION_MODES)}")
            if mode == "percentile":
                low = number(f"{where}.low", norm.get("low", 1.0), 0.0, 100.0)
                if not low < number(f"{where}.high", norm.get("high", 99.8), 0.0, 100.0):
                    fail(f"{where}.low ({low:g}) must be below {where}.high ({norm.get('high', 99.8)!r})")
            elif mode == "fixed":
                if not number(f"{where}.min", norm.get("min")) < number(f"{where}.max", norm.get("max")):
                    fail(f"{where}.min must be below {where}.max, not {norm.get('min')!r} and {norm.get('max')!r}")
            elif mode == "meanstd":
                number(f"{where}.eps", norm.get("eps", 0.0), 0.0)
            if mode != "none":
                interval(f"{where}.range", norm.get("range", [-1.0, 1.0]))
        output = self.output_normalization()
        if not isinstance(output, dict):
            fail(f"normalization.output must be an object, not {_shown(output)}")
        if output.get("mode") not in OUTPUT_MODES:
            fail(f"normalization.output mode '{output.get('mode')}' is not one of {', '.join(OUTPUT_MODES)}")
        interval("normalization.output.range", output.get("range", [-1.0, 1.0]))
        if (isinstance(self.default_samples, bool) or not isinstance(self.default_samples, Integral)
                or not 1 <= self.default_samples <= MAX_SAMPLES):
            fail(f"default_samples must be a whole number from 1 to {MAX_SAMPLES}, not {_shown(self.default_samples)}")
        if self.task is not None:
            if not isinstance(self.task, dict):
                fail(f"task must be an object, not {_shown(self.task)}")
            if self.task_network is None:
                fail("it describes task outputs but no architecture.task_network")
            outputs = self.task.get("outputs") or []
            thresholds = self.task.get("thresholds") or []
            names("task.outputs", outputs)
            if not isinstance(thresholds, (list, tuple)):
                fail(f"task.thresholds must be a list of numbers, not {_shown(thresholds)}")
            for index, threshold in enumerate(thresholds):
                number(f"task.thresholds[{index}]", threshold)
            if not outputs or len(outputs) != len(thresholds):
                fail("task.outputs and task.thresholds must be non-empty lists of equal length")
        if self.task_network is not None:
            if not isinstance(self.task_network, dict) or not isinstance(self.task_network.get("kwargs", {}), dict):
                fail(f"architecture.task_network must be an object with a kind and kwargs, not {_shown(self.task_network)}")
            kind = self.task_network.get("kind")
            if kind not in TASK_NETWORKS:
                fail(f"unknown task network '{kind}' (known: {', '.join(TASK_NETWORKS)})")

    def input_normalizations(self) -> list[dict[str, Any]]:
        """One normalisation dict per input channel (a single dict applies to all channels)."""
        spec = self.normalization.get("input", DEFAULT_INPUT_NORMALIZATION)
        if isinstance(spec, dict):
            return [spec] * len(self.input_channels)
        return list(spec)

    def output_normalization(self) -> dict[str, Any]:
        return self.normalization.get("output", DEFAULT_OUTPUT_NORMALIZATION)

    def summary(self) -> str:
        pixel = f"{self.pixel_size_nm:g} nm" if self.pixel_size_nm else "any pixel size"
        task = f", task: {', '.join(self.task['outputs'])}" if self.task else ""
        return (
            f"{self.name} [{self.family}] {pixel}, in: {', '.join(self.input_channels)}, "
            f"out: {', '.join(self.output_channels)}{task}"
        )


@dataclass
class ModelPackage:
    """A loaded model: its card and ready-to-run torch modules (on the CPU, eval mode)."""

    card: ModelCard
    generator: torch.nn.Module
    task_network: torch.nn.Module | None
    source: str


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bundled_models_dir() -> Path:
    return Path(str(resources.files("napari_nanoscopy") / "bundled"))


def bundled_model_names() -> list[str]:
    folder = bundled_models_dir()
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / CARD_FILE).is_file())


def build_modules(card: ModelCard) -> tuple[torch.nn.Module, torch.nn.Module | None]:
    try:
        generator = build_generator(card.family, **card.generator)
        task_network = None
        if card.task_network is not None:
            task_network = build_task_network(card.task_network["kind"], **card.task_network.get("kwargs", {}))
    except NanoscopyError as error:  # a size out of range, a wrong type: say that the card is at fault
        raise NanoscopyError(
            f"The model card of '{card.name}' describes a network that cannot be built ({str(error).rstrip('.')}); "
            "the package is malformed, fix its architecture in model.json or re-export it."
        ) from None
    if len(card.input_channels) != generator.in_channels:
        raise NanoscopyError(
            f"The model card of '{card.name}' names {len(card.input_channels)} input channels but its "
            f"generator takes {generator.in_channels}; fix channels.input in model.json."
        )
    if len(card.output_channels) != generator.out_channels:
        raise NanoscopyError(
            f"The model card of '{card.name}' names {len(card.output_channels)} output channels but its "
            f"generator produces {generator.out_channels}; fix channels.output in model.json."
        )
    if task_network is not None and card.task is not None:
        if len(card.task["outputs"]) != task_network.out_channels:
            raise NanoscopyError(
                f"The model card of '{card.name}' names {len(card.task['outputs'])} task outputs but its "
                f"task network produces {task_network.out_channels}; fix task.outputs in model.json."
            )
    return generator, task_network


def split_state(tensors: dict[str, torch.Tensor], with_task: bool) -> tuple[dict, dict]:
    """A package's tensors split into the generator's and the task network's state dicts (their
    prefixes removed); a tensor of neither network is refused."""
    generator_state, task_state, unknown = {}, {}, []
    for key, value in tensors.items():
        if key.startswith(GENERATOR_PREFIX):
            generator_state[key[len(GENERATOR_PREFIX):]] = value
        elif with_task and key.startswith(TASK_PREFIX):
            task_state[key[len(TASK_PREFIX):]] = value
        else:
            unknown.append(key)
    if unknown:
        raise NanoscopyError(
            f"The weights hold tensors that belong to no network of this model ({_first(unknown)}); "
            "the weights file does not match model.json."
        )
    return generator_state, task_state


def _shown(value, limit: int = 60) -> str:
    """A field's value for a message: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _first(names: list[str], n: int = 3) -> str:
    shown = ", ".join(names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


def load_state(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str, source: str) -> None:
    """Load a state dict strictly, turning every mismatch into one clear sentence."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshaped = [
        f"{k} {tuple(state[k].shape)} instead of {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing tensors: {_first(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {_first(unexpected)}")
    if misshaped:
        problems.append(f"mis-shaped tensors: {_first(misshaped)}")
    if problems:
        raise NanoscopyError(
            f"The {what} weights in {source} do not fit the architecture in its card "
            f"({'; '.join(problems)}); the package is damaged or its model.json does not match."
        )
    module.load_state_dict(state, strict=True)


def read_card(folder: Path, source: str) -> ModelCard:
    """The card of the package folder ``folder``, checked, without loading the weights."""
    card_path = inside(folder, CARD_FILE, "model card")  # a link may not lead out of the package
    if not card_path.is_file():
        raise NanoscopyError(f"{source} holds no {CARD_FILE}; a model package is a folder or .zip with model.json and {WEIGHTS_FILE}.")
    data = read_json_object(card_path, f"The {CARD_FILE} in {source}", "fix or re-export the package")
    return ModelCard.from_dict(data, source=f"{source}/{CARD_FILE}")


def load_package_folder(folder: Path, source: str) -> ModelPackage:
    """The package in ``folder`` (``source`` names it in messages), its weights checked against the card."""
    card = read_card(folder, source)
    weights_path = inside(folder, WEIGHTS_FILE, "weights file")
    if not weights_path.is_file():
        raise NanoscopyError(f"{source} holds no {WEIGHTS_FILE}; the package is incomplete, re-export it.")
    actual = sha256_of(weights_path)
    if actual != card.weights_sha256:
        raise NanoscopyError(
            f"The weights in {source} have sha256 {actual[:12]}… but the card expects "
            f"{card.weights_sha256[:12]}…; the file was changed or damaged, re-export or re-download the package."
        )
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as error:
        raise NanoscopyError(f"The weights file in {source} cannot be read as safetensors ({error}).") from None
    generator, task_network = build_modules(card)
    generator_state, task_state = split_state(tensors, with_task=task_network is not None)
    load_state(generator, generator_state, "generator", source)
    if task_network is not None:
        load_state(task_network, task_state, "task network", source)
        task_network.eval()
    generator.eval()
    return ModelPackage(card=card, generator=generator, task_network=task_network, source=source)


def package_state(generator: torch.nn.Module, task_network: torch.nn.Module | None) -> dict[str, torch.Tensor]:
    tensors = {GENERATOR_PREFIX + k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    if task_network is not None:
        tensors.update({TASK_PREFIX + k: v.detach().cpu().contiguous() for k, v in task_network.state_dict().items()})
    return tensors


@contextmanager
def staged_output(target: Path) -> Iterator[Path]:
    """A staging folder beside ``target`` to write a package into. When the block ends without
    an error, the folder (zipped, when ``target`` ends in .zip) replaces ``target``; otherwise,
    and in any case afterwards, nothing of the staging is left, so a failed write leaves no
    partial package."""
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    partial_zip = Path(f"{staging}.zip.partial")
    try:
        yield staging
        if target.suffix.lower() == ".zip":
            with zipfile.ZipFile(partial_zip, "w", zipfile.ZIP_DEFLATED) as archive:
                for item in sorted(staging.iterdir()):
                    archive.write(item, arcname=item.name)
            finished = partial_zip
        else:
            finished = staging
        if target.exists():
            (shutil.rmtree if target.is_dir() else os.remove)(target)
        os.replace(finished, target)
    finally:
        for leftover in (staging, partial_zip):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            elif leftover.exists():
                leftover.unlink()


def save_model(
    path: str | os.PathLike,
    card: ModelCard,
    generator: torch.nn.Module,
    task_network: torch.nn.Module | None = None,
    overwrite: bool = False,
) -> ModelCard:
    """Write a model package folder (or ``.zip``) atomically and return the card as written.

    Nothing appears at ``path`` until the package is complete; a failure leaves no partial package.
    """
    target = Path(path).expanduser()
    if target.exists() and not overwrite:
        raise NanoscopyError(f"{target} already exists; choose another path or pass overwrite=True.")
    if not target.parent.is_dir():
        raise NanoscopyError(f"The folder {target.parent} does not exist; create it first or choose another path.")
    card = copy.deepcopy(card)
    card.validate(str(target))
    build_modules(card)  # the card must describe these networks, or loading would fail later
    card.training.setdefault("napari_nanoscopy_version", __version__)
    card.training.setdefault("torch_version", torch.__version__)

    with staged_output(target) as staging:
        save_file(package_state(generator, task_network), str(staging / WEIGHTS_FILE))
        card.weights_sha256 = sha256_of(staging / WEIGHTS_FILE)
        (staging / CARD_FILE).write_text(json.dumps(card.to_dict(), indent=2) + "\n", encoding="utf-8")
        load_package_folder(staging, str(target))  # what we wrote must load back
    return card
