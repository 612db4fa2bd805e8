"""Time a 512x512 restoration with every bundled model on this machine.

The input is the model's own sample image tiled to 512x512 (a TA-GAN-Live model gets a
revealed STED cell and its mask, as the live pipeline builds them). Prints a Markdown table
with one deterministic pass and the card's default number of Monte-Carlo samples, the min
and median of the repeats.

    python benchmarks/bundled_512.py [--repeats 3] [--device cpu]
"""

import argparse
import json
import platform
import statistics

import numpy as np
import torch

from napari_nanoscopy.inference import Restorer
from napari_nanoscopy.io import read_image
from napari_nanoscopy.packages import bundled_model_names
from napari_nanoscopy.samples import SAMPLE_DIR
from napari_nanoscopy.training.datasets import sted_patch_channels
from restore_512 import timed  # the benchmark beside this one (the script's folder is on sys.path)

SIZE = 512


def sample_input(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(confocal, STED) 512x512 fields tiled from the sample of the structure ``name`` was trained on."""
    samples = json.loads((SAMPLE_DIR / "samples.json").read_text())
    key = next(k for k in samples if k in name)  # bundled names end with their structure: tagan-factin
    layers = {layer["role"]: layer["file"] for layer in samples[key]["layers"]}
    confocal, sted = (read_image(SAMPLE_DIR / layers[role]).data for role in ("input", "target"))
    reps = -(-SIZE // confocal.shape[0])
    return (np.tile(confocal, (reps, reps))[:SIZE, :SIZE], np.tile(sted, (reps, reps))[:SIZE, :SIZE])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, device {args.device}")
    print("| model | parameters | samples | min s | median s |")
    print("|---|---|---|---|---|")
    for name in bundled_model_names():
        restorer = Restorer(name, device=args.device)
        confocal, sted = sample_input(name)
        image, channel_axis = confocal, None
        if restorer.card.family == "tagan-live":
            mask = np.zeros((SIZE, SIZE), bool)
            mask[200:300, 200:300] = True  # one 100-px cell, as the live pipeline reveals
            spec = restorer.card.normalization.sted_patch
            image, channel_axis = np.concatenate([confocal[None], sted_patch_channels(sted, mask, spec)]), 0
        elif restorer.card.training.get("method") == "unet-live":
            image = sted
        parameters = sum(p.numel() for p in restorer.package.generator.parameters())
        if restorer.package.task_network is not None:
            parameters += sum(p.numel() for p in restorer.package.task_network.parameters())
        for samples in sorted({1, restorer.card.default_samples}):
            run = lambda: restorer.restore(image, pixel_size_nm=20.0, channel_axis=channel_axis, samples=samples, seed=0)
            run()  # warm-up
            times = timed(run, args.repeats)
            print(f"| {name} | {parameters:,} | {samples} | {min(times):.2f} | {statistics.median(times):.2f} |", flush=True)


if __name__ == "__main__":
    main()
