"""BioImage Model Zoo (bioimage.io) model packages: reading them (writing is :mod:`.bmz_export`).

:func:`load_bmz` reads a package (folder, ``rdf.yaml`` or ``.zip``) as a
:class:`~napari_nanoscopy.packages.ModelPackage` the Restorer runs. Packages that napari-nanoscopy
exported are rebuilt from their card and state dict (so Monte-Carlo dropout and task outputs
work as before); any other package runs from its TorchScript weights, with its pre-processing
turned into the Restorer's whole-image normalisation and its element-wise post-processing
applied to every tile. Nothing is downloaded: every file must be inside the package. No code
from a package runs: its ``architecture.py`` is never imported, and its TorchScript runs only
after :mod:`napari_nanoscopy.safety` has found nothing in it but pure tensor operations.
"""

from __future__ import annotations

import math
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import NanoscopyError
from ..packages import ModelCard, ModelPackage, build_modules, load_state, sha256_of, split_state
from ..safety import extracted_zip, inside, load_torchscript

DESCRIPTION_FILES = ("rdf.yaml", "bioimageio.yaml")
CONFIG_KEY = "napari-nanoscopy"  # where an exported package keeps napari-nanoscopy's own card
# Half-width of the context given to tiles of a foreign model that declares no halo.
FOREIGN_DEFAULT_HALO = 32
EPS = 1e-6  # bioimage.io's default epsilon of scale_range


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
    if sha and sha256_of(path) != sha:
        raise NanoscopyError(f"The {what} file {name} of {source} does not match its sha256; the package is damaged.")
    return path


def load_bmz(path: str | os.PathLike, source: str | None = None) -> ModelPackage:
    """Load a bioimage.io model package (folder, its rdf.yaml, or .zip) as a ModelPackage."""
    path = Path(path).expanduser()
    source = source or str(path)
    if path.is_file() and path.suffix.lower() == ".zip":
        with extracted_zip(path) as root:
            folders = sorted({p.parent for name in DESCRIPTION_FILES for p in root.rglob(name)})
            if len(folders) != 1:
                raise NanoscopyError(
                    f"{path} must contain exactly one bioimage.io package (a folder with rdf.yaml), found "
                    f"{len(folders)}; zip a single package folder."
                )
            return load_bmz(folders[0], source)
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
        generator_state, task_state = split_state(state, with_task=task_network is not None)
        load_state(generator, generator_state, "generator", source)
        generator.eval()
        if task_network is not None:
            load_state(task_network, task_state, "task network", source)
            task_network.eval()
        card.weights_sha256 = sha256_of(weights_path)
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


def _load_foreign(rdf: dict[str, Any], folder: Path, source: str) -> ModelPackage:
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
        weights_sha256=sha256_of(script_path),
    )
    return ModelPackage(card=card, generator=network, task_network=None, source=source)

