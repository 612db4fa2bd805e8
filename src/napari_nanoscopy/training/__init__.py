"""Training of every model family on paired image folders (tagan-cycle: two unpaired ones), with exact resume.

``train(TrainingConfig(family, data_dir, out_path, steps=...))``, or the same settings as
``train(family, data_dir, out_path, steps=...)``, is the entry point; see docs/training.md.
The names below are imported lazily, so that reading ``TRAINING_FAMILIES`` or the typed
settings (the command line's choices and options) does not load PyTorch.
"""

from .config import ALL_TRAINING_FAMILIES, TRAINING_FAMILIES, UNPAIRED_FAMILIES, TaskOptions, TrainingConfig, command_line_options, family_settings

_LAZY = {
    "checkpoint_folder": "checkpoints",
    "PatchSampler": "datasets",
    "TrainingData": "datasets",
    "load_training_data": "datasets",
    "sted_patch_channels": "datasets",
    "train": "trainers",
    "training_defaults": "trainers",
}

__all__ = ["ALL_TRAINING_FAMILIES", "TRAINING_FAMILIES", "UNPAIRED_FAMILIES", "TaskOptions", "TrainingConfig", "command_line_options", "family_settings", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
