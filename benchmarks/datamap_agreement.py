"""Agreement of pySTED re-images of derived datamaps with the real STED images (docs/simulation.md).

    python benchmarks/datamap_agreement.py [--real DIR] [--seeds N] [--iterations N|auto]
                                           [--background COUNTS] [--only TEXT] [--json OUT]

For every STED image of ../shared/real/STEDActinFCN (axon/images, axon/to_predict, dendrite/to_predict;
20 nm pixels; evaluation only, nothing is trained on them) it derives the datamap under the
standard conditions (``derive_datamap``, 30 Richardson-Lucy iterations unless --iterations;
``auto`` stops by the discrepancy principle; --background sets the detector's mean background in
counts per pixel, the standard being 0.64), images
it with pySTED ``--seeds`` times and compares each re-image with the real image: decorrelation
resolution (Descloux et al. 2019, ``analysis.resolution``) and intensity statistics (mean,
background, percentiles; ``datamaps.intensity_statistics``). A known-answer case follows: pySTED
STED images of synthetic F-actin datamaps (``structures.factin``, 224 px) go through the same
derivation, and the derived datamap's molecules are compared with the true ones.

Prints Markdown tables: per image, real value and re-imaged mean over the seeds, and the mean
absolute relative difference over the images (relative to the real value, or to 1 count where
that is smaller: a median of 0 counts).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np

from napari_nanoscopy.analysis.resolution import decorrelation_resolution
from napari_nanoscopy.simulation import STANDARD_CONDITIONS, acquire, factin
from napari_nanoscopy.simulation.datamap_files import read_sted_image
from napari_nanoscopy.simulation.datamaps import (
    DEFAULT_ITERATIONS,
    STATISTICS,
    derive_datamap,
    detector_background,
    intensity_statistics,
    reimage,
)

REAL = Path(__file__).resolve().parents[2] / "shared" / "real" / "STEDActinFCN"
FOLDERS = ("axon/images", "axon/to_predict", "dendrite/to_predict")
PIXEL_SIZE_NM = 20.0  # the axon TIFFs carry none; README: 20 nm


def real_images(root: Path, only: str) -> list[tuple[str, np.ndarray]]:
    images = []
    for folder in FOLDERS:
        for path in sorted((root / folder).glob("*.tif*")):
            if only not in f"{folder}/{path.name}":
                continue
            counts, _ = read_sted_image(path, PIXEL_SIZE_NM)
            images.append((f"{folder.split('/')[0]}/{path.name}", counts))
    return images


def with_background(counts_per_pixel: float | None) -> dict:
    conditions = copy.deepcopy(STANDARD_CONDITIONS)
    if counts_per_pixel is not None:
        scale = counts_per_pixel / detector_background(STANDARD_CONDITIONS)
        conditions["detector"]["background"] = STANDARD_CONDITIONS["detector"]["background"] * scale
    return conditions


def compare(name: str, real: np.ndarray, seeds: int, iterations, conditions) -> dict:
    derived = derive_datamap(real, PIXEL_SIZE_NM, conditions, iterations=iterations)
    row = {"name": name, "iterations": derived.info["iterations"],
           "resolution_real": decorrelation_resolution(real, PIXEL_SIZE_NM).resolution_nm,
           "real": intensity_statistics(real), "simulated": []}
    resolutions = []
    for seed in range(seeds):
        simulated = reimage(derived.datamap, conditions, rng=1000 + seed)
        resolutions.append(decorrelation_resolution(simulated, PIXEL_SIZE_NM).resolution_nm)
        row["simulated"].append(intensity_statistics(simulated))
    row["resolution_simulated"] = [r for r in resolutions if r is not None]
    return row


def known_answer(seeds: int, iterations) -> list[dict]:
    rows = []
    for seed in range(seeds):
        truth = factin(224, seed=seed).datamap
        image = acquire(truth, STANDARD_CONDITIONS, sted=True, rng=seed)
        derived = derive_datamap(image, PIXEL_SIZE_NM, STANDARD_CONDITIONS, iterations=iterations).datamap
        simulated = reimage(derived, STANDARD_CONDITIONS, rng=500 + seed)
        # The same truth imaged again: how far two noise realisations' resolutions lie apart.
        second = acquire(truth, STANDARD_CONDITIONS, sted=True, rng=900 + seed)
        correlation = float(np.corrcoef(_blur(truth), _blur(derived))[0, 1])
        rows.append({
            "seed": seed, "molecules_true": float(truth.sum()), "molecules_derived": float(derived.sum()),
            "correlation_20nm_blur": correlation,
            "resolution_real": decorrelation_resolution(image, PIXEL_SIZE_NM).resolution_nm,
            "resolution_simulated": decorrelation_resolution(simulated, PIXEL_SIZE_NM).resolution_nm,
            "resolution_second_image": decorrelation_resolution(second, PIXEL_SIZE_NM).resolution_nm,
            "mean_real": float(image.mean()), "mean_simulated": float(simulated.mean()),
        })
    return rows


def _blur(datamap):
    from scipy import ndimage

    return ndimage.gaussian_filter(np.asarray(datamap, np.float64), 1.0).ravel()  # 1 px = 20 nm sigma


def _relative(simulated: float, real: float) -> float:
    # At least one count in the denominator: a real median of 0 counts must not blow up the mean.
    return abs(simulated - real) / max(abs(real), 1.0)


def print_tables(rows: list[dict], known: list[dict]) -> None:
    print("| image | RL iterations | resolution real / re-imaged (nm) | " + " | ".join(
        f"{s} real / re-imaged" for s in STATISTICS) + " |")
    print("|---|---|---|" + "---|" * len(STATISTICS))
    errors = {key: [] for key in ("resolution", *STATISTICS)}
    for row in rows:
        sim_res = float(np.mean(row["resolution_simulated"])) if row["resolution_simulated"] else None
        cells = [f"{row['resolution_real']:.0f} / {sim_res:.0f} ± {np.std(row['resolution_simulated']):.0f}"
                 if sim_res and row["resolution_real"] else "-"]
        if sim_res and row["resolution_real"]:
            errors["resolution"].append(_relative(sim_res, row["resolution_real"]))
        for key in STATISTICS:
            simulated = float(np.mean([s[key] for s in row["simulated"]]))
            cells.append(f"{row['real'][key]:.2f} / {simulated:.2f}")
            errors[key].append(_relative(simulated, row["real"][key]))
        print(f"| {row['name']} | {row['iterations']} | " + " | ".join(cells) + " |")
    print("| **mean abs. relative difference** | | " + " | ".join(
        f"{100 * np.mean(errors[key]):.1f} %" for key in ("resolution", *STATISTICS)) + " |")
    if not known:
        return
    print()
    print("| known answer (factin seed) | molecules true / derived | correlation (20 nm Gaussian blur) | "
          "resolution image / re-imaged / truth imaged again (nm) | mean image / re-imaged |")
    print("|---|---|---|---|---|")
    for row in known:
        print(f"| {row['seed']} | {row['molecules_true']:.0f} / {row['molecules_derived']:.0f} | "
              f"{row['correlation_20nm_blur']:.3f} | {row['resolution_real']:.0f} / {row['resolution_simulated']:.0f} / "
              f"{row['resolution_second_image']:.0f} | "
              f"{row['mean_real']:.2f} / {row['mean_simulated']:.2f} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, default=REAL, help="the STEDActinFCN folder")
    parser.add_argument("--seeds", type=int, default=3, help="re-imagings per datamap (default 3)")
    parser.add_argument("--iterations", default=str(DEFAULT_ITERATIONS),
                        help=f"Richardson-Lucy iterations (default {DEFAULT_ITERATIONS}) or auto (discrepancy stop)")
    parser.add_argument("--background", type=float, help="the detector's mean background, counts per pixel")
    parser.add_argument("--only", default="", help="only the images whose folder/name contains this")
    parser.add_argument("--no-known-answer", action="store_true", help="skip the synthetic known-answer case")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    iterations = None if args.iterations == "auto" else int(args.iterations)
    conditions = with_background(args.background)
    rows = [compare(name, image, args.seeds, iterations, conditions) for name, image in real_images(args.real, args.only)]
    known = [] if args.no_known_answer else known_answer(args.seeds, iterations)
    print_tables(rows, known)
    if args.json:
        args.json.write_text(json.dumps({"real": rows, "known_answer": known}, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
