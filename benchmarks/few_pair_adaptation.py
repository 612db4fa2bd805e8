"""Adapting a bundled model to another microscope with four pairs (docs/training.md, docs/models.md).

    python benchmarks/few_pair_adaptation.py [--model pix2pix-nanodomains] [--conditions seed-live-cell]
        [--work DIR] [--device cpu] [--fine-tune-steps 200] [--fine-tune-lr 2e-5] [--full-steps N]

"Another microscope" is a condition set (default: the seed paper's live-cell STED microscope,
``seed-live-cell``: 775 nm depletion at 395 mW, 5 us dwell time; any condition file works).
For the bundled model's structure this simulates, under those conditions, 200 training pairs (seed 30) and 40 held-out pairs (seed 31), and compares on the
held-out pairs (``napari_nanoscopy.evaluation.evaluate``: PSNR and SSIM against the STED target):

- the bundled model as it ships (unadapted);
- the bundled model fine-tuned (``train --init-from``) on the first 4 training pairs for
  ``--fine-tune-steps`` steps at ``--fine-tune-lr`` (a few minutes of CPU);
- the same family and architecture trained from scratch on all 200 pairs with the bundled
  recipe's steps, patch and batch.

It prints the table and the share of the unadapted model's PSNR gap to the 200-pair model that
the 4-pair fine-tuning recovers (the issue's target: at least half). Each stage is kept in
``--work``, so a rerun skips what is done.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))

from bundled_models import RECIPES  # noqa: E402
from domain_check import structure  # noqa: E402

from napari_nanoscopy.evaluation import evaluate  # noqa: E402
from napari_nanoscopy.simulation import load_conditions, simulate_dataset  # noqa: E402
from napari_nanoscopy.training import train  # noqa: E402

TRAINING_PAIRS, HELD_OUT_PAIRS, FEW = 200, 40, 4
TRAINING_SEED, HELD_OUT_SEED = 30, 31
PSNR = "PSNR vs target (dB)"
PAIR_FOLDERS = ("input", "target", "task", "truth")


def simulated(kind: str, size: int, n: int, seed: int, conditions: dict, out: Path) -> Path:
    if not (out / "dataset.json").is_file():
        shutil.rmtree(out, ignore_errors=True)  # an interrupted simulation: start it again
        print(f"simulating {out.name}", flush=True)
        simulate_dataset(kind, n=n, size=size, seed=seed, out_dir=out, conditions=conditions)
    return out


def first_pairs(source: Path, count: int, out: Path) -> Path:
    """A dataset folder with the first ``count`` pairs of ``source`` (same manifest)."""
    if (out / "dataset.json").is_file():
        return out
    shutil.rmtree(out, ignore_errors=True)
    for folder in PAIR_FOLDERS:
        if (source / folder).is_dir():
            (out / folder).mkdir(parents=True)
            for image in sorted((source / folder).glob("*.tif"))[:count]:
                shutil.copyfile(image, out / folder / image.name)
    manifest = json.loads((source / "dataset.json").read_text(encoding="utf-8"))
    (out / "dataset.json").write_text(json.dumps({**manifest, "n": count}, indent=1), encoding="utf-8")
    return out


def trained(out: Path, **settings) -> tuple[Path, float]:
    """Train once (the package is kept in --work); returns its path and the minutes it took."""
    timing = out.parent / f"{out.name}.minutes"
    if not out.is_dir():
        start = time.perf_counter()
        train(out_path=out, **settings)
        timing.write_text(f"{(time.perf_counter() - start) / 60:.1f}")
    return out, float(timing.read_text())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pix2pix-nanodomains", help="a bundled restoration model with a recipe")
    parser.add_argument("--conditions", default="seed-live-cell", help="the other microscope: a condition set or file")
    parser.add_argument("--work", default="/tmp/nanoscopy-adaptation")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fine-tune-steps", type=int, default=200)
    parser.add_argument("--fine-tune-lr", type=float, default=2e-5, help="a tenth of the paper's: four pairs overfit fast")
    parser.add_argument("--full-steps", type=int, help="steps of the 200-pair model (default: the recipe's)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1 if args.device == "cpu" else torch.get_num_threads())
    recipe = RECIPES[args.model]
    kind, size = structure(recipe["data"])  # a real-structure mix: its synthetic kind
    conditions = load_conditions(args.conditions)
    shift = Path(args.conditions).stem
    work = Path(args.work) / args.model / shift
    work.mkdir(parents=True, exist_ok=True)
    pairs = simulated(kind, size, TRAINING_PAIRS, TRAINING_SEED, conditions, work / f"{kind}_train")
    held_out = simulated(kind, size, HELD_OUT_PAIRS, HELD_OUT_SEED, conditions, work / f"{kind}_test")
    few = first_pairs(pairs, FEW, work / f"{kind}_first{FEW}")
    architecture = {key: recipe[key] for key in ("generator_kwargs", "discriminator_kwargs", "task", "loss") if key in recipe}
    common = dict(patch=recipe["patch"], batch=recipe["batch"], device=args.device, seed=0)
    fine, fine_minutes = trained(work / f"fine-tuned-{FEW}-pairs-{args.fine_tune_steps}-steps-lr{args.fine_tune_lr:g}",
                                 config=recipe["family"], data_dir=few, init_from=args.model,
                                 steps=args.fine_tune_steps, lr=args.fine_tune_lr, **common)
    full, full_minutes = trained(work / f"trained-{TRAINING_PAIRS}-pairs", config=recipe["family"], data_dir=pairs,
                                 steps=args.full_steps or recipe["steps"], **architecture, **common)
    evaluation = evaluate(fine, held_out, baselines={"unadapted": args.model, f"{TRAINING_PAIRS} pairs": full},
                          richardson_lucy_baseline=False)
    rows = evaluation.rows
    print(evaluation.table())
    gap = rows[f"{TRAINING_PAIRS} pairs"][PSNR] - rows["unadapted"][PSNR]
    recovered = (rows[evaluation.model][PSNR] - rows["unadapted"][PSNR]) / gap
    print(f"\nfine-tuning: {fine_minutes} min ({args.fine_tune_steps} steps on {FEW} pairs); 200-pair model: "
          f"{full_minutes} min; PSNR gap unadapted -> {TRAINING_PAIRS} pairs {gap:.2f} dB, recovered by "
          f"{FEW}-pair fine-tuning: {100 * recovered:.0f} %")
    (work / "result.json").write_text(json.dumps({**evaluation.to_dict(), "recovered": recovered,
                                                  "minutes": {"fine": fine_minutes, "full": full_minutes}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
