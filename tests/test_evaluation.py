"""Evaluation: matching and F1, the shared spot detector, scaling, Richardson-Lucy with the
pySTED PSF, the evaluate() table per dataset kind, the evaluate command, and transfer learning
(train(init_from=...)) that the bundled TCAN recipe relies on."""

import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_nanoscopy import NanoscopyError, load_model
from napari_nanoscopy.analysis.fwhm import fwhm_of_point_source, measure_spots
from napari_nanoscopy.cli import main
from napari_nanoscopy.evaluation import (
    confocal_psf,
    detect_spots,
    evaluate,
    f1_score,
    fit_to_reference,
    match_counts,
    matched_truths,
    nearest_neighbour_distances,
    richardson_lucy,
)
from napari_nanoscopy.simulation import simulate_dataset
from napari_nanoscopy.training import train

TINY_TCAN = dict(base_filters=4, depth=2, dfcan_filters=4, n_groups=1, n_fcab=1)


@pytest.fixture(scope="module")
def psf():
    return confocal_psf()


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    return {
        kind: simulate_dataset(kind, n=n, size=64, seed=3, out_dir=root / kind)
        for kind, n in (("nanodomains", 8), ("beads", 2), ("factin", 2), ("twolabel", 2))
    }


def test_matching_is_one_to_one_within_the_radius():
    truth = np.array([[10, 10], [20, 20], [30, 30]])
    detected = np.array([[11, 12], [10.5, 10], [20, 23.5], [50, 50]])  # two near the first, one 3.5 px off
    assert match_counts(detected, truth) == (1, 3, 2)
    assert match_counts(np.zeros((0, 2)), truth) == (0, 0, 3)
    np.testing.assert_array_equal(matched_truths(detected, truth), [True, False, False])
    np.testing.assert_array_equal(matched_truths(np.zeros((0, 2)), truth), [False, False, False])
    precision, recall, f1 = f1_score([(1, 3, 2), (3, 0, 0)])
    assert (precision, recall) == (4 / 7, 4 / 6)
    assert f1 == pytest.approx(2 * precision * recall / (precision + recall))


def test_nearest_neighbour_distances():
    np.testing.assert_allclose(nearest_neighbour_distances([[0, 0], [0, 3], [4, 3]]), [3, 3, 4])
    assert nearest_neighbour_distances([[5, 5]]).tolist() == [np.inf]


def test_spot_detector_finds_spots_two_pixels_apart_and_ignores_flat_noise():
    image = np.zeros((40, 40))
    for r, c in [(10, 10), (10, 13), (30, 25)]:
        image[r, c] = 1.0
    image = ndimage.gaussian_filter(image, 0.8)
    found = detect_spots(image, 0.3)
    assert match_counts(found, [[10, 10], [10, 13], [30, 25]]) == (3, 0, 0)
    assert len(detect_spots(np.ones((20, 20)), 0.3)) == 0


def test_fit_to_reference_undoes_an_affine_change():
    rng = np.random.default_rng(0)
    reference = rng.random((16, 16)).astype(np.float32)
    assert np.allclose(fit_to_reference(reference, 7.0 * reference - 3.0), reference, atol=1e-5)
    assert np.allclose(fit_to_reference(reference, np.zeros_like(reference)), reference.mean())


def test_the_confocal_psf_is_the_standard_conditions_spot(psf):
    assert psf.sum() == pytest.approx(1.0, rel=1e-5)
    assert 200 < fwhm_of_point_source(psf, 20.0) < 230  # docs/simulation.md: 213 nm


def test_richardson_lucy_narrows_a_blurred_bead(psf):
    bead = np.zeros((64, 64), np.float32)
    bead[32, 32] = 1.0
    blurred = ndimage.convolve(bead, psf, mode="constant") * 1000 + 5
    before = fwhm_of_point_source(blurred, 20.0)
    after = fwhm_of_point_source(richardson_lucy(blurred, psf), 20.0)
    assert after < 0.8 * before


def test_nanodomain_evaluation_scores_sted_above_confocal(datasets, packages_dir):
    evaluation = evaluate(packages_dir / "tagan", datasets["nanodomains"], baselines={"other": packages_dir / "tagan"})
    rows = evaluation.rows
    assert list(rows) == ["input", "test-tagan", "Richardson-Lucy", "other", "STED (target)"]
    assert evaluation.n_images == 8 and evaluation.kind == "nanodomains"
    for name, row in rows.items():
        assert 0 <= row["F1 (3 px)"] <= 1
        assert np.isfinite(row["PSNR vs target (dB)"]) if name != "STED (target)" else "PSNR vs target (dB)" not in row
    assert rows["STED (target)"]["F1 (3 px)"] > rows["input"]["F1 (3 px)"] + 0.3
    # recall split by the distance to the nearest other nanodomain, consistent with the whole
    positions = [np.array(s["positions_px"]) for s in json.loads((datasets["nanodomains"] / "dataset.json").read_text())["samples"]]
    neighbours = np.concatenate([nearest_neighbour_distances(p) for p in positions]) * 20
    close, isolated = neighbours <= 80, neighbours > 120
    for row in rows.values():
        parts = [(row[f"recall {label} nm apart"], group.sum()) for label, group in (("≤ 80", close), ("> 120", isolated)) if group.any()]
        assert parts and all(0 <= recall <= 1 for recall, _ in parts)
        found = sum(recall * n for recall, n in parts)
        assert found <= row["recall"] * len(neighbours) + 1e-9
        assert row["recall"] * len(neighbours) - found <= (~close & ~isolated).sum() + 1e-9
    assert rows["STED (target)"]["recall > 120 nm apart"] >= rows["STED (target)"].get("recall ≤ 80 nm apart", 0)
    assert rows["other"] == rows["test-tagan"]  # the same model, the same seeds
    table = evaluation.table()
    assert "| STED (target) |" in table and "F1 (3 px)" in table
    json.dumps(evaluation.to_dict(), allow_nan=False)


def test_bead_evaluation_measures_fwhm_per_row(datasets, packages_dir):
    rows = evaluate(packages_dir / "l2l", datasets["beads"]).rows
    assert rows["STED (target)"]["bead FWHM (nm)"] < 0.6 * rows["input"]["bead FWHM (nm)"]
    assert rows["Richardson-Lucy"]["bead FWHM (nm)"] < rows["input"]["bead FWHM (nm)"]
    assert rows["input"]["beads fitted"] >= 2


def test_factin_evaluation_scores_segmentations_by_dice(datasets, packages_dir, tmp_path):
    segmenter = train(
        "unet-live", datasets["factin"], tmp_path / "seg", steps=2, patch=64, batch=1, device="cpu",
        task=dict(kwargs=dict(ngf=4, n_down=3)),
    )
    assert segmenter.task["outputs"] == ["rings", "fibres"]
    evaluation = evaluate(packages_dir / "tagan-task", datasets["factin"], segmenter=tmp_path / "seg")
    rows = evaluation.rows
    assert set(rows["test-tagan"]) >= {"PSNR vs target (dB)", "Dice rings", "Dice fibres"}
    segmented = [name for name in rows if name.endswith("segmented by seg")]
    assert len(segmented) == 4  # input, model, Richardson-Lucy, target
    for name in segmented:
        assert 0 <= rows[name]["Dice rings"] <= 1 and 0 <= rows[name]["Dice fibres"] <= 1
    only_segmentation = evaluate(tmp_path / "seg", datasets["factin"]).rows
    assert [name for name, row in only_segmentation.items() if row] == ["seg"]


def test_twolabel_evaluation_compares_with_the_imaged_clean_structure(datasets, packages_dir):
    rows = evaluate(packages_dir / "l2l", datasets["twolabel"]).rows
    for row in rows.values():
        assert {"PSNR vs clean structure (dB)", "SSIM vs clean structure", "CNR"} <= set(row)
    # the better label shows the structure more faithfully than the weak one
    assert rows["better label (target)"]["PSNR vs clean structure (dB)"] > rows["input"]["PSNR vs clean structure (dB)"]


def test_evaluate_refuses_a_folder_without_a_manifest(tmp_path, packages_dir):
    with pytest.raises(NanoscopyError, match="dataset.json"):
        evaluate(packages_dir / "l2l", tmp_path)


def test_evaluate_command(datasets, packages_dir, capsys):
    assert main(["evaluate", str(packages_dir / "l2l"), "--data", str(datasets["beads"]), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "beads" and "bead FWHM (nm)" in report["rows"]["input"]
    assert main(["evaluate", str(packages_dir / "l2l"), "--data", str(datasets["beads"]), "--baseline", "nonsense"]) == 2
    assert "NAME=MODEL" in capsys.readouterr().err


def test_training_can_start_from_another_package(datasets, tmp_path):
    common = dict(steps=1, patch=64, batch=1, device="cpu", generator_kwargs=TINY_TCAN,
                  discriminator_kwargs=dict(ndf=2, n_blocks=2))
    first = train("tcan", datasets["beads"], tmp_path / "beads", **common)
    second = train("tcan", datasets["beads"], tmp_path / "again", init_from=tmp_path / "beads", lr=1e-12, **common)
    assert second.training["initialised_from"] == {"name": "beads", "weights_sha256": first.weights_sha256}
    start = load_model(tmp_path / "beads").generator.state_dict()
    after = load_model(tmp_path / "again").generator.state_dict()
    assert all(torch.allclose(start[k].float(), after[k].float(), atol=1e-6) for k in start)
    fresh = train("tcan", datasets["beads"], tmp_path / "fresh", lr=1e-12, **common)
    assert fresh.training["initialised_from"] is None

    with pytest.raises(NanoscopyError, match="differs from this run's in base_filters"):
        train("tcan", datasets["beads"], tmp_path / "x", init_from=tmp_path / "beads",
              **{**common, "generator_kwargs": dict(TINY_TCAN, base_filters=8)})
    with pytest.raises(NanoscopyError, match="needs a wang package"):
        train("wang", datasets["beads"], tmp_path / "y", init_from=tmp_path / "beads", steps=1, patch=64, batch=1,
              device="cpu", generator_kwargs=dict(base_filters=4, depth=2), discriminator_kwargs=dict(ndf=2, n_blocks=2))
