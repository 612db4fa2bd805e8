"""FWHM from 2D Gaussian fits, on synthetic spots and on pySTED point sources."""

import numpy as np
import pytest

from napari_nanoscopy.analysis.fwhm import (
    SIGMA_TO_FWHM,
    find_isolated_spots,
    fit_spot,
    fwhm_of_point_source,
    measure_spots,
)
from napari_nanoscopy.errors import NanoscopyError
from napari_nanoscopy.simulation import acquire_pair, beads


def _gaussian_image(shape, spots, background=2.0):
    rows, cols = np.mgrid[: shape[0], : shape[1]].astype(float)
    image = np.full(shape, background)
    for row, col, sigma_row, sigma_col, amplitude in spots:
        image += amplitude * np.exp(
            -((rows - row) ** 2) / (2 * sigma_row**2) - ((cols - col) ** 2) / (2 * sigma_col**2)
        )
    return image


def test_fit_recovers_an_elliptical_gaussian_in_nm():
    image = _gaussian_image((41, 41), [(20.3, 19.6, 2.0, 3.0, 100.0)])
    fit = fit_spot(image, (20, 20), pixel_size_nm=15.0, half_window_px=15)
    assert fit.row == pytest.approx(20.3, abs=1e-3) and fit.col == pytest.approx(19.6, abs=1e-3)
    assert fit.fwhm_row_nm == pytest.approx(2.0 * SIGMA_TO_FWHM * 15, rel=1e-3)
    assert fit.fwhm_col_nm == pytest.approx(3.0 * SIGMA_TO_FWHM * 15, rel=1e-3)
    assert fit.fwhm_nm == pytest.approx(np.sqrt(6.0) * SIGMA_TO_FWHM * 15, rel=1e-3)
    assert fit.background == pytest.approx(2.0, abs=1e-3) and fit.amplitude == pytest.approx(100, rel=1e-3)


def test_point_source_fwhm_is_independent_of_noise_and_pixel_size():
    rng = np.random.default_rng(0)
    image = rng.poisson(_gaussian_image((64, 64), [(31.0, 33.0, 3.0, 3.0, 200.0)])).astype(float)
    assert fwhm_of_point_source(image, 10.0) == pytest.approx(3.0 * SIGMA_TO_FWHM * 10, rel=0.05)
    assert fwhm_of_point_source(image, 20.0) == pytest.approx(3.0 * SIGMA_TO_FWHM * 20, rel=0.05)


def test_only_isolated_spots_are_detected_and_measured():
    spots = [
        (12, 12, 1.5, 1.5, 50.0), (12, 20, 1.5, 1.5, 50.0),  # resolved pair, 160 nm apart
        (48, 14, 1.5, 1.5, 50.0), (48, 19, 1.5, 1.5, 50.0),  # 100 nm apart: one elongated spot
        (30, 45, 2.0, 2.0, 60.0),  # isolated
        (50, 62, 1.5, 1.5, 60.0),  # too close to the border
    ]
    rng = np.random.default_rng(1)
    image = rng.poisson(_gaussian_image((64, 64), spots)).astype(float)
    isolated = sorted(map(tuple, find_isolated_spots(image, 20.0).tolist()))
    assert len(isolated) == 2 and isolated[0] == (30, 45)
    assert isolated[1][0] == 48 and 15 <= isolated[1][1] <= 18  # between the merged two
    assert len(find_isolated_spots(image, 20.0, threshold=1e6)) == 0
    assert len(find_isolated_spots(image, 20.0, min_separation_nm=100.0)) == 4
    (fit,) = measure_spots(image, 20.0)  # the elongated merged pair is left out
    assert (round(fit.row), round(fit.col)) == (30, 45)
    assert fit.fwhm_nm == pytest.approx(2.0 * SIGMA_TO_FWHM * 20, rel=0.1)


@pytest.mark.parametrize(
    "call",
    [
        lambda: fwhm_of_point_source(np.zeros((3, 32, 32)), 20.0),
        lambda: fwhm_of_point_source(np.ones((32, 32)), 20.0),
        lambda: fwhm_of_point_source(np.ones((32, 32)), 0.0),
        lambda: find_isolated_spots(np.ones((32, 32)), 20.0, min_separation_nm=0),
        lambda: measure_spots(np.full((32, 32), np.nan), 20.0),
    ],
)
def test_bad_input_raises_nanoscopy_error(call):
    with pytest.raises(NanoscopyError):
        call()


def test_standard_conditions_resolution_on_a_point_source():
    point = np.zeros((64, 64), np.int32)
    point[32, 32] = 1000
    confocal, sted = acquire_pair(point, rng=0)
    confocal_nm, sted_nm = fwhm_of_point_source(confocal, 20.0), fwhm_of_point_source(sted, 20.0)
    assert 180 <= confocal_nm <= 280  # TA-GAN reports about 213 nm
    assert 50 <= sted_nm <= 90  # about 72 nm


def test_standard_conditions_resolution_on_isolated_beads():
    sample = beads(64, n_isolated=3, n_pairs=0, seed=4)
    confocal, sted = acquire_pair(sample.datamap, rng=4)
    for image, low, high in ((confocal, 180, 280), (sted, 50, 90)):
        fits = measure_spots(image, 20.0)
        assert len(fits) == 3
        for fit in fits:
            assert np.min(np.hypot(*(sample.positions - [fit.row, fit.col]).T)) < 1.5
        assert all(low <= fit.fwhm_nm <= high for fit in fits)
