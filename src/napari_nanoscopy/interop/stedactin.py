"""The U-Net folders of Lavoie-Cardinal et al. 2020 (STEDActinFCN): ``params.net`` (+ ``params_trainer.pkl``).

``params.net`` is a plain ``torch.save`` of the U-Net's state dict; it is read with
``weights_only=True`` (no object in it is built, no code runs) and the architecture
(``in_channels``, ``out_channels``, ``number_filter``, ``depth``) is read from the tensors'
names and shapes alone. ``params_trainer.pkl``, the authors' pickled training parameters, is
read only through :class:`PlainUnpickler`, which builds dicts, lists, tuples, strings and
numbers and refuses any other object before it is made; its values only cross-check the
shapes and give the crop size.

The two published networks differ in what their scores mean: the dendrite network (rings and
fibres) ends in a sigmoid, the axon network (rings) was trained with a two-class cross-entropy,
so its rings probability is ``softmax(scores)[1]``. Both have two output channels, so which one a
folder holds is named by ``preset`` ("dendrite" or "axon") or recognised from the published
weights' sha256; the preset also gives the authors' fixed input scaling (the training set's
maximum M: 574.37 dendrite, 228.70 axon) and thresholds (dendrite: rings 0.25, fibres 0.40, as
the TA-GAN code uses them; axon: 0.5). The package returned has a card of the ``fcn-unet``
family with a ``segmenter`` section recording all of it.
"""

from __future__ import annotations

import io
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from ..errors import NanoscopyError
from ..models import build_segmenter
from ..packages import ModelCard, ModelPackage, load_state, save_model, sha256_of
from ..safety import inside

WEIGHTS_FILE = "params.net"
TRAINER_FILE = "params_trainer.pkl"
FAMILY = "fcn-unet"
MAX_WEIGHTS_BYTES = 1 << 30  # the published networks are 2 MB; a 1 GiB U-Net is no such folder
MAX_TRAINER_BYTES = 1 << 16  # a dict of a dozen plain values (the published ones are ~200 bytes)
PIXEL_SIZE_NM = 20.0  # both published networks were trained on 20 nm STED images
PAPER = ("Lavoie-Cardinal et al. 2020, Sci. Rep. 10, 11960 (STEDActinFCN); the dendrite network is the "
         "'U-Net fixed-dend' of Bouchard et al. 2023 (TA-GAN)")

PRESETS: dict[str, dict[str, Any]] = {
    "dendrite": dict(activation="sigmoid", classes=["rings", "fibres"], class_channels=[0, 1],
                     thresholds=[0.25, 0.40], maximum=574.37, output_channels=["rings", "fibres"],
                     description="F-actin rings and fibres in STED images of dendrites"),
    "axon": dict(activation="softmax", classes=["rings"], class_channels=[1], thresholds=[0.5], maximum=228.70,
                 output_channels=["background", "rings"],
                 description="the periodic F-actin lattice (rings) in STED images of axons"),
}
# The published params.net files, recognised without a preset.
PUBLISHED = {
    "9d02191e60405e99937a96bebc96bbea9741a268580803f77974228be5067b72": "dendrite",
    "758c411ce1993134aba5140cfaa4231e320f347c53af2e78763acc201d89641f": "axon",
}
_CONTRACT = re.compile(r"contracting_path\.(\d+)\.")


def is_stedactin_folder(folder: Path) -> bool:
    """Whether ``folder`` holds an authors' U-Net (its ``params.net``)."""
    return (folder / WEIGHTS_FILE).is_file()


class PlainUnpickler(pickle.Unpickler):
    """Unpickles plain values only: any class or function a pickle names is refused before it is
    looked up, so nothing in the file is built or run."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"it names {module}.{name}, and only plain values are read")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("it refers to external objects, and only plain values are read")


def read_trainer_params(path: Path) -> dict[str, Any]:
    """The authors' ``params_trainer.pkl``: a dict of plain values, read without running anything."""
    size = path.stat().st_size
    if size > MAX_TRAINER_BYTES:
        raise NanoscopyError(f"{path} is {size} bytes, more than the {MAX_TRAINER_BYTES} of a training-parameters "
                             "file; remove it from the folder (the architecture is read from params.net).")
    try:
        value = PlainUnpickler(io.BytesIO(path.read_bytes())).load()
    except Exception as error:  # any malformed or hostile pickle: refused with its reason, nothing built
        raise NanoscopyError(
            f"{path} was not read: {error}; a training-parameters file holds plain values only, so remove it "
            "from the folder (the architecture is read from params.net) or replace it with the authors' file."
        ) from None
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise NanoscopyError(f"{path} holds {type(value).__name__}, not a dict of named values; remove it from the folder.")
    return value


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of ``params.net``, loaded with ``weights_only=True`` on the CPU."""
    size = path.stat().st_size
    if size > MAX_WEIGHTS_BYTES:
        raise NanoscopyError(f"{path} is {size} bytes, more than the {MAX_WEIGHTS_BYTES} a published U-Net "
                             "could be; give the authors' params.net.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # weights_only refuses any object other than tensors and plain containers
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise NanoscopyError(
            f"{path} is not a plain state dict of tensors and was not loaded ({reason}); give the authors' "
            "params.net (a torch.save of the U-Net's state_dict)."
        ) from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise NanoscopyError(f"{path} does not hold a state dict (names to tensors); give the authors' params.net.")
    return dict(state)


def architecture_of(state: dict[str, torch.Tensor], source: str) -> dict[str, int]:
    """``in_channels``, ``out_channels``, ``number_filter`` and ``depth`` read from the tensors' shapes."""
    try:
        first, last = state["input_conv.conv.0.weight"], state["output_conv.weight"]
    except KeyError as missing:
        raise NanoscopyError(
            f"{source} has no tensor {missing}, so it is not the authors' U-Net; give a params.net of "
            "STEDActinFCN (keys input_conv.*, contracting_path.*, expanding_path.*, output_conv.*)."
        ) from None
    filters = first.shape[0] if first.ndim == 4 else 0
    if first.ndim != 4 or last.ndim != 4 or filters < 1 or filters & (filters - 1):
        raise NanoscopyError(f"{source} has a first layer of {filters} filters, not a power of two as in the authors' "
                             "U-Net; give a params.net of STEDActinFCN.")
    levels = {int(match.group(1)) for key in state if (match := _CONTRACT.match(key))}
    return {"in_channels": int(first.shape[1]), "out_channels": int(last.shape[0]),
            "number_filter": filters.bit_length() - 1, "depth": len(levels) + 1}


def load_stedactin(folder: str | os.PathLike, preset: str | None = None) -> ModelPackage:
    """The authors' U-Net in ``folder`` as a segmenter-only model package (see the module docstring)."""
    folder = Path(folder).expanduser()
    if preset is not None and preset not in PRESETS:
        raise NanoscopyError(f"Unknown U-Net preset {preset!r}; choose one of: {', '.join(PRESETS)}.")
    weights = inside(folder, WEIGHTS_FILE, "weights file")
    if not weights.is_file():
        raise NanoscopyError(f"{folder} holds no {WEIGHTS_FILE}; give the folder of an authors' U-Net (params.net).")
    trainer_path = inside(folder, TRAINER_FILE, "training-parameters file")
    trainer = read_trainer_params(trainer_path) if trainer_path.is_file() else {}
    state = read_state_dict(weights)  # read before any choice is made: a hostile file stops here
    kwargs = architecture_of(state, str(weights))
    _cross_check(kwargs, trainer, trainer_path)
    digest = sha256_of(weights)
    preset = preset or _preset_of(kwargs, digest, folder)
    settings = PRESETS[preset]
    network = build_segmenter(FAMILY, **kwargs)
    load_state(network, state, "U-Net", str(weights))
    network.eval()
    card = ModelCard(
        name=f"stedactin-{preset}",
        family=FAMILY,
        generator=kwargs,
        input_channels=["STED"],
        output_channels=list(settings["output_channels"]),
        pixel_size_nm=PIXEL_SIZE_NM,
        normalization={"input": {"mode": "none"}, "output": {"mode": "range", "range": [0.0, 1.0]}},
        description=f"The {preset} U-Net of Lavoie-Cardinal et al. 2020: {settings['description']} (20 nm pixels).",
        training={"paper": PAPER, "imported_from": str(folder), "trainer_params": _plain_json(trainer)},
        weights_sha256=digest,
        segmenter={
            **{key: settings[key] for key in ("activation", "classes", "class_channels", "thresholds", "maximum")},
            "factor": 0.8, "clip": [0.0, 1.0], "unsigned_offset": 32768.0,
            "crop": _crop_size(trainer), "step": _crop_size(trainer), "source": f"STEDActinFCN {preset} network",
        },
    )
    card.validate(str(folder))
    return ModelPackage(card=card, generator=network, task_network=None, source=str(folder))


def _cross_check(kwargs: dict[str, int], trainer: dict[str, Any], path: Path) -> None:
    for key, value in kwargs.items():
        if key in trainer and trainer[key] != value:
            raise NanoscopyError(
                f"{path} gives {key} = {trainer[key]!r} but params.net has {value}; the two files are of different "
                "networks, so put the params_trainer.pkl of this params.net beside it (or remove it)."
            )


def _preset_of(kwargs: dict[str, int], digest: str, folder: Path) -> str:
    if digest in PUBLISHED:
        return PUBLISHED[digest]
    raise NanoscopyError(
        f"{folder} holds a U-Net with {kwargs['out_channels']} outputs that is not one of the published networks, so "
        "whether its scores are sigmoids (dendrite: rings, fibres) or a softmax (axon: rings) is not known; name it "
        f"with a preset ({' or '.join(PRESETS)}): --preset on the command line, preset= in Python."
    )


def _crop_size(trainer: dict[str, Any]) -> int:
    """The crop side the network was trained on (the authors' prediction uses it, on a step of the same)."""
    size = trainer.get("size", 128)
    return size if isinstance(size, int) and not isinstance(size, bool) and 16 <= size <= 4096 and size % 16 == 0 else 128


def _plain_json(trainer: dict[str, Any]) -> dict[str, Any]:
    """The training parameters that are JSON numbers, strings or booleans (for the card's provenance)."""
    return {key: value for key, value in trainer.items() if isinstance(value, (bool, int, float, str))}


def import_unet(folder: str | os.PathLike, out: str | os.PathLike, *, preset: str | None = None,
                overwrite: bool = False) -> ModelCard:
    """Convert an authors' U-Net folder into a napari-nanoscopy model package at ``out`` (folder or .zip)."""
    package = load_stedactin(folder, preset=preset)
    return save_model(out, package.card, package.generator, overwrite=overwrite)
