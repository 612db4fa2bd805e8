"""The standard simulated acquisition conditions and pySTED acquisitions with them.

``STANDARD_CONDITIONS`` is the parameter set of the TA-GAN paper's simulated nanodomain
dataset (FLClab/TA-GAN ``SimulatedNanodomainsDataset/defaults.py``). It is a plain JSON
dict in pySTED's own units (metres, watts, seconds) so that it can be copied verbatim into
a model card and turned back into a pySTED microscope with nothing but pySTED::

    from pysted import base
    c = conditions  # as loaded from JSON
    nm = lambda d: {int(k): v for k, v in d.items()}  # JSON keys are strings
    microscope = base.Microscope(
        base.GaussianBeam(**c["excitation"]),
        base.DonutBeam(**c["sted"]),
        base.Detector(**c["detector"]),
        base.Objective(**{**c["objective"], "transmission": nm(c["objective"]["transmission"])}),
        base.Fluorescence(**{**c["fluo"], "sigma_abs": nm(c["fluo"]["sigma_abs"]),
                             "sigma_ste": nm(c["fluo"]["sigma_ste"])}),
    )
    # confocal: p_sted = 0.0; STED: p_sted = c["p_sted"]; both with c["pdt"], c["p_ex"].

pySTED itself is imported lazily: importing it takes seconds (it pulls in matplotlib).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from napari_nanoscopy.errors import NanoscopyError
from napari_nanoscopy.simulation._validation import checked_datamap, rng_from_seed

_PIXEL_DWELL_TIME_S = 10e-6

STANDARD_CONDITIONS: dict[str, Any] = {
    "simulator": "pysted",
    "pixelsize": 20e-9,  # m, datamap and image pixel
    "pdt": _PIXEL_DWELL_TIME_S,  # s, pixel dwell time
    "p_ex": 2e-6,  # W, excitation power
    "p_sted": 150e-3,  # W, depletion power of STED images (confocal images use 0)
    "excitation": {"lambda_": 635e-9},
    "sted": {"lambda_": 750e-9, "zero_residual": 0.005, "anti_stoke": False},
    # pySTED's background is a count rate per gated detection window: its mean per pixel is
    # background * det_width (8 ns) * pulse rate (40 MHz) * pdt = 0.64 counts here.
    "detector": {"noise": True, "background": 2 / _PIXEL_DWELL_TIME_S},
    # Wavelength-keyed dicts use nm as string keys (JSON); build_microscope converts them.
    "objective": {
        "transmission": {
            "488": 0.84, "535": 0.85, "550": 0.86, "585": 0.85,
            "575": 0.85, "635": 0.85, "690": 0.85, "750": 0.85,
        }
    },
    "fluo": {
        "lambda_": 6.9e-7,
        "qy": 0.65,
        "sigma_abs": {"635": 2.14e-20, "750": 3.5e-25},
        "sigma_ste": {"750": 3.0e-22},
        "tau": 3.5e-9,
        "tau_vib": 1e-12,
        "tau_tri": 1.2e-6,
        "k0": 0,
        "k1": 1.3e-15,
        "b": 1.6,
        # pySTED spells it "triplet_dynamic_frac"; the TA-GAN code's "triplet_dynamics_frac"
        # was silently ignored (same value as pySTED's default, 0).
        "triplet_dynamic_frac": 0,
    },
}

PIXEL_SIZE_NM = round(STANDARD_CONDITIONS["pixelsize"] * 1e9, 6)

_COMPONENTS = ("excitation", "sted", "detector", "objective", "fluo")
_IMAGING_KEYS = ("pixelsize", "pdt", "p_ex", "p_sted")
_WAVELENGTH_KEYED = {"objective": ("transmission",), "fluo": ("sigma_abs", "sigma_ste")}
_NEEDS_WAVELENGTH = ("excitation", "sted", "fluo")

# pySTED draws its noise from numpy's global RNG and its bleaching from C rand(): both are
# process-wide, so acquisitions are serialised to stay reproducible across threads.
_PYSTED_LOCK = threading.Lock()


def build_microscope(conditions: Mapping[str, Any] = STANDARD_CONDITIONS):
    """Return the ``pysted.base.Microscope`` described by a conditions dict.

    Identical conditions share one microscope (its laser profiles take seconds to compute
    on first use); treat it as read-only. Raises NanoscopyError for an incomplete dict or a
    parameter pySTED does not know (pySTED itself silently ignores misspelt parameters).
    """
    return _microscope_from_json(_canonical_json(conditions))


def acquire(
    datamap: np.ndarray,
    conditions: Mapping[str, Any] = STANDARD_CONDITIONS,
    *,
    sted: bool,
    rng: np.random.Generator | int | None = None,
    bleach: bool = False,
) -> np.ndarray:
    """Image a datamap (molecules per pixel) once; returns float32 photon counts.

    ``sted=False`` is a confocal image (depletion power 0). With ``bleach=True`` the molecules
    photobleached by the scan are removed from ``datamap`` in place. ``rng`` seeds pySTED's
    noise and bleaching, so the same seed gives the same image.
    """
    molecules = checked_datamap(datamap, writable=bleach)
    microscope = build_microscope(conditions)
    seed = _pysted_seed(rng_from_seed(rng))
    image, remaining = _scan(microscope, molecules, conditions, sted, seed, bleach)
    if bleach:
        datamap[...] = remaining
    return image


def acquire_pair(
    datamap: np.ndarray,
    conditions: Mapping[str, Any] = STANDARD_CONDITIONS,
    rng: np.random.Generator | int | None = None,
    bleach: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Acquire a confocal then a STED image of the same datamap: ``(confocal, sted)``.

    Both are float32 photon counts. With ``bleach=True`` the STED image sees what the
    confocal scan left, and ``datamap`` ends depleted in place (with the standard
    fluorophore, k0 = 0, only the depletion beam bleaches, so a confocal scan removes
    nothing).
    """
    rng = rng_from_seed(rng)
    confocal = acquire(datamap, conditions, sted=False, rng=rng, bleach=bleach)
    sted = acquire(datamap, conditions, sted=True, rng=rng, bleach=bleach)
    return confocal, sted


def _scan(microscope, molecules, conditions, sted, seed, bleach):
    from pysted import base

    pixelsize = float(conditions["pixelsize"])
    p_sted = float(conditions["p_sted"]) if sted else 0.0
    with _PYSTED_LOCK, _global_numpy_rng_preserved():
        i_ex, _, _ = microscope.cache(pixelsize)  # computes the lasers on first use
        pysted_datamap = base.Datamap(molecules, pixelsize)
        pysted_datamap.set_roi(i_ex, "max")
        image, _, _ = microscope.get_signal_and_bleach(
            pysted_datamap, pixelsize, float(conditions["pdt"]), float(conditions["p_ex"]),
            p_sted, bleach=bleach, update=bleach, seed=seed,
        )
    remaining = pysted_datamap.whole_datamap[pysted_datamap.roi]
    return image.astype(np.float32), remaining


def _pysted_seed(rng: np.random.Generator) -> int:
    # pySTED treats seed 0 (and None) as "unseeded": its bleaching then seeds C rand() from
    # the clock and its detector noise falls back to numpy.random.seed(0), i.e. every
    # unseeded image has the same noise. Seeds must also fit a C int.
    return int(rng.integers(1, 2**31 - 1))


@contextlib.contextmanager
def _global_numpy_rng_preserved() -> Iterator[None]:
    # pySTED reseeds numpy's global RNG; give the caller's global stream back untouched.
    state = np.random.get_state()
    try:
        yield
    finally:
        np.random.set_state(state)


def _canonical_json(conditions: Mapping[str, Any]) -> str:
    if not isinstance(conditions, Mapping):
        raise NanoscopyError(
            "Acquisition conditions must be a dict like STANDARD_CONDITIONS; "
            f"got {type(conditions).__name__}."
        )
    missing = [key for key in (*_IMAGING_KEYS, *_COMPONENTS) if key not in conditions]
    if missing:
        raise NanoscopyError(
            f"The acquisition conditions lack {', '.join(missing)}; start from a copy of "
            "STANDARD_CONDITIONS and change only what you need."
        )
    try:
        return json.dumps(conditions, sort_keys=True)
    except (TypeError, ValueError) as error:
        raise NanoscopyError(
            f"Acquisition conditions must be plain JSON values (numbers, strings, dicts): {error}."
        ) from None


@functools.lru_cache(maxsize=4)
def _microscope_from_json(conditions_json: str):
    from pysted import base

    conditions = json.loads(conditions_json)
    for key in _IMAGING_KEYS:
        value = conditions[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise NanoscopyError(
                f"The acquisition condition {key!r} must be a non-negative number in SI units; "
                f"got {value!r}."
            )
    if conditions["pixelsize"] <= 0 or conditions["pdt"] <= 0:
        raise NanoscopyError("The pixel size and pixel dwell time must be greater than zero.")

    parameters = {name: _component_parameters(conditions, name) for name in _COMPONENTS}
    constructors = {
        "excitation": base.GaussianBeam,
        "sted": base.DonutBeam,
        "detector": base.Detector,
        "objective": base.Objective,
        "fluo": base.Fluorescence,
    }
    for name, constructor in constructors.items():
        _reject_unknown_parameters(name, constructor, parameters[name])
    try:
        parts = {name: constructors[name](**parameters[name]) for name in _COMPONENTS}
        return base.Microscope(
            parts["excitation"], parts["sted"], parts["detector"], parts["objective"], parts["fluo"]
        )
    except (TypeError, ValueError, AssertionError) as error:
        raise NanoscopyError(f"pySTED rejected the acquisition conditions: {error!r}.") from None


def _component_parameters(conditions: dict, name: str) -> dict:
    component = conditions[name]
    if not isinstance(component, dict):
        raise NanoscopyError(f"The acquisition condition {name!r} must be a dict of pySTED parameters.")
    parameters = copy.deepcopy(component)
    for key in _WAVELENGTH_KEYED.get(name, ()):
        if key in parameters:
            try:
                parameters[key] = {int(nm): value for nm, value in parameters[key].items()}
            except (AttributeError, ValueError):
                raise NanoscopyError(
                    f"{name}.{key} must map wavelengths in nm (e.g. \"635\") to values."
                ) from None
    return parameters


def _reject_unknown_parameters(name: str, constructor, parameters: dict) -> None:
    # A default instance lists every parameter the installed pySTED reads (its attributes
    # carry the keyword names).
    required = {"lambda_": 1e-9} if name in _NEEDS_WAVELENGTH else {}
    known = set(vars(constructor(**required)))
    unknown = sorted(set(parameters) - known)
    if unknown:
        raise NanoscopyError(
            f"pySTED's {constructor.__name__} has no parameter {', '.join(unknown)} "
            f"(condition {name!r}); the known ones are {', '.join(sorted(known))}."
        )
    if required and "lambda_" not in parameters:
        raise NanoscopyError(f"The acquisition condition {name!r} needs a wavelength 'lambda_' in metres.")
