"""The bundled models and samples: each model loads by name, carries the standard pySTED
conditions and its held-out evaluation, restores its sample at the sample's scale, and every
sample names a bundled model. The figures in the cards come from recipes/bundled_models.py."""

import json

import numpy as np
import pytest

from napari_nanoscopy import Restorer, load_model
from napari_nanoscopy.packages import bundled_model_names, bundled_models_dir
from napari_nanoscopy.samples import SAMPLE_DIR
from napari_nanoscopy.io import read_image
from napari_nanoscopy.simulation import STANDARD_CONDITIONS

EXPECTED = [
    "l2l-twolabel",
    "pix2pix-factin",
    "pix2pix-nanodomains",
    "tagan-factin",
    "tagan-live-factin",
    "tagan-live-factin-synthetic",
    "tagan-nanodomains",
    "tcan-filaments",
    "unet-live-axons",
    "unet-live-factin",
    "unet-live-factin-synthetic",
    "wang-beads",
]
SAMPLES = json.loads((SAMPLE_DIR / "samples.json").read_text())
MAX_PACKAGE_MB = 8


def test_every_recipe_model_is_bundled():
    assert bundled_model_names() == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_bundled_model_card(name):
    package = load_model(name)  # checks the weights' sha256 and every tensor
    card = package.card
    assert card.name == name and card.pixel_size_nm == 20.0
    # anyone can regenerate the training data with pySTED alone from these parameters
    assert card.acquisition == json.loads(json.dumps(STANDARD_CONDITIONS))
    assert card.metrics, "the recipe writes the held-out evaluation into the card"
    for figures in card.metrics.values():
        assert figures["n_images"] > 0 and figures["rows"][name]
    size = sum(p.stat().st_size for p in (bundled_models_dir() / name).iterdir()) / 2**20
    assert size < MAX_PACKAGE_MB


@pytest.mark.parametrize("key", sorted(SAMPLES))
def test_sample_restores_with_its_model_at_its_scale(key):
    sample = SAMPLES[key]
    assert sample["model"] in EXPECTED
    layers = {layer["role"]: layer for layer in sample["layers"]}
    image = read_image(SAMPLE_DIR / layers["input"]["file"])
    assert image.pixel_size_nm == sample["pixel_size_nm"]
    restorer = Restorer(sample["model"], device="cpu")
    result = restorer.restore(image.data, pixel_size_nm=image.pixel_size_nm, samples=2, seed=0)
    assert result.mean.shape == image.data.shape and np.isfinite(result.mean).all()
    assert result.std is None or result.std.shape == image.data.shape
    if restorer.card.task:
        assert result.labels.shape == image.data.shape
        assert result.task_names == restorer.card.task["outputs"]
