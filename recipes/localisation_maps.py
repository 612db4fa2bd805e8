"""Which localisation map a network learns faster from confocal images of nanodomains.

    python recipes/localisation_maps.py [--work recipe-work] [--steps 2000] [--every 250]

Trains the same ResNet generator (32 filters, 6 residual blocks, tanh, no dropout) directly on
confocal images -> localisation map, once with the TA-GAN paper's map (the cube root of the
distance to the closest nanodomain) and once with the Gaussian map (``simulate nanodomains
--localisation gaussian``), on the 600 training pairs of the bundled recipe (seed 0), batch 8,
MSE, flips and rotations, Adam 2e-4. Every ``--every`` steps it prints the held-out
localisation F1 (75 images, seed 1) of the predicted map, scored as ``evaluate`` scores a
"localisation map" row. This is the experiment behind the Gaussian option in
docs/simulation.md and the tagan-nanodomains notes in docs/models.md; it is not a bundled
model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bundled_models import simulate  # noqa: E402

from napari_nanoscopy.evaluation import cross_validated_counts, f1_score, percentile_scaled  # noqa: E402
from napari_nanoscopy.io import read_image  # noqa: E402
from napari_nanoscopy.models.tagan import ResnetGenerator  # noqa: E402


def load(folder: Path) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Confocal images scaled to [-1, 1], task maps and true centres of a simulated dataset."""
    samples = json.loads((folder / "dataset.json").read_text())["samples"]
    inputs = np.stack([2 * percentile_scaled(read_image(folder / "input" / f"{s['name']}.tif").data) - 1 for s in samples])
    tasks = np.stack([read_image(folder / "task" / f"{s['name']}.tif").data for s in samples]).astype(np.float32)
    return inputs.astype(np.float32), tasks, [np.asarray(s["positions_px"], float) for s in samples]


def train_localiser(train_folder: Path, test_folder: Path, nanodomain_high: bool, steps: int, every: int, label: str):
    """Train on ``train_folder``'s maps (scaled to [-1, 1], nanodomain side +1) and print the
    held-out F1 of the predicted maps every ``every`` steps."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    inputs, tasks, _ = load(train_folder)
    test_inputs, _, test_positions = load(test_folder)
    low, high = tasks.min(), tasks.max()
    unit = (tasks - low) / (high - low)
    targets = (2 * unit - 1 if nanodomain_high else 1 - 2 * unit).astype(np.float32)
    network = ResnetGenerator(1, 1, ngf=32, n_blocks=6, dropout=0.0)
    optimiser = torch.optim.Adam(network.parameters(), 2e-4, betas=(0.5, 0.999))
    start = time.perf_counter()
    for step in range(1, steps + 1):
        chosen = rng.integers(0, len(inputs), 8)
        turns = rng.integers(0, 8, 8)

        def augmented(stack):
            return torch.from_numpy(np.stack([
                np.rot90(stack[i] if t < 4 else stack[i][::-1], t % 4) for i, t in zip(chosen, turns)
            ]).copy())[:, None]

        loss = torch.mean((network(augmented(inputs)) - augmented(targets)) ** 2)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % every == 0 or step == steps:
            network.eval()
            with torch.no_grad():
                maps = network(torch.from_numpy(test_inputs)[:, None])[:, 0].numpy()
            network.train()
            precision, recall, f1 = f1_score(cross_validated_counts(list(maps), test_positions)[0])
            print(f"{label}: step {step} loss {loss.item():.4f} precision {precision:.3f} recall {recall:.3f} "
                  f"F1 {f1:.3f} ({time.perf_counter() - start:.0f} s)", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="recipe-work", help="folder for the simulated datasets")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--every", type=int, default=250, help="evaluate every this many steps")
    args = parser.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    test = simulate("nano_test", work)
    train_localiser(simulate("nano_train", work), test, False, args.steps, args.every, "distance map")
    train_localiser(simulate("nano_train_gaussian", work), test, True, args.steps, args.every, "gaussian map")
    return 0


if __name__ == "__main__":
    sys.exit(main())
