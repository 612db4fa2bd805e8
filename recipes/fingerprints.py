"""Domain fingerprints of the bundled models (the domain check, docs/domain.md).

    python recipes/fingerprints.py [NAME ...] [--work DIR] [--install]

For each bundled model this simulates (seeded, skipped when already in --work) the first images
of the training set its recipe in ``bundled_models.py`` used (same kind, size and seed) and of
its held-out set (seed 1), with as many larger fields of the same kind and conditions where the
recipe's images are 64-pixel crops (a user restores larger fields: windows of them hold more or
fewer beads, a spine off-centre, which the crops alone would call foreign), and runs
``napari_nanoscopy.fingerprint.fingerprint_model`` on them: the statistics from the training
images, the threshold from the held-out ones. With --install
the new card replaces the bundled one; the weights stay as they are (same sha256), nothing is
retrained. ``benchmarks/domain_check.py`` measures the check on held-out images after these.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bundled_models  # noqa: E402
from bundled_models import DATAMAP_SETS, DATASETS, MIXTURES  # noqa: E402

from napari_nanoscopy.fingerprint import fingerprint_model, summary  # noqa: E402
from napari_nanoscopy.packages import CARD_FILE, bundled_model_names, bundled_models_dir  # noqa: E402

# model -> (training datasets, held-out datasets) of its recipe in bundled_models.py
DATA = {
    "pix2pix-nanodomains": (["nano_train"], ["nano_test"]),
    "tagan-nanodomains": (["nano_train"], ["nano_test"]),
    "l2l-twolabel": (["twolabel_train_128"], ["twolabel_test"]),
    "wang-beads": (["beads_train"], ["beads_test"]),
    # its three stages' data: beads, beads and filaments, then real microtubules mixed with both
    "tcan-filaments": ([*MIXTURES["beads_fil_train"], "tubulin_real_train"],
                       ["beads_test", "fil_test", "tubulin_real_calibration"]),
    # real-structure datamaps and synthetic dendrites, half each (the calibration set: seed 1 of the same mix)
    "unet-live-factin": (["factin_seg_train"], ["factin_seg_calibration"]),
    "unet-live-factin-synthetic": (["factin_train"], ["factin_test"]),
    "tagan-live-factin-synthetic": (["factin_train"], ["factin_test"]),
    "tagan-factin": (["factin_real_train"], ["factin_real_calibration"]),
    "pix2pix-factin": (["factin_real_train"], ["factin_real_calibration"]),
    "tagan-live-factin": (["factin_real_train"], ["factin_real_calibration"]),
    "unet-live-axons": (["axons_train"], ["axons_test"]),
}
# Images simulated per dataset (the first of the recipe's; factin images are 128 px and slow).
TRAINING_COUNT = {"factin": 120, "twolabel": 80, "axons": 150, "datamaps": 120}  # axons: the whole 224-px training set
HELD_OUT_COUNT = {"factin": 30, "axons": 30, "datamaps": 30}
DEFAULT_TRAINING, DEFAULT_HELD_OUT = 200, 80


def per_set(kind: str, counts: dict[str, int], default: int, sets: int) -> int:
    """Images taken from one of ``sets`` datasets of ``kind``: the kind's count shared between the sets, but
    a whole count for a real-structure mix (it holds several structures, the most varied images)."""
    return counts.get(kind, default) // (1 if kind == "datamaps" else sets)
# kind -> the side of the larger fields added to its 64-pixel crops, and how many of them (training and held out)
LARGE_FIELD = {"nanodomains": 128, "beads": 128, "filaments": 128}
LARGE_COUNT = 30
# unet-live segments STED images: its inputs are the pairs' targets
INPUT_FOLDER = {"unet-live-factin": "target", "unet-live-factin-synthetic": "target", "unet-live-axons": "target"}


def kind_and_seed(name: str) -> tuple[str, int]:
    """A recipe dataset's kind (``datamaps`` for real-structure sets) and seed."""
    if name in DATAMAP_SETS:
        return "datamaps", DATAMAP_SETS[name][3]
    kind, _, _, seed = DATASETS[name]
    return kind, seed


def simulated(name: str, count: int, work: Path) -> Path:
    """The first ``count`` images of the recipe's dataset ``name`` (its kind, size and seed)."""
    from napari_nanoscopy.simulation import simulate_dataset

    out = work / f"{name}_first{count}"
    if (out / "dataset.json").is_file():
        return out
    if out.exists():
        shutil.rmtree(out)  # an interrupted simulation: start it again
    if name in DATAMAP_SETS:  # the recipe's whole set (its samples depend on its size), then its first images
        whole = bundled_models.simulate(name, work)
        for folder in ("input", "target"):
            (out / folder).mkdir(parents=True)
            for image in sorted((whole / folder).glob("*.tif"))[:count]:
                (out / folder / image.name).hardlink_to(image)
        shutil.copyfile(whole / "dataset.json", out / "dataset.json")
        return out
    kind, _, size, seed = DATASETS[name]
    print(f"simulating {out.name}: {count} x {kind} {size} px, seed {seed}", flush=True)
    return simulate_dataset(kind, n=count, size=size, seed=seed, out_dir=out)


def gathered(names: list[str], counts: dict[str, int], default: int, folder: str, work: Path, into: Path) -> Path:
    """One folder of the ``folder`` images of the datasets ``names`` (copies, prefixed with their dataset)."""
    into.mkdir()
    for name in names:
        kind, seed = kind_and_seed(name)
        count = per_set(kind, counts, default, len(names))
        sources = [simulated(name, count, work)]
        if kind in LARGE_FIELD:
            sources.append(large_fields(kind, seed, LARGE_COUNT // len(names), work))
        for source in sources:
            for image in sorted((source / folder).glob("*.tif")):
                shutil.copyfile(image, into / f"{source.name}_{image.name}")
    return into


def large_fields(kind: str, seed: int, count: int, work: Path) -> Path:
    """``count`` fields of ``LARGE_FIELD[kind]`` pixels of ``kind`` (seed ``seed``: 0 training, 1 held out)."""
    from napari_nanoscopy.simulation import simulate_dataset

    size = LARGE_FIELD[kind]
    out = work / f"{kind}_{size}px_seed{seed}_first{count}"
    if not (out / "dataset.json").is_file():
        shutil.rmtree(out, ignore_errors=True)
        print(f"simulating {out.name}", flush=True)
        simulate_dataset(kind, n=count, size=size, seed=seed, out_dir=out)
    return out


def count(folder: Path) -> int:
    return len(list(folder.glob("*.tif")))


def fingerprint(name: str, work: Path, install: bool) -> None:
    training, held_out = DATA[name]
    folder = INPUT_FOLDER.get(name, "input")
    with tempfile.TemporaryDirectory(dir=work) as scratch:
        scratch = Path(scratch)
        data = gathered(training, TRAINING_COUNT, DEFAULT_TRAINING, folder, work, scratch / "training")
        held = gathered(held_out, HELD_OUT_COUNT, DEFAULT_HELD_OUT, folder, work, scratch / "held_out")
        out = scratch / name
        kind, seed = kind_and_seed(training[0])
        large = f" and {LARGE_FIELD[kind]}-px fields of the same kind" if kind in LARGE_FIELD else ""
        source = (f"recipes/fingerprints.py: {count(data)} images, the first of {' + '.join(training)} (seed "
                  f"{seed}){large}; held out: {count(held)} of {' + '.join(held_out)} (seed 1){large}")
        card = fingerprint_model(name, data, out, held_out=held, source=source)
        print(summary(card, out).replace(str(out), name), flush=True)
        if install:
            shutil.copyfile(out / CARD_FILE, bundled_models_dir() / name / CARD_FILE)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="bundled models (default: all)")
    parser.add_argument("--work", default="/tmp/nanoscopy-fingerprints", help="folder for the simulated images")
    parser.add_argument("--install", action="store_true", help="write the new cards into the bundled packages")
    args = parser.parse_args(argv)
    names = args.names or [name for name in bundled_model_names() if name in DATA]
    unknown = [name for name in names if name not in DATA]
    if unknown:
        parser.error(f"no fingerprint recipe for {', '.join(unknown)} (known: {', '.join(DATA)})")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    for name in names:
        fingerprint(name, work, args.install)
    return 0


if __name__ == "__main__":
    sys.exit(main())
