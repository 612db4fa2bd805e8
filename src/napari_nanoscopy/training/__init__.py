"""Training of every model family on paired image folders, with exact resume.

``train(family, data_dir, out_path, steps=...)`` is the entry point; see docs/training.md.
The names below are imported lazily, so that reading ``TRAINING_FAMILIES`` (the command
line's choices) does not load PyTorch.
"""

TRAINING_FAMILIES = ("tagan", "tagan-live", "unet-live", "tcan", "wang", "l2l", "pix2pix")

_LAZY = {
    "checkpoint_folder": "checkpoints",
    "PatchSampler": "datasets",
    "TrainingData": "datasets",
    "load_training_data": "datasets",
    "sted_patch_channels": "datasets",
    "train": "trainers",
    "training_defaults": "trainers",
}

__all__ = ["TRAINING_FAMILIES", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
