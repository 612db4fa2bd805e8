"""Recipe of the bundled sample images: pySTED simulations under the standard conditions.

    python recipes/make_samples.py [KEY ...]

writes ``sample_data/<key>_*.tif`` and the key's entry in
``sample_data/samples.json`` (layers, roles, model, pixel size). Every sample uses seed 7,
which no training or held-out set uses (they use seeds 0 and 1), drawn as
``napari-nanoscopy simulate KIND --n 1 --seed 7`` draws its one image.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

from napari_nanoscopy.io import write_image
from napari_nanoscopy.simulation import PIXEL_SIZE_NM, simulate_sample
from napari_nanoscopy.simulation.dataset import _sample_seed

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_data"
SEED = 7

SAMPLES = {
    "twolabel": dict(
        kind="twolabel", size=128, model="l2l-twolabel",
        display_name="Two labels of one filament network (label2label)",
    ),
    "nanodomains": dict(
        kind="nanodomains", size=128, model="tagan-nanodomains",
        display_name="Synaptic nanodomains in a dendritic spine (TA-GAN)",
    ),
    "factin": dict(
        kind="factin", size=256, model="tagan-factin",
        display_name="Dendritic F-actin rings and fibres (TA-GAN, TA-GAN Live, U-Net-Live)",
    ),
    "beads": dict(
        kind="beads", size=256, model="wang-beads",
        display_name="Sub-diffraction beads, isolated and close pairs (Wang 2019, TCAN)",
    ),
    "filaments": dict(
        kind="filaments", size=256, model="tcan-filaments",
        display_name="Microtubule-like filaments (TCAN)",
    ),
}


def make(key: str) -> dict:
    spec = SAMPLES[key]
    sample = simulate_sample(spec["kind"], size=spec["size"], seed=_sample_seed(SEED, 0))
    layers = []

    def put(suffix, image, name, role, **extra):
        file = f"{key}_{suffix}.tif"
        write_image(SAMPLE_DIR / file, image, pixel_size_nm=PIXEL_SIZE_NM, axes="YX")
        layers.append({"file": file, "name": name, "role": role, **extra})

    if spec["kind"] == "twolabel":
        put("weak_label", sample.input.astype(np.float32), "weak label (input)", "input")
        put("better_label", sample.target.astype(np.float32), "better label (target)", "target")
    else:
        put("confocal", sample.input.astype(np.float32), "confocal (input)", "input")
        put("sted", sample.target.astype(np.float32), "STED (target)", "target")
    put("structure", sample.truth.astype(np.float32), "structure (ground truth)", "truth")
    if spec["kind"] == "factin":
        rings, fibres = sample.task > 0
        labels = np.where(fibres, 2, np.where(rings, 1, 0)).astype(np.uint8)
        put("labels", labels, "rings (1) and fibres (2), ground truth", "labels", classes={"1": "rings", "2": "fibres"})
    entry = {
        "display_name": spec["display_name"],
        "model": spec["model"],
        "pixel_size_nm": PIXEL_SIZE_NM,
        "simulation": {"kind": spec["kind"], "size": spec["size"], "seed": SEED},
        "layers": layers,
    }
    if sample.positions is not None and spec["kind"] == "nanodomains":
        entry["positions_px"] = np.asarray(sample.positions).round(2).tolist()
    return entry


def main(keys) -> int:
    index_file = SAMPLE_DIR / "samples.json"
    samples = json.loads(index_file.read_text())
    for key in keys or SAMPLES:
        samples[key] = make(key)
        print(f"wrote sample {key}: {', '.join(layer['file'] for layer in samples[key]['layers'])}")
    text = json.dumps(samples, indent=2)
    # one line per innermost list of numbers (positions), not one line per number
    text = re.sub(r"\[\s+([-\d.,\s]+?)\s+\]", lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)
    index_file.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
