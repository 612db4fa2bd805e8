"""BioImage Model Zoo (bioimage.io) model packages: reading them (writing is :mod:`.bmz_export`).

:func:`load_bmz` reads a package (folder, ``rdf.yaml`` or ``.zip``) as a
:class:`~napari_nanoscopy.packages.ModelPackage` the Restorer runs. Packages that napari-nanoscopy
exported are rebuilt from their card and state dict (so Monte-Carlo dropout and task outputs
work as before). Any other package runs from ``pytorch_state_dict`` weights whose architecture
:mod:`.careamics` rebuilds (CAREamics' U-Net, from the kwargs in the rdf), else from its
TorchScript weights; its pre-processing becomes the Restorer's whole-image normalisation, and
its element-wise pre- and post-processing (fixed mean/std standardisation included, as a linear
scaling) is applied to every tile. An input of a fixed declared size (CAREamics writes its test
image's size) is fed to the network only in windows of exactly that size, overlapping and
stitched, whatever size the Restorer's tiles have. Nothing is downloaded: every file must be
inside the package. No code from a package runs: its ``architecture.py`` is never imported,
state dicts are read with ``weights_only`` and its TorchScript runs only after
:mod:`napari_nanoscopy.safety` has found nothing in it but pure tensor operations.
"""

from __future__ import annotations

import math
import os
import re
import zipfile
from numbers import Real
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import NanoscopyError
from ..limits import MAX_TILE, check_int
from ..packages import ModelCard, ModelPackage, build_modules, load_state, sha256_of, split_state
from ..safety import MAX_ZIP_MEMBER_BYTES, extracted_zip, inside, load_torchscript
from .careamics import KNOWN_ARCHITECTURES, architecture_name, is_known_architecture, rebuild

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


def _read_state_dict(path: Path, source: str) -> dict[str, torch.Tensor]:
    """A state dict file read as tensors only (``weights_only``: no pickled code runs), size-checked first."""
    size = path.stat().st_size
    if size > MAX_ZIP_MEMBER_BYTES:
        raise NanoscopyError(
            f"The state dict of {source} is {size / 2**30:.1f} GiB, more than the {MAX_ZIP_MEMBER_BYTES / 2**30:.0f} GiB "
            "a 2D restoration model needs; the package is damaged or not such a model."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise NanoscopyError(f"The state dict of {source} cannot be loaded safely ({str(error)[:200]}).") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise NanoscopyError(f"The pytorch_state_dict weights of {source} are not a state dict (names to tensors); "
                             "the package is damaged, export it again.")
    return state


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
        state = _read_state_dict(weights_path, source)
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
    """A foreign bioimage.io network (TorchScript, or a state dict in a rebuilt architecture) as a
    Restorer generator.

    The Restorer normalises the whole image (the package's statistical pre-processing); this
    module applies the element-wise pre-processing that follows it, reorders the axes the way
    the model wants them, runs it, keeps its first output and applies the element-wise
    post-processing, tile by tile. Along an axis of fixed declared size the network sees only
    windows of that size: overlapping by ``margins`` (each output pixel keeps that much context
    on every side inside the tile), each output pixel taken from one window.
    """

    def __init__(self, module, in_channels: int, out_channels: int, size_multiple: int, halo: int,
                 input_order: list[int], output_order: list[int], pre_ops: list, post_ops: list,
                 fixed_size: tuple[int | None, int | None] = (None, None), margins: tuple[int, int] = (0, 0)):
        super().__init__()
        self.module = module
        self.in_channels, self.out_channels = in_channels, out_channels
        self.size_multiple, self.receptive_radius = size_multiple, halo
        self.output_activation, self.dropout, self.global_context = "linear", 0.0, False
        self.input_order, self.output_order = input_order, output_order
        self.pre_ops, self.post_ops = pre_ops, post_ops
        self.fixed_size, self.margins = fixed_size, margins

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
        x = self._pointwise(x, self.pre_ops)
        y = self._in_fixed_windows(x) if any(self.fixed_size) else self._network(x)
        return self._pointwise(y, self.post_ops)

    def _network(self, x: torch.Tensor) -> torch.Tensor:
        y = self.module(x.permute(*self.input_order))
        if isinstance(y, (tuple, list)):
            y = y[0]
        return y.permute(*self.output_order)

    def _in_fixed_windows(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        size_y, size_x = (fixed or length for fixed, length in zip(self.fixed_size, (height, width)))
        padded = _padded(x, max(height, size_y), max(width, size_x))
        rows = fixed_windows(padded.shape[-2], size_y, self.margins[0])
        cols = fixed_windows(padded.shape[-1], size_x, self.margins[1])
        boxes = [(row, col) for row in rows for col in cols]
        per_pass = max(1, (height * width) // (size_y * size_x))  # about the memory of one pass over x
        out, n = None, x.shape[0]
        for first in range(0, len(boxes), per_pass):
            chunk = boxes[first:first + per_pass]
            tiles = self._network(torch.cat([padded[..., r[0]:r[0] + size_y, c[0]:c[0] + size_x] for r, c in chunk]))
            if out is None:
                out = tiles.new_empty((n, tiles.shape[1], *padded.shape[-2:]))
            for k, ((top, a, b), (left, c, d)) in enumerate(chunk):
                out[..., a:b, c:d] = tiles[k * n:(k + 1) * n, :, a - top:b - top, c - left:d - left]
        return out[..., :height, :width]


def fixed_windows(length: int, size: int, margin: int) -> list[tuple[int, int, int]]:
    """Windows of ``size`` pixels covering ``length`` (at least ``size``): (start, first kept, end
    kept) each; the kept ranges tile the axis and keep ``margin`` pixels from the window's inner
    edges. With ``length``, ``size`` and ``margin`` multiples of the network's stride, so are the starts."""
    windows, done = [], 0
    while done < length:
        start = min(max(done - margin, 0), length - size)
        end = length if start + size >= length else start + size - margin
        windows.append((start, done, end))
        done = end
    return windows


def _padded(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``x`` padded at the bottom and right to ``height`` x ``width`` (mirrored where it is long enough)."""
    dy, dx = height - x.shape[-2], width - x.shape[-1]
    if dy <= 0 and dx <= 0:
        return x
    mode = "reflect" if dy < x.shape[-2] and dx < x.shape[-1] else "replicate"
    return F.pad(x, (0, max(dx, 0), 0, max(dy, 0)), mode=mode)


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
            pointwise.append(_fixed_standardisation(kwargs, channels, source, "input"))
        elif kind in ("scale_linear", "clip", "sigmoid", "binarize"):
            pointwise.append((kind, dict(kwargs)))
        else:
            raise NanoscopyError(f"{source} uses the pre-processing '{kind}', which napari-nanoscopy does not implement.")
    return spec or {"mode": "none"}, pointwise


def _fixed_standardisation(kwargs: dict[str, Any], channels: int, source: str, tensor: str) -> tuple:
    """bioimage.io's fixed_zero_mean_unit_variance, (x - mean) / (std + eps) with stored values
    (one pair, or one per channel), as the equivalent scale_linear."""
    mean, std, eps = kwargs.get("mean"), kwargs.get("std"), kwargs.get("eps", EPS)
    per_channel = isinstance(mean, list) or isinstance(std, list)
    means, stds = (mean, std) if per_channel else ([mean], [std])

    def number(value) -> bool:
        return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)

    if (not isinstance(means, list) or not isinstance(stds, list) or not means or len(means) != len(stds)
            or (per_channel and (len(means) != channels or kwargs.get("axis", "channel") != "channel"))
            or not all(map(number, [*means, *stds, eps])) or min(s + eps for s in stds) <= 0):
        raise NanoscopyError(
            f"{source} standardises its {tensor} with fixed mean {repr(mean)[:60]} and std {repr(std)[:60]}, "
            f"which are not one pair or one pair per channel ({channels}) of numbers with std > 0; the package "
            "is malformed, export it again."
        )
    gains = [1.0 / (float(s) + float(eps)) for s in stds]
    offsets = [-float(m) * g for m, g in zip(means, gains)]
    if per_channel:
        return "scale_linear", {"gain": gains, "offset": offsets}
    return "scale_linear", {"gain": gains[0], "offset": offsets[0]}


def _convert_postprocessing(ops: list[dict[str, Any]], channels: int, source: str) -> list:
    pointwise = []
    for op in ops or []:
        kind, kwargs = op.get("id"), op.get("kwargs") or {}
        if kind == "ensure_dtype":
            continue
        if kind == "fixed_zero_mean_unit_variance":  # element-wise with stored values: tiles reproduce it
            pointwise.append(_fixed_standardisation(kwargs, channels, source, "output"))
        elif kind in ("scale_linear", "clip", "sigmoid", "binarize"):
            pointwise.append((kind, dict(kwargs)))
        else:
            raise NanoscopyError(
                f"{source} post-processes its output with '{kind}', which needs statistics of the whole output; "
                "a tiled restoration cannot reproduce it, so the package is not supported."
            )
    return pointwise


def _foreign_network(weights: dict[str, Any], folder: Path, source: str) -> tuple[nn.Module, Path, str, bool]:
    """(network, its weights file, its architecture, whether napari-nanoscopy rebuilt it): a state dict
    in an architecture napari-nanoscopy rebuilds, else TorchScript; anything else is refused, saying what loads."""
    state_entry = weights.get("pytorch_state_dict")
    if is_known_architecture(state_entry):
        path = _local_file(folder, state_entry, source, "pytorch_state_dict weights")
        return rebuild(state_entry, _read_state_dict(path, source), source), path, architecture_name(state_entry), True
    if "torchscript" in weights:
        path = _local_file(folder, weights["torchscript"], source, "torchscript weights")
        module = load_torchscript(path, source)  # refused before the first forward unless pure tensor maths
        return module.eval(), path, "torchscript", False
    if state_entry is not None:
        raise NanoscopyError(
            f"{source} has pytorch_state_dict weights of the architecture {architecture_name(state_entry)}, which "
            f"napari-nanoscopy does not rebuild; it loads state dicts of {KNOWN_ARCHITECTURES} and otherwise runs "
            "foreign models from TorchScript only, since building another architecture would run the package's "
            "Python code; add torchscript weights with 'bioimageio.core.add_weights'."
        )
    raise NanoscopyError(
        f"{source} has no weights napari-nanoscopy can run (it has: {', '.join(weights) or 'none'}); it runs "
        f"torchscript weights and pytorch_state_dict weights of {KNOWN_ARCHITECTURES}, so add torchscript weights "
        "with 'bioimageio.core.add_weights'."
    )


def _space_sizes(tensor_in: dict[str, Any], tensor_out: dict[str, Any], source: str):
    """(size step, declared halo, fixed (y, x) sizes or None) of a model's input and output axes."""
    step, halo, fixed = 1, 0, {"y": None, "x": None}
    for axis in tensor_in["axes"]:
        size = axis.get("size")
        if axis.get("type") != "space":
            continue
        if isinstance(size, dict) and size.get("step"):
            step = math.lcm(step, check_int(f"The size step of the input axis {axis.get('id')} of {source}",
                                            size["step"], 1, MAX_TILE))
        elif size is not None and not isinstance(size, dict):
            fixed[axis.get("id")] = check_int(f"The fixed size of the input axis {axis.get('id')} of {source}",
                                              size, 1, MAX_TILE)
    for axis in tensor_out["axes"]:
        if axis.get("type") == "space":
            halo = max(halo, check_int(f"The halo of {source}", axis.get("halo", 0) or 0, 0, MAX_TILE))
    return step, halo, (fixed["y"], fixed["x"])


def _load_foreign(rdf: dict[str, Any], folder: Path, source: str) -> ModelPackage:
    weights = rdf.get("weights") or {}
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
    if "channel" not in in_axes:
        raise NanoscopyError(f"The input of {source} has no channel axis; such models are not supported yet.")
    if "channel" not in out_axes:
        raise NanoscopyError(f"The output of {source} has no channel axis; such models are not supported yet.")
    input_order, output_order = [ours.index(a) for a in in_axes], [out_axes.index(a) for a in ours]

    step, halo, fixed_size = _space_sizes(tensor_in, tensor_out, source)
    spec, pre_ops = _convert_preprocessing(tensor_in.get("preprocessing"), n_in, source)
    post_ops = _convert_postprocessing(tensor_out.get("postprocessing"), n_out, source)
    module, weights_path, architecture, rebuilt = _foreign_network(weights, folder, source)
    # a rebuilt network's stride and reach are known (a TorchScript's attributes are the package's word)
    step = math.lcm(step, module.size_multiple) if rebuilt else step
    context = halo or (module.receptive_radius if rebuilt else FOREIGN_DEFAULT_HALO)
    network = _BMZNetwork(module, n_in, n_out, step, context, input_order, output_order, pre_ops, post_ops,
                          fixed_size, _window_margins(fixed_size, step, context, source))
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
        training={"imported_from_bioimageio": source, "cite": rdf.get("cite"), "architecture": architecture,
                  "declared_halo": halo or None,
                  "declared_input_size": list(fixed_size) if any(fixed_size) else None},
        weights_sha256=sha256_of(weights_path),
    )
    return ModelPackage(card=card, generator=network, task_network=None, source=source)


def _window_margins(fixed_size: tuple[int | None, int | None], step: int, context: int, source: str):
    """Overlap kept on each side of the fixed-size windows: the network's context, at most a quarter
    of the window (so at least half of each window is kept), on the network's stride grid."""
    if any(size is not None and size % step for size in fixed_size):
        sizes = "x".join(str(size or "any") for size in fixed_size)
        raise NanoscopyError(
            f"{source} declares a fixed input of {sizes} pixels, which its network cannot take (its sides must be "
            f"multiples of {step}); the package is malformed, export it again with such a test image."
        )
    return tuple(0 if size is None else min(context, size // 4) // step * step for size in fixed_size)
