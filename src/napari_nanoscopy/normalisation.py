"""Intensity normalisation: how images are mapped into a model's range and its outputs back.

One :class:`Normaliser` serves training (the pairs are normalised the way inference will
normalise them), the in-memory :class:`~napari_nanoscopy.inference.Restorer` and chunked runs
(whose blocks all use the statistics of their whole plane)::

    normaliser = Normaliser.from_card(card)        # one spec per input channel, and the output's
    fitted = normaliser.fit(frame)                 # statistics of a (C, Y, X) plane
    model_input = fitted.apply(frame)              # float32, in the model's range
    restored = fitted.invert(model_output)         # back to output units

The specs are the typed sections of :mod:`napari_nanoscopy.card` (plain dicts of the same
JSON are read into them). Input modes (per channel): ``percentile`` (``low`` / ``high`` percentiles), ``minmax``,
``meanstd`` (mean -> range[0], mean + std + ``eps`` -> range[1]), ``fixed`` (``min`` / ``max``
intensities) and ``none``; each maps to the spec's ``range`` (default [-1, 1]). Output modes:
``range`` (the model's range -> [0, 1]) and ``input`` (the inverse of the first channel's input
mapping, back to the input's intensity units).

Statistics come from a regular subsample of at most about :data:`PERCENTILE_SAMPLE` pixels
(:func:`statistics_sample`), which reads only those pixels from a lazy (zarr, dask) array.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Mapping, NoReturn, Sequence

import numpy as np

from .card import Fixed, InputNormalisation, MeanStd, NoNormalisation, OutputNormalisation, Percentile
from .errors import NanoscopyError

PERCENTILE_SAMPLE = 1 << 22  # pixels; larger planes are subsampled on a regular grid for statistics
# Modes whose mapping does not depend on the image it is applied to
DATA_INDEPENDENT_MODES = (Fixed.mode, NoNormalisation.mode)


@dataclass(frozen=True)
class Affine:
    """x -> scale * x + offset, computed in float32."""

    scale: float
    offset: float

    def apply(self, array: np.ndarray) -> np.ndarray:
        return (array.astype(np.float32, copy=False) * np.float32(self.scale) + np.float32(self.offset)).astype(
            np.float32, copy=False
        )

    def inverse(self) -> Affine:
        return Affine(1.0 / self.scale, -self.offset / self.scale)


IDENTITY = Affine(1.0, 0.0)


def statistics_step(height: int, width: int) -> int:
    """The stride of the regular grid statistics are sampled on, for a (height, width) plane."""
    return max(1, math.ceil(math.sqrt(height * width / PERCENTILE_SAMPLE)))


def statistics_sample(source, index: tuple = ()) -> np.ndarray:
    """The regular subsample of ``source[index]`` (..., Y, X) that normalisation statistics come from.

    ``source`` is anything with ``shape`` and numpy slicing; only the sampled pixels are read.
    """
    height, width = (int(n) for n in source.shape[-2:])
    step = statistics_step(height, width)
    middle = (slice(None),) * (len(source.shape) - len(index) - 2)
    return np.asarray(source[tuple(index) + middle + (slice(None, None, step), slice(None, None, step))])


def _spec_problem(problem: str) -> NoReturn:
    raise NanoscopyError(f"The normalisation spec is invalid: {problem}; see docs/model-packages.md for the modes.")


def input_spec(spec: InputNormalisation | Mapping) -> InputNormalisation:
    """``spec`` as a typed input section (a dict of its JSON is read and checked)."""
    return InputNormalisation.from_dict(spec, "spec", _spec_problem)


def fit_affine(plane: np.ndarray, spec: InputNormalisation | Mapping, *, channel: int = 0,
               plane_index: int = 0) -> Affine:
    """The affine that ``spec`` gives for one (Y, X) ``plane`` (channel ``channel`` of plane ``plane_index``,
    named when it is constant)."""
    spec = input_spec(spec)
    if isinstance(spec, NoNormalisation):
        return IDENTITY
    low_target, high_target = spec.range
    if isinstance(spec, Fixed):
        low, high = spec.min, spec.max
    else:
        values = statistics_sample(plane)
        if isinstance(spec, Percentile):
            low, high = np.percentile(values, [spec.low, spec.high])
        elif isinstance(spec, MeanStd):  # mean -> range[0], mean + std (+ eps) -> range[1]
            low = float(values.mean(dtype=np.float64))
            high = low + float(values.std(dtype=np.float64)) + spec.eps
        else:  # minmax
            low, high = float(values.min()), float(values.max())
        if high <= low:
            low, high = float(plane.min()), float(plane.max())
    if not high > low:
        where = f"channel {channel} of plane {plane_index}" if plane_index or channel else "the image"
        raise NanoscopyError(
            f"{where[0].upper() + where[1:]} is constant (every pixel is {low:g}): there is nothing to restore; "
            "check that you picked the right image or channel."
        )
    scale = (high_target - low_target) / (high - low)
    return Affine(scale, low_target - low * scale)


@dataclass(frozen=True)
class Normaliser:
    """Per-channel input normalisation and the output mapping of one model.

    Made unfitted (:meth:`from_card`, or from specs); :meth:`fit` returns a fitted copy holding
    one :class:`Affine` per input channel, which :meth:`apply` and :meth:`invert` use. A fitted
    normaliser is plain data: it can be pickled to dask workers and reused for every block of
    the plane it was fitted on.
    """

    inputs: tuple[InputNormalisation, ...]
    output: OutputNormalisation = dataclasses.field(default_factory=lambda: OutputNormalisation(mode="input"))
    affines: tuple[Affine, ...] | None = None

    def __post_init__(self) -> None:  # specs given as dicts of their JSON are read into sections
        object.__setattr__(self, "inputs", tuple(input_spec(spec) for spec in self.inputs))
        object.__setattr__(self, "output", OutputNormalisation.from_dict(self.output, _spec_problem, "output"))

    @classmethod
    def from_card(cls, card) -> Normaliser:
        """The normaliser a model card describes (its per-channel input specs and output spec)."""
        return cls(tuple(card.input_normalizations()), card.normalization.output)

    @property
    def fitted(self) -> bool:
        return self.affines is not None

    def depends_on_data(self, channel: int = 0) -> bool:
        """True when ``channel`` is normalised with statistics of the image itself."""
        return self.inputs[channel].mode not in DATA_INDEPENDENT_MODES

    def fit(self, frame: Sequence[np.ndarray], *, plane: int = 0) -> Normaliser:
        """A copy fitted to ``frame`` (C, Y, X), or to a :func:`statistics_sample` of a larger plane.

        ``plane`` is the frame's index in a stack, named when a channel is constant.
        """
        if len(frame) != len(self.inputs):
            raise NanoscopyError(
                f"The normaliser has {len(self.inputs)} input channel(s) but the plane has {len(frame)}; "
                "give one (Y, X) plane per input channel."
            )
        affines = tuple(fit_affine(frame[c], spec, channel=c, plane_index=plane) for c, spec in enumerate(self.inputs))
        return dataclasses.replace(self, affines=affines)

    def apply(self, frame: Sequence[np.ndarray]) -> np.ndarray:
        """``frame`` (C, ...) in the model's input range, float32."""
        return np.stack([affine.apply(channel) for affine, channel in zip(self._affines(), frame)])

    @property
    def output_affine(self) -> Affine:
        """The mapping from the model's output range to output units."""
        low, high = self.output.range
        if self.output.mode == "range":  # model range -> [0, 1]
            return Affine(1.0 / (high - low), -low / (high - low))
        # "input": invert the first channel's normalisation, back to the input's intensity units
        return self._affines()[0].inverse()

    def invert(self, array: np.ndarray) -> np.ndarray:
        """Model outputs (float32, any shape) in output units."""
        return self.output_affine.apply(array)

    def _affines(self) -> tuple[Affine, ...]:
        if self.affines is None:
            raise NanoscopyError("The normaliser has not been fitted; call its fit() with a (C, Y, X) plane first.")
        return self.affines
