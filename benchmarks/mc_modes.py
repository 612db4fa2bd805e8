"""Monte-Carlo dropout with eval-mode BatchNorm ("dropout") vs the public code's train mode.

For each mode, on the same images and seeds:
- crop dependence: restore a whole image and a crop of it; how much the crop's pixels change
  (away from its edges by the network's halo), in units of the change between two runs with
  different seeds (1 = no more than the Monte-Carlo sampling noise);
- tiling dependence: the same image untiled and in tiles, same unit;
- with a dataset (``--data DIR`` with input/ and target/ TIFFs): PSNR and SSIM of the mean
  against the target, and the Spearman correlation between the per-pixel spread and the
  absolute error (does the uncertainty point at the errors?).

    python benchmarks/mc_modes.py --model PACKAGE [--data DIR] [--samples 10] [--images 4]
"""

import argparse
import copy
import dataclasses
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from napari_nanoscopy import load_model
from napari_nanoscopy.analysis import psnr, ssim
from napari_nanoscopy.card import Fixed
from napari_nanoscopy.inference import Restorer
from napari_nanoscopy.io import read_image
from napari_nanoscopy.packages import ModelPackage


def change(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


def crop_and_tiling(restorer: Restorer, image: np.ndarray, samples: int, tile: int) -> tuple[float, float]:
    """Changes from cropping and from tiling, in units of the change between two seeds.

    1 means the result depends on the crop or tiling no more than on the dropout masks drawn.
    """
    height, width = image.shape[-2:]
    margin = height // 8
    # Normalise the crop with the whole image's percentiles, so only the network can differ.
    card = copy.deepcopy(restorer.card)
    spec = card.input_normalizations()[0]
    low, high = np.percentile(image, [getattr(spec, "low", 1.0), getattr(spec, "high", 99.8)])
    pinned_spec = Fixed(min=float(low), max=float(high), range=spec.range)
    card.normalization = dataclasses.replace(card.normalization, inputs=(pinned_spec,), shared=True)
    package = ModelPackage(card, restorer.package.generator, restorer.package.task_network, "pinned normalisation")
    pinned = Restorer(package, device="cpu", mc_mode=restorer.mc_mode)
    whole = pinned.restore(image, samples=samples, seed=1).mean
    other_seed = pinned.restore(image, samples=samples, seed=2).mean
    cropped = pinned.restore(image[margin:-margin, margin:-margin], samples=samples, seed=1).mean
    inner = restorer.halo  # compare only pixels whose whole receptive field lies inside the crop
    region = (slice(margin + inner, height - margin - inner), slice(margin + inner, width - margin - inner))
    crop_ratio = change(cropped[inner:-inner, inner:-inner], whole[region]) / change(other_seed[region], whole[region])
    assert tile + 2 * restorer.halo < min(height, width), "the image must be larger than one tile window"
    tiled = pinned.restore(image, samples=samples, seed=1, tile_size=tile).mean
    return crop_ratio, change(tiled, whole) / change(other_seed, whole)


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
    parser.add_argument("--tile", type=int, default=64)
    args = parser.parse_args()
    package = load_model(args.model)
    pairs = []
    if args.data:
        for path in sorted((args.data / "input").glob("*.tif"))[: args.images]:
            pairs.append((read_image(path).data, read_image(args.data / "target" / path.name).data))
    else:
        rng = np.random.default_rng(0)
        pairs = [(rng.poisson(20, (384, 384)).astype(np.float32), None) for _ in range(args.images)]
    print(f"model {package.card.name}, {args.samples} samples, {len(pairs)} images")
    print("| mode | crop change / seed change | tiling change / seed change | PSNR | SSIM | spread-error Spearman |")
    print("|---|---|---|---|---|---|")
    for mode in ("dropout", "train"):
        restorer = Restorer(package, device="cpu", mc_mode=mode)
        crop, tiling = np.mean([crop_and_tiling(restorer, image, args.samples, args.tile) for image, _ in pairs], axis=0)
        quality = accuracy(restorer, pairs, args.samples) if args.data else {}
        cells = [f"{quality[k]:.3f}" if quality else "-" for k in ("psnr", "ssim", "spearman")]
        print(f"| {mode} | {crop:.3f} | {tiling:.3f} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()
