"""Decorrelation-analysis resolution (Descloux et al. 2019) on images of known resolution."""

import numpy as np
import pytest
from scipy import ndimage

from napari_nanoscopy.analysis import decorrelation_resolution
from napari_nanoscopy.errors import NanoscopyError

SIZE = 256


def band_limited_noise(cutoff, seed=0, noise=0.1):
    """White noise low-passed with an ideal disk of radius ``cutoff`` (x Nyquist), plus white noise."""
    rng = np.random.default_rng(seed)
    ky = 2 * np.fft.fftfreq(SIZE)[:, None]
    kx = 2 * np.fft.fftfreq(SIZE)[None, :]
    image = np.real(np.fft.ifft2(np.fft.fft2(rng.normal(size=(SIZE, SIZE))) * (np.hypot(ky, kx) < cutoff)))
    return image / image.std() + noise * rng.normal(size=(SIZE, SIZE))


@pytest.mark.parametrize("cutoff", [0.25, 0.5, 0.75])
def test_band_limited_noise_gives_its_cutoff(cutoff):
    result = decorrelation_resolution(band_limited_noise(cutoff), pixel_size_nm=20.0)
    expected_nm = 2 * 20.0 / cutoff
    assert result.resolution_nm == pytest.approx(expected_nm, rel=0.1)
    assert result.cutoff == pytest.approx(cutoff, rel=0.1)
    assert result.amplitude > 0.5


def test_gaussian_blur_resolution_scales_with_the_blur():
    rng = np.random.default_rng(3)
    estimates = {}
    for sigma in (1.5, 3.0, 6.0):
        image = ndimage.gaussian_filter(rng.normal(size=(SIZE, SIZE)), sigma)
        image = image / image.std() + 0.05 * rng.normal(size=(SIZE, SIZE))
        estimates[sigma] = decorrelation_resolution(image, pixel_size_nm=10.0).resolution_nm
        # at this signal-to-noise ratio the estimate lies near the blur's FWHM
        assert estimates[sigma] == pytest.approx(2.3548 * sigma * 10.0, rel=0.25)
    assert estimates[3.0] / estimates[1.5] == pytest.approx(2.0, rel=0.15)
    assert estimates[6.0] / estimates[3.0] == pytest.approx(2.0, rel=0.15)


def test_pixel_size_only_scales_the_result():
    image = band_limited_noise(0.5, seed=4)
    in_pixels = decorrelation_resolution(image)
    in_nm = decorrelation_resolution(image, pixel_size_nm=15.0)
    assert in_nm.resolution_nm == pytest.approx(15.0 * in_pixels.resolution_nm)
    assert in_pixels.resolution_px == pytest.approx(in_pixels.resolution_nm)


def test_more_noise_lowers_the_estimated_resolution():
    structure = ndimage.gaussian_filter(band_limited_noise(0.9, seed=5, noise=0), 1.0)
    structure /= structure.std()
    rng = np.random.default_rng(6)
    clean = decorrelation_resolution(structure + 0.1 * rng.normal(size=structure.shape))
    noisy = decorrelation_resolution(structure + 0.5 * rng.normal(size=structure.shape))
    assert noisy.resolution_nm > clean.resolution_nm * 1.2
    assert noisy.amplitude < clean.amplitude


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((64, 64)), "constant"),
        (np.ones((16, 64)), "at least 32x32"),
        (np.ones((4, 64, 64)), "one 2D"),
        (np.full((64, 64), np.nan), "NaN"),
    ],
)
def test_bad_images_are_refused_with_a_sentence(image, message):
    with pytest.raises(NanoscopyError, match=message):
        decorrelation_resolution(image)


def test_bad_pixel_size_is_refused():
    with pytest.raises(NanoscopyError, match="positive"):
        decorrelation_resolution(band_limited_noise(0.5), pixel_size_nm=0)
