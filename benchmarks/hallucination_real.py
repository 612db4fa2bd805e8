"""The hallucination score on real STED structure: each real STED image of dendritic and axonal
F-actin (``../shared/real/STEDActinFCN``, 20 nm pixels) is blurred with the standard pySTED confocal
PSF, given Poisson noise (a pseudo-confocal image), restored by the bundled F-actin models (or
those given with ``--model``), and each restoration scored against the real STED image (PSNR,
SSIM, hallucination), as ``evaluate`` scores rows: over all images, and over the dendritic ones
alone (``dendrite/to_predict``, the data's held-out images: the F-actin models' training
datamaps come from the axonal ones, see recipes/bundled_models.py).

    python benchmarks/hallucination_real.py [--real ../shared/real/STEDActinFCN] [--photons 30] [--model M ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from napari_nanoscopy.analysis import psnr, ssim
from napari_nanoscopy.analysis.hallucination import cutoff_from_psf, hallucination_score
from napari_nanoscopy.evaluation import confocal_psf, fit_to_reference, percentile_scaled, richardson_lucy
from napari_nanoscopy.inference import Restorer
from napari_nanoscopy.io import read_image

MODELS = ("tagan-factin", "pix2pix-factin")


def real_sted(root: Path) -> list[tuple[str, np.ndarray]]:
    """(group, image) of every real F-actin STED image: the axonal ones, then the held-out dendritic ones."""
    paths = sorted((root / "axon" / "images").glob("actin_*.tiff")) + sorted((root / "dendrite" / "to_predict").glob("*.tif"))
    return [(path.parts[-3], read_image(path).data.astype(np.float64)) for path in paths]


def print_table(title: str, scores: dict[str, list[tuple[float, float, float]]]) -> None:
    print(f"\n{title}\n\n| image | PSNR vs real STED (dB) | SSIM | hallucination |\n|---|---|---|---|")
    for name, values in scores.items():
        print(f"| {name} | " + " | ".join(f"{v:.3g}" for v in np.mean(values, axis=0)) + " |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", default=str(Path(__file__).resolve().parents[2] / "shared" / "real" / "STEDActinFCN"))
    parser.add_argument("--photons", type=float, default=30.0, help="pseudo-confocal peak photon count")
    parser.add_argument("--model", action="append", help="a model to score (name or package; repeat; default: "
                        + ", ".join(MODELS) + ")")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    psf = confocal_psf()
    cutoff = cutoff_from_psf(psf)
    restorers = {str(name): Restorer(name, device="cpu") for name in args.model or MODELS}
    rng = np.random.default_rng(0)
    scores: dict[str, list[tuple[float, float, float]]] = {}
    held_out: dict[str, list[tuple[float, float, float]]] = {}
    images = real_sted(Path(args.real))
    for index, (group, sted) in enumerate(images):
        blurred = ndimage.convolve(np.clip(sted - np.percentile(sted, 1), 0, None), psf, mode="reflect")
        confocal = rng.poisson(args.photons * blurred / blurred.max() + 1).astype(np.float32)
        rows = {"input": confocal, "Richardson-Lucy": richardson_lucy(confocal, psf)}
        for name, restorer in restorers.items():
            rows[name] = restorer.restore(confocal, pixel_size_nm=20.0, seed=index).mean
        target = percentile_scaled(sted)
        for name, image in rows.items():
            fitted = fit_to_reference(target, image)
            figures = (psnr(target, fitted, data_range=1.0), ssim(target, fitted, data_range=1.0),
                       hallucination_score(fitted, target, cutoff))
            scores.setdefault(name, []).append(figures)
            if group == "dendrite":
                held_out.setdefault(name, []).append(figures)
    print(f"{len(images)} real STED images, cut-off {cutoff:.3f} cycles/px")
    print_table(f"All {len(images)} images", scores)
    print_table(f"The {sum(group == 'dendrite' for group, _ in images)} dendritic images (held out)", held_out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
