"""The uncertainty layer: the pooled Monte-Carlo spread, the measures that chose it (worst-pixel
AUROC, Spearman), the candidates, and that every front end's uncertainty output is the pooled one
with its estimator in the provenance."""

import numpy as np
import pytest
from scipy import ndimage

from napari_nanoscopy import NanoscopyError
from napari_nanoscopy.cli import main
from napari_nanoscopy.inference import Restorer
from napari_nanoscopy.io import read_image, write_image
from napari_nanoscopy.uncertainty import (ESTIMATOR, POOLING_SIGMA_MODEL_PX, augmentation_spread, pooled_spread,
                                          pooling_sigma, relative_spread, spearman, task_spread, worst_pixel_auroc)


def test_pooled_spread_is_the_root_of_the_locally_averaged_variance():
    rng = np.random.default_rng(0)
    std = rng.random((2, 40, 48)).astype(np.float32)
    pooled = pooled_spread(std, 1.5)
    expected = np.sqrt(ndimage.gaussian_filter(std.astype(np.float64) ** 2, (0, 1.5, 1.5)))
    np.testing.assert_allclose(pooled, expected, rtol=1e-5)
    assert pooled.dtype == np.float32 and std.max() <= 1  # the input is left as it was
    # planes of a stack are pooled apart; a constant spread stays itself, zero stays zero, none stays none
    np.testing.assert_allclose(pooled_spread(np.stack([std[0], 3 * std[0]]), 1.5)[1], 3 * pooled[0], rtol=1e-5)
    np.testing.assert_allclose(pooled_spread(np.full((20, 20), 0.25, np.float32), 2.0), 0.25, rtol=1e-6)
    assert not pooled_spread(np.zeros((20, 20), np.float32), 2.0).any()
    assert pooled_spread(None, 1.5) is None
    assert pooling_sigma(2.0) == POOLING_SIGMA_MODEL_PX / 2  # 40 nm pixels, 20 nm model: half as many pixels
    with pytest.raises(NanoscopyError, match="pooling sigma"):
        pooled_spread(std, float("nan"))


def test_worst_pixel_auroc_and_spearman_rank_the_error():
    rng = np.random.default_rng(1)
    error = rng.random((30, 30))
    assert worst_pixel_auroc(error, error) == pytest.approx(1.0)
    assert worst_pixel_auroc(-error, error) == pytest.approx(0.0)
    assert worst_pixel_auroc(np.ones_like(error), error) == pytest.approx(0.5)  # ties count half
    assert 0.4 < worst_pixel_auroc(rng.random((30, 30)), error) < 0.6
    assert spearman(error ** 3, error) == pytest.approx(1.0)
    assert np.isnan(spearman(np.ones_like(error), error))
    with pytest.raises(NanoscopyError, match="same at every pixel"):
        worst_pixel_auroc(error, np.zeros_like(error))
    with pytest.raises(NanoscopyError, match="same pixel grid"):
        worst_pixel_auroc(error, error[:-1])
    with pytest.raises(NanoscopyError, match="NaN"):
        spearman(np.full_like(error, np.nan), error)


def test_pooling_finds_wide_errors_that_a_few_samples_spread_only_hints_at():
    """Ten samples estimate a pixel's spread to about 25 %, and a misplaced structure is wrong over
    a resolution element: the pooled spread finds the worst pixels better than the raw one."""
    rng = np.random.default_rng(2)
    blobs = np.zeros((96, 96))
    blobs[tuple(rng.integers(0, 96, (2, 30)))] = 1.0
    true_spread = ndimage.gaussian_filter(blobs, 2.0) + 0.01
    samples = rng.normal(0.0, true_spread, (10, 96, 96))
    error = np.abs(rng.normal(0.0, true_spread))  # the error the spread foretells, one draw of it
    raw = samples.std(axis=0, ddof=1)
    assert worst_pixel_auroc(pooled_spread(raw, 1.5), error) > worst_pixel_auroc(raw, error) + 0.01
    assert spearman(pooled_spread(raw, 1.5), error) > spearman(raw, error)


def test_candidate_estimators():
    rng = np.random.default_rng(3)
    image = rng.random((2, 24, 24)).astype(np.float32)
    # an equivariant "restoration" has no augmentation spread; one that depends on orientation has
    np.testing.assert_allclose(augmentation_spread(lambda x: 2 * x[0], image), 0, atol=1e-6)
    assert augmentation_spread(lambda x: x[0] * np.arange(24), image).max() > 1
    np.testing.assert_allclose(augmentation_spread(lambda x: x[0] + 1, image[..., :20]), 0, atol=1e-6)  # any shape
    task_samples = np.stack([np.zeros((2, 8, 8)), np.ones((2, 8, 8))])
    np.testing.assert_allclose(task_spread(task_samples), 2 * np.sqrt(0.5))
    mean = np.zeros((24, 24), np.float32)
    mean[:, 16:] = 10.0  # a bright stripe on a dark background
    relative = relative_spread(np.ones_like(mean), mean)
    assert relative[:, 20].mean() < relative[:, 3].mean()  # the same spread counts less on a bright signal


def test_the_restorer_ships_the_pooled_spread_at_the_image_pixel_size(packages_dir, smooth_image):
    restorer = Restorer(str(packages_dir / "tagan"), device="cpu")
    result = restorer.restore(smooth_image, samples=3, seed=4)
    np.testing.assert_allclose(result.uncertainty, pooled_spread(result.std, POOLING_SIGMA_MODEL_PX), rtol=1e-5)
    assert result.provenance["uncertainty"] == ESTIMATOR
    coarse = restorer.restore(smooth_image, samples=3, seed=4, pixel_size_nm=40.0)  # 2 model pixels a pixel
    np.testing.assert_allclose(coarse.uncertainty, pooled_spread(coarse.std, POOLING_SIGMA_MODEL_PX / 2), rtol=1e-5)
    single = restorer.restore(smooth_image, samples=1)
    assert single.uncertainty is None and "uncertainty" not in single.provenance


def test_the_written_uncertainty_layer_is_the_pooled_spread(packages_dir, smooth_image, tmp_path):
    source = tmp_path / "in.tif"
    write_image(source, smooth_image, pixel_size_nm=20.0, axes="YX")
    std_path = tmp_path / "uncertainty.tif"
    assert main(["restore", str(source), str(tmp_path / "out.tif"), "--model", str(packages_dir / "tagan"),
                 "--samples", "3", "--seed", "5", "--uncertainty", str(std_path), "--device", "cpu"]) == 0
    written = read_image(std_path)
    expected = Restorer(str(packages_dir / "tagan"), device="cpu").restore(smooth_image, samples=3, seed=5,
                                                                           pixel_size_nm=20.0)
    np.testing.assert_allclose(written.data, expected.uncertainty, rtol=1e-5, atol=1e-7)
    assert not np.allclose(written.data, expected.std)  # not the raw per-pixel spread
    assert written.metadata["uncertainty"] == ESTIMATOR


def test_block_by_block_arrays_carry_the_pooled_spread(packages_dir, monkeypatch):
    from napari_nanoscopy import restore_job

    dask_array = pytest.importorskip("dask.array")
    restorer = Restorer(str(packages_dir / "tagan"), device="cpu")
    lazy = dask_array.from_array(np.random.default_rng(6).random((96, 96)).astype(np.float32), chunks=48)
    monkeypatch.setattr(restore_job, "available_memory", lambda: 50_000)  # too little to restore it whole
    result = restore_job.restore_array(restorer, lazy, samples=3, seed=6)
    assert result.provenance["engine"] == restore_job.CHUNKED and result.provenance["uncertainty"] == ESTIMATOR
    assert result.uncertainty is not None and result.uncertainty.shape == (96, 96) and result.uncertainty.max() > 0
