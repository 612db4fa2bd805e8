"""Segmenters on real STED images (STEDActinFCN, Lavoie-Cardinal et al. 2020) against expert polygons.

Per axon image (``axon/images/actin_{1,2,3}``, 20 nm pixels), the Dice of each segmenter's
rings mask against the experts' polygons (labels 0 and 1 both mean rings, filled as the
authors' code fills them):

- the authors' axon U-Net (rings = softmax class 1 > 0.5),
- the authors' dendrite U-Net, its rings channel (sigmoid > 0.25) on these axon images,
- the bundled ``unet-live-factin`` (its rings output, card threshold),
- the bundled ``unet-live-axons`` (trained on simulated axons only; rings, card threshold),
- every model given with ``--model`` (its first class, or the class named ``rings``).

On the four dendrite images (``dendrite/to_predict``, no expert annotation, never trained on), the
Dice of each segmenter's rings and fibres against the authors' dendrite U-Net (its card
thresholds): agreement with a network trained on 377 annotated real images, not truth.

Then the largest absolute difference between our probabilities and the authors' own outputs
(``reference_predictions.npz``) on every ``*/to_predict/`` image, through the folder and
through a package written by ``import-unet``. ``--large`` also times one 2048x2048 image
through each authors' U-Net and reports the peak memory it added (a fresh process each).

    python benchmarks/real_segmentation.py [--data ../shared/real/STEDActinFCN] [--model M ...] [--large]
"""

import argparse
import json
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

from napari_nanoscopy.analysis import dice
from napari_nanoscopy.annotations import AXON_CLASSES, polygons_to_mask, read_polygons
from napari_nanoscopy.interop.stedactin import import_unet
from napari_nanoscopy.segmentation import Segmenter

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "real" / "STEDActinFCN"
REFERENCE_PREFIX = {"axon": "STEDActinAxonFCN", "dendrite": "STEDActinDendriteFCN"}
PIXEL_SIZE_NM = 20.0


def masks_by_class(segmenter: Segmenter, image: np.ndarray) -> dict[str, np.ndarray]:
    result = segmenter.segment(image, pixel_size_nm=PIXEL_SIZE_NM)
    return {name: result.probabilities[c] > result.thresholds[c] for c, name in enumerate(segmenter.class_names)}


def rings_mask(segmenter: Segmenter, image: np.ndarray) -> np.ndarray:
    """The segmenter's rings mask (its first class when none is called rings)."""
    masks = masks_by_class(segmenter, image)
    return masks.get("rings", next(iter(masks.values())))


def dice_table(data: Path, segmenters: dict[str, Segmenter]) -> dict[str, dict[str, float]]:
    table = {}
    for path in sorted((data / "axon" / "images").glob("actin_*.tiff")):
        image = tifffile.imread(path)
        polygons = read_polygons(data / "axon" / "annotations" / f"{path.stem}.polys.txt")
        truth = polygons_to_mask(polygons, image.shape, AXON_CLASSES)
        table[path.stem] = {name: dice(rings_mask(s, image), truth) for name, s in segmenters.items()}
    return table


def dendrite_agreement(data: Path, segmenters: dict[str, Segmenter]) -> dict[str, dict[str, float]]:
    """segmenter -> "rings"/"fibres" -> mean Dice against the authors' dendrite U-Net on dendrite/to_predict."""
    reference = Segmenter(str(data / "dendrite" / "network"), device="cpu")
    scores: dict[str, dict[str, list[float]]] = {}
    for path in sorted((data / "dendrite" / "to_predict").glob("*.tif")):
        image = tifffile.imread(path)
        expected = masks_by_class(reference, image)
        for name, segmenter in segmenters.items():
            for label, mask in masks_by_class(segmenter, image).items():
                if label in expected:
                    scores.setdefault(name, {}).setdefault(label, []).append(dice(mask, expected[label]))
    return {name: {label: float(np.mean(v)) for label, v in by_class.items()} for name, by_class in scores.items()}


def reference_differences(data: Path, scratch: Path) -> dict[str, float]:
    references = np.load(data / "reference_predictions.npz")
    worst = {}
    for kind, prefix in REFERENCE_PREFIX.items():
        package = scratch / f"{kind}.zip"
        import_unet(data / kind / "network", package)
        for label, source in (("folder", data / kind / "network"), ("package", package)):
            segmenter = Segmenter(str(source), device="cpu")
            for path in sorted((data / kind / "to_predict").glob("*.tif")):
                reference = references[f"{prefix}/{path.name}"]
                ours = segmenter.segment(tifffile.imread(path)).probabilities
                worst[f"{kind}/{path.name} ({label})"] = float(np.abs(ours - reference.reshape(ours.shape)).max())
    return worst


def _time_large(source: str, queue) -> None:
    segmenter = Segmenter(source, device="cpu")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 200, (2048, 2048)).astype(np.int16)
    segmenter.segment(image[:256, :256])  # warm up
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    segmenter.segment(image, pixel_size_nm=PIXEL_SIZE_NM)
    seconds = time.perf_counter() - start
    queue.put((seconds, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024))


def large_image(data: Path) -> dict[str, dict[str, float]]:
    context = multiprocessing.get_context("spawn")
    rows = {}
    for kind in REFERENCE_PREFIX:
        queue = context.Queue()
        process = context.Process(target=_time_large, args=(str(data / kind / "network"), queue))
        process.start()
        seconds, peak_mib = queue.get()
        process.join()
        rows[kind] = {"seconds": round(seconds, 2), "peak_added_MiB": round(peak_mib, 1)}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the STEDActinFCN folder")
    parser.add_argument("--model", action="append", default=[], help="another segmenter (repeatable)")
    parser.add_argument("--large", action="store_true", help="also time a 2048x2048 image per authors' U-Net")
    args = parser.parse_args()
    segmenters = {
        "authors' axon U-Net": Segmenter(str(args.data / "axon" / "network"), device="cpu"),
        "authors' dendrite U-Net (rings)": Segmenter(str(args.data / "dendrite" / "network"), device="cpu"),
        "unet-live-factin": Segmenter("unet-live-factin", device="cpu"),
        "unet-live-axons": Segmenter("unet-live-axons", device="cpu"),
        **{model: Segmenter(model, device="cpu") for model in args.model},
    }
    table = dice_table(args.data, segmenters)
    print("Dice against the expert polygons (rings):")
    print("| segmenter | " + " | ".join(table) + " |")
    print("|---|" + "---|" * len(table))
    for name in segmenters:
        print(f"| {name} | " + " | ".join(f"{table[image][name]:.2f}" for image in table) + " |")
    ours = {name: segmenter for name, segmenter in segmenters.items() if not name.startswith("authors'")}
    agreement = dendrite_agreement(args.data, ours)
    print("\nDice against the authors' dendrite U-Net on dendrite/to_predict (rings / fibres):")
    for name, by_class in agreement.items():
        print(f"| {name} | " + " / ".join(f"{label} {value:.2f}" for label, value in by_class.items()) + " |")
    with tempfile.TemporaryDirectory() as scratch:
        differences = reference_differences(args.data, Path(scratch))
    print("\nMax abs difference from the authors' outputs (reference_predictions.npz):")
    for name, value in differences.items():
        print(f"  {name}: {value:.2e}")
    report = {"dice": table, "dendrite_agreement": agreement, "reference_max_abs_difference": differences}
    if args.large:
        report["large_2048"] = large_image(args.data)
        print("\n2048x2048 image, one process each:", json.dumps(report["large_2048"]))
    print("\n" + json.dumps(report))


if __name__ == "__main__":
    main()
