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
import math
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
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


# ---- Condition files: one microscope per .yaml/.yml/.json file ---------------------------------

CONDITION_SETS_FOLDER = Path(__file__).parent / "condition_sets"
CONDITION_FILE_SUFFIXES = (".yaml", ".yml", ".json")
MAX_CONDITION_FILE_BYTES = 64 << 10  # the standard set is ~1 KB; a bigger file is no condition set
_SHOWN_CHARS = 40  # a hostile file's keys and values are shown cut to this length

# What a condition file may say: (low, high) for numbers in pySTED's SI units, bool for switches,
# a ("nm", low, high) pair for wavelength-keyed maps. The ranges are wide (a unit slip, metres
# for nanometres or mW for W, still falls outside them) and mirror pySTED's own parameters.
_WAVELENGTH_M = (200e-9, 2000e-9)
_ANGLE_RAD = (-2 * math.pi, 2 * math.pi)
_BEAM = {"lambda_": _WAVELENGTH_M, "polarization": _ANGLE_RAD, "beta": _ANGLE_RAD}
_CONDITION_SCHEMA: dict[str, Any] = {
    "simulator": "pysted",
    "pixelsize": (1e-10, 1e-4),
    "pdt": (1e-9, 1e-2),
    "p_ex": (0.0, 0.1),
    "p_sted": (0.0, 10.0),
    "excitation": dict(_BEAM),
    "sted": {**_BEAM, "tau": (1e-13, 1e-6), "rate": (1.0, 1e10), "zero_residual": (0.0, 1.0),
             "anti_stoke": bool},
    "detector": {"n_airy": (0.01, 100.0), "noise": bool, "background": (0.0, 1e12),
                 "darkcount": (0.0, 1e12), "pcef": (0.0, 1.0), "pdef": (0.0, 1.0),
                 "det_delay": (0.0, 1e-6), "det_width": (1e-12, 1e-6)},
    "objective": {"f": (1e-4, 1.0), "n": (1.0, 3.0), "na": (0.01, 2.0), "transmission": ("nm", 0.0, 1.0)},
    "fluo": {"lambda_": _WAVELENGTH_M, "sigma_abs": ("nm", 0.0, 1e-15), "sigma_ste": ("nm", 0.0, 1e-15),
             "tau": (1e-12, 1e-6), "tau_vib": (0.0, 1e-6), "tau_tri": (0.0, 1.0), "qy": (0.0, 1.0),
             "k0": (0.0, 1e10), "k1": (0.0, 1e10), "b": (0.0, 10.0), "triplet_dynamic_frac": (0.0, 1.0)},
}
_UNITS = {"pixelsize": "m", "pdt": "s", "p_ex": "W", "p_sted": "W", "lambda_": "m", "tau": "s",
          "rate": "Hz", "background": "counts/s", "darkcount": "counts/s", "f": "m", "sigma_abs": "m^2",
          "sigma_ste": "m^2", "tau_vib": "s", "tau_tri": "s", "det_delay": "s", "det_width": "s"}


def condition_set_names() -> list[str]:
    """The condition sets shipped with the package, by the names ``load_conditions`` accepts."""
    return sorted(path.stem for path in CONDITION_SETS_FOLDER.glob("*.yaml"))


def load_conditions(source: str | os.PathLike) -> dict[str, Any]:
    """The acquisition conditions of a condition file or of a shipped set's name.

    ``source`` is a ``.yaml``/``.yml``/``.json`` file or one of :func:`condition_set_names`
    (``"standard"``, ``"seed-live-cell"``). A file may be partial: it is deep-merged over
    ``STANDARD_CONDITIONS`` (a dict in the file updates the standard dict key by key, wavelength
    maps included; anything else replaces the standard value). Every key and value is checked
    before anything is imaged; the file is read as data only (``yaml.safe_load``, at most
    ``MAX_CONDITION_FILE_BYTES``, nothing in it is followed as a path).
    """
    path, where = _condition_file(source)
    merged = _deep_merged(STANDARD_CONDITIONS, _read_condition_file(path, where))
    return checked_conditions(merged, where)


def conditions_or_standard(source: str | os.PathLike | None) -> Mapping[str, Any]:
    """``load_conditions(source)``, or ``STANDARD_CONDITIONS`` itself where no source is given
    (the default of every front end: their outputs stay as they were)."""
    return STANDARD_CONDITIONS if source is None or source == "" else load_conditions(source)


def save_conditions(conditions: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write a complete, checked conditions dict as YAML or JSON (by the suffix); returns the path."""
    path = Path(path).expanduser()
    if path.suffix.lower() not in CONDITION_FILE_SUFFIXES:
        raise NanoscopyError(f"Cannot write conditions to {path}: the name must end in .yaml, .yml or .json.")
    checked = checked_conditions(conditions, "The conditions to save")
    if path.suffix.lower() == ".json":
        text = json.dumps(checked, indent=2) + "\n"
    else:
        import yaml

        text = yaml.safe_dump(checked, sort_keys=False, default_flow_style=False)
    path.write_text(text, encoding="utf-8")
    return path


def checked_conditions(conditions: Mapping[str, Any], where: str = "The conditions") -> dict[str, Any]:
    """A complete conditions dict checked key by key (unknown keys, types, ranges, the wavelengths
    pySTED looks up); returns a copy with wavelength keys as nm strings. ``where`` names the source."""
    checked = _checked_mapping(conditions, _CONDITION_SCHEMA, "", where)
    missing = [key for key in _CONDITION_SCHEMA if key not in checked]
    if missing:
        raise NanoscopyError(f"{where} lacks {', '.join(missing)}; start from the standard set and change only what you need.")
    _check_wavelengths_listed(checked, where)
    return checked


def _condition_file(source) -> tuple[Path, str]:
    if isinstance(source, str) and source in condition_set_names():
        return CONDITION_SETS_FOLDER / f"{source}.yaml", f"The condition set {source!r}"
    path = Path(source).expanduser()
    if path.suffix.lower() not in CONDITION_FILE_SUFFIXES:
        raise NanoscopyError(
            f"'{_shown(str(source))}' is neither a shipped condition set ({', '.join(condition_set_names())}) "
            "nor a .yaml, .yml or .json condition file; give one of those."
        )
    if not path.is_file():
        raise NanoscopyError(f"The condition file {path} does not exist or is not a file; check the path.")
    return path, f"The condition file {path.name}"


def _read_condition_file(path: Path, where: str) -> dict:
    with path.open("rb") as stream:
        raw = stream.read(MAX_CONDITION_FILE_BYTES + 1)
    if len(raw) > MAX_CONDITION_FILE_BYTES:
        raise NanoscopyError(
            f"{where} is larger than {MAX_CONDITION_FILE_BYTES // 1024} KiB, too large for a condition set; "
            "give a file with only the conditions."
        )
    try:
        text = raw.decode("utf-8")
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except (ValueError, RecursionError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        detail = _shown(" ".join(str(error).split()) or type(error).__name__, 120)
        raise NanoscopyError(f"{where} cannot be read ({detail}); fix the syntax.") from None
    except Exception as error:  # yaml.YAMLError, without importing yaml for JSON files
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = _shown(" ".join(str(getattr(error, "problem", None) or type(error).__name__).split()), 120)
        raise NanoscopyError(f"{where} is not valid YAML ({problem}{at}); fix the syntax.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise NanoscopyError(f"{where} must hold a mapping of conditions (key: value), not {_kind(data)}.")
    return data


def _deep_merged(base: Mapping, update: Mapping) -> dict:
    merged = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def _checked_mapping(mapping, schema: dict, prefix: str, where: str) -> dict:
    if not isinstance(mapping, Mapping):
        raise NanoscopyError(f"{where}: {prefix.rstrip('.') or 'the conditions'} must be a mapping of "
                             f"parameters, not {_kind(mapping)}.")
    checked = {}
    for key, value in mapping.items():
        if not isinstance(key, str) or key not in schema:
            shown = _shown(prefix + key if isinstance(key, str) else repr(key))
            raise NanoscopyError(f"{where}: {shown} is not a condition; known: "
                                 f"{', '.join(prefix + name for name in schema)}; correct or remove it.")
        checked[key] = _checked_value(value, schema[key], prefix + key, where)
    return checked


def _checked_value(value, rule, name: str, where: str):
    if isinstance(rule, dict):
        return _checked_mapping(value, rule, name + ".", where)
    if isinstance(rule, str):
        if value != rule:
            raise NanoscopyError(f"{where}: {name} must be {rule!r}, not {_shown(repr(value))}.")
        return value
    if rule is bool:
        if not isinstance(value, bool):
            raise NanoscopyError(f"{where}: {name} must be true or false, not {_shown_value(value)}.")
        return value
    if rule[0] == "nm":
        return _checked_wavelength_map(value, rule[1:], name, where)
    return _checked_number(value, rule, name, where)


def _checked_number(value, bounds, name: str, where: str):
    low, high = bounds
    unit = f" {_UNITS[name.rsplit('.', 1)[-1]]}" if name.rsplit(".", 1)[-1] in _UNITS else ""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        hint = ""
        if isinstance(value, str) and _parses_as_number(value):
            hint = " (YAML reads 5e-6 as text: write 5.0e-6, with a decimal point and a signed exponent)"
        raise NanoscopyError(f"{where}: {name} must be a number from {low:g} to {high:g}{unit}, "
                             f"not {_shown_value(value)}{hint}; use pySTED's SI units.")
    return value


def _checked_wavelength_map(value, bounds, name: str, where: str) -> dict:
    if not isinstance(value, Mapping):
        raise NanoscopyError(f"{where}: {name} must map wavelengths in nm to values, not {_kind(value)}.")
    checked = {}
    for nm, entry in value.items():
        text = str(nm) if isinstance(nm, (int, str)) and not isinstance(nm, bool) else ""
        if not text.isdigit() or not 200 <= int(text) <= 2000:
            raise NanoscopyError(f"{where}: {name} has the key {_shown(repr(nm))}; its keys are wavelengths "
                                 "in nm from 200 to 2000 (e.g. 640).")
        checked[str(int(text))] = _checked_number(entry, bounds, f"{name}.{int(text)}", where)
    return checked


def _check_wavelengths_listed(conditions: dict, where: str) -> None:
    # pySTED looks these maps up by int(wavelength in nm) and fails with a bare KeyError.
    def nm(component):
        return str(int(conditions[component]["lambda_"] * 1e9))

    for component in _NEEDS_WAVELENGTH:
        if "lambda_" not in conditions[component]:
            raise NanoscopyError(f"{where}: {component} needs a wavelength lambda_ in metres; add one.")

    needed = [("objective", "transmission", "excitation"), ("objective", "transmission", "sted"),
              ("objective", "transmission", "fluo"), ("fluo", "sigma_abs", "excitation"),
              ("fluo", "sigma_ste", "sted")]
    if conditions["sted"].get("anti_stoke", True):  # pySTED's default is True
        needed.append(("fluo", "sigma_abs", "sted"))
    for component, key, laser in needed:
        if nm(laser) not in conditions[component].get(key, {}):
            raise NanoscopyError(f"{where}: {component}.{key} has no entry for the {laser} wavelength "
                                 f"({nm(laser)} nm); add one.")
    if conditions["objective"].get("na", 1.4) >= conditions["objective"].get("n", 1.5):
        raise NanoscopyError(f"{where}: objective.na must be below the immersion index objective.n; check both.")


def _parses_as_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _kind(value) -> str:
    return {dict: "a mapping", list: "a list", str: "text"}.get(type(value), type(value).__name__)


def _shown_value(value) -> str:
    # Never repr a container from a hostile file: YAML aliases can make it exponentially large.
    if isinstance(value, (bool, int, float, str)) or value is None:
        return _shown(repr(value))
    return _kind(value)


def _shown(text: str, limit: int = _SHOWN_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
