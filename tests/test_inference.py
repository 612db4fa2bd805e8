"""The restoration engine: tiling, resampling, Monte-Carlo sampling, input checks."""

import numpy as np
import pytest
import torch

from napari_nanoscopy import Cancelled, NanoscopyError, Restorer, load_model, restore
from napari_nanoscopy.inference import sampling_mode
from napari_nanoscopy.models import build_generator
from napari_nanoscopy.packages import ModelPackage

from conftest import make_card


def interior(array, margin=8):
    return array[..., margin:-margin, margin:-margin]


def assert_close_relative(a, b, rtol=1e-4):
    scale = np.abs(b).max()
    assert np.abs(a - b).max() <= rtol * scale, np.abs(a - b).max() / scale


@pytest.mark.parametrize("name", ["tagan", "tagan-task", "l2l"])
def test_tiled_matches_untiled(packages_dir, smooth_image, name):
    restorer = Restorer(str(packages_dir / name), device="cpu")
    untiled = restorer.restore(smooth_image, samples=1)
    tiled = restorer.restore(smooth_image, samples=1, tile_size=64)
    assert tiled.provenance["tile_size"] == 64 and untiled.provenance["tile_size"] >= 160
    # windows are kept inside the image, so even the borders see the same context
    assert_close_relative(tiled.mean, untiled.mean)
    if untiled.task is not None:
        assert_close_relative(tiled.task, untiled.task)
        assert (tiled.labels == untiled.labels).mean() > 0.999


def test_tiles_are_really_used_and_halo_matters(packages_dir, smooth_image):
    """Without the halo a tiled pass would differ; guard against the test above passing trivially."""
    restorer = Restorer(str(packages_dir / "tagan"), device="cpu")
    calls = []
    restorer.network.register_forward_hook(lambda module, args, out: calls.append(args[0].shape))
    restorer.restore(smooth_image, samples=1, tile_size=64, batch_size=1)
    assert len(calls) == 3 * 3  # 160x176 in 64-px tiles
    assert calls[0][-1] == 64 + 2 * restorer.halo < 160
    assert restorer.halo >= restorer.package.generator.receptive_radius


def test_pixel_size_round_trip_identity_model(smooth_image):
    """A CARE U-Net with zeroed convolutions is the identity (residual): resampling must undo itself."""
    card = make_card(
        "l2l",
        dict(base_filters=4),
        normalization={"input": {"mode": "minmax", "range": [0.0, 1.0]}, "output": {"mode": "input"}},
    )
    generator = build_generator("l2l", base_filters=4)
    with torch.no_grad():
        for parameter in generator.parameters():
            parameter.zero_()
    package = ModelPackage(card=card, generator=generator.eval(), task_network=None, source="identity")
    restorer = Restorer(package, device="cpu")
    same = restorer.restore(smooth_image, pixel_size_nm=20.0)
    assert same.provenance["zoom"] == 1.0
    np.testing.assert_allclose(same.mean, smooth_image, rtol=1e-5, atol=1e-3)
    for pixel_size in (40.0, 12.5):
        result = restorer.restore(smooth_image, pixel_size_nm=pixel_size)
        assert result.mean.shape == smooth_image.shape
        assert result.provenance["zoom"] == pytest.approx(pixel_size / 20.0)
        error = np.abs(interior(result.mean, 4) - interior(smooth_image, 4))
        assert error.mean() < 0.02 * np.ptp(smooth_image)


def test_model_sees_image_at_its_pixel_size(packages_dir, smooth_image):
    restorer = Restorer(str(packages_dir / "l2l"), device="cpu")
    seen = []
    restorer.network.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[-2:]))
    restorer.restore(smooth_image, pixel_size_nm=40.0)  # 2x more model pixels than image pixels
    assert tuple(seen[0]) == (2 * 160, 2 * 176)  # one window, no halo at the image's borders


def test_mc_dropout_samples_differ(packages_dir, smooth_image):
    result = restore(smooth_image, str(packages_dir / "tagan"), device="cpu", samples=5, keep_samples=True, seed=3)
    assert result.samples.shape == (5,) + smooth_image.shape
    assert not np.allclose(result.samples[0], result.samples[1])
    assert result.std.shape == smooth_image.shape and result.std.max() > 0
    np.testing.assert_allclose(result.mean, result.samples.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(result.std, result.samples.std(axis=0, ddof=1), atol=1e-5)
    again = restore(smooth_image, str(packages_dir / "tagan"), device="cpu", samples=5, seed=3)
    np.testing.assert_array_equal(again.mean, result.mean)  # seeded sampling is reproducible


def test_no_dropout_means_zero_std(packages_dir, smooth_image):
    result = restore(smooth_image, str(packages_dir / "l2l"), device="cpu", samples=6)
    assert result.std is not None and np.all(result.std == 0)
    assert result.provenance["stochastic_passes"] == 1  # identical samples are not recomputed


def test_train_mode_sampling_leaves_running_stats(packages_dir, smooth_image):
    restorer = Restorer(str(packages_dir / "tagan"), device="cpu", mc_mode="train")
    before = {k: v.clone() for k, v in restorer.network.state_dict().items()}
    result = restorer.restore(smooth_image, samples=3)
    assert result.std.max() > 0 and result.provenance["mc_mode"] == "train"
    for key, value in restorer.network.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not restorer.network.training


def test_sampling_mode_switches_only_dropout(packages_dir):
    network = load_model(str(packages_dir / "tagan")).generator
    with sampling_mode(network, "dropout"):
        states = {type(m).__name__: m.training for m in network.modules()}
        assert states["Dropout"] and not states["BatchNorm2d"]
    assert not any(m.training for m in network.modules())


def test_task_outputs_and_segmentation(packages_dir, smooth_image):
    result = restore(smooth_image, str(packages_dir / "tagan-task"), device="cpu", samples=3, keep_samples=True)
    assert result.task_names == ["rings", "fibres"]
    assert result.task.shape == (2,) + smooth_image.shape
    assert result.task_samples.shape == (3, 2) + smooth_image.shape
    np.testing.assert_array_equal(result.segmentation, result.task > -0.5294)
    expected = np.where(result.segmentation.any(0), np.argmax(result.task + 0.5294, axis=0) + 1, 0)
    np.testing.assert_array_equal(result.labels, expected)


def test_stack_is_restored_plane_by_plane(packages_dir, smooth_image):
    stack = np.stack([smooth_image, smooth_image[::-1], smooth_image * 3 + 7])
    restorer = Restorer(str(packages_dir / "tagan"), device="cpu")
    result = restorer.restore(stack, samples=1)
    assert result.mean.shape == stack.shape
    for plane, restored in zip(stack, result.mean):
        np.testing.assert_allclose(restorer.restore(plane, samples=1).mean, restored, atol=1e-6)
    # percentile normalisation per plane: an affine change of intensities changes nothing
    np.testing.assert_allclose(result.mean[2], result.mean[0], atol=1e-5)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float16, np.float64])
def test_integer_and_float_dtypes(packages_dir, smooth_image, dtype):
    image = np.clip(smooth_image, 0, 250).astype(dtype)
    reference = restore(image.astype(np.float32), str(packages_dir / "l2l"), device="cpu").mean
    result = restore(image, str(packages_dir / "l2l"), device="cpu").mean
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, reference, rtol=1e-4, atol=1e-3)


def test_multichannel_input(packages_dir, smooth_image):
    image = np.stack([smooth_image, -np.ones_like(smooth_image), -np.ones_like(smooth_image)])
    restorer = Restorer(str(packages_dir / "tagan-live"), device="cpu")
    first = restorer.restore(image)
    last = restorer.restore(np.moveaxis(image, 0, -1).copy(), channel_axis=-1)
    assert first.mean.shape == smooth_image.shape
    np.testing.assert_allclose(first.mean, last.mean, atol=1e-6)
    stack = restorer.restore(np.stack([image, image]), channel_axis=1)
    assert stack.mean.shape == (2,) + smooth_image.shape


def test_progress_and_cancel(packages_dir, smooth_image):
    restorer = Restorer(str(packages_dir / "tagan"), device="cpu")
    seen = []
    restorer.restore(smooth_image, samples=2, tile_size=64, batch_size=3, progress=lambda d, t: seen.append((d, t)))
    assert [d for d, _ in seen] == list(range(1, len(seen) + 1)) and seen[-1][0] == seen[-1][1] == 6
    calls = []
    with pytest.raises(Cancelled):
        restorer.restore(smooth_image, tile_size=64, batch_size=1, should_cancel=lambda: len(calls) >= 2,
                         progress=lambda d, t: calls.append(d))
    assert calls == [1, 2]


@pytest.mark.parametrize(
    "image, message",
    [
        (np.full((64, 64), np.nan, dtype=np.float32), "NaN"),
        (np.where(np.eye(64, dtype=bool), np.inf, 1.0), "infinite"),
        (np.zeros((0, 64), dtype=np.float32), "empty"),
        (np.full((64, 64), 7, dtype=np.uint16), "constant"),
        (np.random.default_rng(0).random((20, 64)), "smaller than"),
        (np.ones(64), "2D"),
        (np.ones((64, 64), dtype=np.complex64), "data type"),
        (np.ones((64, 64), dtype=bool), "data type"),
    ],
)
def test_bad_inputs_raise_clear_errors(packages_dir, image, message):
    with pytest.raises(NanoscopyError, match=message):
        restore(image, str(packages_dir / "tagan"), device="cpu")


def test_wrong_channel_count_and_parameters(packages_dir, smooth_image):
    live = Restorer(str(packages_dir / "tagan-live"), device="cpu")
    with pytest.raises(NanoscopyError, match="takes 3 channels"):
        live.restore(smooth_image)
    with pytest.raises(NanoscopyError, match="has 2 along its channel axis"):
        live.restore(np.stack([smooth_image] * 2), channel_axis=0)
    single = Restorer(str(packages_dir / "tagan"), device="cpu")
    with pytest.raises(NanoscopyError, match="has 2 along"):
        single.restore(np.stack([smooth_image] * 2), channel_axis=0)
    with pytest.raises(NanoscopyError, match="not an axis"):
        single.restore(smooth_image, channel_axis=1)
    with pytest.raises(NanoscopyError, match="not an axis"):
        single.restore(np.stack([smooth_image]), channel_axis=3)
    for kwargs, message in [
        (dict(samples=0), "from 1 to 1000"),
        (dict(tile_size=8), "tile size"),
        (dict(pixel_size_nm=-3.0), "outside the 0.1-100000 nm"),
        (dict(batch_size=0), "batch size"),
    ]:
        with pytest.raises(NanoscopyError, match=message):
            single.restore(smooth_image, **kwargs)
    with pytest.raises(NanoscopyError, match="not available"):
        Restorer(str(packages_dir / "tagan"), device="cuda" if not torch.cuda.is_available() else "mps")
    with pytest.raises(NanoscopyError, match="mc_mode"):
        Restorer(str(packages_dir / "tagan"), mc_mode="magic")
