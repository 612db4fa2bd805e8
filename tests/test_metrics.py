import numpy as np
import pytest
from skimage import metrics as skimage_metrics

from napari_nanoscopy.analysis import dice, iou, ms_ssim, nrmse, psnr, ssim
from napari_nanoscopy.errors import NanoscopyError

GAUSSIAN_SSIM = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}


def structured_image(shape=(192, 200), scale=1.0):
    """Fluorescence-like test scene: gaussian spots, a ring and a filament on a background."""
    y, x = np.mgrid[: shape[0], : shape[1]].astype(float)
    image = np.full(shape, 0.05)
    rng = np.random.default_rng(7)
    for cy, cx in rng.uniform(10, min(shape) - 10, size=(25, 2)):
        image += np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * 2.5**2))
    radius = np.hypot(y - shape[0] / 2, x - shape[1] / 2)
    image += 0.8 * np.exp(-((radius - 40) ** 2) / 8)
    image += 0.6 * np.exp(-((y - 0.5 * x - 20) ** 2) / 4)
    return scale * image


def noisy(image, sigma, seed=0):
    return image + np.random.default_rng(seed).normal(0, sigma, image.shape)


def image_pairs():
    rng = np.random.default_rng(3)
    random_reference = rng.random((64, 72))
    yield "random", random_reference, noisy(random_reference, 0.1)
    structured = structured_image()
    yield "structured", structured, noisy(structured, 0.05)
    yield "structured-12bit", structured * 4095, noisy(structured * 4095, 150.0)


@pytest.mark.parametrize(("reference", "image"), [pair[1:] for pair in image_pairs()])
@pytest.mark.parametrize("data_range", [None, 1.0, 2.5, 4095.0])
def test_psnr_and_ssim_match_skimage(reference, image, data_range):
    skimage_range = np.ptp(reference) if data_range is None else data_range

    expected_psnr = skimage_metrics.peak_signal_noise_ratio(
        reference, image, data_range=skimage_range
    )
    expected_ssim = skimage_metrics.structural_similarity(
        reference, image, data_range=skimage_range, **GAUSSIAN_SSIM
    )

    assert psnr(reference, image, data_range=data_range) == pytest.approx(expected_psnr, abs=1e-6)
    assert ssim(reference, image, data_range=data_range) == pytest.approx(expected_ssim, abs=1e-6)


@pytest.mark.parametrize(("reference", "image"), [pair[1:] for pair in image_pairs()])
@pytest.mark.parametrize("normalization", ["euclidean", "min-max", "mean"])
def test_nrmse_matches_skimage(reference, image, normalization):
    expected = skimage_metrics.normalized_root_mse(reference, image, normalization=normalization)
    assert nrmse(reference, image, normalization=normalization) == pytest.approx(
        expected, abs=1e-6
    )


def test_integer_images_are_scored_like_their_float_values():
    reference = (structured_image() * 100).astype(np.uint16)
    image = noisy(reference, 5.0).clip(0).astype(np.uint16)
    as_float = reference.astype(float), image.astype(float)

    assert psnr(reference, image) == pytest.approx(psnr(*as_float))
    assert ssim(reference, image, data_range=65535) == pytest.approx(
        skimage_metrics.structural_similarity(reference, image, data_range=65535, **GAUSSIAN_SSIM),
        abs=1e-6,
    )


def test_stack_scores_are_the_mean_of_per_image_scores():
    references = np.stack([structured_image(), structured_image(scale=3.0)])
    images = np.stack([noisy(references[0], 0.05, seed=1), noisy(references[1], 0.3, seed=2)])

    for metric in (psnr, ssim, nrmse):
        per_image = [metric(reference, image) for reference, image in zip(references, images)]
        assert metric(references, images) == pytest.approx(np.mean(per_image))
    per_image_ms_ssim = [ms_ssim(r, i, scales=3) for r, i in zip(references, images)]
    assert ms_ssim(references, images, scales=3) == pytest.approx(np.mean(per_image_ms_ssim))


def test_psnr_of_identical_images_is_infinite():
    reference = structured_image()
    assert psnr(reference, reference.copy()) == np.inf


@pytest.mark.parametrize("data_range", [None, 1.0, 3.0])
def test_ms_ssim_with_one_scale_equals_ssim(data_range):
    reference = structured_image()
    image = noisy(reference, 0.1)
    assert ms_ssim(reference, image, data_range=data_range, scales=1) == pytest.approx(
        ssim(reference, image, data_range=data_range), abs=1e-12
    )


@pytest.mark.parametrize("scales", [1, 3, 5])
def test_ms_ssim_is_one_for_identical_images(scales):
    reference = structured_image()
    assert ms_ssim(reference, reference.copy(), scales=scales) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("scales", [1, 3, 5])
def test_ms_ssim_decreases_as_noise_increases(scales):
    reference = structured_image()
    scores = [
        ms_ssim(reference, noisy(reference, sigma, seed=4), data_range=1.0, scales=scales)
        for sigma in (0.01, 0.03, 0.1, 0.3, 1.0)
    ]
    assert all(earlier > later for earlier, later in zip(scores, scores[1:]))
    assert 0.0 <= scores[-1] < scores[0] < 1.0


def test_ms_ssim_rejects_unsupported_scales_and_too_small_images():
    reference = structured_image()
    with pytest.raises(NanoscopyError, match="1, 3 or 5"):
        ms_ssim(reference, reference, scales=4)
    small = structured_image(shape=(100, 100))
    with pytest.raises(NanoscopyError, match="176x176"):
        ms_ssim(small, small, scales=5)
    assert ms_ssim(small, small, scales=3) == pytest.approx(1.0)
    with pytest.raises(NanoscopyError, match="11x11"):
        ssim(small[:10], small[:10])


def test_dice_and_iou_on_hand_computed_masks():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[0, :3] = True  # 3 pixels
    b[0, 1:] = True  # 3 pixels, 2 shared with a, union 4

    assert dice(a, b) == pytest.approx(2 * 2 / (3 + 3))
    assert iou(a, b) == pytest.approx(2 / 4)
    assert dice(a, a) == iou(a, a) == 1.0
    assert dice(a, ~a) == iou(a, ~a) == 0.0


def test_dice_and_iou_count_any_nonzero_label_as_foreground():
    labels_a = np.array([[0, 1, 1], [0, 2, 0]])
    labels_b = np.array([[5, 5, 0], [0, 7, 0]])
    # foregrounds: a = {(0,1), (0,2), (1,1)}; b = {(0,0), (0,1), (1,1)}; 2 shared, union 4
    assert dice(labels_a, labels_b) == pytest.approx(2 * 2 / 6)
    assert iou(labels_a, labels_b) == pytest.approx(2 / 4)


def test_two_empty_masks_agree_perfectly():
    empty = np.zeros((5, 5), bool)
    assert dice(empty, empty) == 1.0
    assert iou(empty, empty) == 1.0
    assert dice(empty, np.ones((5, 5), bool)) == 0.0


def test_dice_equals_2_iou_over_1_plus_iou():
    rng = np.random.default_rng(11)
    for fraction in (0.05, 0.3, 0.7):
        a = rng.random((32, 32)) < fraction
        b = rng.random((32, 32)) < fraction
        overlap = iou(a, b)
        assert dice(a, b) == pytest.approx(2 * overlap / (1 + overlap))


def test_mask_stacks_score_as_the_mean_over_images():
    a = np.zeros((2, 4, 4), bool)
    b = np.zeros((2, 4, 4), bool)
    a[0, 0, :2] = b[0, 0, :2] = True  # identical: 1.0
    a[1, 0, 0] = True  # disjoint: 0.0
    b[1, 3, 3] = True
    assert dice(a, b) == pytest.approx(0.5)
    assert iou(a, b) == pytest.approx(0.5)


ALL_METRICS = [psnr, ssim, ms_ssim, nrmse, dice, iou]


@pytest.mark.parametrize("metric", ALL_METRICS)
def test_shape_mismatch_raises(metric):
    with pytest.raises(NanoscopyError, match="same shape"):
        metric(np.ones((200, 200)), np.ones((200, 201)))


@pytest.mark.parametrize("metric", ALL_METRICS)
def test_wrong_dimensionality_raises(metric):
    with pytest.raises(NanoscopyError, match="2D image"):
        metric(np.ones(200), np.ones(200))


@pytest.mark.parametrize("metric", [psnr, ssim, ms_ssim, nrmse, dice, iou])
def test_inputs_are_not_modified(metric):
    reference = structured_image()
    image = noisy(reference, 0.1)
    if metric in (dice, iou):
        reference, image = reference > 0.3, image > 0.3
    reference_before, image_before = reference.copy(), image.copy()

    metric(reference, image)

    np.testing.assert_array_equal(reference, reference_before)
    np.testing.assert_array_equal(image, image_before)


def test_constant_reference_needs_an_explicit_data_range():
    reference = np.full((32, 32), 3.0)
    image = noisy(reference, 0.1)
    with pytest.raises(NanoscopyError, match="data_range"):
        psnr(reference, image)
    assert np.isfinite(psnr(reference, image, data_range=1.0))
    with pytest.raises(NanoscopyError, match="positive"):
        ssim(reference, image, data_range=0)


def test_unknown_or_zero_nrmse_normalization_raises():
    reference = structured_image()
    with pytest.raises(NanoscopyError, match="normalization"):
        nrmse(reference, reference, normalization="max")
    with pytest.raises(NanoscopyError, match="zero"):
        nrmse(np.zeros((16, 16)), np.ones((16, 16)))
