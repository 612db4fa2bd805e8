"""Does the domain check flag the images a model makes worse? (docs/models.md, docs/domain.md)

    python benchmarks/domain_harm.py [NAME ...] [--work DIR] [--samples 4] [--json OUT]

The domain check answers "is this image like the training inputs?"; what a user needs to know is
"should I believe this output?". For every bundled restoration model and every simulated set of
``domain_check.py`` that has a ground truth (held-out in-domain images, the shifted condition sets,
the other structures) this restores each image (the mean of ``--samples`` Monte-Carlo samples,
at the model's pixel size) and scores the output and the input against the set's target (its
STED image; for l2l-twolabel its better label) as ``evaluate`` does: each percentile-scaled and
fitted to the target by least squares, then SSIM. An image is *harmed* when the output's SSIM is
below the input's: the model made it worse than doing nothing. Per set it prints the share
harmed, the share flagged, and the share of the harmed images that were flagged.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))

from domain_check import CONDITIONS, in_table_order, planes, set_folders  # noqa: E402
from fingerprints import DATA  # noqa: E402

from napari_nanoscopy.analysis import ssim  # noqa: E402
from napari_nanoscopy.evaluation import fit_to_reference, percentile_scaled  # noqa: E402
from napari_nanoscopy.inference import Restorer  # noqa: E402

# unet-live-factin segments (its output is a mask, not an image to compare with its input);
# tagan-live-factin also takes a STED patch the live loop acquires (its fingerprint is tagan-factin's)
SKIPPED = {"unet-live-factin", "tagan-live-factin"}


def similarity(target: np.ndarray, image: np.ndarray) -> float:
    reference = percentile_scaled(target)
    return ssim(reference, fit_to_reference(reference, percentile_scaled(image)), data_range=1.0)


def measure(name: str, work: Path, samples: int) -> dict:
    restorer = Restorer(name, device="cpu")
    rows = {}
    for label, parts in set_folders(name, work).items():
        own = label.startswith("in-domain") or label in CONDITIONS
        input_folder = "input"  # every restoration model here takes the set's confocal (or weak-label) input
        if not own and name == "l2l-twolabel":
            continue  # other structures have no second label to compare with
        inputs = [image for path, first in parts for image in planes(path / input_folder, first)]
        targets = [image for path, first in parts for image in planes(path / "target", first)]
        records = []
        for index, (image, target) in enumerate(zip(inputs, targets)):
            result = restorer.restore(image, samples=samples, seed=index)
            before, after = similarity(target, image), similarity(target, result.mean)
            records.append((before, after, bool(result.domain.flagged)))
        before, after, flagged = (np.asarray(column) for column in zip(*records))
        harmed = after < before
        rows[label] = {"n": len(records), "harmed": float(harmed.mean()), "flagged": float(flagged.mean()),
                       "harmed_flagged": float(flagged[harmed].mean()) if harmed.any() else None,
                       "ssim_input": round(float(before.mean()), 3), "ssim_output": round(float(after.mean()), 3)}
        print(name, label, rows[label], flush=True)
    return {"model": name, "rows": rows}


def table(results: list[dict]) -> str:
    """One row per model; each cell: the share of the set's images the model made worse than its input,
    and how many of those the check flagged (the set's mean SSIM input -> output below)."""
    labels = in_table_order(label for result in results for label in result["rows"])
    lines = ["| model | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for result in results:
        cells = []
        for label in labels:
            row = result["rows"].get(label)
            if row is None:
                cells.append("–")
                continue
            harmed = round(row["harmed"] * row["n"])
            caught = "" if not harmed else f", {round(row['harmed_flagged'] * harmed)}/{harmed} flagged"
            cells.append(f"{100 * row['harmed']:.0f} %{caught} ({row['ssim_input']:.2f} → {row['ssim_output']:.2f})")
        lines.append(f"| {result['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="bundled restoration models (default: all with a fingerprint recipe)")
    parser.add_argument("--work", default="/tmp/nanoscopy-fingerprints", help="folder for the simulated images")
    parser.add_argument("--samples", type=int, default=4, help="Monte-Carlo samples per restoration")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    names = args.names or [name for name in DATA if name not in SKIPPED]
    results = [measure(name, work, args.samples) for name in names]
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
