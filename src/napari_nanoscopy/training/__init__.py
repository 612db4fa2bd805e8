"""Training of every model family on paired image folders, with exact resume.

``train(family, data_dir, out_path, steps=...)`` is the entry point; see docs/training.md.
"""

from .checkpoints import checkpoint_folder
from .datasets import PatchSampler, TrainingData, load_training_data, sted_patch_channels
from .trainers import TRAINING_FAMILIES, train, training_defaults

__all__ = [
    "TRAINING_FAMILIES",
    "PatchSampler",
    "TrainingData",
    "checkpoint_folder",
    "load_training_data",
    "sted_patch_channels",
    "train",
    "training_defaults",
]
