"""Evaluate a label2label model on held-out simulated two-label pairs.

Every image (weak-label input, restored output, better-label target, clean structure) is
scaled by its own 1-99.8 percentiles to [0, 1], the convention of CARE-type evaluations, and
compared with the clean structure (``truth/``) and with the better label (``target/``).

    python recipes/evaluate_twolabel.py MODEL DATASET
"""

import sys
from pathlib import Path

import numpy as np

from napari_nanoscopy import Restorer
from napari_nanoscopy.analysis import psnr, ssim
from napari_nanoscopy.io import read_image


def scaled(image: np.ndarray) -> np.ndarray:
    low, high = np.percentile(image, [1, 99.8])
    return ((image - low) / (high - low)).astype(np.float32)


def main(model: str, dataset: Path) -> None:
    restorer = Restorer(model, device="cpu")
    rows = {"input (weak label)": [], "l2l output": [], "better label": []}
    for path in sorted((dataset / "input").glob("*.tif")):
        weak = read_image(path)
        truth = scaled(read_image(dataset / "truth" / path.name).data)
        better = read_image(dataset / "target" / path.name).data
        output = restorer.restore(weak.data, pixel_size_nm=weak.pixel_size_nm).mean
        for name, image in zip(rows, (weak.data, output, better)):
            image = scaled(image)
            rows[name].append((psnr(truth, image, data_range=1.0), ssim(truth, image, data_range=1.0),
                               psnr(scaled(better), image, data_range=1.0)))
    print(f"{len(rows['l2l output'])} held-out pairs, model {restorer.card.name}")
    print("| image | PSNR vs structure (dB) | SSIM vs structure | PSNR vs better label (dB) |")
    print("|---|---|---|---|")
    for name, values in rows.items():
        mean = np.mean(values, axis=0)
        print(f"| {name} | {mean[0]:.2f} | {mean[1]:.3f} | {mean[2]:.2f} |")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
