"""TA-GAN generator checkpoints (``*_net_G.pth``) from the public TA-GAN code.

A bare state dict carries no card: the architecture is read off the tensor shapes and the card
gets TA-GAN's conventions. Loaded with ``torch.load(weights_only=True)``, so no pickled code runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import NanoscopyError
from ..models import MAX_PARAMETERS, build_generator, paper_defaults
from ..models.blocks import MAX_REPEATS
from ..card import DEFAULT_OUTPUT_NORMALIZATION
from ..packages import ModelCard, ModelPackage, load_state, sha256_of

CHECKPOINT_SUFFIXES = (".pth", ".pt")
MAX_CHECKPOINT_BYTES = 4 * MAX_PARAMETERS  # float32 weights of the largest network built


def load_tagan_pth(path: Path) -> ModelPackage:
    """Load a TA-GAN generator checkpoint (``*_net_G.pth``) from the public code.

    The architecture is read off the tensor shapes; the card gets TA-GAN's conventions
    (min-max scaling to [-1, 1], tanh output) and no pixel size, since a bare state dict has none.
    The file's size and the number of residual blocks its keys name are checked before anything
    is built, so a malformed checkpoint cannot make the network allocate gigabytes.
    """
    size = path.stat().st_size
    if size > MAX_CHECKPOINT_BYTES:
        raise NanoscopyError(
            f"{path} is {size / 1e9:.1f} GB, more than the float32 weights of the largest network this builds "
            f"({MAX_CHECKPOINT_BYTES / 1e9:.0f} GB); it is not a TA-GAN *_net_G.pth generator checkpoint."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError or others here
        raise NanoscopyError(
            f"{path} was refused: it is not a plain tensor state dict that can be loaded without running "
            f"code (torch said: {str(error).splitlines()[0][:200]}). Only TA-GAN *_net_G.pth state dicts "
            "are accepted; never load .pth files from sources you do not trust."
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise NanoscopyError(f"{path} does not hold a state dict of tensors; give a TA-GAN *_net_G.pth file.")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if "model.1.weight" not in state:
        raise NanoscopyError(
            f"{path} is not a TA-GAN ResNet generator checkpoint (no 'model.1.weight'); "
            "give a *_net_G.pth file from the TA-GAN code."
        )
    first = state["model.1.weight"]
    last_index = max(int(k.split(".")[1]) for k in state
                     if k.startswith("model.") and k.endswith(".weight") and k.split(".")[1].isdigit())
    last = state[f"model.{last_index}.weight"]
    n_blocks = len({k.split(".")[1] for k in state if ".conv_block." in k})
    if n_blocks > MAX_REPEATS or first.ndim != 4 or last.ndim != 4:
        raise NanoscopyError(
            f"{path} does not hold a TA-GAN ResNet generator this can build ({n_blocks} residual blocks, at most "
            f"{MAX_REPEATS}; first and last weights of {first.ndim} and {last.ndim} dimensions, not 4); "
            "give a *_net_G.pth file from the TA-GAN code."
        )
    in_channels = int(first.shape[1])
    kwargs = dict(paper_defaults("tagan"))
    kwargs.update(in_channels=in_channels, out_channels=int(last.shape[0]), ngf=int(first.shape[0]), n_blocks=n_blocks)
    family = "tagan-live" if in_channels == 3 else "tagan"
    try:
        generator = build_generator(family, **kwargs)
    except NanoscopyError as error:  # sizes read off the tensors, out of range
        raise NanoscopyError(
            f"{path} describes a generator this cannot build ({str(error).rstrip('.')}); "
            "give a *_net_G.pth file from the TA-GAN code."
        ) from None
    load_state(generator, state, "TA-GAN generator", str(path))
    generator.eval()
    names = ["confocal", "STED patch", "patch mask"] if family == "tagan-live" else [f"input {i}" for i in range(in_channels)]
    normalization: dict[str, Any] = {"input": {"mode": "minmax", "range": [-1.0, 1.0]}, "output": DEFAULT_OUTPUT_NORMALIZATION.to_dict()}
    if family == "tagan-live":
        minmax = {"mode": "minmax", "range": [-1.0, 1.0]}
        normalization["input"] = [minmax, minmax, {"mode": "none"}]
    card = ModelCard(
        name=path.stem,
        family=family,
        generator=kwargs,
        input_channels=names,
        output_channels=["STED"] * kwargs["out_channels"] if kwargs["out_channels"] == 1 else [f"output {i}" for i in range(kwargs["out_channels"])],
        pixel_size_nm=None,
        normalization=normalization,
        description=f"TA-GAN generator imported from {path.name} (no pixel size recorded; give the image's).",
        default_samples=10 if kwargs.get("dropout", 0) > 0 else 1,
        training={"imported_from": str(path)},
        weights_sha256=sha256_of(path),
    )
    return ModelPackage(card=card, generator=generator, task_network=None, source=str(path))
