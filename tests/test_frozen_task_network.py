"""A frozen segmenting model where the TA-GAN paper uses one: as the task network that scores the
generator in training (``train tagan --task-network MODEL``), kept frozen and recorded in the card,
and as the scorer of ``evaluate --scorer MODEL`` (Dice of restored vs real STED segmentations)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_training import PATCH, write_pairs

from napari_nanoscopy import NanoscopyError, load_model
from napari_nanoscopy.cli import main
from napari_nanoscopy.evaluation import Evaluation, scorer_dice
from napari_nanoscopy.io import read_image
from napari_nanoscopy.segmentation import Segmenter
from napari_nanoscopy.training import TrainingConfig, checkpoint_folder, train
from napari_nanoscopy.training.checkpoints import CHECKPOINT_FILE
from napari_nanoscopy.training.tasks import frozen_segmenter_setup

FROZEN = "unet-live-factin"
DENDRITE_UNET = Path(__file__).resolve().parents[2] / "shared" / "real" / "STEDActinFCN" / "dendrite" / "network"
TINY_GAN = dict(generator_kwargs=dict(ngf=4, n_blocks=1), discriminator_kwargs=dict(ndf=4))


@pytest.fixture(scope="module")
def unannotated(tmp_path_factory):
    """Pairs without task/ masks, as TA-GAN Live's live data had none."""
    return write_pairs(tmp_path_factory.mktemp("frozen") / "pairs", n=3, task=False)


@pytest.mark.parametrize("family", ["tagan", "tagan-live"])
def test_generator_trains_against_a_frozen_segmenter(family, unannotated, tmp_path):
    out = tmp_path / "model"
    card = train(family, unannotated, out, steps=3, patch=PATCH, batch=1, device="cpu", task_network=FROZEN,
                 checkpoint_every=1, **TINY_GAN)
    frozen = load_model(FROZEN)
    # Its loss term is logged; no task network was trained.
    assert set(card.training["final_losses"]) == {"d_real", "d_fake", "g_adversarial", "g_task"}
    assert card.training["final_losses"]["g_task"] > 0
    # The card records the frozen network and its own card; the package does not carry it.
    record = card.training["task_network"]
    assert record["source"] == FROZEN and record["weights_sha256"] == frozen.card.weights_sha256
    assert record["classes"] == ["rings", "fibres"] and record["card"]["name"] == frozen.card.name
    assert card.task is None and card.task_network is None and "task_network_source" not in card.training
    assert load_model(out).task_network is None
    # Its weights (BatchNorm statistics included) are those it started with.
    saved = torch.load(checkpoint_folder(out) / CHECKPOINT_FILE, weights_only=True)["networks"]["task"]
    original = frozen.task_network.state_dict()
    assert {key.removeprefix("network.") for key in saved} == set(original)
    assert all(torch.equal(saved[f"network.{key}"], value) for key, value in original.items())


@pytest.mark.skipif(not DENDRITE_UNET.is_dir(), reason="the authors' dendrite U-Net is not in ../shared/real")
def test_the_authors_dendrite_unet_as_frozen_task_network(unannotated, tmp_path):
    """TA-CycleGAN's task network: the U-Net of Lavoie-Cardinal et al. 2020, its sigmoid outputs."""
    card = train("tagan", unannotated, tmp_path / "m", steps=2, patch=PATCH, batch=1, device="cpu",
                 task_network=str(DENDRITE_UNET), **TINY_GAN)
    record = card.training["task_network"]
    assert record["classes"] == ["rings", "fibres"] and record["probability_thresholds"] == [0.25, 0.4]
    assert record["family"] == load_model(DENDRITE_UNET).card.family and card.training["final_losses"]["g_task"] > 0


def test_frozen_segmenter_passes_gradients_to_the_image():
    setup = frozen_segmenter_setup(FROZEN, torch.device("cpu"))
    image = torch.rand(1, 1, 40, 40, requires_grad=True)
    probabilities = setup.network(image * 2 - 1)
    assert probabilities.shape == (1, 2, 40, 40) and 0 <= probabilities.min() and probabilities.max() <= 1
    probabilities.sum().backward()
    assert image.grad.abs().sum() > 0
    assert setup.outputs == ["rings", "fibres"] and not setup.in_package and not setup.trained


def test_the_run_repeats_from_its_card(unannotated, tmp_path):
    card = train("tagan", unannotated, tmp_path / "a", steps=1, patch=PATCH, batch=1, device="cpu",
                 task_network=FROZEN, **TINY_GAN)
    config = TrainingConfig.from_card(card, tmp_path / "b")
    assert config.task_network == FROZEN and config.task is None


def test_frozen_task_network_mistakes_are_refused_before_any_data_is_read(unannotated, tmp_path):
    with pytest.raises(NanoscopyError, match=r"^A frozen task network scores the generator of tagan and tagan-live; "
                       r"l2l has none it scores, so drop task_network \(--task-network\)\.$"):
        TrainingConfig("l2l", unannotated, tmp_path / "x", steps=1, task_network=FROZEN)
    with pytest.raises(NanoscopyError, match=r"replaces the task network and its options; drop the task options "
                       r"\(kwargs\)"):
        TrainingConfig("tagan", unannotated, tmp_path / "x", steps=1, task_network=FROZEN, task={"kwargs": {"ngf": 4}})
    with pytest.raises(NanoscopyError, match=r"does not segment"):
        train("tagan", unannotated, tmp_path / "y", steps=1, patch=PATCH, device="cpu", task_network="l2l-twolabel",
              **TINY_GAN)
    assert not (tmp_path / "y").exists()


def test_cli_option(unannotated, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["train", "tagan", "--data", str(unannotated), "--out", str(out), "--steps", "1", "--patch",
                 str(PATCH), "--device", "cpu", "--task-network", FROZEN])
    assert code == 0, capsys.readouterr().err
    assert "g_task" in capsys.readouterr().out


# --- the scorer of evaluate ------------------------------------------------------------------


@pytest.fixture(scope="module")
def scorer():
    return Segmenter(FROZEN, device="cpu")


def test_scorer_dice_is_one_for_the_real_sted_and_zero_for_a_blank_image(unannotated, scorer):
    targets = [read_image(path).data for path in sorted((unannotated / "target").glob("*.tif"))]
    assert all((scorer.segment(t, pixel_size_nm=20).labels == k).any() for t in targets for k in (1, 2))
    evaluation = Evaluation("m", "d", "spots", len(targets))
    scored = {"same": [t.copy() for t in targets], "rescaled": [3 * t + 7 for t in targets],
              "blank": [np.zeros_like(t) for t in targets]}
    scorer_dice(evaluation, scorer, scored, targets, 20.0)
    assert evaluation.rows["same"] == {"scorer Dice rings": 1.0, "scorer Dice fibres": 1.0}
    assert evaluation.rows["rescaled"] == pytest.approx({"scorer Dice rings": 1.0, "scorer Dice fibres": 1.0})
    assert evaluation.rows["blank"] == {"scorer Dice rings": 0.0, "scorer Dice fibres": 0.0}
    assert evaluation.notes["scorer"]["model"] == FROZEN


def test_evaluate_reports_scorer_dice_next_to_psnr(unannotated, tmp_path, capsys):
    data = shutil.copytree(unannotated, tmp_path / "data")
    (data / "dataset.json").write_text(json.dumps({"kind": "spots"}))  # the standard acquisition conditions
    code = main(["evaluate", "tagan-factin", "--data", str(data), "--scorer", FROZEN, "--json", "--limit", "2"])
    assert code == 0, capsys.readouterr().err
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert {"PSNR vs target (dB)", "SSIM vs target", "scorer Dice rings", "scorer Dice fibres"} <= set(rows["tagan-factin"])
    assert 0 <= rows["tagan-factin"]["scorer Dice fibres"] <= 1 and "scorer Dice rings" in rows["input"]
    code = main(["evaluate", "tagan-factin", "--data", str(data), "--scorer", "l2l-twolabel"])
    assert code == 2 and "does not segment" in capsys.readouterr().err
