"""Horn–Schunck (fast vs the plain scipy reference), disparity, superpixels, variability score."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from napari_nanoscopy.analysis.optical_flow import (
    KERNEL_T,
    KERNEL_X,
    KERNEL_Y,
    flow_magnitude,
    horn_schunck,
    horn_schunck_pairs,
    horn_schunck_reference,
)
from napari_nanoscopy.analysis.variability import (
    best_patch,
    central_roi,
    disparity_map,
    superpixel_means,
    variability_score,
)
from napari_nanoscopy.errors import NanoscopyError


def _blobs(shape=(48, 64), seed=0, shift=(0, 0)):
    rng = np.random.default_rng(seed)
    image = gaussian_filter(rng.random((shape[0] + 8, shape[1] + 8)), 2.0)
    image = np.roll(image, shift, axis=(0, 1))[4:-4, 4:-4]
    return (image - image.min()) / (image.max() - image.min())


@pytest.mark.parametrize("iterations", [1, 7, 100])
def test_fast_horn_schunck_agrees_with_the_scipy_reference(iterations):
    first, second = _blobs(seed=1), _blobs(seed=1, shift=(1, 2))
    u_ref, v_ref = horn_schunck_reference(first, second, alpha=1.0, iterations=iterations)
    u, v = horn_schunck(first, second, alpha=1.0, iterations=iterations)
    assert np.abs(u_ref).max() > 1e-3  # a real flow, not two zero maps
    np.testing.assert_allclose(u, u_ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(v, v_ref, atol=1e-5, rtol=0)


def test_reference_uses_the_published_kernels():
    # One iteration from zero flow: u = -fx ft / (alpha^2 + fx^2 + fy^2), with the derivative
    # kernels applied by scipy's convolve (reflect).
    from scipy.ndimage import convolve

    first, second = _blobs(seed=2), _blobs(seed=3)
    fx = convolve(first, KERNEL_X) + convolve(second, KERNEL_X)
    fy = convolve(first, KERNEL_Y) + convolve(second, KERNEL_Y)
    ft = convolve(first, KERNEL_T) - convolve(second, KERNEL_T)
    u, v = horn_schunck_reference(first, second, alpha=2.0, iterations=1)
    np.testing.assert_allclose(u, -fx * ft / (4.0 + fx**2 + fy**2), atol=1e-12)
    np.testing.assert_allclose(v, -fy * ft / (4.0 + fx**2 + fy**2), atol=1e-12)
    fast_u, fast_v = horn_schunck(first, second, alpha=2.0, iterations=1)
    np.testing.assert_allclose(fast_u, u, atol=1e-6)
    np.testing.assert_allclose(fast_v, v, atol=1e-6)


def test_flow_points_along_a_known_shift_and_vanishes_for_identical_images():
    first = _blobs(shape=(64, 64), seed=4)
    second = _blobs(shape=(64, 64), seed=4, shift=(0, 1))  # content moves +1 px in x
    u, v = horn_schunck(first, second, alpha=0.1, iterations=200)
    inner = (slice(8, -8), slice(8, -8))
    # scipy flips the kernels (fx is -dI/dx) and ft is I1 - I2: the signs cancel, u is +x.
    assert np.median(u[inner]) == pytest.approx(1.0, abs=0.1)
    assert abs(np.median(v[inner])) < 0.1
    u0, v0 = horn_schunck(first, first)
    assert np.abs(u0).max() == 0 and np.abs(v0).max() == 0


def test_pairs_are_consecutive_and_threads_do_not_change_the_result():
    stack = np.stack([_blobs(seed=5, shift=(k, 0)) for k in range(4)])
    flows = horn_schunck_pairs(stack, iterations=20, threads=2)
    assert flows.shape == (3, 2) + stack.shape[1:]
    for k in range(3):
        u, v = horn_schunck(stack[k], stack[k + 1], iterations=20)
        np.testing.assert_array_equal(flows[k, 0], u)
        np.testing.assert_array_equal(flows[k, 1], v)
    np.testing.assert_array_equal(horn_schunck_pairs(stack, iterations=20, threads=1), flows)
    np.testing.assert_allclose(flow_magnitude(flows)[1], np.hypot(flows[1, 0], flows[1, 1]))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: horn_schunck(np.zeros((4, 4)), np.zeros((4, 5))), "same shape"),
        (lambda: horn_schunck(np.zeros(4), np.zeros(4)), "2D"),
        (lambda: horn_schunck(np.zeros((4, 4)), np.zeros((4, 4)), alpha=0), "alpha"),
        (lambda: horn_schunck(np.zeros((4, 4)), np.zeros((4, 4)), iterations=0), "iterations"),
        (lambda: horn_schunck(np.full((4, 4), np.nan), np.zeros((4, 4))), "NaN"),
        (lambda: horn_schunck_pairs(np.zeros((1, 4, 4))), "at least 2"),
    ],
)
def test_bad_flow_arguments_are_refused(call, message):
    with pytest.raises(NanoscopyError, match=message):
        call()


def test_disparity_is_high_where_samples_disagree():
    rng = np.random.default_rng(6)
    base = _blobs(shape=(64, 64), seed=7)
    samples = np.repeat(base[None], 5, axis=0).copy()
    samples[:, 40:56, 8:24] += 0.3 * rng.random((5, 16, 16))  # the samples disagree only here
    for method in ("optical-flow", "std"):
        disparity = disparity_map(samples, method, iterations=30)
        assert disparity.shape == (64, 64)
        assert disparity[40:56, 8:24].mean() > 10 * disparity[:32, 32:].mean()
        assert best_patch(disparity, 16) == (32, 0, 16, 16) or best_patch(disparity, 16) == (48, 0, 16, 16)
    np.testing.assert_allclose(disparity_map(samples, "std"), samples.std(axis=0, ddof=1), atol=1e-6)
    with pytest.raises(NanoscopyError, match="optical-flow, std"):
        disparity_map(samples, "ssim")


def test_superpixels_average_whole_blocks_and_leave_out_the_central_roi():
    disparity = np.arange(500 * 500, dtype=float).reshape(500, 500)
    roi = central_roi((500, 500), 300)
    assert roi == (100, 100, 300, 300)
    superpixels = superpixel_means(disparity, 100, exclude=roi)
    assert superpixels.means.shape == (5, 5)
    assert np.isnan(superpixels.means[1:4, 1:4]).all()  # the paper's 3x3 central blocks
    assert np.isfinite(superpixels.means).sum() == 16
    assert superpixels.means[0, 0] == pytest.approx(disparity[:100, :100].mean())
    assert best_patch(disparity, 100, exclude=roi) == (400, 400, 100, 100)  # the largest values
    disparity[150, 150] = 1e12  # inside the ROI: never chosen
    assert best_patch(disparity, 100, exclude=roi) == (400, 400, 100, 100)
    # a remainder strip is left out
    assert superpixel_means(np.ones((130, 250)), 100).means.shape == (1, 2)
    with pytest.raises(NanoscopyError, match="no place for the STED patch"):
        best_patch(np.ones((100, 100)), 100, exclude=(0, 0, 100, 100))


def test_variability_score_counts_3_to_8_votes_of_10_as_high():
    votes = np.array([0, 1, 2, 3, 5, 8, 9, 10])
    stack = np.zeros((10, 1, votes.size), dtype=bool)
    for column, count in enumerate(votes):
        stack[:count, 0, column] = True
    result = variability_score(stack)
    np.testing.assert_array_equal(result.votes[0], votes)
    np.testing.assert_array_equal(result.high[0], [False, False, False, True, True, True, False, False])
    assert result.foreground == 7
    assert result.score == pytest.approx(3 / 7)
    assert variability_score(np.zeros((10, 4, 4), bool)).score == 0.0
    assert variability_score(np.ones((10, 4, 4), bool)).score == 0.0
    noisy = np.random.default_rng(0).random((10, 32, 32)) < 0.5
    assert variability_score(noisy).score > 0.9
