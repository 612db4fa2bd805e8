"""The hallucination score: power an output adds above the input's cut-off, beyond the reference's;
and evaluate() reporting it beside PSNR and SSIM."""

import numpy as np
import pytest
from scipy import ndimage

from napari_nanoscopy import NanoscopyError
from napari_nanoscopy.analysis.hallucination import cutoff_from_psf, hallucination_score
from napari_nanoscopy.evaluation import HALLUCINATION, confocal_psf, evaluate
from napari_nanoscopy.simulation import simulate_dataset

CONFOCAL_SIGMA_PX = 5.0  # about a 240 nm FWHM at 20 nm pixels
STED_SIGMA_PX = 1.5


def gaussian_psf(sigma: float, radius: int = 15) -> np.ndarray:
    y, x = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    psf = np.exp(-(x**2 + y**2) / (2 * sigma**2))
    return psf / psf.sum()


@pytest.fixture(scope="module")
def scene():
    """Spots and a line imaged as STED (noisy, the reference) and as confocal (an honest blurry output)."""
    rng = np.random.default_rng(0)
    size = 96
    truth = np.zeros((size, size))
    truth[tuple(rng.integers(4, size - 4, (2, 40)))] = rng.uniform(50, 100, 40)
    y, x = np.mgrid[:size, :size]
    truth += 30.0 * (np.abs(y - 0.6 * x - 20) < 1.0)
    reference = rng.poisson(5 * ndimage.gaussian_filter(truth, STED_SIGMA_PX) + 2).astype(float)
    blurry = 5 * ndimage.gaussian_filter(truth, CONFOCAL_SIGMA_PX) + 2
    return reference, blurry, (y, x)


def test_the_cutoff_is_where_the_otf_falls_below_its_floor():
    # a Gaussian PSF of sigma s has the OTF exp(-2 pi^2 s^2 f^2)
    expected = np.sqrt(np.log(1 / 0.05) / (2 * np.pi**2 * CONFOCAL_SIGMA_PX**2))
    assert cutoff_from_psf(gaussian_psf(CONFOCAL_SIGMA_PX)) == pytest.approx(expected, abs=2 / 256)
    assert cutoff_from_psf(gaussian_psf(STED_SIGMA_PX)) > 3 * cutoff_from_psf(gaussian_psf(CONFOCAL_SIGMA_PX))
    # the standard pySTED confocal carries about 0.084 cycles per pixel (a 240 nm period at 20 nm)
    assert 0.07 < cutoff_from_psf(confocal_psf()) < 0.1


def test_identical_is_zero_blurry_is_honest_and_an_added_lattice_is_not(scene):
    reference, blurry, (y, x) = scene
    cutoff = cutoff_from_psf(gaussian_psf(CONFOCAL_SIGMA_PX))
    assert hallucination_score(reference, reference, cutoff) == pytest.approx(0.0, abs=1e-12)
    honest = hallucination_score(blurry, reference, cutoff)
    assert honest == pytest.approx(0.0, abs=1e-3)  # less detail than the reference adds nothing
    # a hexagonal lattice (0.15 cycles/px, above the confocal cut-off) on the signal, as GANs draw on neurites
    lattice = blurry + 0.5 * (blurry - blurry.min()) * np.cos(2 * np.pi * 0.15 * x) * np.cos(
        2 * np.pi * 0.15 * (0.5 * x + 0.87 * y))
    invented = hallucination_score(lattice, reference, cutoff)
    assert invented > honest + 0.01
    stronger = blurry + (blurry - blurry.min()) * np.cos(2 * np.pi * 0.15 * x) * np.cos(
        2 * np.pi * 0.15 * (0.5 * x + 0.87 * y))
    assert hallucination_score(stronger, reference, cutoff) > 2 * invented  # four times the power, more excess
    # a lattice below the cut-off is detail the input carries, not invented
    coarse = blurry + 0.5 * (blurry - blurry.min()) * np.cos(2 * np.pi * 0.03 * x)
    assert hallucination_score(coarse, reference, cutoff) < 0.2 * invented
    # stacks score as the mean of their images
    stack = hallucination_score(np.stack([blurry, lattice]), np.stack([reference, reference]), cutoff)
    assert stack == pytest.approx((honest + invented) / 2)


def test_bad_arguments_say_what_to_give(scene):
    reference, blurry, _ = scene
    with pytest.raises(NanoscopyError, match="same shape"):
        hallucination_score(blurry[:-1], reference, 0.1)
    with pytest.raises(NanoscopyError, match="cut-off must lie"):
        hallucination_score(blurry, reference, 0.0)
    with pytest.raises(NanoscopyError, match="NaN"):
        hallucination_score(np.full_like(blurry, np.nan), reference, 0.1)
    with pytest.raises(NanoscopyError, match="no energy above"):
        hallucination_score(blurry, np.ones_like(reference), 0.1)
    with pytest.raises(NanoscopyError, match="finite 2D image"):
        cutoff_from_psf(np.ones(5))


def test_evaluate_reports_the_hallucination_score_beside_psnr_and_ssim(packages_dir, tmp_path):
    data = simulate_dataset("nanodomains", n=2, size=64, seed=3, out_dir=tmp_path / "nano")
    evaluation = evaluate(packages_dir / "tagan", data, baselines={"same": packages_dir / "tagan"})
    rows = evaluation.rows
    for name in ("input", "test-tagan", "Richardson-Lucy", "same"):
        assert list(rows[name])[:3] == ["PSNR vs target (dB)", "SSIM vs target", HALLUCINATION]
        assert rows[name][HALLUCINATION] >= 0
    assert HALLUCINATION not in rows["STED (target)"]  # the reference itself
    assert rows["same"][HALLUCINATION] == rows["test-tagan"][HALLUCINATION]
    assert evaluation.notes["hallucination_cutoff_cycles_per_px"] == pytest.approx(cutoff_from_psf(confocal_psf()),
                                                                                   abs=1e-4)
    assert f"| {HALLUCINATION} |" in evaluation.table().splitlines()[0]
    without_deconvolution = evaluate(packages_dir / "tagan", data, richardson_lucy_baseline=False).rows
    assert "Richardson-Lucy" not in without_deconvolution and HALLUCINATION in without_deconvolution["input"]
