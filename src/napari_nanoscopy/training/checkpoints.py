"""Training checkpoints: all a run needs to continue exactly where it stopped.

A checkpoint lives in ``<output>.checkpoint/checkpoint.pt`` beside the model package it
will produce. It holds the networks, the optimisers, the step, the torch random state, the
loss history and the run's settings (a resumed run must use the same ones). It is written
atomically and read with ``torch.load(weights_only=True)``, so loading it runs no code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import NanoscopyError
from ..io import atomic_output

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = 1


def checkpoint_folder(out_path) -> Path:
    """The checkpoint folder of the package at ``out_path``: ``<name>.checkpoint`` beside it."""
    out_path = Path(out_path).expanduser()
    return out_path.with_name(out_path.name + ".checkpoint")


@dataclass
class Checkpoint:
    config: dict[str, Any]  # the run's settings, JSON-like
    step: int  # steps completed
    networks: dict[str, dict[str, torch.Tensor]]
    optimizers: dict[str, dict[str, Any]]
    rng: dict[str, torch.Tensor]
    history: dict[str, list[float]]  # per loss name, one value per completed step
    wall_time_s: float


def save_checkpoint(folder: Path, checkpoint: Checkpoint) -> None:
    folder.mkdir(exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": json.dumps(checkpoint.config, sort_keys=True),
        "step": checkpoint.step,
        "networks": checkpoint.networks,
        "optimizers": checkpoint.optimizers,
        "rng": checkpoint.rng,
        "history": {name: torch.tensor(values, dtype=torch.float64) for name, values in checkpoint.history.items()},
        "wall_time_s": checkpoint.wall_time_s,
    }
    with atomic_output(folder / CHECKPOINT_FILE) as temporary:
        torch.save(payload, temporary)


def load_checkpoint(folder: Path, config: dict[str, Any]) -> Checkpoint:
    """Read the checkpoint in ``folder``; refuse it when it was made with other settings than ``config``."""
    path = folder / CHECKPOINT_FILE
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError... for a damaged file
        raise NanoscopyError(
            f"The checkpoint {path} cannot be read ({str(error).splitlines()[0][:200]}); "
            "delete the folder and train from the start."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise NanoscopyError(f"{path} is not a checkpoint this napari-nanoscopy can continue; delete the folder and train from the start.")
    saved = json.loads(payload["config"])
    wanted = json.loads(json.dumps(config, sort_keys=True))
    differences = sorted(key for key in saved.keys() | wanted.keys() if saved.get(key) != wanted.get(key))
    if differences:
        details = "; ".join(f"{key}: {saved.get(key)!r} then, {wanted.get(key)!r} now" for key in differences[:3])
        raise NanoscopyError(
            f"The checkpoint in {folder} was made with other settings ({details}); resume with the same "
            "settings, or delete the folder to train from the start."
        )
    return Checkpoint(
        config=saved,
        step=int(payload["step"]),
        networks=payload["networks"],
        optimizers=payload["optimizers"],
        rng=payload["rng"],
        history={name: values.tolist() for name, values in payload["history"].items()},
        wall_time_s=float(payload["wall_time_s"]),
    )
