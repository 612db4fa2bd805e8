"""Write docs/models.md from the bundled models' cards (their held-out evaluations) and the recipes.

    python recipes/models_doc.py

Every figure in the page comes from a card's ``metrics`` (written by recipes/bundled_models.py)
or ``training`` block; the commentary per model is in NOTES below.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bundled_models import DATASETS, RECIPES  # noqa: E402

from napari_nanoscopy.evaluation import Evaluation  # noqa: E402
from napari_nanoscopy.packages import bundled_model_names, bundled_models_dir, load_model  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "models.md"

INTRO = """# Bundled models

Models that ship inside the package load by name (`--model NAME`, `load_model("NAME")`, the
*Restore* widget); `napari-nanoscopy models` lists them. All were trained on pySTED simulations
under the standard acquisition conditions (`docs/simulation.md`; each card's `acquisition`
block holds them verbatim), at 20 nm pixels, on this project's 2-core CPU, at bundled
(narrow) widths. Each is reproduced by

```bash
python recipes/bundled_models.py NAME --work recipe-work --install
```

which simulates its training and held-out sets (seeds 0 and 1), trains, evaluates and copies the
package into `src/napari_nanoscopy/bundled/`. The sample images (`File > Open Sample`, seed 7)
come from `python recipes/make_samples.py`. This page is written by `python recipes/models_doc.py`.

## How the figures are measured

`napari-nanoscopy evaluate MODEL --data DIR [--baseline NAME=MODEL]` on held-out simulated
sets the models never saw (`napari_nanoscopy.evaluation`):

- PSNR / SSIM: the reference scaled by its 1–99.8 percentiles, every compared image mapped onto it
  by the least-squares affine transform (CSBDeep's `normalize_minmse`), so that intensity units
  neither help nor hurt a method.
- Baselines in every table: the input itself (the floor), Richardson–Lucy deconvolution (30
  iterations) with the noise-free pySTED confocal PSF of the standard conditions, and, where a
  recipe names one, another model (pix2pix for TA-GAN).
- Nanodomain localisation F1: local maxima of each image (0.75-px Gaussian smoothing) matched one
  to one to the true centres within 3 pixels, as the TA-GAN paper's user study; the detection
  threshold is chosen per row by 2-fold cross-validation over the test images.
- F-actin: Dice of the model's own segmentation and, for every row, of the segmentation that
  `unet-live-factin` (trained on real STED only) gives of that row's image, as the TA-GAN paper
  scores synthetic images with a network trained on real ones.
- Beads: median FWHM of 2D Gaussian fits on isolated beads (`analysis.fwhm`).
- Two labels: PSNR / SSIM against the clean structure as the microscope images it with a
  perfect label (the structure convolved with the noise-free confocal PSF), and the
  contrast-to-noise ratio (CNR) over the structure mask.
- Models with dropout are scored on the mean of their default number of MC samples.
"""

NOTES: dict[str, str] = {}


def section(name: str) -> str:
    package = load_model(name)
    card = package.card
    training = card.training
    parameters = sum(p.numel() for p in package.generator.parameters())
    task_parameters = sum(p.numel() for p in package.task_network.parameters()) if package.task_network else 0
    size_mb = sum(p.stat().st_size for p in (bundled_models_dir() / name).iterdir()) / 2**20
    recipe = RECIPES.get(name, {})
    lines = [f"## {name}", "", card.description, ""]
    facts = [
        f"family `{card.family}` (trained as `{training.get('method')}`), generator {parameters:,} parameters"
        + (f", task network `{card.task_network['kind']}` {task_parameters:,}" if task_parameters else ""),
        f"package {size_mb:.1f} MB, {card.default_samples} MC sample(s) by default",
        f"training: {training.get('steps')} steps of batch {training.get('batch')} on {training.get('patch')}-px patches "
        f"from {training.get('n_pairs')} pairs ({recipe.get('data')}: {DATASETS.get(recipe.get('data'))}), "
        f"{training.get('wall_time_s', 0) / 60:.0f} min on the CPU",
    ]
    if training.get("initialised_from"):
        facts.append(f"started from `{training['initialised_from']['name']}` (transfer learning)")
    if card.task:
        facts.append(f"task outputs {', '.join(card.task['outputs'])}, thresholds "
                     f"{', '.join(f'{t:g}' for t in card.task['thresholds'])} ({card.task.get('threshold_method')})")
    lines += [f"- {fact}" for fact in facts] + [""]
    for test_name, figures in card.metrics.items():
        evaluation = Evaluation(figures["model"], figures["dataset"], figures["kind"], figures["n_images"],
                                {row: {k: (float("nan") if v is None else v) for k, v in values.items()}
                                 for row, values in figures["rows"].items()})
        lines += [f"Held out: `{test_name}` ({figures['n_images']} {figures['kind']} images, "
                  f"{DATASETS.get(test_name)}).", "", evaluation.table(), ""]
    if name in NOTES:
        lines += [NOTES[name], ""]
    return "\n".join(lines)


def main() -> int:
    body = [INTRO] + [section(name) for name in bundled_model_names()]
    DOC.write_text("\n".join(body).rstrip() + "\n", encoding="utf-8")
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
