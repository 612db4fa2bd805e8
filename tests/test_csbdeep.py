"""CSBDeep/CARE model folders imported into the l2l family, checked against an independent
numpy forward pass of the Keras U-Net computed from the same HDF5 arrays.

The .h5 is written here in Keras 2's documented HDF5 weights layout (``layer_names`` on the
root, one group per layer with ``weight_names``, kernels HWIO), the layout CSBDeep's
``model.save_weights`` produces, since TensorFlow is too heavy to install for the tests.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from napari_nanoscopy import NanoscopyError, Restorer, load_model
from napari_nanoscopy.cli import main
from napari_nanoscopy.interop import import_csbdeep, load_csbdeep
from napari_nanoscopy.io import read_image, write_image


def care_layers(depth: int, n_first: int, kern: int, n_in: int, n_out: int, convs: int = 2, seed: int = 0):
    """Keras layer names and arrays of csbdeep.internals.nets.custom_unet, in creation order."""
    rng = np.random.default_rng(seed)
    layers = [("input", None)]
    channels = n_in

    def conv(name: str, filters: int, size: int = kern):
        nonlocal channels
        fan_in = size * size * channels
        kernel = rng.normal(0, np.sqrt(2.0 / fan_in), (size, size, channels, filters)).astype(np.float32)
        bias = rng.normal(0, 0.05, filters).astype(np.float32)
        layers.append((name, (kernel, bias)))
        channels = filters

    skips = []
    for n in range(depth):
        for i in range(convs):
            conv(f"down_level_{n}_no_{i}", n_first * 2**n)
        skips.append(channels)
        layers.append((f"max_pooling2d_{n + 1}", None))
    for i in range(convs - 1):
        conv(f"middle_{i}", n_first * 2**depth)
    conv(f"middle_{convs}", n_first * 2 ** max(0, depth - 1))
    for n in reversed(range(depth)):
        layers.append((f"up_sampling2d_{depth - n}", None))
        layers.append((f"concatenate_{depth - n}", None))
        channels += skips[n]
        for i in range(convs - 1):
            conv(f"up_level_{n}_no_{i}", n_first * 2**n)
        conv(f"up_level_{n}_no_{convs}", n_first * 2 ** max(0, n - 1))
    conv(f"conv2d_{len([l for l in layers if l[1] is not None]) + 1}", n_out, size=1)
    layers.append(("add_1", None))
    layers.append(("activation_1", None))
    return layers


def write_keras_h5(path, layers, whole_model: bool = False) -> None:
    with h5py.File(path, "w") as handle:
        root = handle.create_group("model_weights") if whole_model else handle
        root.attrs["layer_names"] = np.array([name.encode() for name, _ in layers])
        root.attrs["backend"] = b"tensorflow"
        root.attrs["keras_version"] = b"2.10.0"
        for name, arrays in layers:
            group = root.create_group(name)
            if arrays is None:
                group.attrs["weight_names"] = np.array([], dtype="S1")
                continue
            names = [f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()]
            group.attrs["weight_names"] = np.array(names)
            inner = group.create_group(name)
            inner.create_dataset("kernel:0", data=arrays[0])
            inner.create_dataset("bias:0", data=arrays[1])


def care_config(depth=2, n_first=8, kern=3, n_in=1, n_out=1, **extra):
    # the fields of csbdeep.models.Config as CARE writes them to config.json
    config = {
        "n_dim": 2, "axes": "YXC", "n_channel_in": n_in, "n_channel_out": n_out, "train_checkpoint": "weights_best.h5",
        "train_checkpoint_last": "weights_last.h5", "train_checkpoint_epoch": "weights_now.h5", "probabilistic": False,
        "unet_residual": n_in == n_out, "unet_n_depth": depth, "unet_kern_size": kern, "unet_n_first": n_first,
        "unet_last_activation": "linear", "unet_input_shape": [None, None, n_in], "train_loss": "mae",
        "train_epochs": 100, "train_steps_per_epoch": 400, "train_learning_rate": 0.0004, "train_batch_size": 16,
    }
    config.update(extra)
    return config


def make_care_folder(folder, seed=0, whole_model=False, **config_kwargs):
    folder.mkdir(parents=True, exist_ok=True)
    config = care_config(**config_kwargs)
    layers = care_layers(config["unet_n_depth"], config["unet_n_first"], config["unet_kern_size"],
                         config["n_channel_in"], config["n_channel_out"], seed=seed)
    (folder / "config.json").write_text(json.dumps(config))
    write_keras_h5(folder / "weights_best.h5", layers, whole_model=whole_model)
    return folder, config, dict(l for l in layers if l[1] is not None)


# --- the independent reference: the Keras graph in numpy, channels last ------------------------


def np_conv(x, kernel, bias, relu=True):
    """Keras Conv2D(padding='same') on (H, W, C) with an HWIO kernel: cross-correlation."""
    kh, kw = kernel.shape[:2]
    py, px = kh // 2, kw // 2
    padded = np.pad(x, ((py, py), (px, px), (0, 0)))
    h, w = x.shape[:2]
    out = np.zeros((h, w, kernel.shape[3]), dtype=np.float64)
    for i in range(kh):
        for j in range(kw):
            out += padded[i:i + h, j:j + w, :] @ kernel[i, j].astype(np.float64)
    out += bias
    return np.maximum(out, 0) if relu else out


def np_care_unet(x, weights, config, convs=2):
    """csbdeep custom_unet forward pass: x is (H, W, C) in normalised units."""
    depth = config["unet_n_depth"]
    layer, skips = x.astype(np.float64), []
    for n in range(depth):
        for i in range(convs):
            layer = np_conv(layer, *weights[f"down_level_{n}_no_{i}"])
        skips.append(layer)
        h, w, c = layer.shape
        layer = layer.reshape(h // 2, 2, w // 2, 2, c).max(axis=(1, 3))  # MaxPooling2D(2)
    for name in [f"middle_{i}" for i in range(convs - 1)] + [f"middle_{convs}"]:
        layer = np_conv(layer, *weights[name])
    for n in reversed(range(depth)):
        up = layer.repeat(2, axis=0).repeat(2, axis=1)  # UpSampling2D(2), nearest
        layer = np.concatenate([up, skips[n]], axis=-1)
        for name in [f"up_level_{n}_no_{i}" for i in range(convs - 1)] + [f"up_level_{n}_no_{convs}"]:
            layer = np_conv(layer, *weights[name])
    final = [k for k in weights if k.startswith("conv2d_")][0]
    out = np_conv(layer, *weights[final], relu=False)
    if config["unet_residual"]:
        out = out + x
    return out


def np_care_predict(image, weights, config, pmin=2.0, pmax=99.8):
    """CARE.predict with its default PercentileNormalizer (do_after=True) on a 2D image."""
    low, high = np.percentile(image, [pmin, pmax])
    normalised = (image.astype(np.float64) - low) / (high - low)
    out = np_care_unet(normalised[..., None], weights, config)[..., 0]
    return out * (high - low) + low


def test_network_matches_numpy_keras_forward_pass(tmp_path):
    folder, config, weights = make_care_folder(tmp_path / "care", kern=5)
    package = load_csbdeep(folder)
    assert package.card.family == "l2l"
    assert package.card.generator["kernel_size"] == 5 and package.card.generator["residual"] is True
    rng = np.random.default_rng(1)
    x = rng.random((40, 48)).astype(np.float32)
    import torch

    with torch.inference_mode():
        ours = package.generator(torch.from_numpy(x)[None, None])[0, 0].numpy()
    reference = np_care_unet(x[..., None], weights, config)[..., 0]
    assert np.abs(reference).max() > 0.1  # not a trivially zero network
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())


def test_non_residual_multichannel_and_whole_model_file(tmp_path):
    folder, config, weights = make_care_folder(tmp_path / "care2", n_in=2, n_out=1, depth=1, n_first=4,
                                               whole_model=True, seed=3)
    package = load_csbdeep(folder)
    assert package.card.generator["residual"] is False
    assert len(package.card.input_channels) == 2
    x = np.random.default_rng(2).random((32, 36, 2)).astype(np.float32)
    import torch

    with torch.inference_mode():
        ours = package.generator(torch.from_numpy(x.transpose(2, 0, 1).copy())[None])[0, 0].numpy()
    reference = np_care_unet(x, weights, config)[..., 0]
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())


def test_restorer_reproduces_care_predict_in_input_units_tiled_and_untiled(tmp_path):
    folder, config, weights = make_care_folder(tmp_path / "care")
    rng = np.random.default_rng(4)
    image = (rng.poisson(40, (96, 112)) + 300).astype(np.uint16)
    expected = np_care_predict(image, weights, config)
    restorer = Restorer(load_model(folder), device="cpu")  # load_model takes the folder directly
    untiled = restorer.restore(image).mean
    tiled = restorer.restore(image, tile_size=64).mean
    scale = np.abs(expected).max()
    np.testing.assert_allclose(untiled, expected, rtol=1e-4, atol=1e-4 * scale)
    np.testing.assert_allclose(tiled, expected, rtol=1e-4, atol=1e-4 * scale)


def test_import_to_package_and_zip_and_cli(tmp_path):
    folder, config, weights = make_care_folder(tmp_path / "my_care")
    card = import_csbdeep(folder, tmp_path / "pkg")
    assert card.weights_sha256 and card.training["csbdeep_config"]["unet_n_first"] == 8
    image = (np.random.default_rng(5).random((64, 64)) * 1000).astype(np.float32)
    from_package = Restorer(tmp_path / "pkg", device="cpu").restore(image).mean
    from_folder = Restorer(folder, device="cpu").restore(image).mean
    np.testing.assert_array_equal(from_package, from_folder)

    # a zipped CSBDeep folder (as people share them) loads too
    import shutil

    shutil.make_archive(str(tmp_path / "shared"), "zip", tmp_path, "my_care")
    from_zip = Restorer(tmp_path / "shared.zip", device="cpu").restore(image).mean
    np.testing.assert_array_equal(from_zip, from_folder)

    write_image(tmp_path / "in.ome.tif", image, pixel_size_nm=20.0, axes="YX")
    assert main(["restore", str(tmp_path / "in.ome.tif"), str(tmp_path / "out.ome.tif"), "--model", str(folder)]) == 0
    written = read_image(tmp_path / "out.ome.tif")
    np.testing.assert_allclose(written.data, from_folder, rtol=1e-6)
    assert written.metadata["family"] == "l2l"

    assert main(["import-csbdeep", str(folder), str(tmp_path / "cli_pkg.zip")]) == 0
    assert load_model(tmp_path / "cli_pkg.zip").card.family == "l2l"


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(probabilistic=True), "probabilistic"),
        (dict(n_dim=3, axes="ZYXC"), "3D"),
        (dict(unet_last_activation="relu"), "activation"),
    ],
)
def test_unsupported_configurations_are_refused(tmp_path, change, message):
    folder, _, _ = make_care_folder(tmp_path / "care")
    config = json.loads((folder / "config.json").read_text())
    config.update(change)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(NanoscopyError, match=message):
        load_model(folder)


def test_broken_folders_are_refused(tmp_path):
    folder, config, _ = make_care_folder(tmp_path / "care")
    (folder / "weights_best.h5").unlink()
    (folder / "TF_SavedModel.zip").write_bytes(b"")
    with pytest.raises(NanoscopyError, match="TensorFlow"):
        load_csbdeep(folder)
    # weights of another architecture (depth 1 arrays, depth 2 config)
    write_keras_h5(folder / "weights_best.h5", care_layers(1, 8, 3, 1, 1))
    with pytest.raises(NanoscopyError, match="do not fit"):
        load_csbdeep(folder)
    (folder / "weights_best.h5").write_bytes(b"not hdf5")
    with pytest.raises(NanoscopyError, match="HDF5"):
        load_csbdeep(folder)
