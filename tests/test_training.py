"""Training: every family end to end, loss decrease, exact resume, cancellation, data checks,
augmentation, the TA-GAN-Live input and the loss functions."""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from scipy import ndimage
from skimage.metrics import structural_similarity
from torch import nn

from napari_nanoscopy import Cancelled, NanoscopyError, load_model, restore
from napari_nanoscopy.io import read_image, write_image
from napari_nanoscopy.training import (
    TRAINING_FAMILIES,
    PatchSampler,
    checkpoint_folder,
    load_training_data,
    train,
    training_defaults,
)
from napari_nanoscopy.training.datasets import LIVE_GRID_CELLS, dihedral, normalization_spec
from napari_nanoscopy.training.losses import (
    gan_loss,
    ms_ssim,
    relativistic_discriminator_loss,
    relativistic_generator_loss,
    ssim,
)
from napari_nanoscopy.training.trainers import calibrate_thresholds

SIZE = 48
PATCH = 32
CONDITIONS = {"p_sted": 0.15, "p_ex": 2e-6, "pdt": 1e-5, "pixelsize": 2e-8}
# Tiny widths: the point is the mechanics, not the quality.
TINY = {
    "tagan": dict(
        generator_kwargs=dict(ngf=4, n_blocks=1), discriminator_kwargs=dict(ndf=4), task=dict(kwargs=dict(ngf=4, n_blocks=1))
    ),
    "pix2pix": dict(generator_kwargs=dict(ngf=4, n_blocks=1), discriminator_kwargs=dict(ndf=4)),
    "tagan-live": dict(
        generator_kwargs=dict(ngf=4, n_blocks=1), discriminator_kwargs=dict(ndf=4), task=dict(kwargs=dict(ngf=4, n_down=3))
    ),
    "unet-live": dict(task=dict(kwargs=dict(ngf=4, n_down=3)), loss=dict(class_weights=[1.0, 2.5])),
    "tcan": dict(
        generator_kwargs=dict(base_filters=4, depth=2, dfcan_filters=4, n_groups=1, n_fcab=1),
        discriminator_kwargs=dict(ndf=2, n_blocks=2),
    ),
    "wang": dict(
        generator_kwargs=dict(base_filters=4, depth=2), discriminator_kwargs=dict(ndf=2, n_blocks=2), loss=dict(ssim=1.0)
    ),
    "l2l": dict(generator_kwargs=dict(base_filters=4)),
}
PACKAGE_FAMILY = {"pix2pix": "tagan", "unet-live": "l2l"}
TASK_FAMILIES = ("tagan", "tagan-live", "unet-live")


def write_pairs(root, n=6, size=SIZE, seed=0, task=True, conditions=CONDITIONS):
    """Spots blurred widely (input) and narrowly (target), 2-channel masks of the sharp spots."""
    rng = np.random.default_rng(seed)
    for folder in ("input", "target") + (("task",) if task else ()):
        (root / folder).mkdir(parents=True)
    for i in range(n):
        spots = np.zeros((size, size), np.float32)
        rows, cols = rng.integers(0, size, (2, 12))
        spots[rows, cols] = rng.uniform(50, 100, 12)
        sharp = ndimage.gaussian_filter(spots, 1.0)
        confocal = ndimage.gaussian_filter(spots, 3.0) * 10 + rng.poisson(2.0, spots.shape)
        write_image(root / "input" / f"{i:02d}.tif", confocal.astype(np.float32), pixel_size_nm=20.0)
        write_image(root / "target" / f"{i:02d}.tif", (sharp * 10 + rng.poisson(1.0, spots.shape)).astype(np.float32), pixel_size_nm=20.0)
        if task:
            masks = np.stack([sharp > np.percentile(sharp, 90), sharp > np.percentile(sharp, 97)]).astype(np.uint8)
            write_image(root / "task" / f"{i:02d}.tif", masks, pixel_size_nm=20.0, axes="CYX", channel_names=["rings", "fibres"])
    (root / "dataset.json").write_text(json.dumps({"kind": "spots", "conditions": conditions}))
    return root


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return write_pairs(tmp_path_factory.mktemp("data") / "pairs")


@pytest.fixture
def copy_of(pairs, tmp_path):
    def copy():
        return shutil.copytree(pairs, tmp_path / "copy")

    return copy


def live_image(image):
    return np.stack([image, -np.ones_like(image), -np.ones_like(image)])


# --- every family end to end ------------------------------------------------------------------


@pytest.mark.parametrize("family", TRAINING_FAMILIES)
def test_every_family_trains_and_writes_a_package_that_restores(family, pairs, tmp_path):
    progress = []
    card = train(
        family, pairs, tmp_path / family, steps=2, patch=PATCH, batch=2, device="cpu", seed=1,
        callback=lambda step, total, losses: progress.append((step, total, losses)), **TINY[family],
    )
    assert [(step, total) for step, total, _ in progress] == [(1, 2), (2, 2)]
    assert all(np.isfinite(list(losses.values())).all() for _, _, losses in progress)

    package = load_model(tmp_path / family)
    assert package.card.to_dict() == card.to_dict()
    assert card.family == PACKAGE_FAMILY.get(family, family)
    assert card.pixel_size_nm == 20.0
    assert card.acquisition == CONDITIONS
    assert card.metrics == {}
    assert card.default_samples == (10 if family in ("tagan", "tagan-live", "pix2pix") else 1)
    training = card.training
    assert training["method"] == family and training["n_pairs"] == 6 and training["dataset_kind"] == "spots"
    assert (training["steps"], training["patch"], training["batch"], training["seed"]) == (2, PATCH, 2, 1)
    assert set(training["final_losses"]) == set(progress[-1][2])
    assert training["final_losses"] == pytest.approx(progress[-1][2])
    assert training["device"] == "cpu" and training["torch_version"] == torch.__version__

    value_range = [0.0, 1.0] if family in ("tcan", "wang", "l2l") else [-1.0, 1.0]
    expected_input = {"mode": "percentile", "low": 1.0, "high": 99.8, "range": value_range}
    inputs = card.normalization["input"]
    if family == "tagan-live":
        assert inputs == [expected_input, {"mode": "none"}, {"mode": "none"}]
        assert card.input_channels == ["confocal", "STED patch", "patch mask"]
    else:
        assert inputs == expected_input
    output = card.normalization["output"]
    assert output == ({"mode": "input"} if family == "l2l" else {"mode": "range", "range": value_range})

    image = read_image(pairs / ("target" if family == "unet-live" else "input") / "00.tif").data
    result = restore(live_image(image) if family == "tagan-live" else image, package, device="cpu", samples=2)
    assert result.mean.shape == (SIZE, SIZE) and np.isfinite(result.mean).all()
    if family in TASK_FAMILIES:
        assert card.task["outputs"] == ["rings", "fibres"] and card.task["kind"] == "segmentation"
        assert len(card.task["thresholds"]) == 2 and all(-1 < t < 1 for t in card.task["thresholds"])
        assert card.task["threshold_method"].startswith("best Dice")
        assert card.task["target_normalization"] == {"mode": "fixed", "min": 0.0, "max": 1.0, "range": [-1.0, 1.0]}
        assert result.task.shape == (2, SIZE, SIZE) and result.labels.shape == (SIZE, SIZE)
    else:
        assert card.task is None and result.task is None


def test_training_normalises_exactly_as_the_restorer_does(pairs, tmp_path):
    # A U-Net-Live package's generator is the identity, so restoring shows the normalised input.
    card = train("unet-live", pairs, tmp_path / "seg", steps=1, patch=PATCH, batch=1, device="cpu", **TINY["unet-live"])
    data = load_training_data(pairs, normalization=card.normalization["input"], need_input=False)
    raw = read_image(pairs / "target" / "03.tif").data
    restored = restore(raw, tmp_path / "seg", device="cpu").mean
    np.testing.assert_allclose(restored, (data.targets[3][0] + 1) / 2, atol=1e-6)


def test_l2l_training_lowers_the_loss(pairs, tmp_path):
    losses = []
    train(
        "l2l", pairs, tmp_path / "l2l", steps=40, patch=PATCH, batch=4, device="cpu", seed=0,
        generator_kwargs=dict(base_filters=8), callback=lambda step, total, values: losses.append(values["ms_ssim_loss"]),
    )
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.8 * first, (first, last)


# --- checkpoints ------------------------------------------------------------------------------


def test_stop_writes_a_checkpoint_and_resume_matches_an_uninterrupted_run(pairs, tmp_path):
    settings = dict(steps=6, patch=PATCH, batch=2, device="cpu", seed=3, checkpoint_every=100, **TINY["tagan"])
    whole = train("tagan", pairs, tmp_path / "whole", **settings)

    done = []
    with pytest.raises(Cancelled, match="after 3 of 6 steps"):
        train("tagan", pairs, tmp_path / "parts", should_stop=lambda: len(done) == 3,
              callback=lambda *args: done.append(args), **settings)
    assert (checkpoint_folder(tmp_path / "parts") / "checkpoint.pt").is_file()
    assert not (tmp_path / "parts").exists()
    with pytest.raises(NanoscopyError, match="pass resume=True"):
        train("tagan", pairs, tmp_path / "parts", **settings)
    with pytest.raises(NanoscopyError, match="other settings.*seed"):
        train("tagan", pairs, tmp_path / "parts", resume=True, **{**settings, "seed": 4})

    resumed = train("tagan", pairs, tmp_path / "parts", resume=True, callback=lambda *args: done.append(args), **settings)
    assert [args[0] for args in done] == [1, 2, 3, 4, 5, 6]
    assert resumed.training["resumed"] and resumed.training["final_losses"] == whole.training["final_losses"]
    assert resumed.task["thresholds"] == whole.task["thresholds"]
    expected, actual = load_file(tmp_path / "whole" / "weights.safetensors"), load_file(tmp_path / "parts" / "weights.safetensors")
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[key], actual[key]) for key in expected)


def test_resume_needs_a_checkpoint_and_the_output_must_be_new(pairs, tmp_path):
    with pytest.raises(NanoscopyError, match="no checkpoint"):
        train("l2l", pairs, tmp_path / "none", steps=1, resume=True, patch=PATCH, **TINY["l2l"])
    (tmp_path / "taken").mkdir()
    with pytest.raises(NanoscopyError, match="already exists"):
        train("l2l", pairs, tmp_path / "taken", steps=1, patch=PATCH, **TINY["l2l"])


# --- data folders -----------------------------------------------------------------------------


def _empty_input(root):
    for path in (root / "input").iterdir():
        path.unlink()


def _unmatched(root):
    (root / "target" / "05.tif").rename(root / "target" / "99.tif")


def _shape_mismatch(root):
    write_image(root / "target" / "02.tif", np.ones((40, 48), np.float32), pixel_size_nm=20.0)


def _no_task(root):
    shutil.rmtree(root / "task")


def _constant(root):
    write_image(root / "input" / "01.tif", np.full((SIZE, SIZE), 7, np.float32), pixel_size_nm=20.0)


def _other_pixel_size(root):
    image = read_image(root / "input" / "04.tif").data
    write_image(root / "input" / "04.tif", image, pixel_size_nm=30.0)


def _no_target_folder(root):
    shutil.rmtree(root / "target")


@pytest.mark.parametrize(
    "family, damage, message",
    [
        ("l2l", _empty_input, r"input holds no TIFF images"),
        ("l2l", _unmatched, r"1 image\(s\) in input/ have no partner in target/ \(05\).*99"),
        ("l2l", _shape_mismatch, r"02.tif is 48x48 pixels but .*02.tif is 40x48; .*same size"),
        ("tagan", _no_task, r"no task/ folder.*pretrained"),
        ("unet-live", _no_task, r"no task/ folder"),
        ("l2l", _constant, r"01.tif is constant"),
        ("l2l", _other_pixel_size, r"30 nm pixels but .* 20 nm; resample"),
        ("l2l", _no_target_folder, r"has no target/ folder"),
    ],
)
def test_bad_training_folders_are_refused_with_a_clear_message(family, damage, message, copy_of, tmp_path):
    root = copy_of()
    damage(root)
    with pytest.raises(NanoscopyError, match=message):
        train(family, root, tmp_path / "model", steps=1, patch=PATCH, device="cpu", **TINY[family])
    assert not (tmp_path / "model").exists() and not checkpoint_folder(tmp_path / "model").exists()


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(patch=30), r"multiple of 4"),
        (dict(patch=64), r"larger than the smallest training image \(48"),
        (dict(patch=PATCH, loss=dict(kind="l2")), r"'ms-ssim' or 'l1'"),
        (dict(patch=PATCH, loss=dict(scales=4)), r"1, 3 or 5 scales"),
        (dict(patch=PATCH, loss=dict(weight=1)), r"no setting 'weight'"),
        (dict(patch=PATCH, task=dict(network="unet128")), r"trains no task network"),
        (dict(patch=PATCH, steps=0), r"steps must be a whole number from 1 to \d+, not 0"),
    ],
)
def test_bad_settings_are_refused(options, message, pairs, tmp_path):
    settings = {"steps": 1, **TINY["l2l"], **options}
    with pytest.raises(NanoscopyError, match=message):
        train("l2l", pairs, tmp_path / "model", device="cpu", **settings)


def test_unknown_family_is_refused(pairs, tmp_path):
    with pytest.raises(NanoscopyError, match="Unknown training family 'care'; choose one of: tagan, "):
        train("care", pairs, tmp_path / "model", steps=1)


# --- patches ----------------------------------------------------------------------------------


def test_dihedral_gives_the_eight_distinct_flips_and_rotations():
    array = np.arange(12.0).reshape(1, 3, 4)
    images = {dihedral(array, k).tobytes() + bytes(dihedral(array, k).shape) for k in range(8)}
    assert len(images) == 8


def _aligned_folder(root):
    """input raw R, target 3R + 5 (the same image once percentile-normalised), task R > median."""
    rng = np.random.default_rng(5)
    for folder in ("input", "target", "task"):
        (root / folder).mkdir(parents=True)
    for i in range(3):
        field = ndimage.gaussian_filter(rng.normal(size=(40, 52)), 2).astype(np.float32)
        write_image(root / "input" / f"{i}.tif", field)
        write_image(root / "target" / f"{i}.tif", 3 * field + 5)
        write_image(root / "task" / f"{i}.tif", (field > np.median(field)).astype(np.uint8))
    return root


def test_augmentation_keeps_input_target_and_task_aligned(tmp_path):
    spec = normalization_spec(None, (-1.0, 1.0))
    data = load_training_data(_aligned_folder(tmp_path / "aligned"), normalization=spec, use_task=True)
    sampler = PatchSampler(data, patch=16, batch=4, seed=7)
    crops, seen_transforms = set(), set()
    for index in range(64):
        sample = sampler.sample(index)
        np.testing.assert_allclose(sample["target"], sample["input"], atol=1e-5)
        inside, outside = sample["input"][sample["task"] > 0], sample["input"][sample["task"] < 0]
        assert inside.min() > outside.max()
        crops.add(sample["input"].tobytes())
        # Which flip/rotation undoes the augmentation, so that the patch is a crop of its pair?
        windows = np.lib.stride_tricks.sliding_window_view(data.inputs[sampler._pair_index(index)][0], (16, 16))
        seen_transforms.update(
            k for k in range(8) if (windows == dihedral(sample["input"][0], k)).all(axis=(-2, -1)).any()
        )
    assert len(crops) == 64 and len(seen_transforms) == 8

    again = PatchSampler(data, patch=16, batch=4, seed=7).batch_at(3, torch.device("cpu"))
    torch.testing.assert_close(again["input"], torch.from_numpy(np.stack([sampler.sample(12 + b)["input"] for b in range(4)])))
    other = PatchSampler(data, patch=16, batch=4, seed=8).batch_at(3, torch.device("cpu"))
    assert not torch.equal(other["input"], again["input"])


def test_tagan_live_input_reveals_one_or_two_sted_cells(pairs):
    spec = normalization_spec(None, (-1.0, 1.0))
    data = load_training_data(pairs, normalization=spec)
    plain = PatchSampler(data, patch=PATCH, batch=1, seed=2)
    live = PatchSampler(data, patch=PATCH, batch=1, seed=2, target_clip=(-1.0, 1.0), live_spec=spec)
    cell = PATCH // LIVE_GRID_CELLS
    counts = set()
    for index in range(20):
        sample, reference = live.sample(index), plain.sample(index)
        confocal, sted, mask = sample["input"]
        np.testing.assert_array_equal(confocal, reference["input"][0])
        assert set(np.unique(mask)) <= {-1.0, 1.0}
        revealed = mask > 0
        counts.add(int(revealed.sum()) // cell**2)
        assert np.all(sted[~revealed] == -1.0)
        # The revealed pixels are the real STED, normalised over themselves.
        assert np.corrcoef(sted[revealed], reference["target"][0][revealed])[0, 1] > 0.99999
        np.testing.assert_allclose(np.percentile(sted[revealed], [1.0, 99.8]), [-1.0, 1.0], atol=1e-5)
    assert counts == {1, 2}


# --- task networks ----------------------------------------------------------------------------


class _Identity(nn.Module):
    size_multiple = 1

    def forward(self, x):
        return x


def test_thresholds_are_calibrated_for_the_best_dice():
    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 1, (2, 30, 30)).astype(np.float32)
    masks = np.stack([image[0] > 0.3, np.zeros((30, 30), bool)])
    assert calibrate_thresholds(_Identity(), [image], [masks], torch.device("cpu")) == [0.3, 0.0]


def test_tagan_live_uses_a_pretrained_frozen_unet_live(pairs, copy_of, tmp_path):
    train("unet-live", pairs, tmp_path / "unet", steps=2, patch=PATCH, batch=1, device="cpu", **TINY["unet-live"])
    pretrained = load_model(tmp_path / "unet")
    root = copy_of()
    shutil.rmtree(root / "task")  # TA-GAN-Live's live data had no annotations
    card = train(
        "tagan-live", root, tmp_path / "live", steps=2, patch=PATCH, batch=1, device="cpu",
        generator_kwargs=dict(ngf=4, n_blocks=1), discriminator_kwargs=dict(ndf=4), task={"pretrained": str(tmp_path / "unet")},
    )
    assert card.task["thresholds"] == pretrained.card.task["thresholds"]
    assert card.task["network"] == "pretrained, frozen" and card.training["task_network_source"] == str(tmp_path / "unet")
    weights, original = load_file(tmp_path / "live" / "weights.safetensors"), load_file(tmp_path / "unet" / "weights.safetensors")
    task_keys = [key for key in original if key.startswith("task.")]
    assert task_keys and all(torch.equal(weights[key], original[key]) for key in task_keys)


def test_continuous_task_maps_are_scaled_and_can_be_inverted(copy_of, tmp_path):
    root = copy_of()
    for path in (root / "task").iterdir():  # a distance map, like the TA-GAN localisation task
        masks = read_image(path).data
        write_image(path, np.cbrt(ndimage.distance_transform_edt(masks[0] == 0)).astype(np.float32))
    card = train("tagan", root, tmp_path / "loc", steps=1, patch=PATCH, batch=1, device="cpu",
                 **{**TINY["tagan"], "task": dict(kwargs=dict(ngf=4, n_blocks=1), invert=True, outputs=["nanodomains"])})
    scaling = card.task["target_normalization"]
    assert card.task["kind"] == "regression" and card.task["thresholds"] == [0.0]
    assert card.task["outputs"] == ["nanodomains"] and scaling["range"] == [1.0, -1.0] and scaling["min"] == 0.0
    assert scaling["max"] > 1


# --- losses -----------------------------------------------------------------------------------


def _smooth_pair(size=64, noise=0.2, seed=0):
    rng = np.random.default_rng(seed)
    clean = ndimage.gaussian_filter(rng.normal(size=(size, size)), 3)
    clean = (clean - clean.min()) / (clean.max() - clean.min())
    return clean, np.clip(clean + rng.normal(0, noise, clean.shape), 0, 1)


def test_ssim_matches_scikit_image_and_ms_ssim_orders_images():
    clean, noisy = _smooth_pair()
    expected = structural_similarity(clean, noisy, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
    as_tensor = lambda a: torch.from_numpy(a)[None, None]  # noqa: E731
    assert ssim(as_tensor(clean), as_tensor(noisy), data_range=1.0).item() == pytest.approx(expected, abs=1e-6)
    _, noisier = _smooth_pair(noise=0.4)
    for scales in (1, 3, 5):
        assert ms_ssim(as_tensor(clean), as_tensor(clean), 1.0, scales).item() == pytest.approx(1.0, abs=1e-6)
        assert ms_ssim(as_tensor(clean), as_tensor(noisy), 1.0, scales) > ms_ssim(as_tensor(clean), as_tensor(noisier), 1.0, scales)
    prediction = as_tensor(noisy).clone().requires_grad_(True)
    (1 - ms_ssim(prediction, as_tensor(clean), 1.0, 5)).backward()
    assert torch.isfinite(prediction.grad).all() and prediction.grad.abs().sum() > 0
    with pytest.raises(NanoscopyError, match="at least 48 pixels"):
        ms_ssim(as_tensor(clean[:40, :40]), as_tensor(clean[:40, :40]), 1.0, 5)


def test_gan_losses_follow_the_papers():
    assert gan_loss(torch.zeros(3, 1), real=True).item() == pytest.approx(np.log(2))
    fake, real = torch.tensor([[0.3], [-1.2]]), torch.tensor([[1.5], [0.1]])
    bce = nn.functional.binary_cross_entropy_with_logits
    paper_d = 0.5 * (bce(fake - real, torch.zeros(2, 1)) + bce(real - fake, torch.ones(2, 1)))
    assert relativistic_discriminator_loss(fake, real).item() == pytest.approx(paper_d.item())
    assert relativistic_generator_loss(fake, real).item() == pytest.approx(bce(fake - real, torch.ones(2, 1)).item())


def test_training_defaults_come_from_the_papers():
    assert training_defaults("tagan")["lr"] == 2e-4 and training_defaults("tagan")["betas"] == (0.5, 0.999)
    assert training_defaults("l2l")["loss"] == {"kind": "ms-ssim", "scales": 3} and training_defaults("l2l")["batch"] == 16
    assert training_defaults("tcan")["lr_discriminator"] == 5e-5 and training_defaults("wang")["patch"] == 64
