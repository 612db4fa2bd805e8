"""Recipes of the bundled models: the simulated data, the training settings and the evaluation.

    python recipes/bundled_models.py NAME [NAME ...] [--work DIR] [--install] [--device cpu]
    python recipes/bundled_models.py --list

For each NAME this simulates the datasets it needs (seeded, skipped when already in --work),
trains the model with ``napari_nanoscopy.training.train`` (skipped when the package exists),
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
}
# name -> simulate_dataset's localisation, where not the paper's distance map
LOCALISATION = {"nano_train_gaussian": "gaussian"}
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
    "tcan-filaments": dict(
        family="tcan", data="beads_fil_train", test="beads_test", tests=["fil_test"], steps=4000, patch=64, batch=4,
        generator_kwargs=_TCAN_SMALL, discriminator_kwargs=dict(ndf=16, n_blocks=4),
        loss={"mse": 1.0, "ssim": 1.0, "adversarial": 0.001},
        init_from="tcan-beads", after=["tcan-beads"],
        # filaments alone taught the narrow network their width (beads 113-118 nm after 800-1200
        # steps); keeping the beads in the fine-tuning set, for 4000 steps, keeps the bead PSF
        description="TCAN (U-Net + Fourier channel attention) confocal -> STED of microtubule-like filaments, "
        "trained on pySTED beads and then on beads and filaments pooled (the TCAN paper's transfer learning, "
        "keeping the beads), 20 nm pixels.",
    ),
    "unet-live-factin": dict(
        family="unet-live", data="factin_train", test="factin_test", steps=1500, patch=128, batch=4,
        task={"network": "unet128", "kwargs": dict(ngf=16, n_down=7), "outputs": ["rings", "fibres"]},
        loss={"class_weights": [1.0, 2.5]},
        description="U-Net-Live: segmentation of F-actin rings and fibres in STED images of dendrites "
        "(pySTED simulations, 20 nm pixels); the reference segmenter of the live-assist pipeline.",
    ),
    "tagan-factin": dict(
        family="tagan", data="factin_train", test="factin_test", steps=2000, patch=64, batch=4,
        generator_kwargs=_TAGAN_SMALL, discriminator_kwargs=_PATCH_D_SMALL,
        task={"network": "resnet6", "kwargs": dict(ngf=16, n_blocks=3), "outputs": ["rings", "fibres"]},
        loss={"task_weight": 10.0}, segmenter="unet-live-factin", baselines={"pix2pix": "pix2pix-factin"},
        description="TA-GAN (F-actin rings and fibres segmentation task): confocal -> STED of dendritic F-actin, "
        "with the segmentation as a second output; pySTED simulations at 20 nm pixels.",
    ),
    "pix2pix-factin": dict(
        family="pix2pix", data="factin_train", test="factin_test", steps=2000, patch=64, batch=4,
        generator_kwargs=_TAGAN_SMALL, discriminator_kwargs=_PATCH_D_SMALL, segmenter="unet-live-factin",
        description="pix2pix baseline for tagan-factin: the same generator and discriminator trained with a pixel "
        "MSE instead of the rings/fibres segmentation task (pySTED dendritic F-actin, 20 nm pixels).",
    ),
    "tagan-live-factin": dict(
        family="tagan-live", data="factin_train", test="factin_test", steps=1500, patch=128, batch=2,
        generator_kwargs=dict(in_channels=3, **_TAGAN_SMALL), discriminator_kwargs=_PATCH_D_SMALL,
        task={"pretrained": "unet-live-factin"}, loss={"task_weight": 10.0}, after=["unet-live-factin"],
        segmenter="unet-live-factin",
        description="TA-GAN Live: confocal + a small acquired STED patch -> STED of dendritic F-actin, guided by the "
        "frozen U-Net-Live segmenter (unet-live-factin); the model of the live-assist pipeline.",
    ),
}

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


def simulate(name: str, work: Path) -> Path:
    from napari_nanoscopy.simulation import simulate_dataset

    if name in MIXTURES:
        return pool(name, work)
    out = work / name
    if (out / "dataset.json").is_file():
        return out
    if out.exists():
        shutil.rmtree(out)  # an interrupted simulation: start it again
    kind, n, size, seed = DATASETS[name]
    localisation = LOCALISATION.get(name, "distance")
    print(f"simulating {name}: {n} x {kind} {size} px, seed {seed}, {localisation} maps", flush=True)
    return simulate_dataset(kind, n=n, size=size, seed=seed, out_dir=out, localisation=localisation)


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
    for dependency in recipe.get("after", []):  # trained first; installed only when named too
        make(dependency, work, device, False, made, evaluate_it=False)
    package = work / name
    if not (package / "model.json").is_file():
        data = simulate(recipe["data"], work)
        task = dict(recipe.get("task") or {})
        if "pretrained" in task:
            task["pretrained"] = str(work / task["pretrained"])
        kwargs = {key: recipe[key] for key in ("generator_kwargs", "discriminator_kwargs", "loss", "lr") if key in recipe}
        if "init_from" in recipe:
            kwargs["init_from"] = str(work / recipe["init_from"])
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
        kind, n, size, seed = DATASETS[test_name]
        metrics[test_name] = {"simulated": dict(kind=kind, n=n, size=size, seed=seed), **evaluation.to_dict()}
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
    args = parser.parse_args(argv)
    if args.list or not args.names:
        for name, recipe in RECIPES.items():
            print(f"{name}: {recipe['family']}, {recipe['steps']} steps on {recipe['data']} "
                  f"{DATASETS.get(recipe['data']) or MIXTURES[recipe['data']]}")
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
