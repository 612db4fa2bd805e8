"""CSBDeep / CARE model folders (``config.json`` + ``weights_best.h5``) as ``l2l`` models.

A CARE model trained with CSBDeep is a Keras U-Net whose weights CSBDeep saves in Keras' HDF5
layout: the file (or its ``model_weights`` group, for a whole saved model) has a
``layer_names`` attribute; each layer is a group with a ``weight_names`` attribute naming its
arrays (``<layer>/kernel:0``, ``<layer>/bias:0``); conv kernels are stored HWIO
(height, width, in, out) where PyTorch wants OIHW. CSBDeep names the U-Net convs
``down_level_{n}_no_{i}``, ``middle_{i}`` and ``up_level_{n}_no_{i}``, which is how
:class:`~napari_nanoscopy.models.l2l.CAREUNet` keys its modules, so the arrays map one to one;
the 1x1 output conv has a Keras automatic name (``conv2d_7`` ...) and is recognised as the one
remaining conv layer.

The imported card applies CARE's prediction defaults: percentile normalisation of the input
(2 and 99.8 %, ``csbdeep.data.PercentileNormalizer``) to [0, 1] and the inverse of it on the
output (``do_after=True``), so results are in the input's intensity units as with
``CARE.predict``. No TensorFlow is imported; only h5py. Only arrays are read (Keras, and so any
``Lambda`` layer, never runs), only from inside the folder, and never through an HDF5 external
link, external dataset or virtual dataset.
"""

from __future__ import annotations

import os
import re
from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import NanoscopyError
from ..io import read_json_object
from ..limits import check_percentiles, check_pixel_size
from ..models import build_generator
from ..packages import CARD_FILE, ModelCard, ModelPackage, load_state, save_model, sha256_of
from ..safety import inside

CONFIG_FILE = "config.json"
WEIGHT_FILES = ("weights_best.h5", "weights_last.h5", "weights_now.h5")
# csbdeep.data.PercentileNormalizer(), the normaliser CARE.predict uses by default
CARE_PREDICT_PERCENTILES = (2.0, 99.8)
_UNET_LAYER = re.compile(r"^(down_level_\d+_no_\d+|middle_\d+|up_level_\d+_no_\d+)$")


def is_csbdeep_folder(path: str | os.PathLike) -> bool:
    """True for a folder that looks like a CSBDeep model (config.json and a Keras .h5, no model.json)."""
    folder = Path(path)
    return (
        folder.is_dir()
        and (folder / CONFIG_FILE).is_file()
        and not (folder / CARD_FILE).exists()
        and any((folder / name).is_file() for name in WEIGHT_FILES)
    )


def _decode(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_keras_h5(path: str | os.PathLike) -> dict[str, dict[str, np.ndarray]]:
    """The arrays of a Keras (2.x, HDF5) weights file: {layer name: {"kernel": ..., "bias": ...}}.

    Layers without weights (input, pooling, concatenation) are left out.
    """
    try:
        import h5py
    except ImportError:  # pragma: no cover - h5py is a dependency
        raise NanoscopyError("Reading CSBDeep models needs h5py; install it with 'pip install h5py'.") from None
    path = Path(path)
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise NanoscopyError(f"{path} cannot be read as an HDF5 file ({error}); give CSBDeep's weights_best.h5.") from None
    layers: dict[str, dict[str, np.ndarray]] = {}
    with handle:
        _refuse_outside_data(handle, path)
        root = handle["model_weights"] if "model_weights" in handle else handle
        if "layer_names" not in root.attrs:
            raise NanoscopyError(
                f"{path} is not a Keras 2 HDF5 weights file (it has no 'layer_names' attribute); "
                "give the weights_best.h5 that CSBDeep wrote."
            )
        for layer in map(_decode, root.attrs["layer_names"]):
            group = root[layer]
            names = [_decode(n) for n in group.attrs.get("weight_names", [])]
            if not names:
                continue
            arrays: dict[str, np.ndarray] = {}
            for name in names:
                kind = name.split("/")[-1].split(":")[0]
                if kind not in ("kernel", "bias"):
                    raise NanoscopyError(
                        f"The layer '{layer}' in {path} holds a '{kind}' array; CSBDeep's CARE U-Net has only "
                        "conv kernels and biases (batch normalisation is not supported)."
                    )
                arrays[kind] = np.asarray(group[name], dtype=np.float32)
            layers[layer] = arrays
    return layers


def _refuse_outside_data(handle, path: Path) -> None:
    """Refuse an HDF5 file whose objects lead to data in other files before reading any array:
    external links, datasets stored in external raw files and virtual datasets."""
    import h5py

    def refuse(name: str, problem: str) -> None:
        raise NanoscopyError(
            f"{path} refers to data outside itself ('{name}' is {problem}); a CSBDeep weights file is read only "
            "from itself, so save the weights again with Keras (model.save_weights) into one file."
        )

    def check(_: str, item) -> None:
        if isinstance(item, h5py.Dataset):
            if item.is_virtual:
                refuse(item.name, "a virtual dataset")
            if item.external:
                refuse(item.name, "a dataset stored in external files")
            return
        for key in item:  # visititems follows hard links only: see every other link of each group
            if not isinstance(item.get(key, getlink=True), (h5py.HardLink, h5py.SoftLink)):
                refuse(f"{item.name.rstrip('/')}/{key}", "an external link")

    check("/", handle)
    handle.visititems(check)


def _config(folder: Path) -> dict[str, Any]:
    config_path = inside(folder, CONFIG_FILE, "CSBDeep configuration")
    config = read_json_object(config_path, f"The CSBDeep {CONFIG_FILE} in {folder}", "check the model folder")

    def need(key: str):
        if key not in config:
            raise NanoscopyError(
                f"The CSBDeep {CONFIG_FILE} in {folder} has no '{key}'; it is not a CARE model configuration."
            )
        return config[key]

    def whole(key: str) -> int:  # JSON numbers only: a list or a string here is a malformed configuration
        value = need(key)
        listed = value if key == "unet_kern_size" and isinstance(value, list) and value else [value]
        if not all(isinstance(v, Integral) and not isinstance(v, bool) for v in listed):
            raise NanoscopyError(
                f"The CSBDeep {CONFIG_FILE} in {folder} has {key} = {repr(value)[:40]}, not a whole number; "
                "the model folder is malformed, export it again with CSBDeep."
            )
        return int(listed[0])

    n_dim = whole("n_dim")
    if n_dim != 2:
        raise NanoscopyError(
            f"The CSBDeep model in {folder} is {n_dim}D; only 2D CARE models can be imported "
            "(napari-nanoscopy restores 3D stacks plane by plane with 2D models)."
        )
    if config.get("probabilistic", False):
        raise NanoscopyError(
            f"The CSBDeep model in {folder} is probabilistic (it predicts a Laplace scale too); only "
            "non-probabilistic CARE models can be imported."
        )
    activation = str(config.get("unet_last_activation", "linear"))
    if activation != "linear":
        raise NanoscopyError(
            f"The CSBDeep model in {folder} ends with a '{activation}' activation; only the default "
            "linear output (unet_last_activation 'linear') can be imported."
        )
    axes = str(config.get("axes", "YXC")).upper()
    if "Z" in axes:
        raise NanoscopyError(f"The CSBDeep model in {folder} has axes {axes}; only 2D (YX, C) models can be imported.")
    for key in ("unet_n_depth", "unet_kern_size", "unet_n_first", "n_channel_in", "n_channel_out"):
        whole(key)
    return config


def _weights_file(folder: Path, config: dict[str, Any]) -> Path:
    preferred = [config.get("train_checkpoint")] if config.get("train_checkpoint") else []
    for name in preferred + list(WEIGHT_FILES):
        path = inside(folder, str(name), "CSBDeep checkpoint")  # no '../', absolute or linked-out checkpoint
        if path.is_file():
            return path
    if (folder / "TF_SavedModel.zip").is_file():
        raise NanoscopyError(
            f"{folder} holds only a TF_SavedModel.zip (the Fiji export), which needs TensorFlow; "
            "give the CSBDeep model folder with weights_best.h5."
        )
    raise NanoscopyError(f"{folder} holds no CSBDeep weights ({', '.join(WEIGHT_FILES)}).")


def _architecture(config: dict[str, Any], layers: dict[str, dict[str, np.ndarray]], source: str) -> dict[str, Any]:
    depth = int(config["unet_n_depth"])
    kern = config["unet_kern_size"]
    kernel_size = int(kern[0] if isinstance(kern, (list, tuple)) else kern)
    convs_per_level = sum(1 for name in layers if re.fullmatch(r"down_level_0_no_\d+", name))
    if convs_per_level < 1:
        raise NanoscopyError(
            f"The weights in {source} have no 'down_level_0_no_0' layer; they are not a CSBDeep CARE U-Net."
        )
    n_in, n_out = int(config["n_channel_in"]), int(config["n_channel_out"])
    return dict(
        in_channels=n_in,
        out_channels=n_out,
        base_filters=int(config["unet_n_first"]),
        depth=depth,
        kernel_size=kernel_size,
        convs_per_level=convs_per_level,
        residual=bool(config.get("unet_residual", n_in == n_out)),
        dropout=0.0,
    )


def _state_dict(generator: torch.nn.Module, layers: dict[str, dict[str, np.ndarray]], source: str) -> dict[str, torch.Tensor]:
    unet = {name: arrays for name, arrays in layers.items() if _UNET_LAYER.match(name)}
    others = [name for name in layers if name not in unet]
    if len(others) != 1:
        raise NanoscopyError(
            f"The weights in {source} have {len(others)} layers outside the U-Net ({', '.join(others) or 'none'}); "
            "a CARE model has exactly one, the 1x1 output conv."
        )
    state: dict[str, torch.Tensor] = {}

    def put(prefix: str, layer: str, arrays: dict[str, np.ndarray]) -> None:
        if "kernel" not in arrays or arrays["kernel"].ndim != 4:
            raise NanoscopyError(f"The layer '{layer}' in {source} has no 2D conv kernel; it is not a CARE U-Net.")
        # Keras HWIO -> PyTorch OIHW
        state[f"{prefix}.weight"] = torch.from_numpy(np.ascontiguousarray(arrays["kernel"].transpose(3, 2, 0, 1)))
        if "bias" in arrays:
            state[f"{prefix}.bias"] = torch.from_numpy(arrays["bias"].copy())

    for name, arrays in unet.items():
        put(f"convs.{name}.conv", name, arrays)
    put("final", others[0], layers[others[0]])
    return state


def load_csbdeep(
    folder: str | os.PathLike,
    percentiles: tuple[float, float] = CARE_PREDICT_PERCENTILES,
    pixel_size_nm: float | None = None,
):
    """Load a CSBDeep CARE model folder as an ``l2l`` :class:`~napari_nanoscopy.packages.ModelPackage`.

    ``percentiles`` are the input normalisation percentiles (CARE.predict's 2 and 99.8 by
    default); ``pixel_size_nm`` is the pixel size the model was trained at, if you know it
    (CSBDeep records none, so by default images are not resampled).
    """
    low, high = check_percentiles(*percentiles, "The CSBDeep input normalisation")
    if pixel_size_nm is not None:
        pixel_size_nm = check_pixel_size(pixel_size_nm, "The CSBDeep model's pixel size")
    folder = Path(folder).expanduser()
    if not (folder / CONFIG_FILE).is_file():
        raise NanoscopyError(f"{folder} holds no {CONFIG_FILE}; a CSBDeep model folder has config.json and weights_best.h5.")
    config = _config(folder)
    weights = _weights_file(folder, config)
    layers = read_keras_h5(weights)
    kwargs = _architecture(config, layers, str(weights))
    try:
        generator = build_generator("l2l", **kwargs)
    except NanoscopyError as error:
        raise NanoscopyError(f"The CSBDeep configuration in {folder} does not describe a CARE U-Net this can build: {error}") from None
    load_state(generator, _state_dict(generator, layers, str(weights)), "CSBDeep CARE", str(weights))
    generator.eval()
    n_in, n_out = kwargs["in_channels"], kwargs["out_channels"]
    card = ModelCard(
        name=folder.name,
        family="l2l",
        generator=kwargs,
        input_channels=["input"] if n_in == 1 else [f"input {i}" for i in range(n_in)],
        output_channels=["restored"] if n_out == 1 else [f"restored {i}" for i in range(n_out)],
        pixel_size_nm=pixel_size_nm,
        normalization={
            "input": {"mode": "percentile", "low": low, "high": high, "range": [0.0, 1.0]},
            "output": {"mode": "input"},
        },
        description=f"CSBDeep CARE model imported from {folder.name} ({weights.name}).",
        default_samples=1,
        training={"imported_from": str(folder), "csbdeep_config": config},
        weights_sha256=sha256_of(weights),
    )
    card.validate(str(folder))
    return ModelPackage(card=card, generator=generator, task_network=None, source=str(folder))


def import_csbdeep(
    folder: str | os.PathLike,
    out: str | os.PathLike,
    *,
    percentiles: tuple[float, float] = CARE_PREDICT_PERCENTILES,
    pixel_size_nm: float | None = None,
    overwrite: bool = False,
):
    """Convert a CSBDeep model folder into a napari-nanoscopy model package at ``out`` (folder or .zip)."""
    package = load_csbdeep(folder, percentiles=percentiles, pixel_size_nm=pixel_size_nm)
    return save_model(out, package.card, package.generator, overwrite=overwrite)
