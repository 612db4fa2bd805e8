"""Monte-Carlo dropout with eval-mode BatchNorm ("dropout") vs the public code's train mode.

For each mode, on the same images and seeds:
- crop dependence: restore a whole image and its centre crop; how much the crop's centre
  changes, relative to the mean sample spread (0 = the result depends only on the neighbourhood);
- tiling dependence: the same image untiled and in 128-px tiles, same measure;
- with a dataset (``--data DIR`` with input/ and target/ TIFFs): PSNR and SSIM of the mean
  against the target, and the Spearman correlation between the per-pixel spread and the
  absolute error (does the uncertainty point at the errors?).

    python benchmarks/mc_modes.py --model PACKAGE [--data DIR] [--samples 10] [--images 4]
"""

import argparse
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from napari_nanoscopy import load_model
from napari_nanoscopy.analysis import psnr, ssim
from napari_nanoscopy.inference import Restorer
from napari_nanoscopy.io import read_image


def relative_change(a: np.ndarray, b: np.ndarray, spread: np.ndarray) -> float:
    return float(np.abs(a - b).mean() / max(spread.mean(), 1e-12))


def crop_and_tiling(restorer: Restorer, image: np.ndarray, samples: int) -> tuple[float, float]:
    height, width = image.shape[-2:]
    whole = restorer.restore(image, samples=samples, seed=1)
    y0, x0 = height // 4, width // 4
    crop = image[..., y0:y0 + height // 2, x0:x0 + width // 2]
    cropped = restorer.restore(crop, samples=samples, seed=1)
    inner = (slice(height // 8, -height // 8), slice(width // 8, -width // 8))  # away from the crop's edges
    whole_centre = whole.mean[y0:y0 + height // 2, x0:x0 + width // 2]
    crop_change = relative_change(cropped.mean[inner], whole_centre[inner], whole.std)
    tiled = restorer.restore(image, samples=samples, seed=1, tile_size=128)
    return crop_change, relative_change(tiled.mean, whole.mean, whole.std)


def accuracy(restorer: Restorer, pairs: list[tuple[np.ndarray, np.ndarray]], samples: int) -> dict[str, float]:
    scores = {"psnr": [], "ssim": [], "spearman": []}
    for confocal, target in pairs:
        result = restorer.restore(confocal, samples=samples, seed=2)
        low, high = np.percentile(target, [1, 99.8])
        reference = np.clip((target - low) / (high - low), 0, 1)  # the [0, 1] scale the GANs output
        scores["psnr"].append(psnr(reference, result.mean, data_range=1.0))
        scores["ssim"].append(ssim(reference, result.mean, data_range=1.0))
        scores["spearman"].append(spearmanr(result.std.ravel(), np.abs(result.mean - reference).ravel())[0])
    return {k: float(np.mean(v)) for k, v in scores.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--images", type=int, default=4)
    args = parser.parse_args()
    package = load_model(args.model)
    pairs = []
    if args.data:
        for path in sorted((args.data / "input").glob("*.tif"))[: args.images]:
            pairs.append((read_image(path).data, read_image(args.data / "target" / path.name).data))
    else:
        rng = np.random.default_rng(0)
        pairs = [(rng.poisson(20, (256, 256)).astype(np.float32), None) for _ in range(args.images)]
    print(f"model {package.card.name}, {args.samples} samples, {len(pairs)} images")
    print("| mode | crop change / spread | tiling change / spread | PSNR | SSIM | spread-error Spearman |")
    print("|---|---|---|---|---|---|")
    for mode in ("dropout", "train"):
        restorer = Restorer(package, device="cpu", mc_mode=mode)
        crop, tiling = np.mean([crop_and_tiling(restorer, image, args.samples) for image, _ in pairs], axis=0)
        quality = accuracy(restorer, pairs, args.samples) if args.data else {}
        cells = [f"{quality[k]:.3f}" if quality else "-" for k in ("psnr", "ssim", "spearman")]
        print(f"| {mode} | {crop:.3f} | {tiling:.3f} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()
