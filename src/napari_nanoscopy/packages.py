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
import os
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from numbers import Integral
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import __version__
from .card import (
    CycleSection,
    DomainFingerprint,
    GeneratorArchitecture,
    InputNormalisation,
    Normalisation,
    Section,
    SegmenterSection,
    Task,
    TaskNetworkArchitecture,
    card_problem,
    check_names,
    check_number,
    shown,
)
from .errors import NanoscopyError
from .io import read_json_object
from .outputs import StagedOutputs
from .limits import MAX_SAMPLES, PIXEL_SIZE_RANGE_NM
from .models import FAMILIES, SEGMENTER_FAMILIES
from .safety import inside

CARD_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"
FORMAT_VERSION = 1
GENERATOR_PREFIX = "generator."
TASK_PREFIX = "task."
REVERSE_PREFIX = "reverse_generator."  # a translation model's B -> A generator (card.cycle)


@dataclass
class ModelCard:
    """The contents of ``model.json``; see ``docs/model-packages.md`` for every field.

    ``generator``, ``normalization``, ``task``, ``task_network`` and ``segmenter`` are the typed
    sections of :mod:`napari_nanoscopy.card`; given as plain dicts (a card made in code), they are
    read into sections, and checked, when the card is made. A model of a segmenter family
    (``SEGMENTER_FAMILIES``) only segments: its ``segmenter`` section says how, and the
    restoration engine refuses it.
    """

    name: str
    family: str
    generator: GeneratorArchitecture
    input_channels: list[str]
    output_channels: list[str]
    pixel_size_nm: float | None
    normalization: Normalisation
    description: str = ""
    task_network: TaskNetworkArchitecture | None = None
    task: Task | None = None
    default_samples: int = 1
    acquisition: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str = ""
    format_version: int = FORMAT_VERSION
    segmenter: SegmenterSection | None = None
    domain: DomainFingerprint | None = None  # statistics of the training inputs (napari_nanoscopy.domain)
    cycle: CycleSection | None = None  # a translation model (TA-CycleGAN): its domains and B -> A generator

    def __post_init__(self) -> None:  # sections given as dicts (a card made in code) are read here
        fields = vars(self)
        fields.update(_read_sections(card_problem(CARD_FILE), fields))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "name": self.name,
            "family": self.family,
            "description": self.description,
            "architecture": {"generator": self.generator.to_dict(), "task_network": _json_of(self.task_network)},
            "channels": {"input": self.input_channels, "output": self.output_channels},
            "pixel_size_nm": self.pixel_size_nm,
            "normalization": self.normalization.to_dict(),
            "task": _json_of(self.task),
            "default_samples": self.default_samples,
            "acquisition": self.acquisition,
            "training": self.training,
            "metrics": self.metrics,
            "weights": {"file": WEIGHTS_FILE, "sha256": self.weights_sha256},
            # written only when present, so that the cards of other models stay as they were
            **({} if self.segmenter is None else {"segmenter": self.segmenter.to_dict()}),
            **({} if self.domain is None else {"domain": self.domain.to_dict()}),
            **({} if self.cycle is None else {"cycle": self.cycle.to_dict()}),
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
                    f"The model card {source} is malformed: {where} is {shown(value)}, not {expected}; "
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
        fields = dict(
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
            segmenter=data.get("segmenter"),
            domain=data.get("domain"),
            cycle=data.get("cycle"),
        )
        # The sections are read here, so that their messages name this card's source.
        fail = card_problem(source)
        _check_fields(fail, fields)
        fields.update(_read_sections(fail, fields))
        card = cls(**fields)
        card.validate(source)
        if card.pixel_size_nm is not None:
            card.pixel_size_nm = float(card.pixel_size_nm)
        card.default_samples = int(card.default_samples)
        return card

    def validate(self, source: str = "model.json") -> None:
        """Check the card's own consistency, field types and ranges included (each section checks
        itself when read; the network's sizes are checked when it is built, the weights when they
        are loaded)."""
        fail = card_problem(source)
        _check_fields(fail, vars(self))
        inputs = self.normalization.inputs
        if not self.normalization.shared and len(inputs) != len(self.input_channels):
            fail(f"normalization.input lists {len(inputs)} channels but channels.input has {len(self.input_channels)}")
        if (isinstance(self.default_samples, bool) or not isinstance(self.default_samples, Integral)
                or not 1 <= self.default_samples <= MAX_SAMPLES):
            fail(f"default_samples must be a whole number from 1 to {MAX_SAMPLES}, not {shown(self.default_samples)}")
        if self.task is not None and self.task_network is None:
            fail("it describes task outputs but no architecture.task_network")
        if (self.family in SEGMENTER_FAMILIES) != (self.segmenter is not None):
            fail(f"a model of family '{self.family}' must {'' if self.family in SEGMENTER_FAMILIES else 'not '}"
                 "have a segmenter section")
        if self.segmenter is not None and max(self.segmenter.class_channels) >= len(self.output_channels):
            fail(f"segmenter.class_channels {list(self.segmenter.class_channels)} name an output channel beyond "
                 f"the {len(self.output_channels)} of channels.output")

    def input_normalizations(self) -> list[InputNormalisation]:
        """One normalisation spec per input channel (a single spec applies to all channels)."""
        return list(self.normalization.for_channels(len(self.input_channels)))

    def summary(self) -> str:
        pixel = f"{self.pixel_size_nm:g} nm" if self.pixel_size_nm else "any pixel size"
        task = f", task: {', '.join(self.task.outputs)}" if self.task is not None else ""
        return (
            f"{self.name} [{self.family}] {pixel}, in: {', '.join(self.input_channels)}, "
            f"out: {', '.join(self.output_channels)}{task}"
        )


def _check_fields(fail, fields: dict[str, Any]) -> None:
    """The plain fields checked before the sections are read: family, pixel size, channel names."""
    family, pixel_size_nm = fields["family"], fields["pixel_size_nm"]
    if family not in FAMILIES + SEGMENTER_FAMILIES:
        fail(f"unknown family '{family}' (known: {', '.join(FAMILIES + SEGMENTER_FAMILIES)})")
    if pixel_size_nm is not None:
        check_number(fail, "pixel_size_nm", pixel_size_nm, *PIXEL_SIZE_RANGE_NM)
    check_names(fail, "channels.input", fields["input_channels"])
    check_names(fail, "channels.output", fields["output_channels"])
    if not fields["input_channels"] or not fields["output_channels"]:
        fail("channels.input and channels.output must each name at least one channel")


def _read_sections(fail, fields: dict[str, Any]) -> dict[str, Any]:
    """The card's sections read from ``fields`` (those already read are kept as they are)."""
    task, task_network, segmenter = fields["task"], fields["task_network"], fields["segmenter"]
    return {
        "domain": None if fields["domain"] is None else DomainFingerprint.from_dict(fields["domain"], fail),
        "cycle": None if fields["cycle"] is None else CycleSection.from_dict(fields["family"], fields["cycle"], fail),
        "segmenter": None if segmenter is None else SegmenterSection.from_dict(segmenter, fail),
        "generator": GeneratorArchitecture.from_dict(fields["family"], fields["generator"], fail),
        "normalization": Normalisation.from_dict(fields["normalization"], fail),
        "task": None if task is None else Task.from_dict(task, fail),
        "task_network": None if task_network is None else TaskNetworkArchitecture.from_dict(task_network, fail),
    }


def _json_of(section: Section | None) -> dict[str, Any] | None:
    return None if section is None else section.to_dict()


@dataclass
class ModelPackage:
    """A loaded model: its card and ready-to-run torch modules (on the CPU, eval mode)."""

    card: ModelCard
    generator: torch.nn.Module
    task_network: torch.nn.Module | None
    source: str
    reverse_generator: torch.nn.Module | None = None  # a translation model's B -> A generator (card.cycle)


def check_restores(card: ModelCard) -> None:
    """Refuse a segmenter-only model where an image is to be restored, saying what to run instead."""
    if card.segmenter is not None:
        raise NanoscopyError(
            f"The model '{card.name}' only segments images ({', '.join(card.segmenter.classes)}) and restores nothing; "
            "run 'napari-nanoscopy segment IMAGE OUT --model MODEL' (napari_nanoscopy.segment in Python, the Segment "
            "widget in napari) instead."
        )


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
        generator = card.generator.build()
        task_network = card.task_network.build() if card.task_network is not None else None
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
        if len(card.task.outputs) != task_network.out_channels:
            raise NanoscopyError(
                f"The model card of '{card.name}' names {len(card.task.outputs)} task outputs but its "
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


def _first(names: list[str], n: int = 3) -> str:
    shown = ", ".join(names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


def load_state(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str, source: str,
               described_by: str = "its card",
               remedy: str = "the package is damaged or its model.json does not match") -> None:
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
            f"The {what} weights in {source} do not fit the architecture in {described_by} "
            f"({'; '.join(problems)}); {remedy}."
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
    reverse = None
    if card.cycle is not None:  # its tensors are taken out first; split_state refuses any left over
        reverse = build_reverse_generator(card)
        reverse_state = {key[len(REVERSE_PREFIX):]: tensors.pop(key) for key in list(tensors) if key.startswith(REVERSE_PREFIX)}
        load_state(reverse, reverse_state, "reverse (B -> A) generator", source)
        reverse.eval()
    generator_state, task_state = split_state(tensors, with_task=task_network is not None)
    load_state(generator, generator_state, "generator", source)
    if task_network is not None:
        load_state(task_network, task_state, "task network", source)
        task_network.eval()
    generator.eval()
    return ModelPackage(card=card, generator=generator, task_network=task_network, source=source, reverse_generator=reverse)


def build_reverse_generator(card: ModelCard) -> torch.nn.Module:
    """The B -> A generator a translation model's card describes; it maps the output channels back to the input ones."""
    try:
        reverse = card.cycle.reverse_generator.build()
    except NanoscopyError as error:
        raise NanoscopyError(
            f"The model card of '{card.name}' describes a reverse generator that cannot be built "
            f"({str(error).rstrip('.')}); the package is malformed, fix cycle.reverse_generator in model.json."
        ) from None
    if (reverse.in_channels, reverse.out_channels) != (len(card.output_channels), len(card.input_channels)):
        raise NanoscopyError(
            f"The reverse generator of '{card.name}' maps {reverse.in_channels} to {reverse.out_channels} channel(s) but "
            f"must map the {len(card.output_channels)} output channel(s) back to the {len(card.input_channels)} input "
            "one(s); fix cycle.reverse_generator in model.json."
        )
    return reverse


def package_state(generator: torch.nn.Module, task_network: torch.nn.Module | None,
                  reverse_generator: torch.nn.Module | None = None) -> dict[str, torch.Tensor]:
    tensors = {GENERATOR_PREFIX + k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    if task_network is not None:
        tensors.update({TASK_PREFIX + k: v.detach().cpu().contiguous() for k, v in task_network.state_dict().items()})
    if reverse_generator is not None:
        tensors.update({REVERSE_PREFIX + k: v.detach().cpu().contiguous() for k, v in reverse_generator.state_dict().items()})
    return tensors


@contextmanager
def staged_output(target: Path, overwrite: bool) -> Iterator[Path]:
    """A scratch folder beside ``target`` to write a package into. When the block ends without an
    error, the folder (zipped, when ``target`` ends in .zip) is published at ``target`` through
    :class:`~napari_nanoscopy.outputs.StagedOutputs`, like every other output: never over something
    that appeared at ``target`` meanwhile unless ``overwrite``; nothing of the scratch is left."""
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=target.parent) as scratch, \
            StagedOutputs(overwrite=overwrite) as staged:
        package = Path(scratch) / "package"
        package.mkdir()
        yield package
        temporary = staged.stage(target)
        if target.suffix.lower() == ".zip":
            with zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as archive:
                for item in sorted(package.iterdir()):
                    archive.write(item, arcname=item.name)
        else:
            os.rename(package, temporary)


def save_model(
    path: str | os.PathLike,
    card: ModelCard,
    generator: torch.nn.Module,
    task_network: torch.nn.Module | None = None,
    overwrite: bool = False,
    reverse_generator: torch.nn.Module | None = None,
) -> ModelCard:
    """Write a model package folder (or ``.zip``) atomically and return the card as written.

    Nothing appears at ``path`` until the package is complete; a failure leaves no partial package.
    A translation model (``card.cycle``) also stores its B -> A ``reverse_generator``.
    """
    target = Path(path).expanduser()
    if target.exists() and not overwrite:
        raise NanoscopyError(f"{target} already exists; choose another path or pass overwrite=True.")
    if not target.parent.is_dir():
        raise NanoscopyError(f"The folder {target.parent} does not exist; create it first or choose another path.")
    card = copy.deepcopy(card)
    card.validate(str(target))
    build_modules(card)  # the card must describe these networks, or loading would fail later
    if (card.cycle is None) != (reverse_generator is None):
        raise NanoscopyError("A translation model needs both a cycle section in its card and a reverse generator; give both or neither.")
    card.training.setdefault("napari_nanoscopy_version", __version__)
    card.training.setdefault("torch_version", torch.__version__)

    with staged_output(target, overwrite) as staging:
        save_file(package_state(generator, task_network, reverse_generator), str(staging / WEIGHTS_FILE))
        card.weights_sha256 = sha256_of(staging / WEIGHTS_FILE)
        (staging / CARD_FILE).write_text(json.dumps(card.to_dict(), indent=2) + "\n", encoding="utf-8")
        load_package_folder(staging, str(target))  # what we wrote must load back
    return card
