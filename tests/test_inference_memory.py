"""The restoration engine's speed paths and memory budget: channels-last, bf16, memory-aware windows."""

import copy

import numpy as np
import pytest
import torch

from napari_nanoscopy import NanoscopyError, Restorer, restore
from napari_nanoscopy import inference
from napari_nanoscopy.tiling import computed_pixels, plan_axis
from napari_nanoscopy.models import build_generator
from napari_nanoscopy.models.tagan import UnetGenerator
from napari_nanoscopy.packages import ModelPackage

from conftest import make_card, randomise_batchnorm

TINY = {
    "tagan": dict(ngf=4, n_blocks=2, dropout=0.5),
    "tagan-live": dict(ngf=4, n_blocks=2, dropout=0.5, in_channels=3),
    "tcan": dict(base_filters=4, depth=2, dfcan_filters=8, n_groups=2, n_fcab=1),
    "wang": dict(base_filters=4, depth=2),
    "l2l": dict(base_filters=4),
}
RAW = {"mode": "none"}


def raw_package(family):
    """A package whose input is not normalised and whose output maps [-1, 1] to [0, 1]."""
    torch.manual_seed(0)
    kwargs = TINY[family]
    generator = randomise_batchnorm(build_generator(family, **kwargs)).eval()
    card = make_card(family, kwargs, normalization={"input": [RAW] * generator.in_channels,
                                                    "output": {"mode": "range", "range": [-1.0, 1.0]}})
    return ModelPackage(card=card, generator=generator, task_network=None, source="test")


@pytest.mark.parametrize("family", list(TINY))
def test_channels_last_restoration_matches_a_plain_nchw_pass(family):
    """The engine runs channels-last; its one-window result is the float32 NCHW forward pass."""
    package = raw_package(family)
    reference = copy.deepcopy(package.generator)
    image = np.random.default_rng(0).uniform(-1, 1, (package.generator.in_channels, 96, 112)).astype(np.float32)
    restorer = Restorer(package, device="cpu")
    assert restorer.memory_format == torch.channels_last
    assert any(p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
               for p in restorer.network.parameters())
    result = restorer.restore(image if image.shape[0] > 1 else image[0], channel_axis=0 if image.shape[0] > 1 else None,
                              samples=1)
    with torch.inference_mode():
        expected = (reference(torch.from_numpy(image)[None])[0, 0].numpy() + 1) / 2
    assert result.mean.dtype == np.float32
    assert np.abs(result.mean - expected).max() <= 1e-4 * np.abs(expected).max()


def test_a_given_tile_whose_last_core_is_narrower_than_the_cross_fade(packages_dir, smooth_image):
    """160 px in 76-px tiles leaves an 8-px last core: it joins its neighbour instead of crashing the blend."""
    plan = plan_axis(160, 76, 40, inference.BLEND_WIDTH, 4)
    assert len(plan.starts) == 2 and plan.starts[-1] + plan.lengths[-1] == 160
    assert all(b - a >= inference.BLEND_WIDTH for a, b in plan.spans)
    np.testing.assert_allclose(sum(np.pad(w, (a, 160 - b)) for w, (a, b) in zip(plan.weights, plan.spans)), 1.0,
                               rtol=1e-6)
    image = np.concatenate([smooth_image, smooth_image[::-1]], axis=0)  # 320 px: 104-px tiles leave 8 px
    restorer = Restorer(str(packages_dir / "tagan-task"), device="cpu")
    untiled = restorer.restore(image, samples=1)
    tiled = restorer.restore(image, samples=1, tile_size=104)
    assert tiled.provenance["windows"] == 3  # 3 row bands (the 8-px core joined the last)
    assert np.abs(tiled.mean - untiled.mean).max() <= 1e-4 * np.abs(untiled.mean).max()
    assert np.abs(tiled.task - untiled.task).max() <= 1e-4 * np.abs(untiled.task).max()


bf16_here = inference.bf16_problem(torch.device("cpu")) is None


@pytest.mark.skipif(not bf16_here, reason="this CPU has no native bfloat16")
@pytest.mark.parametrize("name", ["tagan-task", "l2l"])
def test_bf16_restoration_is_float32_and_close_to_fp32(packages_dir, smooth_image, name):
    fp32 = Restorer(str(packages_dir / name), device="cpu")
    bf16 = Restorer(fp32.package, device="cpu", precision="bf16")
    assert all(p.dtype == torch.float32 for p in fp32.package.generator.parameters())  # the package is untouched
    assert all(p.dtype == torch.bfloat16 for p in bf16.network.parameters())
    exact, fast = fp32.restore(smooth_image, samples=1), bf16.restore(smooth_image, samples=1)
    assert fast.mean.dtype == np.float32 and fast.provenance["precision"] == "bf16"
    assert exact.provenance["precision"] == "fp32"
    scale = np.ptp(exact.mean)
    assert 0 < np.abs(fast.mean - exact.mean).max() <= 0.05 * scale  # bfloat16 rounding, not a different result
    if exact.task is not None:
        assert np.abs(fast.task - exact.task).max() <= 0.05 * np.ptp(exact.task)
    seeded = restore(smooth_image, str(packages_dir / name), device="cpu", precision="bf16", samples=3, seed=1)
    assert seeded.mean.dtype == np.float32 and seeded.provenance["precision"] == "bf16"


def test_bf16_where_it_is_not_supported_says_what_to_do(packages_dir, monkeypatch):
    monkeypatch.setattr(inference, "bf16_problem", lambda device: "this CPU has no native bfloat16 arithmetic")
    with pytest.raises(NanoscopyError, match="no native bfloat16.*use precision fp32"):
        Restorer(str(packages_dir / "l2l"), device="cpu", precision="bf16")
    with pytest.raises(NanoscopyError, match="precision must be one of fp32, bf16"):
        Restorer(str(packages_dir / "l2l"), device="cpu", precision="fp16")


def test_activation_bytes_are_measured_per_window_pixel(packages_dir):
    restorer = Restorer(str(packages_dir / "l2l"), device="cpu")
    per_pixel = restorer.activation_bytes_per_pixel()
    # a CARE U-Net with 4 filters holds at least two 4-channel float32 maps at full resolution
    assert 2 * 4 * 4 <= per_pixel < 2000
    assert restorer.activation_bytes_per_pixel() == per_pixel  # measured once
    if bf16_here:
        half = Restorer(restorer.package, device="cpu", precision="bf16").activation_bytes_per_pixel()
        assert half == pytest.approx(per_pixel / 2, rel=0.1)


def test_large_images_get_windows_within_the_memory_budget(packages_dir, monkeypatch):
    """An 8192x8192 float32 image (256 MiB): input + output + activations stay within 2.5x its size."""
    monkeypatch.setattr(inference, "_available_memory", lambda: 64 << 30)
    restorer = Restorer(str(packages_dir / "l2l"), device="cpu")
    mib = 1 << 20
    assert restorer.activation_allowance((8192, 8192), (8192, 8192)) == 128 * mib  # 2.5 x 256 - 2 x 256
    assert restorer.activation_allowance((2048, 2048), (2048, 2048)) == 640 * mib - 32 * mib  # small job
    with_std = restorer.activation_allowance((8192, 8192), (8192, 8192), samples=2)
    assert with_std == inference.MIN_ACTIVATION_BYTES  # 3 x 256 MiB are already spent on input, mean, std
    monkeypatch.setattr(inference, "_available_memory", lambda: 256 * mib)
    assert restorer.activation_allowance((2048, 2048), (2048, 2048)) == 120 * mib  # half of what the output leaves

    monkeypatch.setattr(inference, "_available_memory", lambda: 64 << 30)
    per_item, per_tile = restorer._window_bytes(1)
    plans, batch = restorer.plan((8192, 8192))
    window = plans[0].window * plans[1].window
    assert window * (per_item + per_tile) <= 128 * mib and batch >= 1
    assert len(plans[0].starts) * len(plans[1].starts) > 4
    small, _ = restorer.plan((1024, 1024))  # small images still run in one window
    assert computed_pixels(small) == 1.0


def test_memory_frugality_costs_at_most_twice_the_pixels(packages_dir, monkeypatch):
    """A wide halo in small windows would recompute most pixels: the windows grow instead."""
    monkeypatch.setattr(inference, "_available_memory", lambda: 64 << 30)
    restorer = Restorer(str(packages_dir / "l2l"), device="cpu")
    monkeypatch.setattr(restorer, "_probed_bytes", 20000.0)  # a very wide network: tiny windows by the rule
    plans, _ = restorer.plan((8192, 8192))
    assert computed_pixels(plans) <= inference.MAX_MEMORY_OVERHEAD


def test_cli_restore_precision(packages_dir, tmp_path, smooth_image, capsys):
    from napari_nanoscopy.cli import main
    from napari_nanoscopy.io import read_image, write_image

    source = tmp_path / "confocal.ome.tif"
    write_image(source, smooth_image, pixel_size_nm=20.0, axes="YX")
    out = tmp_path / "restored.ome.tif"
    if bf16_here:
        assert main(["restore", str(source), str(out), "--model", str(packages_dir / "l2l"), "--precision", "bf16"]) == 0
        restored = read_image(out)
        assert restored.metadata["precision"] == "bf16" and restored.data.dtype == np.float32
    folder = tmp_path / "restored"
    code = main(["restore", str(tmp_path), str(folder), "--model", str(packages_dir / "l2l"),
                 "--precision", "bf16", "--block", "64"])  # a folder, block by block: the batch path
    if bf16_here:
        assert code == 0
        restored = read_image(folder / "confocal_restored.ome.tif")
        assert restored.metadata["precision"] == "bf16" and restored.metadata["chunked"]
    else:
        assert code != 0 and "bf16 precision needs native bfloat16 support" in capsys.readouterr().err
        assert not folder.exists() or not any(folder.iterdir())


@pytest.mark.parametrize("build", [lambda: build_generator("tagan", **TINY["tagan"]),
                                   lambda: UnetGenerator(1, 2, ngf=4, n_down=6, dropout=0.5)],
                         ids=["resnet", "unet"])
def test_folded_batchnorm_gives_the_same_dropout_samples(build):
    """Convolution + BatchNorm folded into one convolution: same deterministic output, and the
    same Monte-Carlo dropout samples from the same seed; the original network is untouched."""
    network = randomise_batchnorm(build()).eval()
    for m in network.modules():  # trained scales and shifts, not the initial 1 and 0
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    folded = inference.fold_batchnorm(network)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in network.modules())
    x = torch.randn(2, network.in_channels, 64, 64)
    with torch.inference_mode():
        expected, got = network(x), folded(x)
        assert torch.allclose(got, expected, atol=1e-5)
        samples = []
        for net in (network, folded):
            with inference.sampling_mode(net, "dropout"):
                torch.manual_seed(5)
                samples.append(torch.stack([net(x) for _ in range(3)]))
    assert not torch.allclose(samples[0][0], samples[0][1])  # dropout is active
    assert torch.allclose(samples[1], samples[0], atol=1e-5)


def test_train_mode_sampling_keeps_batchnorm(packages_dir):
    """mc_mode "train" normalises with batch statistics, so its network is not folded."""
    dropout = Restorer(str(packages_dir / "tagan-task"), device="cpu")
    train = Restorer(dropout.package, device="cpu", mc_mode="train")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in dropout.network.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in train.network.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in dropout.package.generator.modules())
