"""Which per-pixel uncertainty predicts where a restoration is wrong?

For every bundled model with dropout, on the first images of its recipe's held-out simulated set
(pySTED, seed 1: the same pairs as ``recipes/bundled_models.py``'s test sets, simulated here), this
restores each confocal image with the model's Monte-Carlo dropout samples and measures how well
each candidate predictor finds the 10 % pixels with the largest absolute error (AUROC; 0.5 =
chance) and how it ranks the error over every pixel (Spearman). The error is that of the restored
image, mapped onto the percentile-scaled reference by the least-squares affine fit (as
``evaluate`` scores PSNR), against two references: the simulated STED target (noisy, what the
held-out set holds) and the noise-free STED image of the same structure (where the output itself
is wrong, without the target's photon noise). Figures are means over images.

Candidates: the restored intensity (the trivial predictor), the raw per-pixel Monte-Carlo std,
the std relative to the local signal, the spread over test-time augmentation (the 8 rotations and
mirror images, one deterministic pass each), the task network's spread (task-assisted models),
and the pooled std (the shipped ``RestorationResult.uncertainty``; also at other pooling widths).

    python benchmarks/uncertainty.py [--models NAME ...] [--factin 8] [--nanodomains 16] [--no-tta]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from napari_nanoscopy.evaluation import fit_to_reference, percentile_scaled
from napari_nanoscopy.inference import Restorer
from napari_nanoscopy.simulation import STANDARD_CONDITIONS, acquire, acquire_pair, structures
from napari_nanoscopy.training.datasets import random_patch_mask, sted_patch_channels
from napari_nanoscopy.uncertainty import (POOLING_SIGMA_MODEL_PX, augmentation_spread, pooled_spread, relative_spread,
                                          spearman, task_spread, worst_pixel_auroc)

# model -> (kind, image size) of its recipe's held-out set
MODELS = {
    "pix2pix-factin": ("factin", 128),
    "pix2pix-nanodomains": ("nanodomains", 64),
    "tagan-factin": ("factin", 128),
    "tagan-live-factin": ("factin", 128),
    "tagan-nanodomains": ("nanodomains", 64),
}
HELD_OUT_SEED = 1
SHIPPED = f"pooled std, sigma {POOLING_SIGMA_MODEL_PX:g} px (shipped)"
NOISE_FREE = {**STANDARD_CONDITIONS, "detector": {**STANDARD_CONDITIONS["detector"], "noise": False}}


def held_out_pairs(kind: str, size: int, n: int):
    """(confocal, STED target, noise-free STED) of the held-out set's first ``n`` samples.

    Sample i draws its structure, then its confocal and STED images, from the seed sequence
    (seed, i), exactly as ``simulate_dataset`` does; the noise-free STED images the same datamap.
    """
    for index in range(n):
        rng = np.random.default_rng(np.random.SeedSequence(HELD_OUT_SEED, spawn_key=(index,)))
        structure = getattr(structures, kind)(size, seed=rng)
        confocal, sted = acquire_pair(structure.datamap, STANDARD_CONDITIONS, rng=rng)
        yield confocal, sted, acquire(structure.datamap, NOISE_FREE, sted=True, rng=0)


def model_input(restorer: Restorer, confocal: np.ndarray, sted: np.ndarray, index: int) -> tuple[np.ndarray, int | None]:
    """The image the model takes and its channel axis: TA-GAN Live gets STED patches, as ``evaluate`` gives them."""
    if restorer.card.family != "tagan-live":
        return confocal, None
    mask = random_patch_mask(confocal.shape[-1], np.random.default_rng(index))
    spec = restorer.card.normalization.sted_patch or restorer.card.input_normalizations()[0]
    return np.concatenate([confocal[None], sted_patch_channels(sted, mask, spec)]), 0


def predictors(restorer: Restorer, image: np.ndarray, channel_axis, index: int, tta: bool) -> dict[str, np.ndarray]:
    result = restorer.restore(image, channel_axis=channel_axis, seed=index, keep_samples=True)
    found = {
        "restored intensity": result.mean,
        "MC std (raw)": result.std,
        "MC std / local signal": relative_spread(result.std, result.mean),
        SHIPPED: result.uncertainty,
    }
    for sigma in (1.0, 3.0):
        found[f"pooled std, sigma {sigma:g} px"] = pooled_spread(result.std, sigma)
    if tta:
        found["test-time augmentation std"] = augmentation_spread(
            lambda turned: restorer.restore(turned, channel_axis=channel_axis, samples=1).mean, image)
    if result.task_samples is not None:
        found["task network std"] = task_spread(result.task_samples)
    return found


def measure(name: str, n: int, tta: bool) -> dict[str, dict[str, list[float]]]:
    """{predictor: {measure: per-image values}} for one model."""
    kind, size = MODELS[name]
    restorer = Restorer(name, device="cpu")
    scores: dict[str, dict[str, list[float]]] = {}
    for index, (confocal, sted, noise_free) in enumerate(held_out_pairs(kind, size, n)):
        image, channel_axis = model_input(restorer, confocal, sted, index)
        found = predictors(restorer, image, channel_axis, index, tta)
        for reference_name, reference in (("target", sted), ("noise-free", noise_free)):
            scaled = percentile_scaled(reference)
            error = np.abs(fit_to_reference(scaled, found["restored intensity"]) - scaled)
            for predictor, values in found.items():
                row = scores.setdefault(predictor, {})
                row.setdefault(f"AUROC ({reference_name})", []).append(worst_pixel_auroc(values, error))
                row.setdefault(f"Spearman ({reference_name})", []).append(spearman(values, error))
    return scores


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--factin", type=int, default=8, help="held-out F-actin images per model (128 px)")
    parser.add_argument("--nanodomains", type=int, default=16, help="held-out nanodomain images per model (64 px)")
    parser.add_argument("--no-tta", action="store_true", help="skip test-time augmentation (8 more passes per image)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    summary = []
    for name in args.models:
        n = args.factin if MODELS[name][0] == "factin" else args.nanodomains
        start = time.perf_counter()
        scores = measure(name, n, not args.no_tta)
        measures = list(next(iter(scores.values())))
        print(f"\n{name}: {n} held-out {MODELS[name][0]} images ({time.perf_counter() - start:.0f} s)\n")
        print("| predictor | " + " | ".join(measures) + " |\n|---|" + "---|" * len(measures))
        for predictor, row in scores.items():
            print(f"| {predictor} | " + " | ".join(f"{np.nanmean(row[m]):.3f}" for m in measures) + " |")
        intensity, shipped = scores["restored intensity"], scores[SHIPPED]
        figures = []
        for m in ("AUROC (target)", "AUROC (noise-free)"):
            wins = np.mean(np.greater(shipped[m], intensity[m]))  # the share of images where it ranks better
            figures += [np.mean(intensity[m]), np.mean(shipped[m]), wins]
        summary.append((name, n, *figures))
    print("\n| model | images | AUROC intensity (target) | AUROC uncertainty (target) | images won | "
          "AUROC intensity (noise-free) | AUROC uncertainty (noise-free) | images won |\n|---|---|---|---|---|---|---|---|")
    for name, n, *figures in summary:
        print(f"| {name} | {n} | " + " | ".join(f"{value:.4f}" if k % 3 < 2 else f"{value:.0%}"
                                                for k, value in enumerate(figures)) + " |")
    beaten = [row[0] for row in summary if row[3] > row[2] and row[6] > row[5]]
    print(f"\nthe shipped uncertainty beats the restored intensity on both references for {len(beaten)} of "
          f"{len(summary)} models")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
