"""False alarms and detections of the domain check, per bundled model (docs/models.md, docs/domain.md).

    python benchmarks/domain_check.py [NAME ...] [--work DIR] [--json OUT]

For every bundled model with a fingerprint (recipes/fingerprints.py) it scores, exactly as a
restoration does (``domain.check_planes``, which needs no network pass):

- in-domain: held-out simulations (seed 1) after the ones the threshold was calibrated on, at
  the recipe's size and (where it adds them) as larger fields;
- real STED: the STED images of ../shared/real/STEDActinFCN at their 20 nm pixels;
- other conditions: pySTED images of the model's structure (seed 2) with a 10x shorter dwell
  time, a 10x brighter background, a 0.9 NA objective (PSF 1.6x wider), and all three milder
  at once (dwell time / 4, background x 5, NA 1.0);
- another structure: held-out confocal images of each other simulated kind;
- a wrong pixel size: the in-domain images declared at 2x and 0.5x (and 1.5x) their pixel size.

Prints a Markdown table of the share flagged (the in-domain column is the false-alarm rate).
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))

from bundled_models import DATAMAP_SETS, DATASETS  # noqa: E402
from fingerprints import (DATA, DEFAULT_HELD_OUT, HELD_OUT_COUNT, INPUT_FOLDER, LARGE_COUNT, LARGE_FIELD,  # noqa: E402
                          large_fields, per_set, simulated)

from napari_nanoscopy import io  # noqa: E402
from napari_nanoscopy.domain import check_planes  # noqa: E402
from napari_nanoscopy.formats import load_model  # noqa: E402
from napari_nanoscopy.simulation import simulate_dataset  # noqa: E402
from napari_nanoscopy.simulation.conditions import STANDARD_CONDITIONS  # noqa: E402

REAL = Path(__file__).resolve().parents[2] / "shared" / "real" / "STEDActinFCN"
REAL_PIXEL_NM = 20.0
IN_DOMAIN = 40  # held-out images per model after the calibration ones (factin: 30)
SHIFTED = 20  # images per shifted set
SHIFT_SEED = 2
CONDITIONS = {
    "dwell /10": {"pdt": 1e-6},
    "background x10": {"detector": {"background": 20 / 10e-6}},
    "NA 0.9": {"objective": {"na": 0.9}},
    "combined": {"pdt": 2.5e-6, "detector": {"background": 10 / 10e-6}, "objective": {"na": 1.0}},
}
# other structures (confocal inputs of the held-out sets, seed 1), each given to every model not trained on it
OTHER_STRUCTURES = {"nanodomains": "nano_test", "beads": "beads_test", "filaments": "fil_test", "factin": "factin_test",
                    "twolabel": "twolabel_test"}
ZOOMS = {"pixel x2": 2.0, "pixel x0.5": 0.5, "pixel x1.5": 1.5}


def conditions_with(change: dict) -> dict:
    conditions = copy.deepcopy(STANDARD_CONDITIONS)
    for key, value in change.items():
        if isinstance(value, dict):
            conditions[key] = {**conditions.get(key, {}), **value}
        else:
            conditions[key] = value
    return conditions


def planes(folder: Path, first: int = 0) -> list[np.ndarray]:
    return [io.read_image(path).data.astype(np.float32) for path in sorted(folder.glob("*.tif"))[first:]]


def shifted(kind: str, size: int, label: str, work: Path) -> Path:
    out = work / f"{kind}_{label.replace(' ', '').replace('/', 'over')}_seed{SHIFT_SEED}_{SHIFTED}"
    if not (out / "dataset.json").is_file():
        shutil.rmtree(out, ignore_errors=True)  # an interrupted simulation: start it again
        print(f"simulating {out.name}", flush=True)
        simulate_dataset(kind, n=SHIFTED, size=size, seed=SHIFT_SEED, out_dir=out,
                         conditions=conditions_with(CONDITIONS[label]))
    return out


def real_sted() -> list[np.ndarray]:
    files = sorted(REAL.glob("axon/images/*.tif*")) + sorted(REAL.glob("*/to_predict/*.tif"))
    return [io.read_image(path).data.astype(np.float32) for path in files]


def structure(name: str) -> tuple[str, int]:
    """The simulated kind and size of a recipe dataset; for a real-structure mix, its synthetic kind's."""
    if name in DATAMAP_SETS:
        _, _, size, _, mix = DATAMAP_SETS[name]
        return next(iter(mix)), size
    kind, _, size, _ = DATASETS[name]
    return kind, size


def set_folders(name: str, work: Path) -> dict[str, list[tuple[Path, int]]]:
    """The simulated sets to score for model ``name``: label -> [(dataset folder, first image), ...]."""
    held_names = DATA[name][1]
    folders = {"in-domain (false alarms)": []}
    for held in held_names:
        kind = "datamaps" if held in DATAMAP_SETS else DATASETS[held][0]
        calibrated = per_set(kind, HELD_OUT_COUNT, DEFAULT_HELD_OUT, len(held_names))
        extra = (30 if kind in ("factin", "datamaps") else IN_DOMAIN) // len(held_names)  # 128 px, slow to simulate
        folders["in-domain (false alarms)"].append((simulated(held, calibrated + extra, work), calibrated))
    # the model's structure: its last synthetic held-out kind (tcan-filaments: filaments, not its tubulin mix)
    synthetic = [held for held in held_names if held in DATASETS] or held_names
    kind, size = structure(synthetic[-1])
    if kind in LARGE_FIELD:  # larger fields after the calibration ones
        per = LARGE_COUNT // len(synthetic)
        folders[f"in-domain {LARGE_FIELD[kind]}-px fields (false alarms)"] = [
            (large_fields(DATASETS[held][0], 1, 2 * per, work), per) for held in synthetic]
    for label in CONDITIONS:
        folders[label] = [(shifted(kind, size, label, work), 0)]
    own = {structure(held)[0] for held in held_names}
    for other, other_name in OTHER_STRUCTURES.items():
        if other not in own:
            folders[f"structure: {other}"] = [(simulated(other_name, SHIFTED, work), 0)]
    return folders


def sets_for(name: str, work: Path) -> dict[str, tuple[list[np.ndarray], float]]:
    """Each named set of (2D images, zoom) to score for model ``name``."""
    folder = INPUT_FOLDER.get(name, "input")
    folders = set_folders(name, work)
    in_domain = [label for label in folders if label.startswith("in-domain")]
    sets = {}
    for label in [*in_domain, "real STED", *(label for label in folders if label not in in_domain)]:
        if label == "real STED":
            sets[label] = (real_sted(), 1.0)
            continue
        own_input = label in in_domain or label in CONDITIONS  # other structures: their confocal inputs
        sets[label] = ([image for path, first in folders[label]
                        for image in planes(path / (folder if own_input else "input"), first)], 1.0)
    for label, zoom in ZOOMS.items():
        sets[label] = (sets["in-domain (false alarms)"][0], zoom)
    return sets


def measure(name: str, work: Path) -> dict:
    card = load_model(name).card
    if card.domain is None:
        return {"model": name, "error": "no fingerprint; run recipes/fingerprints.py --install first"}
    rows = {}
    for label, (images, zoom) in sets_for(name, work).items():
        reports = [check_planes(card, [image], zoom) for image in images]
        scores = [r.score for r in reports]
        rows[label] = {"n": len(reports), "flagged": float(np.mean([r.flagged for r in reports])),
                       "median_score": round(float(np.median(scores)), 3)}
    return {"model": name, "threshold": card.domain.threshold, "rows": rows}


def in_table_order(labels) -> list[str]:
    """The set labels, each once: in-domain first, then real STED, conditions, structures, pixel sizes."""
    order = ["in-domain", "real STED", *CONDITIONS, *(f"structure: {k}" for k in OTHER_STRUCTURES), *ZOOMS]
    return sorted(dict.fromkeys(labels), key=lambda label: next(i for i, start in enumerate(order) if label.startswith(start)))


def table(results: list[dict]) -> str:
    measured = [r for r in results if "rows" in r]
    labels = in_table_order(label for r in measured for label in r["rows"])
    lines = ["| model | threshold | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(labels)]
    for result in measured:
        rows = result["rows"]
        cells = [f"{100 * rows[label]['flagged']:.0f} % ({rows[label]['n']})" if label in rows else "–"
                 for label in labels]
        lines.append(f"| {result['model']} | {result['threshold']:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="bundled models (default: all with a fingerprint recipe)")
    parser.add_argument("--work", default="/tmp/nanoscopy-fingerprints", help="folder for the simulated images")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for name in args.names or list(DATA):
        results.append(measure(name, work))
        print(json.dumps(results[-1]), flush=True)
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
