"""The published U-Nets of Lavoie-Cardinal et al. 2020 (STEDActinFCN folders): loading, reproduction, safety."""

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from napari_nanoscopy import cli
from napari_nanoscopy.errors import NanoscopyError
from napari_nanoscopy.formats import load_model
from napari_nanoscopy.inference import Restorer
from napari_nanoscopy.interop.stedactin import load_stedactin
from napari_nanoscopy.segmentation import Segmenter, can_segment
from napari_nanoscopy.training import TRAINING_FAMILIES

REAL = Path(__file__).resolve().parents[2] / "shared" / "real" / "STEDActinFCN"
needs_real = pytest.mark.skipif(not (REAL / "reference_predictions.npz").is_file(), reason="STEDActinFCN data absent")
# folder -> key prefix of its images in reference_predictions.npz
NETWORKS = {"axon": "STEDActinAxonFCN", "dendrite": "STEDActinDendriteFCN"}


def _max_difference(model, kind: str) -> float:
    references = np.load(REAL / "reference_predictions.npz")
    segmenter = Segmenter(model, device="cpu")
    worst = 0.0
    images = sorted((REAL / kind / "to_predict").glob("*.tif"))
    assert images
    for path in images:
        probabilities = segmenter.segment(tifffile.imread(path)).probabilities
        reference = references[f"{NETWORKS[kind]}/{path.name}"]
        reference = reference[None] if reference.ndim == 2 else reference  # the axon one: rings only
        assert probabilities.shape == reference.shape
        worst = max(worst, float(np.abs(probabilities - reference).max()))
    return worst


@needs_real
@pytest.mark.parametrize("kind", sorted(NETWORKS))
def test_published_folder_reproduces_the_authors_predictions(kind):
    package = load_model(REAL / kind / "network")
    assert can_segment(package.card)
    assert _max_difference(package, kind) <= 1e-4


@needs_real
@pytest.mark.parametrize("kind", sorted(NETWORKS))
def test_imported_package_loads_and_reproduces(kind, tmp_path, capsys):
    out = tmp_path / f"{kind}.zip"
    assert cli.main(["import-unet", str(REAL / kind / "network"), str(out)]) == 0
    assert "wrote model package" in capsys.readouterr().out
    assert _max_difference(str(out), kind) <= 1e-4


@needs_real
def test_card_records_architecture_scaling_and_thresholds():
    dendrite, axon = (load_model(REAL / kind / "network").card for kind in ("dendrite", "axon"))
    for card in (dendrite, axon):
        assert card.family == "fcn-unet" and card.family not in TRAINING_FAMILIES
        assert dict(card.generator) == {"in_channels": 1, "out_channels": 2, "number_filter": 4, "depth": 4}
        assert (card.segmenter.crop, card.segmenter.step, card.segmenter.factor) == (128, 128, 0.8)
        assert card.segmenter.unsigned_offset == 32768 and card.segmenter.clip == (0.0, 1.0)
    assert dendrite.segmenter.activation == "sigmoid" and axon.segmenter.activation == "softmax"
    assert dendrite.segmenter.classes == ("rings", "fibres") and dendrite.segmenter.thresholds == (0.25, 0.40)
    assert axon.segmenter.classes == ("rings",) and axon.segmenter.class_channels == (1,)
    assert axon.segmenter.thresholds == (0.5,)
    assert (dendrite.segmenter.maximum, axon.segmenter.maximum) == (574.37, 228.70)
    assert axon.training["trainer_params"]["size"] == 128


@needs_real
def test_restorer_refuses_a_segmenter_and_points_to_segment():
    with pytest.raises(NanoscopyError, match="only segments images.*napari-nanoscopy segment"):
        Restorer(load_model(REAL / "axon" / "network"))


def _folder_with(tmp_path, **files) -> Path:
    """A U-Net folder in the authors' layout (their architecture and key names, seeded weights) and ``files``."""
    from napari_nanoscopy.models.fcn_unet import FCNUNet

    folder = tmp_path / "net"
    folder.mkdir()
    torch.manual_seed(0)
    torch.save(FCNUNet(in_channels=1, out_channels=2, number_filter=4, depth=4).state_dict(), folder / "params.net")
    for name, data in files.items():
        (folder / name.replace("_pkl", ".pkl").replace("_net", ".net")).write_bytes(data)
    return folder


class _Payload:
    """A pickle that, if it were run, would create ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_trainer_pickle_with_a_payload_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    folder = _folder_with(tmp_path, params_trainer_pkl=pickle.dumps({"depth": 4, "x": _Payload(marker)}))
    with pytest.raises(NanoscopyError, match=r"params_trainer.pkl was not read: it names (io|builtins)\.open"):
        load_model(folder)
    assert not marker.exists()


def test_weights_with_a_payload_are_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    for index, payload in enumerate((pickle.dumps({"w": _Payload(marker)}), None)):
        folder = tmp_path / f"case{index}"
        folder.mkdir()
        if payload is None:  # torch.save's zip format, with the payload inside
            torch.save({"input_conv.conv.0.weight": torch.zeros(1), "w": _Payload(marker)}, folder / "params.net")
        else:
            (folder / "params.net").write_bytes(payload)
        with pytest.raises(NanoscopyError, match="is not a plain state dict of tensors and was not loaded"):
            load_model(folder)
        assert not marker.exists()


@needs_real
def test_unpublished_weights_need_a_preset(tmp_path):
    state = torch.load(REAL / "axon" / "network" / "params.net", map_location="cpu", weights_only=True)
    state["output_conv.bias"] = state["output_conv.bias"] + 1.0
    folder = tmp_path / "mine"
    folder.mkdir()
    torch.save(state, folder / "params.net")
    with pytest.raises(NanoscopyError, match="not one of the published networks.*--preset"):
        load_model(folder)
    card = load_model(folder, preset="dendrite").card
    assert card.segmenter.activation == "sigmoid" and card.name == "stedactin-dendrite"
    with pytest.raises(NanoscopyError, match="Unknown U-Net preset 'cells'"):
        load_stedactin(folder, preset="cells")


def test_architecture_comes_from_shapes_and_is_cross_checked(tmp_path):
    folder = _folder_with(tmp_path, params_trainer_pkl=pickle.dumps({"depth": 5, "size": 128}))
    with pytest.raises(NanoscopyError, match="gives depth = 5 but params.net has 4"):
        load_model(folder)
    os.remove(folder / "params_trainer.pkl")  # optional: the shapes alone give the architecture
    assert load_model(folder, preset="axon").generator.depth == 4
    torch.save({"conv.weight": torch.zeros(2, 2, 3, 3)}, folder / "params.net")
    with pytest.raises(NanoscopyError, match="has no tensor 'input_conv.conv.0.weight'"):
        load_model(folder)


def test_not_a_model_message_lists_the_unet_folder(tmp_path):
    stray = tmp_path / "notes.txt"
    stray.write_text("hello")
    with pytest.raises(NanoscopyError, match="a U-Net folder with params.net"):
        load_model(stray)


@needs_real
@pytest.mark.parametrize("kind", sorted(NETWORKS))
def test_segment_command_reproduces_the_authors_predictions(kind, tmp_path):
    references = np.load(REAL / "reference_predictions.npz")
    image = sorted((REAL / kind / "to_predict").glob("*.tif"))[0]
    labels, probabilities = tmp_path / "labels.tif", tmp_path / "probabilities.tif"
    assert cli.main(["segment", str(image), str(labels), "--model", str(REAL / kind / "network"),
                     "--probabilities", str(probabilities)]) == 0
    written = tifffile.imread(probabilities)
    reference = references[f"{NETWORKS[kind]}/{image.name}"]
    assert np.abs(written.reshape(reference.shape) - reference).max() <= 1e-4
    assert tifffile.imread(labels).shape == reference.shape[-2:]


@needs_real
def test_segmenter_section_is_checked_when_a_package_is_read(tmp_path):
    import json

    out = tmp_path / "axon"
    assert cli.main(["import-unet", str(REAL / "axon" / "network"), str(out)]) == 0
    original = json.loads((out / "model.json").read_text())
    for change, problem in (
        (lambda card: card["segmenter"].update(activation="relu"), "segmenter.activation 'relu' is not one of sigmoid"),
        (lambda card: card["segmenter"].update(step=256), r"segmenter.step \(256\) must not exceed segmenter.crop"),
        (lambda card: card["segmenter"].update(class_channels=[2]), r"class_channels \[2\] name an output channel beyond"),
        (lambda card: card.pop("segmenter"), "a model of family 'fcn-unet' must have a segmenter section"),
    ):
        card = json.loads(json.dumps(original))
        change(card)
        (out / "model.json").write_text(json.dumps(card))
        with pytest.raises(NanoscopyError, match=problem):
            load_model(out)
