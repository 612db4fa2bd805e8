"""BioImage Model Zoo (bioimage.io) model packages: export and import.

Export (:func:`export_bmz`) writes a bioimage.io model description, format 0.5, with

- ``rdf.yaml``: inputs and outputs with their axes, size constraints (minimum and step) and halo,
  the model card's normalisation as bioimage.io pre- and post-processing, citations of the
  method's paper, the whole napari-nanoscopy card under ``config.napari-nanoscopy``;
- ``pytorch_state_dict`` weights (``weights.pt``, a plain state dict) with their architecture:
  ``architecture.py``, a self-contained copy of the family's PyTorch code (it imports only torch),
  and the callable ``NanoscopyNetwork`` with its keyword arguments;
- ``torchscript`` weights (``weights_torchscript.pt``);
- test input and output tensors (``test_input.npy``, ``test_output.npy``), a cover image and a
  ``README.md``.

Import (:func:`load_bmz`) reads such a package (folder, ``rdf.yaml`` or ``.zip``) back as a
:class:`~napari_nanoscopy.packages.ModelPackage` the Restorer runs. Packages that napari-nanoscopy
exported are rebuilt from their card and state dict (so Monte-Carlo dropout and task outputs
work as before); any other package runs from its TorchScript weights, with its pre-processing
turned into the Restorer's whole-image normalisation and its element-wise post-processing
applied to every tile. Nothing is downloaded: every file must be inside the package. No code
from a package runs: its ``architecture.py`` is never imported, and its TorchScript runs only
after :mod:`.safety` has found nothing in it but pure tensor operations.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..errors import NanoscopyError
from .safety import inside, load_torchscript

FORMAT_VERSION = "0.5.12"
RDF_FILE = "rdf.yaml"
DESCRIPTION_FILES = ("rdf.yaml", "bioimageio.yaml")
ARCHITECTURE_FILE = "architecture.py"
STATE_DICT_FILE = "weights.pt"
TORCHSCRIPT_FILE = "weights_torchscript.pt"
CONFIG_KEY = "napari-nanoscopy"
# Half-width of the context given to tiles of a foreign model that declares no halo.
FOREIGN_DEFAULT_HALO = 32
TEST_SIZE = 128  # pixels: side of the synthetic test image (also the largest crop of a given one)
EPS = 1e-6  # bioimage.io's default epsilon of scale_range

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
        "import torch\nimport torch.nn.functional as F\nfrom numbers import Integral, Real\nfrom torch import nn\n\n\n",
        "class NanoscopyError(ValueError):\n    pass\n",
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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _torch_version() -> str:
    return torch.__version__.split("+")[0]


# --- normalisation <-> bioimage.io processing ------------------------------------------------


def _preprocessing(card) -> list[dict[str, Any]]:
    """The card's input normalisation as bioimage.io preprocessing (one spec for all channels)."""
    specs = card.input_normalizations()
    if any(spec != specs[0] for spec in specs[1:]):
        raise NanoscopyError(
            f"The model '{card.name}' normalises its input channels differently "
            f"({', '.join(s.get('mode', '?') for s in specs)}); bioimage.io applies one processing to the whole "
            "input tensor, so it cannot be exported."
        )
    spec = specs[0]
    mode = spec.get("mode")
    low_target, high_target = (float(v) for v in spec.get("range", [-1.0, 1.0]))
    ops: list[dict[str, Any]] = [{"id": "ensure_dtype", "kwargs": {"dtype": "float32"}}]
    if mode in ("percentile", "minmax"):
        low, high = (float(spec.get("low", 1.0)), float(spec.get("high", 99.8))) if mode == "percentile" else (0.0, 100.0)
        ops.append({"id": "scale_range", "kwargs": {"axes": ["y", "x"], "min_percentile": low,
                                                    "max_percentile": high, "eps": EPS}})
    elif mode == "meanstd":
        ops.append({"id": "zero_mean_unit_variance", "kwargs": {"axes": ["y", "x"], "eps": max(EPS, float(spec.get("eps", EPS)))}})
    elif mode == "fixed":
        gain = 1.0 / (float(spec["max"]) - float(spec["min"]))
        ops.append({"id": "scale_linear", "kwargs": {"gain": gain, "offset": -float(spec["min"]) * gain}})
    elif mode != "none":
        raise NanoscopyError(f"The normalisation mode '{mode}' of '{card.name}' has no bioimage.io equivalent.")
    if mode != "none" and (low_target, high_target) != (0.0, 1.0):
        ops.append({"id": "scale_linear", "kwargs": {"gain": high_target - low_target, "offset": low_target}})
    return ops


def _postprocessing(card) -> list[dict[str, Any]]:
    spec = card.output_normalization()
    ops: list[dict[str, Any]] = []
    if spec["mode"] == "range":
        low, high = (float(v) for v in spec.get("range", [-1.0, 1.0]))
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


def _readme(card, halo: int, size_min: int, step: int) -> str:
    citation = CITATIONS.get(card.family, {})
    pixel = f"{card.pixel_size_nm:g} nm" if card.pixel_size_nm else "not recorded (any pixel size)"
    output_units = (
        "The bioimage.io output is in the normalised units (the input's percentile range mapped to [0, 1]): no "
        "bioimage.io processing inverts an input normalisation. napari-nanoscopy maps it back to the input's "
        "intensity units, as CARE does."
        if card.output_normalization()["mode"] == "input"
        else "The output is scaled to [0, 1]."
    )
    metrics = card.metrics or {}
    metric_lines = "\n".join(f"- `{k}`: {json.dumps(v)}" for k, v in metrics.items()) or "- none recorded in the card"
    tasks = ""
    if card.task:
        tasks = (
            f"\nA second output, `task`, holds the task network's raw outputs ({', '.join(card.task['outputs'])}, "
            f"tanh scale); threshold them at {card.task['thresholds']} for a segmentation.\n"
        )
    return f"""# {card.name}

{card.description or 'A napari-nanoscopy model.'}

- Method: {card.family} ({citation.get('text', '')} doi:{citation.get('doi', '')})
- Inputs: {', '.join(card.input_channels)}; outputs: {', '.join(card.output_channels)}
- Trained at a pixel size of {pixel}. Apply it at that pixel size (napari-nanoscopy resamples
  automatically; other tools do not).
- Input normalisation: `{json.dumps(card.input_normalizations()[0])}`; {output_units}
- Tiles: at least {size_min} pixels, in steps of {step}; the network's receptive radius is {halo} pixels
  (the declared halo).
{tasks}
Exported by napari-nanoscopy {__version__}. The whole model card is under
`config.napari-nanoscopy` in rdf.yaml; napari-nanoscopy reads this package back with its
Monte-Carlo dropout uncertainty (`napari-nanoscopy restore IN OUT --model this.zip --samples 10`).

## Validation

Evaluation recorded in the model card (held-out data, see its training section):

{metric_lines}

The test tensors in this package were produced by napari-nanoscopy's own forward pass; `bioimageio test`
reproduces them from both weight formats.
"""


def export_bmz(
    model,
    out: str | os.PathLike,
    *,
    test_image: np.ndarray | None = None,
    authors: list[str] | None = None,
    license: str = "CC-BY-4.0",
    overwrite: bool = False,
) -> Path:
    """Write ``model`` (a package, path or bundled name) as a bioimage.io model at ``out``.

    ``out`` ending in ``.zip`` gives the zipped package (what the Model Zoo takes), anything else
    a folder. ``test_image`` (Y, X) or (C, Y, X), at the model's pixel size, becomes the test
    input (cropped to at most 128x128 pixels); by default a synthetic field of points and
    filaments is used. Written atomically: nothing appears at ``out`` unless the package is
    complete and loads back.
    """
    import yaml

    from ..packages import ModelPackage, load_model, package_state, staged_output

    package = model if isinstance(model, ModelPackage) else load_model(model)
    card = package.card
    if card.family not in CITATIONS:
        raise NanoscopyError(
            f"The model '{card.name}' is a {card.family} model; only napari-nanoscopy's own families can be exported."
        )
    target = Path(out).expanduser()
    if target.exists() and not overwrite:
        raise NanoscopyError(f"{target} already exists; choose another path or pass overwrite=True (--overwrite).")
    if not target.parent.is_dir():
        raise NanoscopyError(f"The folder {target.parent} does not exist; create it first.")
    generator, task_network = package.generator, package.task_network
    preprocessing, postprocessing = _preprocessing(card), _postprocessing(card)

    step = math.lcm(generator.size_multiple, task_network.size_multiple if task_network else 1)
    halo = generator.receptive_radius + (task_network.receptive_radius if task_network else 0)
    size_min = max(64, math.ceil((2 * halo + step) / step) * step)
    source = architecture_source()
    namespace = _architecture_module(source)
    kwargs = {
        "generator": type(generator).__name__,
        "generator_kwargs": _full_kwargs(card.generator, card.family),
        "task": type(task_network).__name__ if task_network is not None else "",
        "task_kwargs": _task_kwargs(card) if task_network is not None else {},
    }
    network = namespace["NanoscopyNetwork"](**kwargs)
    state = package_state(generator, task_network)
    network.load_state_dict(state, strict=True)
    network.eval()

    test_input = _test_input(test_image, generator.in_channels, step, size_min)
    with torch.inference_mode():
        outputs = network(torch.from_numpy(_apply_ops(test_input, preprocessing)))
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    restored = _apply_ops(outputs[0].float().numpy(), postprocessing)
    task_out = outputs[1].float().numpy() if len(outputs) > 1 else None

    with staged_output(target) as staging:
        (staging / ARCHITECTURE_FILE).write_text(source, encoding="utf-8")
        torch.save(state, staging / STATE_DICT_FILE)
        example = torch.from_numpy(_apply_ops(test_input, preprocessing))
        try:
            scripted = torch.jit.script(network)
            comment = "torch.jit.script of NanoscopyNetwork"
        except Exception:  # some architectures do not script; tracing is exact for these static graphs
            scripted = torch.jit.trace(network, example, check_trace=False)
            comment = "torch.jit.trace of NanoscopyNetwork"
        scripted.save(str(staging / TORCHSCRIPT_FILE))
        np.save(staging / "test_input.npy", test_input)
        np.save(staging / "test_output.npy", restored)
        if task_out is not None:
            np.save(staging / "test_task.npy", task_out)
        _write_cover(staging / "cover.png", test_input, restored)
        (staging / "README.md").write_text(_readme(card, halo, size_min, step), encoding="utf-8")

        def file(name: str) -> dict[str, str]:
            return {"source": name, "sha256": _sha256(staging / name)}

        space = {"min": size_min, "step": step}

        def output_axes(channel_names: list[str]) -> list[dict[str, Any]]:
            return [
                {"type": "batch"},
                {"type": "channel", "channel_names": _axis_names(channel_names)},
                {"type": "space", "id": "y", "size": {"tensor_id": "input", "axis_id": "y"}, "halo": halo},
                {"type": "space", "id": "x", "size": {"tensor_id": "input", "axis_id": "x"}, "halo": halo},
            ]

        outputs_descr = [{
            "id": "restored",
            "description": ", ".join(card.output_channels),
            "axes": output_axes(card.output_channels),
            "test_tensor": file("test_output.npy"),
            "postprocessing": postprocessing,
        }]
        if task_out is not None:
            outputs_descr.append({
                "id": "task",
                "description": f"task network outputs ({', '.join(card.task['outputs'])}), tanh scale",
                "axes": output_axes(card.task["outputs"]),
                "test_tensor": file("test_task.npy"),
            })
        citations = [CITATIONS[card.family]] + ([CARE_CITATION] if card.family == "l2l" else [])
        rdf = {
            "format_version": FORMAT_VERSION,
            "type": "model",
            "name": _bmz_name(card.name),
            "description": (card.description or f"{card.family} model exported by napari-nanoscopy")[:1000],
            "authors": [{"name": name} for name in (authors or ["napari-nanoscopy"])],
            "cite": citations,
            "license": license,
            "tags": ["napari-nanoscopy", card.family, "fluorescence-light-microscopy", "2d", "pytorch",
                     "super-resolution" if card.family != "l2l" else "denoising", "nanoscopy"],
            "covers": [file("cover.png")],
            "documentation": file("README.md"),
            "timestamp": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
            "inputs": [{
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
            }],
            "outputs": outputs_descr,
            "weights": {
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
            },
            "config": {CONFIG_KEY: {"card": card.to_dict(), "version": __version__}},
        }
        if card.pixel_size_nm:
            rdf["config"][CONFIG_KEY]["pixel_size_nm"] = card.pixel_size_nm
        (staging / RDF_FILE).write_text(yaml.safe_dump(rdf, sort_keys=False, allow_unicode=True), encoding="utf-8")
        load_bmz(staging, source=str(target))  # what we wrote must load back
    return target


def _axis_names(names: list[str]) -> list[str]:
    """bioimage.io channel names: identifiers, unique."""
    cleaned = [re.sub(r"[^A-Za-z0-9_]+", "_", n).strip("_") or f"channel{i}" for i, n in enumerate(names)]
    return [f"{n}{i}" if cleaned.count(n) > 1 else n for i, n in enumerate(cleaned)]


def _bmz_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9 _\-()]+", " ", name).strip()
    return (cleaned or "napari-nanoscopy model")[:128]


def _full_kwargs(card_kwargs: dict, family: str) -> dict:
    from ..models import paper_defaults

    return {**paper_defaults(family), **card_kwargs}


def _task_kwargs(card) -> dict:
    from ..models import _TASK_NETWORKS

    kind = card.task_network["kind"]
    return {**_TASK_NETWORKS[kind][1], **card.task_network.get("kwargs", {})}


# --- import ----------------------------------------------------------------------------------


def is_bmz_package(path: str | os.PathLike) -> bool:
    path = Path(path)
    if path.is_dir():
        return any((path / name).is_file() for name in DESCRIPTION_FILES)
    if path.name in DESCRIPTION_FILES or path.name.endswith(".bioimageio.yaml"):
        return path.is_file()
    if path.suffix.lower() == ".zip" and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return any(Path(n).name in DESCRIPTION_FILES for n in archive.namelist())
    return False


def _read_rdf(folder: Path, source: str) -> tuple[dict[str, Any], Path]:
    import yaml

    if folder.is_file():
        description, folder = folder, folder.parent
    else:
        found = [folder / n for n in DESCRIPTION_FILES if (folder / n).is_file()]
        if not found:
            raise NanoscopyError(f"{source} holds no rdf.yaml or bioimageio.yaml; it is not a bioimage.io package.")
        description = found[0]
    try:
        rdf = yaml.safe_load(description.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise NanoscopyError(f"The bioimage.io description in {source} is not valid YAML ({error}).") from None
    if not isinstance(rdf, dict) or rdf.get("type") != "model":
        raise NanoscopyError(f"The bioimage.io description in {source} does not describe a model (type: model).")
    version = str(rdf.get("format_version", ""))
    if version.startswith("0.4."):
        original = rdf.get("weights") or {}
        rdf = _updated_from_0_4(description, source)
        for name, entry in rdf["weights"].items():  # the converter drops the hashes it did not check
            sha = (original.get(name) or {}).get("sha256") if isinstance(original.get(name), dict) else None
            if sha and isinstance(entry, dict):
                entry.setdefault("sha256", sha)
    elif not version.startswith("0.5."):
        raise NanoscopyError(
            f"{source} uses bioimage.io model format {version or '(none)'}; formats 0.4 and 0.5 are read. Update it "
            "with 'bioimageio update-format' (bioimageio.core) first."
        )
    return rdf, folder


def _updated_from_0_4(description: Path, source: str) -> dict[str, Any]:
    """A format 0.4 description converted to 0.5 by bioimageio.spec's own converter (offline)."""
    try:
        from bioimageio.spec import dump_description, update_format
        from bioimageio.spec.model.v0_5 import ModelDescr
    except ImportError:
        raise NanoscopyError(
            f"{source} uses bioimage.io model format 0.4; reading it needs bioimageio.spec to convert it "
            "('pip install napari-nanoscopy[bmz]'), or update it with 'bioimageio update-format' first."
        ) from None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        updated = update_format(str(description), perform_io_checks=False)
    if not isinstance(updated, ModelDescr):
        raise NanoscopyError(
            f"{source} is a bioimage.io format 0.4 description that bioimageio.spec cannot convert to 0.5 "
            "(it is invalid); check it with 'bioimageio validate'."
        )
    rdf = dump_description(updated)
    rdf["weights"] = {name: entry for name, entry in (rdf.get("weights") or {}).items() if entry}
    return rdf


def _local_file(folder: Path, entry: Any, source: str, what: str) -> Path:
    name = entry.get("source") if isinstance(entry, dict) else entry
    if not isinstance(name, str) or re.match(r"^[a-z]+://", name):
        raise NanoscopyError(
            f"The {what} of {source} is not a file inside the package ({name!r}); napari-nanoscopy works offline, "
            "so download a complete package (.zip) first."
        )
    path = inside(folder, name, f"{what} file", source)
    if not path.is_file():
        raise NanoscopyError(f"The {what} file {name} of {source} is missing from the package.")
    sha = entry.get("sha256") if isinstance(entry, dict) else None
    if sha and _sha256(path) != sha:
        raise NanoscopyError(f"The {what} file {name} of {source} does not match its sha256; the package is damaged.")
    return path


def load_bmz(path: str | os.PathLike, source: str | None = None):
    """Load a bioimage.io model package (folder, its rdf.yaml, or .zip) as a ModelPackage."""
    from ..packages import ModelCard, ModelPackage, _split_state, build_modules, load_state

    path = Path(path).expanduser()
    source = source or str(path)
    if path.is_file() and path.suffix.lower() == ".zip":
        from ..packages import load_model

        return load_model(path)  # extracts safely and comes back here with the folder
    rdf, folder = _read_rdf(path, source)
    weights = rdf.get("weights") or {}
    ours = (rdf.get("config") or {}).get(CONFIG_KEY)
    if ours and "pytorch_state_dict" in weights:
        card = ModelCard.from_dict(ours["card"], source=f"{source} (config.{CONFIG_KEY}.card)")
        weights_path = _local_file(folder, weights["pytorch_state_dict"], source, "pytorch_state_dict weights")
        try:
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise NanoscopyError(f"The state dict of {source} cannot be loaded safely ({str(error)[:200]}).") from None
        generator, task_network = build_modules(card)
        generator_state, task_state = _split_state(state, with_task=task_network is not None)
        load_state(generator, generator_state, "generator", source)
        generator.eval()
        if task_network is not None:
            load_state(task_network, task_state, "task network", source)
            task_network.eval()
        card.weights_sha256 = _sha256(weights_path)
        card.training = {**card.training, "imported_from_bioimageio": source}
        return ModelPackage(card=card, generator=generator, task_network=task_network, source=source)
    return _load_foreign(rdf, folder, source)


class _BMZNetwork(nn.Module):
    """A foreign bioimage.io TorchScript model as a Restorer generator.

    The Restorer normalises the whole image (the package's statistical pre-processing); this
    module applies the element-wise pre-processing that follows it, reorders the axes the way
    the model wants them, runs it, keeps its first output and applies the element-wise
    post-processing, tile by tile.
    """

    def __init__(self, module, in_channels: int, out_channels: int, size_multiple: int, halo: int,
                 input_order: list[int], output_order: list[int], pre_ops: list, post_ops: list):
        super().__init__()
        self.module = module
        self.in_channels, self.out_channels = in_channels, out_channels
        self.size_multiple, self.receptive_radius = size_multiple, halo
        self.output_activation, self.dropout, self.global_context = "linear", 0.0, False
        self.input_order, self.output_order = input_order, output_order
        self.pre_ops, self.post_ops = pre_ops, post_ops

    @staticmethod
    def _pointwise(x: torch.Tensor, ops: list) -> torch.Tensor:
        for kind, kwargs in ops:
            if kind == "scale_linear":
                x = x * _channel_values(kwargs.get("gain", 1.0), x) + _channel_values(kwargs.get("offset", 0.0), x)
            elif kind == "clip":
                x = x.clamp(kwargs.get("min"), kwargs.get("max"))
            elif kind == "sigmoid":
                x = torch.sigmoid(x)
            elif kind == "binarize":
                x = (x > kwargs["threshold"]).to(x.dtype)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._pointwise(x, self.pre_ops).permute(*self.input_order)
        y = self.module(x)
        if isinstance(y, (tuple, list)):
            y = y[0]
        return self._pointwise(y.permute(*self.output_order), self.post_ops)


def _channel_values(value, x: torch.Tensor):
    if isinstance(value, (list, tuple)):
        return torch.tensor(value, dtype=x.dtype, device=x.device)[None, :, None, None]
    return float(value)


def _axes(tensor: dict[str, Any], source: str) -> list[str]:
    names = []
    for axis in tensor.get("axes") or []:
        kind = axis.get("type")
        ident = axis.get("id") or {"batch": "batch", "channel": "channel", "index": "index"}.get(kind, "")
        names.append(ident)
    if sorted(names) != sorted(["batch", "channel", "y", "x"]) and sorted(names) != sorted(["batch", "y", "x"]):
        raise NanoscopyError(
            f"The tensor '{tensor.get('id')}' of {source} has axes {names}; only 2D images (batch, channel, y, x) "
            "can be restored."
        )
    return names


def _convert_preprocessing(ops: list[dict[str, Any]], channels: int, source: str):
    """bioimage.io preprocessing -> (card normalisation spec(s), element-wise ops after it)."""
    spec: dict[str, Any] | None = None
    pointwise: list = []
    for op in ops or []:
        kind, kwargs = op.get("id"), op.get("kwargs") or {}
        if kind == "ensure_dtype":
            continue
        axes = kwargs.get("axes")
        if kind in ("scale_range", "zero_mean_unit_variance"):
            if spec is not None or pointwise:
                raise NanoscopyError(
                    f"{source} normalises its input twice or after another operation; napari-nanoscopy normalises "
                    "once over the whole image, so it cannot reproduce this pre-processing."
                )
            if axes is not None and ("channel" in axes and channels > 1):
                raise NanoscopyError(
                    f"{source} normalises all input channels jointly; napari-nanoscopy normalises each channel."
                )
            if kind == "scale_range":
                if kwargs.get("reference_tensor"):
                    raise NanoscopyError(f"{source} normalises its input with another tensor's statistics.")
                spec = {"mode": "percentile", "low": float(kwargs.get("min_percentile", 0.0)),
                        "high": float(kwargs.get("max_percentile", 100.0)), "range": [0.0, 1.0]}
            else:
                spec = {"mode": "meanstd", "eps": float(kwargs.get("eps", EPS)), "range": [0.0, 1.0]}
        elif kind == "fixed_zero_mean_unit_variance":
            mean, std = kwargs.get("mean"), kwargs.get("std")
            if isinstance(mean, list) or isinstance(std, list):
                gain = [1.0 / (s + EPS) for s in std]
                pointwise.append(("scale_linear", {"gain": gain, "offset": [-m * g for m, g in zip(mean, gain)]}))
            else:
                gain = 1.0 / (float(std) + float(kwargs.get("eps", EPS)))
                pointwise.append(("scale_linear", {"gain": gain, "offset": -float(mean) * gain}))
        elif kind in ("scale_linear", "clip", "sigmoid", "binarize"):
            pointwise.append((kind, dict(kwargs)))
        else:
            raise NanoscopyError(f"{source} uses the pre-processing '{kind}', which napari-nanoscopy does not implement.")
    return spec or {"mode": "none"}, pointwise


def _convert_postprocessing(ops: list[dict[str, Any]], source: str) -> list:
    pointwise = []
    for op in ops or []:
        kind, kwargs = op.get("id"), op.get("kwargs") or {}
        if kind == "ensure_dtype":
            continue
        if kind in ("scale_linear", "clip", "sigmoid", "binarize"):
            pointwise.append((kind, dict(kwargs)))
        else:
            raise NanoscopyError(
                f"{source} post-processes its output with '{kind}', which needs statistics of the whole output; "
                "a tiled restoration cannot reproduce it, so the package is not supported."
            )
    return pointwise


def _load_foreign(rdf: dict[str, Any], folder: Path, source: str):
    from ..packages import ModelCard, ModelPackage

    weights = rdf.get("weights") or {}
    if "torchscript" not in weights:
        formats = ", ".join(weights) or "none"
        raise NanoscopyError(
            f"{source} has no torchscript weights (it has: {formats}). napari-nanoscopy runs foreign bioimage.io "
            "models from TorchScript only, since pytorch_state_dict weights would run the package's Python code; "
            "add torchscript weights with 'bioimageio.core.add_weights'."
        )
    inputs, outputs = rdf.get("inputs") or [], rdf.get("outputs") or []
    if len(inputs) != 1 or not outputs:
        raise NanoscopyError(f"{source} has {len(inputs)} inputs; only models with one input image can be used.")
    tensor_in, tensor_out = inputs[0], outputs[0]
    in_axes, out_axes = _axes(tensor_in, source), _axes(tensor_out, source)

    def channel_count(tensor: dict[str, Any]) -> tuple[int, list[str]]:
        for axis in tensor["axes"]:
            if axis.get("type") == "channel":
                names = axis.get("channel_names") or []
                return len(names), [str(n) for n in names]
        return 1, [str(tensor.get("id", "image"))]

    n_in, in_names = channel_count(tensor_in)
    n_out, out_names = channel_count(tensor_out)
    # The Restorer hands (batch, channel, y, x); reorder to the model's axes and back.
    ours = ["batch", "channel", "y", "x"]
    in_model = in_axes if "channel" in in_axes else None
    if in_model is None:
        raise NanoscopyError(f"The input of {source} has no channel axis; such models are not supported yet.")
    input_order = [ours.index(a) for a in in_model]
    out_model = out_axes
    if "channel" not in out_model:
        raise NanoscopyError(f"The output of {source} has no channel axis; such models are not supported yet.")
    output_order = [out_model.index(a) for a in ours]

    step, halo = 1, 0
    for axis in tensor_in["axes"]:
        size = axis.get("size")
        if axis.get("type") == "space" and isinstance(size, dict) and size.get("step"):
            step = math.lcm(step, int(size["step"]))
    for axis in tensor_out["axes"]:
        if axis.get("type") == "space":
            halo = max(halo, int(axis.get("halo", 0) or 0))
    spec, pre_ops = _convert_preprocessing(tensor_in.get("preprocessing"), n_in, source)
    post_ops = _convert_postprocessing(tensor_out.get("postprocessing"), source)

    script_path = _local_file(folder, weights["torchscript"], source, "torchscript weights")
    module = load_torchscript(script_path, source)  # refused before the first forward unless pure tensor maths
    module.eval()
    network = _BMZNetwork(module, n_in, n_out, step, halo or FOREIGN_DEFAULT_HALO,
                          input_order, output_order, pre_ops, post_ops)
    network.eval()
    card = ModelCard(
        name=str(rdf.get("name", folder.name)),
        family="bioimageio",
        generator={},
        input_channels=in_names,
        output_channels=out_names,
        pixel_size_nm=None,
        normalization={"input": spec, "output": {"mode": "range", "range": [0.0, 1.0]}},
        description=str(rdf.get("description", ""))[:300],
        default_samples=1,
        training={"imported_from_bioimageio": source, "cite": rdf.get("cite"),
                  "declared_halo": halo or None},
        weights_sha256=_sha256(script_path),
    )
    return ModelPackage(card=card, generator=network, task_network=None, source=source)
