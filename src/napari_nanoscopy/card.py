"""Typed sections of a model card: normalisation by mode, the task, and the networks' architecture.

Each section is a frozen dataclass, read and checked from its part of ``model.json`` by
``from_dict`` (the edge: every malformed value is refused there, with a sentence naming the
field and its value) and written back by ``to_dict`` exactly as it was read, so a card
round-trips byte for byte. Code reads the typed attributes (``card.task.thresholds``,
``card.normalization.output.mode``); each section is also a read-only mapping of its JSON
(``card.task["outputs"]``), whose values are copies, so no reader can change a loaded card.

:class:`~napari_nanoscopy.packages.ModelCard` holds these sections; the normaliser
(:mod:`napari_nanoscopy.normalisation`) consumes the normalisation ones.
"""

from __future__ import annotations

import copy
import math
from abc import abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, ClassVar, NoReturn

from .errors import NanoscopyError
from .models import SEGMENTER_FAMILIES, TASK_NETWORKS, build_generator, build_segmenter, build_task_network

DEFAULT_RANGE = (-1.0, 1.0)  # a tanh generator sees and produces [-1, 1]; a linear one (CARE) [0, 1]

Fail = Callable[[str], NoReturn]  # raises the error of one problem found in a section


def card_problem(source: str) -> Fail:
    """The ``fail`` of a card read from ``source``: one sentence saying the package is malformed."""

    def fail(problem: str) -> NoReturn:
        raise NanoscopyError(
            f"The model card {source} is invalid: {problem}; the package is malformed, fix model.json "
            "or re-export it."
        )

    return fail


def shown(value, limit: int = 60) -> str:
    """A field's value for a message: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_number(fail: Fail, where: str, value, low: float = -math.inf, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or not low <= value <= high:
        bounds = f" from {low:g} to {high:g}" if math.isfinite(low) and math.isfinite(high) else ""
        fail(f"{where} must be a finite number{bounds}, not {shown(value)}")
    return float(value)


def check_interval(fail: Fail, where: str, value) -> tuple[float, float]:
    """A [low, high] pair of distinct finite numbers (low may be above high: a flipped range)."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        fail(f"{where} must be a list of two numbers, not {shown(value)}")
    low, high = check_number(fail, f"{where}[0]", value[0]), check_number(fail, f"{where}[1]", value[1])
    if low == high:
        fail(f"{where} must hold two different numbers, not {shown(value)}")
    return low, high


def check_names(fail: Fail, where: str, value) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(name, str) for name in value):
        fail(f"{where} must be a list of names, not {shown(value)}")
    return tuple(value)


@dataclass(frozen=True, eq=False)
class Section(Mapping):
    """A typed card section that is also a read-only mapping of the JSON it was read from (or, when
    made in code, of the JSON its fields give); equal to any mapping with the same JSON."""

    def __post_init__(self) -> None:
        self._keep(self._fields_json())

    def _keep(self, data: Mapping) -> None:
        object.__setattr__(self, "_json", _plain(data))

    @abstractmethod
    def _fields_json(self) -> dict[str, Any]:
        """The JSON the section's fields give (each section says how it is written in model.json)."""

    def __getitem__(self, key: str) -> Any:
        return copy.deepcopy(self._json[key])

    def __iter__(self):
        return iter(self._json)

    def __len__(self) -> int:
        return len(self._json)

    def to_dict(self) -> dict[str, Any]:
        """The section's JSON, as read (a copy)."""
        return copy.deepcopy(self._json)


def _plain(value):
    """A copy of ``value`` made of JSON types only (sections nested in it become their JSON)."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return copy.deepcopy(value)


# --- normalisation ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, kw_only=True)
class InputNormalisation(Section):
    """How one input channel is mapped into the model's ``range``; one subclass per mode."""

    mode: ClassVar[str]
    range: tuple[float, float] = DEFAULT_RANGE

    @classmethod
    def from_dict(cls, data, where: str, fail: Fail) -> InputNormalisation:
        if isinstance(data, InputNormalisation):
            return data
        if not isinstance(data, Mapping):
            fail(f"{where} must be an object, not {shown(data)}")
        mode = data.get("mode")
        kind = INPUT_MODES.get(mode) if isinstance(mode, str) else None
        if kind is None:
            fail(f"normalization mode '{mode}' is not one of {', '.join(NORMALIZATION_MODES)}")
        section = kind(**kind._parse(data, where, fail))
        section._keep(data)
        return section

    @classmethod
    def _parse(cls, data: Mapping, where: str, fail: Fail) -> dict[str, Any]:
        return {"range": check_interval(fail, f"{where}.range", data.get("range", list(DEFAULT_RANGE)))}

    def _fields_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "range": list(self.range)}


@dataclass(frozen=True, eq=False, kw_only=True)
class Percentile(InputNormalisation):
    """The ``low`` and ``high`` percentiles of the image map to the range's ends."""

    mode: ClassVar[str] = "percentile"
    low: float = 1.0
    high: float = 99.8

    @classmethod
    def _parse(cls, data: Mapping, where: str, fail: Fail) -> dict[str, Any]:
        low = check_number(fail, f"{where}.low", data.get("low", 1.0), 0.0, 100.0)
        high = check_number(fail, f"{where}.high", data.get("high", 99.8), 0.0, 100.0)
        if not low < high:
            fail(f"{where}.low ({low:g}) must be below {where}.high ({data.get('high', 99.8)!r})")
        return {"low": low, "high": high, **super()._parse(data, where, fail)}

    def _fields_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "low": self.low, "high": self.high, "range": list(self.range)}


@dataclass(frozen=True, eq=False, kw_only=True)
class MinMax(InputNormalisation):
    """The image's minimum and maximum map to the range's ends."""

    mode: ClassVar[str] = "minmax"


@dataclass(frozen=True, eq=False, kw_only=True)
class MeanStd(InputNormalisation):
    """The mean maps to range[0], mean + std + ``eps`` to range[1]."""

    mode: ClassVar[str] = "meanstd"
    eps: float = 0.0

    @classmethod
    def _parse(cls, data: Mapping, where: str, fail: Fail) -> dict[str, Any]:
        return {"eps": check_number(fail, f"{where}.eps", data.get("eps", 0.0), 0.0), **super()._parse(data, where, fail)}

    def _fields_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "eps": self.eps, "range": list(self.range)}


@dataclass(frozen=True, eq=False, kw_only=True)
class Fixed(InputNormalisation):
    """The intensities ``min`` and ``max`` map to the range's ends, whatever the image."""

    mode: ClassVar[str] = "fixed"
    min: float
    max: float

    @classmethod
    def _parse(cls, data: Mapping, where: str, fail: Fail) -> dict[str, Any]:
        low, high = check_number(fail, f"{where}.min", data.get("min")), check_number(fail, f"{where}.max", data.get("max"))
        if not low < high:
            fail(f"{where}.min must be below {where}.max, not {data.get('min')!r} and {data.get('max')!r}")
        return {"min": low, "max": high, **super()._parse(data, where, fail)}

    def _fields_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "min": self.min, "max": self.max, "range": list(self.range)}


@dataclass(frozen=True, eq=False, kw_only=True)
class NoNormalisation(InputNormalisation):
    """The channel goes to the model as it is (a mask or a patch already in the model's range)."""

    mode: ClassVar[str] = "none"

    @classmethod
    def _parse(cls, data: Mapping, where: str, fail: Fail) -> dict[str, Any]:
        return {}

    def _fields_json(self) -> dict[str, Any]:
        return {"mode": self.mode}


INPUT_MODES: dict[str, type[InputNormalisation]] = {
    kind.mode: kind for kind in (Percentile, MinMax, MeanStd, Fixed, NoNormalisation)
}
NORMALIZATION_MODES = tuple(INPUT_MODES)


@dataclass(frozen=True, eq=False, kw_only=True)
class OutputNormalisation(Section):
    """How model outputs return to output units: ``range`` (the model's range -> [0, 1]) or
    ``input`` (the inverse of the first input channel's mapping)."""

    MODES: ClassVar[tuple[str, ...]] = ("range", "input")
    mode: str
    range: tuple[float, float] = DEFAULT_RANGE

    @classmethod
    def from_dict(cls, data, fail: Fail, where: str = "normalization.output") -> OutputNormalisation:
        if isinstance(data, OutputNormalisation):
            return data
        if not isinstance(data, Mapping):
            fail(f"{where} must be an object, not {shown(data)}")
        if data.get("mode") not in cls.MODES:
            fail(f"{where} mode '{data.get('mode')}' is not one of {', '.join(cls.MODES)}")
        value_range = check_interval(fail, f"{where}.range", data.get("range", list(DEFAULT_RANGE)))
        section = cls(mode=data["mode"], range=value_range)
        section._keep(data)
        return section

    def _fields_json(self) -> dict[str, Any]:
        return {"mode": self.mode} if self.mode == "input" else {"mode": self.mode, "range": list(self.range)}


OUTPUT_MODES = OutputNormalisation.MODES
DEFAULT_INPUT_NORMALIZATION = Percentile(range=DEFAULT_RANGE)
DEFAULT_OUTPUT_NORMALIZATION = OutputNormalisation(mode="range", range=DEFAULT_RANGE)


@dataclass(frozen=True, eq=False, kw_only=True)
class Normalisation(Section):
    """The card's ``normalization``: the input specs (one ``shared`` by every channel, or one per
    channel), the output mapping and, for TA-GAN Live, the spec of revealed STED patches. Other
    entries (``target``, how training normalised its targets) are kept as read in ``extras``."""

    TYPED: ClassVar[tuple[str, ...]] = ("input", "output", "sted_patch")
    inputs: tuple[InputNormalisation, ...] = (DEFAULT_INPUT_NORMALIZATION,)
    shared: bool = True
    output: OutputNormalisation = field(default_factory=lambda: DEFAULT_OUTPUT_NORMALIZATION)
    sted_patch: InputNormalisation | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data, fail: Fail) -> Normalisation:
        if isinstance(data, Normalisation):
            return data
        if not isinstance(data, Mapping):
            fail(f"normalization must be an object, not {shown(data)}")
        given = data.get("input", DEFAULT_INPUT_NORMALIZATION)
        if not isinstance(given, (Mapping, list)):
            fail(f"normalization.input must be an object or a list of them, not {shown(given)}")
        shared = isinstance(given, Mapping)
        if shared:
            inputs = (InputNormalisation.from_dict(given, "normalization.input", fail),)
        else:
            inputs = tuple(InputNormalisation.from_dict(spec, f"normalization.input[{index}]", fail)
                           for index, spec in enumerate(given))
        output = OutputNormalisation.from_dict(data.get("output", DEFAULT_OUTPUT_NORMALIZATION), fail)
        patch = data.get("sted_patch")
        sted_patch = None if patch is None else InputNormalisation.from_dict(patch, "normalization.sted_patch", fail)
        extras = {key: value for key, value in data.items() if key not in cls.TYPED}
        section = cls(inputs=inputs, shared=shared, output=output, sted_patch=sted_patch, extras=_plain(extras))
        section._keep(data)
        return section

    def for_channels(self, count: int) -> tuple[InputNormalisation, ...]:
        """One spec per input channel of a model with ``count`` of them."""
        return self.inputs * count if self.shared else self.inputs

    def _fields_json(self) -> dict[str, Any]:
        inputs = self.inputs[0].to_dict() if self.shared else [spec.to_dict() for spec in self.inputs]
        data = {"input": inputs, "output": self.output.to_dict(), **self.extras}
        if self.sted_patch is not None:
            data["sted_patch"] = self.sted_patch.to_dict()
        return data


# --- task --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, kw_only=True)
class Task(Section):
    """The task network's outputs and the thresholds that binarise them into a segmentation, with
    how they were found and how training scaled the task targets (other entries: ``extras``)."""

    TYPED: ClassVar[tuple[str, ...]] = ("kind", "outputs", "thresholds", "threshold_method", "network",
                                        "target_normalization")
    outputs: tuple[str, ...]
    thresholds: tuple[float, ...]
    kind: str | None = None
    threshold_method: str | None = None
    network: str | None = None
    target_normalization: InputNormalisation | None = None  # how training scaled the task targets
    extras: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data, fail: Fail) -> Task:
        if isinstance(data, Task):
            return data
        if not isinstance(data, Mapping):
            fail(f"task must be an object, not {shown(data)}")
        outputs = check_names(fail, "task.outputs", data.get("outputs") or [])
        thresholds = data.get("thresholds") or []
        if not isinstance(thresholds, (list, tuple)):
            fail(f"task.thresholds must be a list of numbers, not {shown(thresholds)}")
        thresholds = tuple(check_number(fail, f"task.thresholds[{index}]", value) for index, value in enumerate(thresholds))
        if not outputs or len(outputs) != len(thresholds):
            fail("task.outputs and task.thresholds must be non-empty lists of equal length")
        scaling = data.get("target_normalization")
        if scaling is not None:
            scaling = InputNormalisation.from_dict(scaling, "task.target_normalization", fail)
        section = cls(outputs=outputs, thresholds=thresholds, kind=data.get("kind"),
                      threshold_method=data.get("threshold_method"), network=data.get("network"),
                      target_normalization=scaling,
                      extras=_plain({key: value for key, value in data.items() if key not in cls.TYPED}))
        section._keep(data)
        return section

    def _fields_json(self) -> dict[str, Any]:
        scaling = self.target_normalization
        optional = {"threshold_method": self.threshold_method, "network": self.network,
                    "target_normalization": scaling.to_dict() if scaling is not None else None}
        data = {"kind": self.kind} if self.kind is not None else {}
        data.update(outputs=list(self.outputs), thresholds=list(self.thresholds))
        data.update({key: copy.deepcopy(value) for key, value in optional.items() if value is not None})
        return {**data, **self.extras}


# --- architecture ------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, kw_only=True)
class GeneratorArchitecture(Section):
    """The generator of ``family``: a mapping of the keyword arguments its builder takes on top of
    the paper's defaults. The card checks the family (a foreign model made in code may carry its
    own); :meth:`build` checks the arguments against the family's builder and its size limits."""

    family: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, family: str, data, fail: Fail) -> GeneratorArchitecture:
        if isinstance(data, GeneratorArchitecture) and data.family == family:
            return data
        if not isinstance(data, Mapping) or not all(isinstance(key, str) for key in data):
            fail(f"architecture.generator must be an object of the generator's arguments, not {shown(data)}")
        return cls(family=family, kwargs=copy.deepcopy(dict(data)))

    def build(self):
        if self.family in SEGMENTER_FAMILIES:
            return build_segmenter(self.family, **self.kwargs)
        return build_generator(self.family, **self.kwargs)

    def _fields_json(self) -> dict[str, Any]:
        return dict(self.kwargs)


@dataclass(frozen=True, eq=False, kw_only=True)
class TaskNetworkArchitecture(Section):
    """The task network: its ``kind`` and the keyword arguments its builder takes."""

    kind: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data, fail: Fail) -> TaskNetworkArchitecture:
        if isinstance(data, TaskNetworkArchitecture):
            return data
        if not isinstance(data, Mapping) or not isinstance(data.get("kwargs", {}), Mapping):
            fail(f"architecture.task_network must be an object with a kind and kwargs, not {shown(data)}")
        kind = data.get("kind")
        if not isinstance(kind, str) or kind not in TASK_NETWORKS:
            fail(f"unknown task network '{kind}' (known: {', '.join(TASK_NETWORKS)})")
        section = cls(kind=kind, kwargs=copy.deepcopy(dict(data.get("kwargs", {}))))
        section._keep(data)
        return section

    def build(self):
        return build_task_network(self.kind, **self.kwargs)

    def _fields_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "kwargs": dict(self.kwargs)}


# --- segmenter-only models -------------------------------------------------------------------


@dataclass(frozen=True, eq=False, kw_only=True)
class SegmenterSection(Section):
    """How a model that only segments (the U-Nets of Lavoie-Cardinal et al. 2020) is applied, with
    its own input scaling and crop-and-average prediction instead of the restoration engine's.

    Input: uint16 images whose minimum is not 0 first lose ``unsigned_offset`` (32768); then
    ``x / (factor * maximum)``, clipped to ``clip``. Prediction: ``crop``-pixel crops on a
    ``step``-pixel grid from the top-left corner, crops past the edge zero-padded, overlapping
    predictions averaged. Output: ``activation`` ("sigmoid" per channel, or "softmax" over the
    channels) of the network's scores; class k is output channel ``class_channels[k]``, named
    ``classes[k]`` and thresholded at ``thresholds[k]``."""

    ACTIVATIONS: ClassVar[tuple[str, ...]] = ("sigmoid", "softmax")
    activation: str
    classes: tuple[str, ...]
    class_channels: tuple[int, ...]
    thresholds: tuple[float, ...]
    maximum: float
    factor: float = 0.8
    clip: tuple[float, float] = (0.0, 1.0)
    unsigned_offset: float = 32768.0
    crop: int = 128
    step: int = 128
    source: str | None = None

    @classmethod
    def from_dict(cls, data, fail: Fail) -> SegmenterSection:
        if isinstance(data, SegmenterSection):
            return data
        if not isinstance(data, Mapping):
            fail(f"segmenter must be an object, not {shown(data)}")
        if data.get("activation") not in cls.ACTIVATIONS:
            fail(f"segmenter.activation {shown(data.get('activation'))} is not one of {', '.join(cls.ACTIVATIONS)}")
        classes = check_names(fail, "segmenter.classes", data.get("classes") or [])
        channels, thresholds = data.get("class_channels") or [], data.get("thresholds") or []
        if not isinstance(channels, list) or not isinstance(thresholds, list):
            fail("segmenter.class_channels and segmenter.thresholds must be lists")
        if not classes or not len(classes) == len(channels) == len(thresholds):
            fail("segmenter.classes, class_channels and thresholds must be non-empty lists of equal length")
        step = _whole(fail, "segmenter.step", data.get("step", 128))
        crop = _whole(fail, "segmenter.crop", data.get("crop", 128))
        if step > crop:
            fail(f"segmenter.step ({step}) must not exceed segmenter.crop ({crop}), or pixels would be left out")
        section = cls(
            activation=data["activation"], classes=classes,
            class_channels=tuple(_whole(fail, f"segmenter.class_channels[{k}]", c, 0) for k, c in enumerate(channels)),
            thresholds=tuple(check_number(fail, f"segmenter.thresholds[{k}]", t, 0.0, 1.0) for k, t in enumerate(thresholds)),
            maximum=check_number(fail, "segmenter.maximum", data.get("maximum"), 1e-12),
            factor=check_number(fail, "segmenter.factor", data.get("factor", 0.8), 1e-6),
            clip=check_interval(fail, "segmenter.clip", data.get("clip", [0.0, 1.0])),
            unsigned_offset=check_number(fail, "segmenter.unsigned_offset", data.get("unsigned_offset", 32768.0), 0.0),
            crop=crop, step=step, source=data.get("source") if isinstance(data.get("source"), str) else None,
        )
        section._keep(data)
        return section

    def _fields_json(self) -> dict[str, Any]:
        data = {"activation": self.activation, "classes": list(self.classes), "class_channels": list(self.class_channels),
                "thresholds": list(self.thresholds), "maximum": self.maximum, "factor": self.factor,
                "clip": list(self.clip), "unsigned_offset": self.unsigned_offset, "crop": self.crop, "step": self.step}
        return data if self.source is None else {**data, "source": self.source}


def _number_rows(fail: Fail, where: str, rows: list) -> tuple[tuple[float, ...], ...]:
    """A list of lists of finite numbers (its shape checked by the caller) as a tuple of tuples."""
    return tuple(tuple(check_number(fail, f"{where}[{i}][{j}]", v) for j, v in enumerate(row)) for i, row in enumerate(rows))


def _whole(fail: Fail, where: str, value, low: int = 1, high: int = 1 << 16) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        fail(f"{where} must be a whole number from {low} to {high}, not {shown(value)}")
    return value


# --- a translation model's second generator ----------------------------------------------------


@dataclass(frozen=True, eq=False, kw_only=True)
class CycleSection(Section):
    """A TA-CycleGAN's two domains and its second generator: the package's generator translates
    ``domain_a`` into ``domain_b`` (the default direction), ``reverse_generator`` (an architecture
    of the card's family) translates back; its weights carry the ``reverse_generator.`` prefix."""

    domain_a: str
    domain_b: str
    reverse_generator: GeneratorArchitecture

    @classmethod
    def from_dict(cls, family: str, data, fail: Fail) -> CycleSection:
        if isinstance(data, CycleSection):
            return data
        if not isinstance(data, Mapping) or not isinstance(data.get("domains"), Mapping):
            fail(f"cycle must be an object with domains (a, b) and a reverse_generator, not {shown(data)}")
        domains = check_names(fail, "cycle.domains", [data["domains"].get("a"), data["domains"].get("b")])
        reverse = data.get("reverse_generator", {})
        if not isinstance(reverse, Mapping) or not all(isinstance(key, str) for key in reverse):
            fail(f"cycle.reverse_generator must be an object of the generator's arguments, not {shown(reverse)}")
        section = cls(domain_a=domains[0], domain_b=domains[1],
                      reverse_generator=GeneratorArchitecture(family=family, kwargs=copy.deepcopy(dict(reverse))))
        section._keep(data)
        return section

    def _fields_json(self) -> dict[str, Any]:
        return {"domains": {"a": self.domain_a, "b": self.domain_b},
                "reverse_generator": dict(self.reverse_generator.kwargs)}


# --- domain fingerprint ------------------------------------------------------------------------

MAX_DOMAIN_FEATURES = 64  # a whitening matrix of at most 64 x 64 numbers in model.json
MAX_DOMAIN_REFERENCE = 1024  # whitened training windows kept for the nearest-neighbour score


@dataclass(frozen=True, eq=False, kw_only=True)
class DomainFingerprint(Section):
    """Statistics of the inputs a model was trained on, and the score above which an image is
    outside them (calibrated on held-out in-domain images); computed and used by
    :mod:`napari_nanoscopy.domain`. ``features`` names each statistic, ``center`` and ``scale``
    are their training median and spread, ``window`` the side (model pixels) they are taken on,
    ``whitening`` the matrix whose product with the standardised statistics has the squared
    Mahalanobis distance as its squared norm, ``reference`` the training windows' statistics so
    whitened (an image is scored by its distance to the ``neighbours`` nearest of them; empty in
    fingerprints of older versions), ``calibration`` how the threshold was found."""

    features: tuple[str, ...]
    center: tuple[float, ...]
    scale: tuple[float, ...]
    whitening: tuple[tuple[float, ...], ...]
    threshold: float
    window: int
    calibration: Mapping[str, Any] = field(default_factory=dict)
    reference: tuple[tuple[float, ...], ...] = ()
    neighbours: int = 2

    @classmethod
    def from_dict(cls, data, fail: Fail) -> DomainFingerprint:
        if isinstance(data, DomainFingerprint):
            return data
        if not isinstance(data, Mapping):
            fail(f"domain must be an object, not {shown(data)}")
        features = check_names(fail, "domain.features", data.get("features") or [])
        center, scale = data.get("center"), data.get("scale")
        if not isinstance(center, list) or not isinstance(scale, list):
            fail("domain.center and domain.scale must be lists of numbers")
        if not 0 < len(features) <= MAX_DOMAIN_FEATURES or not len(features) == len(center) == len(scale):
            fail(f"domain.features, center and scale must be lists of equal length, 1 to {MAX_DOMAIN_FEATURES}")
        whitening = data.get("whitening")
        if not isinstance(whitening, list) or len(whitening) != len(features) or not all(
                isinstance(row, list) and len(row) == len(features) for row in whitening):
            fail(f"domain.whitening must be a {len(features)}x{len(features)} list of lists of numbers")
        calibration = data.get("calibration") or {}
        if not isinstance(calibration, Mapping):
            fail(f"domain.calibration must be an object, not {shown(calibration)}")
        reference = data.get("reference") or []
        if not isinstance(reference, list) or len(reference) > MAX_DOMAIN_REFERENCE or not all(
                isinstance(row, list) and len(row) == len(features) for row in reference):
            fail(f"domain.reference must be a list of at most {MAX_DOMAIN_REFERENCE} lists of {len(features)} numbers")
        section = cls(
            features=features,
            center=tuple(check_number(fail, f"domain.center[{k}]", v) for k, v in enumerate(center)),
            scale=tuple(check_number(fail, f"domain.scale[{k}]", v, 1e-12) for k, v in enumerate(scale)),
            whitening=_number_rows(fail, "domain.whitening", whitening),
            threshold=check_number(fail, "domain.threshold", data.get("threshold"), 1e-6),
            window=_whole(fail, "domain.window", data.get("window")), calibration=_plain(calibration),
            reference=_number_rows(fail, "domain.reference", reference),
            neighbours=_whole(fail, "domain.neighbours", data.get("neighbours", 2), 1, 64),
        )
        section._keep(data)
        return section

    def _fields_json(self) -> dict[str, Any]:
        return {"features": list(self.features), "center": list(self.center), "scale": list(self.scale),
                "whitening": [list(row) for row in self.whitening], "threshold": self.threshold, "window": self.window,
                "reference": [list(row) for row in self.reference], "neighbours": self.neighbours,
                "calibration": _plain(self.calibration)}
