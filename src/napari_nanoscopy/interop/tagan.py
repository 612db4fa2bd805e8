"""TA-GAN checkpoints from the public TA-GAN code: a generator (``*_net_G.pth``) and, when its
sibling ``*_net_S.pth`` lies beside it, the task network trained (or kept frozen) with it.

A bare state dict carries no card: the architectures are read off the tensor shapes and the card
gets TA-GAN's conventions. Which of the paper's datasets a pair was trained on (and so the names
and thresholds of its task outputs) is recognised from the channel counts, or named by a preset
(:data:`PRESETS`). Loaded with ``torch.load(weights_only=True)``, so no pickled code runs.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..card import DEFAULT_OUTPUT_NORMALIZATION
from ..errors import NanoscopyError
from ..models import MAX_PARAMETERS, build_generator, build_task_network, paper_defaults
from ..models.blocks import MAX_LEVELS, MAX_REPEATS
from ..packages import ModelCard, ModelPackage, load_state, sha256_of
from ..safety import inside

CHECKPOINT_SUFFIXES = (".pth", ".pt")
MAX_CHECKPOINT_BYTES = 4 * MAX_PARAMETERS  # float32 weights of the largest network built
GENERATOR_MARK, TASK_MARK = "net_G", "net_S"
# The TA-GAN code scales binary annotation masks to [-1, 1] like the images, so its task networks
# learn masks on the tanh scale.
MASK_SCALING = {"mode": "fixed", "min": 0.0, "max": 1.0, "range": [-1.0, 1.0]}
MIDDLE = "the middle of the tanh range (the TA-GAN code trains on annotation masks scaled to [-1, 1])"
# The pix2pix U-Net's inner levels, as the public code keys them: the outermost level is
# ``model.model``, the next ``model.model.1``, each deeper one ``.model.3`` further; a level's down
# conv is its ``.model.1``.
_UNET_DOWN_CONV = re.compile(r"model\.model\.1(?:\.model\.3)*\.model\.1\.weight")


@dataclass(frozen=True)
class TaganPreset:
    """One dataset of the TA-GAN paper: its networks' channel counts and its task outputs."""

    dataset: str
    generator_channels: tuple[int, int]  # in, out
    task_kind: str  # "resnet6" | "unet128"
    task_channels: tuple[int, int]
    outputs: tuple[str, ...]
    thresholds: tuple[float, ...]  # tanh scale
    threshold_method: str
    segmentation: bool = True  # False: a regression (localisation) map
    frozen: bool = False  # the task network was pretrained and kept frozen (TA-GAN Live)


# The public code's models (REFERENCE.md, "TA-GAN checkpoints per dataset").
PRESETS: dict[str, TaganPreset] = {
    "axonal-rings": TaganPreset("axonal F-actin rings", (1, 1), "resnet6", (1, 1), ("rings",), (0.0,), MIDDLE),
    "dendritic-factin": TaganPreset(
        "dendritic F-actin rings and fibres", (1, 1), "resnet6", (1, 2), ("rings", "fibres"), (-0.5, -0.2),
        "the TA-GAN code's dendrite thresholds, 0.25 (rings) and 0.40 (fibres) on the [0, 1] scale, as tanh values",
    ),
    "nanodomains": TaganPreset("simulated nanodomains", (1, 1), "resnet6", (1, 1), ("localisation map",), (0.0,),
                               MIDDLE, segmentation=False),
    "synaptic-proteins": TaganPreset("two-colour synaptic proteins", (2, 2), "resnet6", (2, 2),
                                     ("protein 1 clusters", "protein 2 clusters"), (0.0, 0.0), MIDDLE),
    "s-aureus": TaganPreset("S. aureus bright field to SIM", (1, 1), "resnet6", (1, 1), ("cell boundaries",), (0.0,),
                            MIDDLE),
    "live-factin": TaganPreset(
        "live F-actin (TA-GAN Live)", (3, 1), "unet128", (1, 2), ("rings", "fibres"), (-0.5294, -0.5294),
        "the binarisation threshold of the TA-GAN Live code (-0.5294 on the tanh scale)", frozen=True,
    ),
}


def _task_file_name(path: Path) -> str | None:
    """The name the task network saved with the generator ``path`` has (None: not a ``*_net_G`` name)."""
    if not path.stem.endswith(GENERATOR_MARK):
        return None
    return path.stem[: -len(GENERATOR_MARK)] + TASK_MARK + path.suffix


def task_sibling(path: Path) -> Path | None:
    """The ``*_net_S.pth`` beside a ``*_net_G.pth`` (same folder, same epoch prefix), if there is one."""
    name = _task_file_name(path)
    if name is None or not (path.parent / name).is_file():
        return None
    return inside(path.parent, name, "task network checkpoint", str(path))  # a link may not lead elsewhere


def load_tagan_pth(path: Path, preset: str | None = None) -> ModelPackage:
    """Load a TA-GAN generator checkpoint (``*_net_G.pth``), with its task network when a
    ``*_net_S.pth`` lies beside it.

    The architectures are read off the tensor shapes; the card gets TA-GAN's conventions
    (min-max scaling to [-1, 1], tanh output) and no pixel size, since a bare state dict has none.
    ``preset`` (a key of :data:`PRESETS`) names the dataset the pair was trained on; without it the
    dataset is recognised from the channel counts where only one fits. Each file's size and the
    depth its keys name are checked before anything is built, so a malformed checkpoint cannot make
    the network allocate gigabytes.
    """
    path = Path(path)
    if preset is not None and preset not in PRESETS:
        raise NanoscopyError(f"Unknown TA-GAN preset {preset!r}; choose one of: {', '.join(PRESETS)}.")
    sibling = task_sibling(path)
    if preset is not None and sibling is None:
        raise NanoscopyError(
            f"The preset {preset} names the dataset of a TA-GAN task network, but there is no "
            f"{_task_file_name(path) or '*_net_S.pth'} beside {path}; put the task network beside the generator "
            "or drop the preset."
        )
    generator, kwargs = _load_generator(path)
    task = _load_task(sibling, kwargs, preset) if sibling is not None else None
    card = _card(path, kwargs, task)
    return ModelPackage(card=card, generator=generator, task_network=task.network if task else None, source=str(path))


def read_state(path: Path, what: str) -> dict[str, torch.Tensor]:
    """The tensors of a plain state dict, loaded without running code, ``module.`` prefixes dropped;
    ``what`` is the file it should be ("*_net_G.pth generator" or "*_net_S.pth task network")."""
    size = path.stat().st_size
    if size > MAX_CHECKPOINT_BYTES:
        raise NanoscopyError(
            f"{path} is {size / 1e9:.1f} GB, more than the float32 weights of the largest network this builds "
            f"({MAX_CHECKPOINT_BYTES / 1e9:.0f} GB); it is not a TA-GAN {what} checkpoint."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError or others here
        raise NanoscopyError(
            f"{path} was refused: it is not a plain tensor state dict that can be loaded without running "
            f"code (torch said: {str(error).splitlines()[0][:200]}). Only TA-GAN *_net_G.pth / *_net_S.pth state "
            "dicts are accepted; never load .pth files from sources you do not trust."
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise NanoscopyError(f"{path} does not hold a state dict of tensors; give a TA-GAN {what.split()[0]} file.")
    return {str(k).removeprefix("module."): v for k, v in state.items()}


def resnet_architecture(state: dict[str, torch.Tensor], path: Path, what: str) -> dict[str, int]:
    """in/out channels, width and residual blocks of a pix2pix ResNet generator's state dict."""
    if "model.1.weight" not in state:
        raise NanoscopyError(
            f"{path} is not a TA-GAN ResNet {what} checkpoint (no 'model.1.weight'); give a {_file_of(what)} file "
            "from the TA-GAN code."
        )
    first = state["model.1.weight"]
    last_index = max(int(k.split(".")[1]) for k in state
                     if k.startswith("model.") and k.endswith(".weight") and k.split(".")[1].isdigit())
    last = state[f"model.{last_index}.weight"]
    n_blocks = len({k.split(".")[1] for k in state if ".conv_block." in k})
    if n_blocks > MAX_REPEATS or first.ndim != 4 or last.ndim != 4:
        raise NanoscopyError(
            f"{path} does not hold a TA-GAN ResNet {what} this can build ({n_blocks} residual blocks, at most "
            f"{MAX_REPEATS}; first and last weights of {first.ndim} and {last.ndim} dimensions, not 4); "
            f"give a {_file_of(what)} file from the TA-GAN code."
        )
    return dict(in_channels=int(first.shape[1]), out_channels=int(last.shape[0]), ngf=int(first.shape[0]),
                n_blocks=n_blocks)


def unet_architecture(state: dict[str, torch.Tensor], path: Path) -> dict[str, int]:
    """in/out channels, width and downsamplings of a pix2pix U-Net's state dict."""
    first, last = state.get("model.model.0.weight"), state.get("model.model.3.weight")
    n_down = 1 + sum(1 for key in state if _UNET_DOWN_CONV.fullmatch(key))
    if first is None or last is None or first.ndim != 4 or last.ndim != 4 or not 2 <= n_down <= MAX_LEVELS:
        raise NanoscopyError(
            f"{path} does not hold a pix2pix U-Net task network this can build ({n_down} downsamplings, 2 to "
            f"{MAX_LEVELS}; outermost convolutions 'model.model.0' and 'model.model.3' of 4 dimensions); give a "
            "*_net_S.pth file from the TA-GAN code."
        )
    # The outermost up conv is a transposed conv: its weight is (in, out, k, k).
    return dict(in_channels=int(first.shape[1]), out_channels=int(last.shape[1]), ngf=int(first.shape[0]),
                n_down=n_down)


def _file_of(what: str) -> str:
    return "*_net_S.pth" if what == "task network" else "*_net_G.pth"


def _load_generator(path: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    state = read_state(path, "*_net_G.pth generator")
    architecture = resnet_architecture(state, path, "generator")
    kwargs = {**paper_defaults("tagan"), **architecture}
    family = "tagan-live" if kwargs["in_channels"] == 3 else "tagan"
    try:
        generator = build_generator(family, **kwargs)
    except NanoscopyError as error:  # sizes read off the tensors, out of range
        raise NanoscopyError(
            f"{path} describes a generator this cannot build ({str(error).rstrip('.')}); "
            "give a *_net_G.pth file from the TA-GAN code."
        ) from None
    load_state(generator, state, "TA-GAN generator", str(path))
    generator.eval()
    return generator, kwargs


@dataclass
class _LoadedTask:
    network: torch.nn.Module
    kind: str
    kwargs: dict[str, Any]
    path: Path
    preset: str | None  # the dataset it was recognised as, or named by
    section: dict[str, Any]  # the card's task section


def _load_task(path: Path, generator_kwargs: dict[str, Any], preset: str | None) -> _LoadedTask:
    """The task network in ``path``, its architecture read off the keys, checked against the preset."""
    state = read_state(path, "*_net_S.pth task network")
    if "model.model.0.weight" in state:
        kind, kwargs = "unet128", unet_architecture(state, path)
    else:
        kind, kwargs = "resnet6", resnet_architecture(state, path, "task network")
    kwargs["dropout"] = 0.0  # the public code builds its task networks without dropout
    if kwargs["in_channels"] != generator_kwargs["out_channels"]:
        raise NanoscopyError(
            f"The task network {path.name} reads {kwargs['in_channels']} channel(s) but the generator beside it "
            f"writes {generator_kwargs['out_channels']}; these two checkpoints are not one TA-GAN, so give the "
            "*_net_G.pth and *_net_S.pth saved by the same run."
        )
    found = (generator_kwargs["in_channels"], generator_kwargs["out_channels"]), kind, (
        kwargs["in_channels"], kwargs["out_channels"])
    preset = _check_preset(path, preset, found) if preset is not None else _recognised_preset(found)
    try:
        network = build_task_network(kind, **kwargs)
    except NanoscopyError as error:
        raise NanoscopyError(
            f"{path} describes a task network this cannot build ({str(error).rstrip('.')}); "
            "give a *_net_S.pth file from the TA-GAN code."
        ) from None
    load_state(network, state, "TA-GAN task network", str(path))
    network.eval()
    return _LoadedTask(network, kind, kwargs, path, preset, _task_section(preset, kwargs["out_channels"], path))


def _layout(generator_channels, kind, task_channels) -> str:
    return (f"a {generator_channels[0]} -> {generator_channels[1]} generator with a {kind} task network "
            f"{task_channels[0]} -> {task_channels[1]}")


def _check_preset(path: Path, preset: str, found) -> str:
    spec = PRESETS[preset]
    expected = (spec.generator_channels, spec.task_kind, spec.task_channels)
    if found != expected:
        fitting = [name for name, other in PRESETS.items()
                   if (other.generator_channels, other.task_kind, other.task_channels) == found]
        hint = f"the preset of this pair is {' or '.join(fitting)}" if fitting else "leave the preset out"
        raise NanoscopyError(
            f"The preset {preset} ({spec.dataset}) is {_layout(*expected)}, but {path.name} and its generator are "
            f"{_layout(*found)}; {hint}."
        )
    return preset


def _recognised_preset(found) -> str | None:
    fitting = [name for name, spec in PRESETS.items()
               if (spec.generator_channels, spec.task_kind, spec.task_channels) == found]
    return fitting[0] if len(fitting) == 1 else None


def _task_section(preset: str | None, outputs: int, path: Path) -> dict[str, Any]:
    """The card's task section: the preset's outputs and thresholds, or neutral ones."""
    if preset is None:
        fitting = [name for name, spec in PRESETS.items() if spec.task_channels[1] == outputs]
        hint = f" (name the dataset with a preset: {', '.join(fitting)})" if fitting else ""
        return {
            "kind": "segmentation",
            "outputs": ["task"] if outputs == 1 else [f"task {index + 1}" for index in range(outputs)],
            "thresholds": [0.0] * outputs,
            "threshold_method": MIDDLE + hint,
            "network": "imported from the TA-GAN code",
            "target_normalization": dict(MASK_SCALING),
            "imported_from": path.name,
        }
    spec = PRESETS[preset]
    return {
        "kind": "segmentation" if spec.segmentation else "regression",
        "outputs": list(spec.outputs),
        "thresholds": list(spec.thresholds),
        "threshold_method": spec.threshold_method,
        "network": "pretrained, frozen" if spec.frozen else "trained with the generator",
        "target_normalization": dict(MASK_SCALING) if spec.segmentation else None,
        "preset": preset,
        "imported_from": path.name,
    }


def _card(path: Path, kwargs: dict[str, Any], task: _LoadedTask | None) -> ModelCard:
    in_channels, out_channels = kwargs["in_channels"], kwargs["out_channels"]
    family = "tagan-live" if in_channels == 3 else "tagan"
    names = ["confocal", "STED patch", "patch mask"] if family == "tagan-live" else [f"input {i}" for i in range(in_channels)]
    normalization: dict[str, Any] = {"input": {"mode": "minmax", "range": [-1.0, 1.0]}, "output": DEFAULT_OUTPUT_NORMALIZATION.to_dict()}
    if family == "tagan-live":
        minmax = {"mode": "minmax", "range": [-1.0, 1.0]}
        normalization["input"] = [minmax, minmax, {"mode": "none"}]
    training: dict[str, Any] = {"imported_from": str(path)}
    description = f"TA-GAN generator imported from {path.name} (no pixel size recorded; give the image's)."
    if task is not None:
        training["task_network_imported_from"] = str(task.path)
        which = f"{PRESETS[task.preset].dataset} ({task.preset})" if task.preset else "a dataset not recognised"
        description = (f"TA-GAN generator {path.name} with its task network {task.path.name}, {which} "
                       "(no pixel size recorded; give the image's).")
    return ModelCard(
        name=path.stem,
        family=family,
        generator=kwargs,
        task_network=None if task is None else {"kind": task.kind, "kwargs": task.kwargs},
        task=None if task is None else {k: v for k, v in task.section.items() if v is not None},
        input_channels=names,
        output_channels=["STED"] * out_channels if out_channels == 1 else [f"output {i}" for i in range(out_channels)],
        pixel_size_nm=None,
        normalization=normalization,
        description=description,
        default_samples=10 if kwargs.get("dropout", 0) > 0 else 1,
        training=training,
        weights_sha256=sha256_of(path) if task is None else _pair_sha256(path, task.path),
    )


def _pair_sha256(generator: Path, task: Path) -> str:
    """One fingerprint of both files (caches key Restorers by it, so another task network counts)."""
    return hashlib.sha256(f"{sha256_of(generator)} {sha256_of(task)}".encode()).hexdigest()


def load_with_preset(source: str, preset: str) -> ModelPackage:
    """``source`` loaded as a TA-GAN ``*_net_G.pth`` whose dataset ``preset`` names; refused for other models."""
    path = Path(source).expanduser()
    if not (path.is_file() and path.suffix.lower() in CHECKPOINT_SUFFIXES):
        raise NanoscopyError(
            f"A preset names the dataset of a TA-GAN *_net_G.pth checkpoint, and {source} is not such a file; "
            "drop the preset (other models carry their own task description)."
        )
    return load_tagan_pth(path, preset)
