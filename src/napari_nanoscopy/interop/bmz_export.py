"""BioImage Model Zoo (bioimage.io) model packages: writing them (reading is :mod:`.bmz`).

:func:`export_bmz` writes a bioimage.io model description, format 0.5, with

- ``rdf.yaml``: inputs and outputs with their axes, size constraints (minimum and step) and halo,
  the model card's normalisation as bioimage.io pre- and post-processing, citations of the
  method's paper, the whole napari-nanoscopy card under ``config.napari-nanoscopy``;
- ``pytorch_state_dict`` weights (``weights.pt``, a plain state dict) with their architecture:
  ``architecture.py``, a self-contained copy of the family's PyTorch code (it imports only torch),
  and the callable ``NanoscopyNetwork`` with its keyword arguments;
- ``torchscript`` weights (``weights_torchscript.pt``);
- test input and output tensors (``test_input.npy``, ``test_output.npy``), a cover image and a
  ``README.md``.

What it writes must load back with :func:`.bmz.load_bmz`. A bioimage.io model is one network, so a
translation package (``tagan-cycle``: two generators) is exported one direction at a time: its A -> B
generator by default, its B -> A one with ``direction="b2a"``; the card written has no ``cycle``
section (the package holds one generator) and ``config.napari-nanoscopy.translation`` names the direction.
"""

from __future__ import annotations

import copy
import datetime
import inspect
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..card import Fixed, MeanStd, MinMax, NoNormalisation, Percentile
from ..errors import NanoscopyError
from ..formats import load_model
from ..limits import check_int
from ..models import paper_defaults, task_network_defaults
from ..packages import ModelPackage, package_state, sha256_of, staged_output
from .bmz import CONFIG_KEY, EPS, load_bmz

FORMAT_VERSION = "0.5.12"
RDF_FILE = "rdf.yaml"
ARCHITECTURE_FILE = "architecture.py"
STATE_DICT_FILE = "weights.pt"
TORCHSCRIPT_FILE = "weights_torchscript.pt"
TEST_SIZE = 128  # pixels: side of the synthetic test image (also the largest crop of a given one)

CITATIONS = {
    "tagan": dict(
        text="Bouchard C. et al. Resolution enhancement with a task-assisted GAN to guide optical nanoscopy "
        "image analysis and acquisition. Nature Machine Intelligence 5, 830-844 (2023).",
        doi="10.1038/s42256-023-00689-3",
    ),
    "tcan": dict(
        text="Huang B. et al. Enhancing image resolution of confocal fluorescence microscopy with deep learning. "
        "PhotoniX 4, 2 (2023).",
        doi="10.1186/s43074-022-00077-x",
    ),
    "wang": dict(
        text="Wang H. et al. Deep learning enables cross-modality super-resolution in fluorescence microscopy. "
        "Nature Methods 16, 103-110 (2019).",
        doi="10.1038/s41592-018-0239-0",
    ),
    "l2l": dict(
        text="Kölln L. S. et al. Label2label: training a neural network to selectively restore cellular "
        "structures in fluorescence microscopy. Journal of Cell Science 135, jcs258994 (2022).",
        doi="10.1242/jcs.258994",
    ),
}
CITATIONS["tagan-live"] = CITATIONS["tagan"]
CYCLEGAN_CITATION = dict(
    text="Zhu J.-Y., Park T., Isola P., Efros A. A. Unpaired image-to-image translation using cycle-consistent "
    "adversarial networks. IEEE International Conference on Computer Vision (ICCV), 2223-2232 (2017).",
    doi="10.1109/ICCV.2017.244",
)
CARE_CITATION = dict(
    text="Weigert M. et al. Content-aware image restoration: pushing the limits of fluorescence microscopy. "
    "Nature Methods 15, 1090-1097 (2018).",
    doi="10.1038/s41592-018-0216-7",
)

# The model code copied into architecture.py, in dependency order.
_ARCHITECTURE_MODULES = ("blocks.py", "tagan.py", "wang.py", "tcan.py", "l2l.py")
_WRAPPER_SOURCE = '''

_CLASSES = {
    "ResnetGenerator": ResnetGenerator,
    "UnetGenerator": UnetGenerator,
    "ResidualUNet": ResidualUNet,
    "TCANGenerator": TCANGenerator,
    "CAREUNet": CAREUNet,
}


class NanoscopyNetwork(nn.Module):
    """A napari-nanoscopy generator and, for task-assisted models, its task network.

    Returns the restored image, or (restored image, task outputs) when there is a task network.
    State dict keys: ``generator.*`` and ``task.*``, as in napari-nanoscopy's weights.safetensors.
    """

    def __init__(self, generator: str, generator_kwargs: dict, task: str = "", task_kwargs: dict = None):
        super().__init__()
        self.generator = _CLASSES[generator](**generator_kwargs)
        self.task = _CLASSES[task](**(task_kwargs or {})) if task else None

    def forward(self, x):
        restored = self.generator(x)
        if self.task is None:
            return restored
        return restored, self.task(restored)
'''


def architecture_source() -> str:
    """The self-contained architecture file: the family modules with their package imports removed."""
    models = Path(__file__).resolve().parents[1] / "models"
    parts = [
        f'"""PyTorch architectures of napari-nanoscopy {__version__} (BSD-3-Clause), copied for bioimage.io."""\n',
        "import math\nimport torch\nimport torch.nn.functional as F\nfrom numbers import Integral, Real\n"
        "from torch import nn\n\n\n",
        "class NanoscopyError(ValueError):\n    pass\n\n\n",
        inspect.getsource(check_int),  # the models' argument check lives in limits
    ]
    for name in _ARCHITECTURE_MODULES:
        text = (models / name).read_text(encoding="utf-8")
        kept = [line for line in text.splitlines() if not re.match(r"^from \.+\w* import |^from \.\w+ import ", line)]
        parts.append(f"\n\n# ---- models/{name} " + "-" * 60 + "\n" + "\n".join(kept) + "\n")
    parts.append(_WRAPPER_SOURCE)
    return "".join(parts)


def _architecture_module(source: str):
    namespace: dict[str, Any] = {"__name__": "napari_nanoscopy_bmz_architecture"}
    exec(compile(source, ARCHITECTURE_FILE, "exec"), namespace)  # our own code, written by architecture_source
    return namespace




def _torch_version() -> str:
    return torch.__version__.split("+")[0]


# --- normalisation <-> bioimage.io processing ------------------------------------------------


def _preprocessing(card) -> list[dict[str, Any]]:
    """The card's input normalisation as bioimage.io preprocessing (one spec for all channels)."""
    specs = card.input_normalizations()
    if any(spec != specs[0] for spec in specs[1:]):
        raise NanoscopyError(
            f"The model '{card.name}' normalises its input channels differently "
            f"({', '.join(s.mode for s in specs)}); bioimage.io applies one processing to the whole "
            "input tensor, so it cannot be exported."
        )
    spec = specs[0]
    low_target, high_target = spec.range
    ops: list[dict[str, Any]] = [{"id": "ensure_dtype", "kwargs": {"dtype": "float32"}}]
    if isinstance(spec, (Percentile, MinMax)):
        low, high = (spec.low, spec.high) if isinstance(spec, Percentile) else (0.0, 100.0)
        ops.append({"id": "scale_range", "kwargs": {"axes": ["y", "x"], "min_percentile": low,
                                                    "max_percentile": high, "eps": EPS}})
    elif isinstance(spec, MeanStd):
        ops.append({"id": "zero_mean_unit_variance", "kwargs": {"axes": ["y", "x"], "eps": max(EPS, spec.eps)}})
    elif isinstance(spec, Fixed):
        gain = 1.0 / (spec.max - spec.min)
        ops.append({"id": "scale_linear", "kwargs": {"gain": gain, "offset": -spec.min * gain}})
    if not isinstance(spec, NoNormalisation) and (low_target, high_target) != (0.0, 1.0):
        ops.append({"id": "scale_linear", "kwargs": {"gain": high_target - low_target, "offset": low_target}})
    return ops


def _postprocessing(card) -> list[dict[str, Any]]:
    spec = card.normalization.output
    ops: list[dict[str, Any]] = []
    if spec.mode == "range":
        low, high = spec.range
        if (low, high) != (0.0, 1.0):
            ops.append({"id": "scale_linear", "kwargs": {"gain": 1.0 / (high - low), "offset": -low / (high - low)}})
    # mode "input" (CARE): no bioimage.io operation inverts an input normalisation, so the output
    # stays in the normalised units (see the README written with the package).
    ops.append({"id": "ensure_dtype", "kwargs": {"dtype": "float32"}})
    return ops


def _apply_ops(x: np.ndarray, ops: list[dict[str, Any]]) -> np.ndarray:
    """Apply bioimage.io processing to a (batch, channel, y, x) array, as bioimage.io.core does."""
    x = x.astype(np.float64)
    for op in ops:
        kind, kwargs = op["id"], op.get("kwargs", {})
        if kind == "ensure_dtype":
            continue
        if kind == "scale_range":
            low = np.percentile(x, kwargs.get("min_percentile", 0.0), axis=(-2, -1), keepdims=True)
            high = np.percentile(x, kwargs.get("max_percentile", 100.0), axis=(-2, -1), keepdims=True)
            x = (x - low) / (high - low + kwargs.get("eps", EPS))
        elif kind == "zero_mean_unit_variance":
            x = (x - x.mean(axis=(-2, -1), keepdims=True)) / (x.std(axis=(-2, -1), keepdims=True) + kwargs.get("eps", EPS))
        elif kind == "scale_linear":
            x = x * kwargs.get("gain", 1.0) + kwargs.get("offset", 0.0)
        else:
            raise NanoscopyError(f"Unsupported processing '{kind}'.")
    return x.astype(np.float32)


# --- export ----------------------------------------------------------------------------------


def _synthetic_test_image(size: int, channels: int, seed: int = 0) -> np.ndarray:
    """A deterministic field of blurred points and filaments with Poisson noise, (C, Y, X)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    out = np.empty((channels, size, size), dtype=np.float32)
    for c in range(channels):
        field = np.zeros((size, size))
        points = rng.integers(0, size, (size // 4, 2))
        field[points[:, 0], points[:, 1]] = rng.uniform(50, 150, len(points))
        for _ in range(4):
            t = np.linspace(0, 1, 4 * size)
            y0, x0, y1, x1 = rng.uniform(0, size - 1, 4)
            bend = rng.uniform(-size / 4, size / 4)
            ys = np.clip(y0 + (y1 - y0) * t + bend * np.sin(np.pi * t), 0, size - 1).astype(int)
            xs = np.clip(x0 + (x1 - x0) * t, 0, size - 1).astype(int)
            field[ys, xs] += 20
        blurred = gaussian_filter(field, 2.0) * 20 + 2
        out[c] = rng.poisson(blurred).astype(np.float32)
    return out


def _test_input(image: np.ndarray | None, channels: int, multiple: int, minimum: int) -> np.ndarray:
    if image is None:
        image = _synthetic_test_image(max(TEST_SIZE, minimum), channels)
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3 or image.shape[0] != channels:
        raise NanoscopyError(
            f"The test image has shape {image.shape}; give one plane (Y, X) or, for a model with {channels} inputs, "
            f"({channels}, Y, X)."
        )
    if not np.isfinite(image).all():
        raise NanoscopyError("The test image has NaN or infinite pixels; give a finite image.")
    side = [max(minimum, min(n, max(TEST_SIZE, minimum)) // multiple * multiple) for n in image.shape[1:]]
    if image.shape[1] < side[0] or image.shape[2] < side[1]:
        raise NanoscopyError(
            f"The test image is {image.shape[1]}x{image.shape[2]} pixels; this model needs at least {minimum}x{minimum}."
        )
    y0, x0 = (image.shape[1] - side[0]) // 2, (image.shape[2] - side[1]) // 2
    return np.ascontiguousarray(image[:, y0:y0 + side[0], x0:x0 + side[1]])[None]


def _to_uint8(plane: np.ndarray) -> np.ndarray:
    low, high = np.percentile(plane, [0.5, 99.5])
    return (np.clip((plane - low) / max(high - low, 1e-12), 0, 1) * 255).astype(np.uint8)


def _write_cover(path: Path, test_input: np.ndarray, test_output: np.ndarray) -> None:
    """Input and output side by side (2:1), 8-bit grey PNG."""
    from PIL import Image

    left, right = _to_uint8(test_input[0, 0]), _to_uint8(test_output[0, 0])
    gap = np.full((left.shape[0], 4), 255, np.uint8)
    Image.fromarray(np.concatenate([left, gap, right], axis=1)).resize((512, 256)).save(path)


def _translation_note(translation: dict | None) -> str:
    if translation is None:
        return ""
    other = "b2a" if translation["direction"] == "a2b" else "a2b"
    return (f"\nThis package translates {translation['from']} images into {translation['to']} "
            f"({translation['direction']}): one generator of a TA-CycleGAN translation model. Its other direction is "
            f"exported with `napari-nanoscopy export-bmz MODEL OUT --direction {other}`.\n")


def _readme(card, halo: int, size_min: int, step: int, translation: dict | None = None) -> str:
    citation = CITATIONS.get(card.family, {})
    pixel = f"{card.pixel_size_nm:g} nm" if card.pixel_size_nm else "not recorded (any pixel size)"
    output_units = (
        "The bioimage.io output is in the normalised units (the input's percentile range mapped to [0, 1]): no "
        "bioimage.io processing inverts an input normalisation. napari-nanoscopy maps it back to the input's "
        "intensity units, as CARE does."
        if card.normalization.output.mode == "input"
        else "The output is scaled to [0, 1]."
    )
    metrics = card.metrics or {}
    metric_lines = "\n".join(f"- `{k}`: {json.dumps(v)}" for k, v in metrics.items()) or "- none recorded in the card"
    tasks = ""
    if card.task:
        tasks = (
            f"\nA second output, `task`, holds the task network's raw outputs ({', '.join(card.task.outputs)}, "
            f"tanh scale); threshold them at {list(card.task.thresholds)} for a segmentation.\n"
        )
    return f"""# {card.name}

{card.description or 'A napari-nanoscopy model.'}

- Method: {card.family} ({citation.get('text', '')} doi:{citation.get('doi', '')})
- Inputs: {', '.join(card.input_channels)}; outputs: {', '.join(card.output_channels)}
- Trained at a pixel size of {pixel}. Apply it at that pixel size (napari-nanoscopy resamples
  automatically; other tools do not).
- Input normalisation: `{json.dumps(card.input_normalizations()[0].to_dict())}`; {output_units}
- Tiles: at least {size_min} pixels, in steps of {step}; the network's receptive radius is {halo} pixels
  (the declared halo).
{tasks}{_translation_note(translation)}
Exported by napari-nanoscopy {__version__}. The whole model card is under
`config.napari-nanoscopy` in rdf.yaml; napari-nanoscopy reads this package back with its
Monte-Carlo dropout uncertainty (`napari-nanoscopy restore IN OUT --model this.zip --samples 10`).

## Validation

Evaluation recorded in the model card (held-out data, see its training section):

{metric_lines}

The test tensors in this package were produced by napari-nanoscopy's own forward pass; `bioimageio test`
reproduces them from both weight formats.
"""


def _checked_target(card, out: str | os.PathLike, overwrite: bool) -> Path:
    """``out`` as a path, once the model is exportable and the path free (or ``overwrite``)."""
    if card.family not in CITATIONS:
        raise NanoscopyError(
            f"The model '{card.name}' is a {card.family} model; only napari-nanoscopy's own families can be exported."
        )
    target = Path(out).expanduser()
    if target.exists() and not overwrite:
        raise NanoscopyError(f"{target} already exists; choose another path or pass overwrite=True (--overwrite).")
    if not target.parent.is_dir():
        raise NanoscopyError(f"The folder {target.parent} does not exist; create it first.")
    return target


def export_bmz(
    model,
    out: str | os.PathLike,
    *,
    test_image: np.ndarray | None = None,
    authors: list[str] | None = None,
    license: str = "CC-BY-4.0",
    overwrite: bool = False,
    direction: str | None = None,
) -> Path:
    """Write ``model`` (a package, path or bundled name) as a bioimage.io model at ``out``.

    ``out`` ending in ``.zip`` gives the zipped package (what the Model Zoo takes), anything else
    a folder. ``test_image`` (Y, X) or (C, Y, X), at the model's pixel size, becomes the test
    input (cropped to at most 128x128 pixels); by default a synthetic field of points and
    filaments is used. Written atomically: nothing appears at ``out`` unless the package is
    complete and loads back. ``direction`` ("a2b", the default, or "b2a") picks the generator of
    a translation (tagan-cycle) package; other models take none.
    """
    import yaml

    package = model if isinstance(model, ModelPackage) else load_model(model)
    package, translation = _one_direction(package, direction)
    card = package.card
    target = _checked_target(card, out, overwrite)
    preprocessing, postprocessing = _preprocessing(card), _postprocessing(card)
    geometry = _geometry(package)
    source = architecture_source()
    network, kwargs, state = _exported_network(package, source)

    test_input = _test_input(test_image, package.generator.in_channels, geometry.step, geometry.size_min)
    example = torch.from_numpy(_apply_ops(test_input, preprocessing))
    with torch.inference_mode():
        outputs = network(example)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    restored = _apply_ops(outputs[0].float().numpy(), postprocessing)
    task_out = outputs[1].float().numpy() if len(outputs) > 1 else None

    with staged_output(target, overwrite) as staging:
        (staging / ARCHITECTURE_FILE).write_text(source, encoding="utf-8")
        torch.save(state, staging / STATE_DICT_FILE)
        comment = _save_torchscript(network, example, staging / TORCHSCRIPT_FILE)
        np.save(staging / "test_input.npy", test_input)
        np.save(staging / "test_output.npy", restored)
        if task_out is not None:
            np.save(staging / "test_task.npy", task_out)
        _write_cover(staging / "cover.png", test_input, restored)
        (staging / "README.md").write_text(
            _readme(card, geometry.halo, geometry.size_min, geometry.step, translation), encoding="utf-8")

        def file(name: str) -> dict[str, str]:
            return {"source": name, "sha256": sha256_of(staging / name)}

        rdf = {
            "format_version": FORMAT_VERSION,
            "type": "model",
            "name": _bmz_name(card.name),
            "description": (card.description or f"{card.family} model exported by napari-nanoscopy")[:1000],
            "authors": [{"name": name} for name in (authors or ["napari-nanoscopy"])],
            "cite": [CITATIONS[card.family]] + ([CARE_CITATION] if card.family == "l2l" else [])
            + ([CYCLEGAN_CITATION] if translation else []),
            "license": license,
            "tags": ["napari-nanoscopy", card.family, "fluorescence-light-microscopy", "2d", "pytorch",
                     "nanoscopy"] + (["image-translation", "domain-adaptation"] if translation else
                                     ["super-resolution" if card.family != "l2l" else "denoising"]),
            "covers": [file("cover.png")],
            "documentation": file("README.md"),
            "timestamp": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
            "inputs": [_input_description(card, file, geometry, preprocessing)],
            "outputs": _output_descriptions(card, file, geometry, postprocessing, with_task=task_out is not None),
            "weights": _weights_description(file, kwargs, comment),
            "config": {CONFIG_KEY: {"card": card.to_dict(), "version": __version__}},
        }
        if card.pixel_size_nm:
            rdf["config"][CONFIG_KEY]["pixel_size_nm"] = card.pixel_size_nm
        if translation:
            rdf["config"][CONFIG_KEY]["translation"] = translation
        (staging / RDF_FILE).write_text(yaml.safe_dump(rdf, sort_keys=False, allow_unicode=True), encoding="utf-8")
        load_bmz(staging, source=str(target))  # what we wrote must load back
    return target


def _one_direction(package: ModelPackage, direction: str | None) -> tuple[ModelPackage, dict | None]:
    """The package as the one network bioimage.io describes, and the translation it makes (None: not a
    translation model): a tagan-cycle package's generator of ``direction``, its card without the cycle."""
    from ..translation import DIRECTIONS, translation_model

    card = package.card
    if card.cycle is None:
        if direction is not None:
            raise NanoscopyError(f"The model '{card.name}' is not a translation (tagan-cycle) model and has one "
                                 "direction; leave out direction (--direction).")
        return package, None
    direction = direction or DIRECTIONS[0]
    chosen = translation_model(package, direction)
    exported = copy.deepcopy(chosen.card)
    translation = {"direction": direction, "from": exported.cycle.domain_a, "to": exported.cycle.domain_b}
    exported.cycle = None  # the exported package holds this direction's generator only
    exported.description = (f"{card.description} This package holds the {direction} generator: it translates "
                            f"{translation['from']} images into {translation['to']}.").strip()
    return ModelPackage(card=exported, generator=chosen.generator, task_network=None, source=chosen.source), translation


@dataclass(frozen=True)
class _Geometry:
    """The exported model's spatial constraints, in pixels: sizes are ``size_min + k * step``,
    and ``halo`` pixels at each border of an output are unreliable."""

    step: int
    halo: int
    size_min: int


def _geometry(package: ModelPackage) -> _Geometry:
    generator, task_network = package.generator, package.task_network
    step = math.lcm(generator.size_multiple, task_network.size_multiple if task_network else 1)
    halo = generator.receptive_radius + (task_network.receptive_radius if task_network else 0)
    return _Geometry(step, halo, max(64, math.ceil((2 * halo + step) / step) * step))


def _exported_network(package: ModelPackage, source: str) -> tuple[torch.nn.Module, dict[str, Any], dict]:
    """``NanoscopyNetwork`` built from ``source`` (the architecture file) with the package's
    weights, its keyword arguments and its state dict."""
    card, generator, task_network = package.card, package.generator, package.task_network
    kwargs = {
        "generator": type(generator).__name__,
        "generator_kwargs": _full_kwargs(card.generator.kwargs, card.family),
        "task": type(task_network).__name__ if task_network is not None else "",
        "task_kwargs": _task_kwargs(card) if task_network is not None else {},
    }
    network = _architecture_module(source)["NanoscopyNetwork"](**kwargs)
    state = package_state(generator, task_network)
    network.load_state_dict(state, strict=True)
    network.eval()
    return network, kwargs, state


def _save_torchscript(network: torch.nn.Module, example: torch.Tensor, path: Path) -> str:
    """Save ``network`` as TorchScript at ``path``; returns how it was converted."""
    try:
        scripted = torch.jit.script(network)
        comment = "torch.jit.script of NanoscopyNetwork"
    except Exception:  # some architectures do not script; tracing is exact for these static graphs
        scripted = torch.jit.trace(network, example, check_trace=False)
        comment = "torch.jit.trace of NanoscopyNetwork"
    scripted.save(str(path))
    return comment


def _input_description(card, file, geometry: _Geometry, preprocessing: list) -> dict[str, Any]:
    space = {"min": geometry.size_min, "step": geometry.step}
    return {
        "id": "input",
        "description": ", ".join(card.input_channels),
        "axes": [
            {"type": "batch"},
            {"type": "channel", "channel_names": _axis_names(card.input_channels)},
            {"type": "space", "id": "y", "size": dict(space)},
            {"type": "space", "id": "x", "size": dict(space)},
        ],
        "test_tensor": file("test_input.npy"),
        "preprocessing": preprocessing,
    }


def _output_descriptions(card, file, geometry: _Geometry, postprocessing: list, with_task: bool) -> list[dict[str, Any]]:
    def output_axes(channel_names: list[str]) -> list[dict[str, Any]]:
        return [
            {"type": "batch"},
            {"type": "channel", "channel_names": _axis_names(channel_names)},
            {"type": "space", "id": "y", "size": {"tensor_id": "input", "axis_id": "y"}, "halo": geometry.halo},
            {"type": "space", "id": "x", "size": {"tensor_id": "input", "axis_id": "x"}, "halo": geometry.halo},
        ]

    outputs = [{
        "id": "restored",
        "description": ", ".join(card.output_channels),
        "axes": output_axes(card.output_channels),
        "test_tensor": file("test_output.npy"),
        "postprocessing": postprocessing,
    }]
    if with_task:
        outputs.append({
            "id": "task",
            "description": f"task network outputs ({', '.join(card.task.outputs)}), tanh scale",
            "axes": output_axes(card.task.outputs),
            "test_tensor": file("test_task.npy"),
        })
    return outputs


def _weights_description(file, kwargs: dict[str, Any], comment: str) -> dict[str, Any]:
    return {
        "pytorch_state_dict": {
            **file(STATE_DICT_FILE),
            "architecture": {**file(ARCHITECTURE_FILE), "callable": "NanoscopyNetwork", "kwargs": kwargs},
            "pytorch_version": _torch_version(),
        },
        "torchscript": {
            **file(TORCHSCRIPT_FILE),
            "parent": "pytorch_state_dict",
            "pytorch_version": _torch_version(),
            "comment": comment,
        },
    }


def _axis_names(names: list[str]) -> list[str]:
    """bioimage.io channel names: identifiers, unique."""
    cleaned = [re.sub(r"[^A-Za-z0-9_]+", "_", n).strip("_") or f"channel{i}" for i, n in enumerate(names)]
    return [f"{n}{i}" if cleaned.count(n) > 1 else n for i, n in enumerate(cleaned)]


def _bmz_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9 _\-()]+", " ", name).strip()
    return (cleaned or "napari-nanoscopy model")[:128]


def _full_kwargs(card_kwargs: dict, family: str) -> dict:
    return {**paper_defaults(family), **card_kwargs}


def _task_kwargs(card) -> dict:
    return {**task_network_defaults(card.task_network.kind), **card.task_network.kwargs}
