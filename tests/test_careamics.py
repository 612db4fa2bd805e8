"""Models trained with CAREamics load as they are (issue 17, item 6).

CAREamics' ``export_to_bmz`` writes a bioimage.io package with ``pytorch_state_dict`` weights of
its UNet (the state dict of ``careamics.models.unet.UNet``, the architecture named by
``import_from``/``callable`` and its ``UNetConfig`` as kwargs), per-channel
``fixed_zero_mean_unit_variance`` with the training mean/std on the input, the same step with
the inverted values on the output, and the test image's size as a fixed input size. The
packages here are built the same way from that documented layout (careamics itself is not
installed: it pins a CUDA torch), and must restore exactly like normalising, running the U-Net
and de-normalising by hand.
"""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
import torch
import yaml

from conftest import randomise_batchnorm
from napari_nanoscopy import NanoscopyError, Restorer, load_model
from napari_nanoscopy.cli import main
from napari_nanoscopy.interop.bmz import fixed_windows
from napari_nanoscopy.io import read_image, write_image
from napari_nanoscopy.models.careamics_unet import CAREamicsUNet

# CAREamics' UNetConfig.model_dump() for a CARE model of depth 2 (its 'architecture' field included)
KWARGS = dict(architecture="UNet", conv_dims=2, num_classes=1, in_channels=1, depth=2, num_channels_init=8,
              residual=False, final_activation="None", n2v2=False, independent_channels=True, use_batch_norm=True)
MEAN, STD = 120.0, 30.0  # the training data's statistics CAREamics stores
EPS = 1e-6  # bioimage.io's epsilon of fixed_zero_mean_unit_variance (and CAREamics')
INV_MEAN, INV_STD = -MEAN / (STD + EPS), 1 / (STD + EPS) - EPS  # CAREamics' inversion for the output step


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _network(kwargs=KWARGS, seed=0) -> CAREamicsUNet:
    torch.manual_seed(seed)
    network = randomise_batchnorm(CAREamicsUNet(**{k: v for k, v in kwargs.items() if k != "architecture"}), seed)
    with torch.no_grad():  # outputs of about unit spread, as a trained network's (normalised) prediction
        network.final_conv.weight.mul_(30.0)
    return network.eval()


def by_hand(network: CAREamicsUNet, image: np.ndarray) -> np.ndarray:
    """CAREamics' prediction of a (Y, X) or (C, Y, X) image: normalise with the stored mean/std, the
    U-Net, de-normalise (float64 maths)."""
    planes = image if image.ndim == 3 else image[None]
    x = torch.from_numpy((planes.astype(np.float64) - MEAN) / (STD + EPS)).float()[None]
    with torch.no_grad():
        y = network(x)[0].double().numpy()
    y = (y - INV_MEAN) / (INV_STD + EPS)
    return y if image.ndim == 3 else y[0]


def space(axis: str, size) -> dict:
    return {"type": "space", "id": axis, "size": size}


def careamics_package(folder, network: CAREamicsUNet, size=64, kwargs=KWARGS):
    """A package laid out as CAREamics 0.3.5's export_to_bmz writes it (format 0.5)."""
    folder.mkdir(parents=True)
    torch.save(network.state_dict(), folder / "weights.pth")
    rng = np.random.default_rng(0)
    side = size if isinstance(size, int) else 64
    test_input = (MEAN + STD * rng.standard_normal((1, network.in_channels, side, side))).astype(np.float32)
    np.save(folder / "inputs.npy", test_input)
    np.save(folder / "outputs.npy", by_hand(network, test_input[0]).astype(np.float32)[None])
    (folder / "careamics.yaml").write_text("algorithm_config: {algorithm: care}\n")
    (folder / "environment.yml").write_text("dependencies: [python, pip]\n")
    (folder / "README.md").write_text("A CARE model trained with CAREamics.\n")
    channel = {"type": "channel", "channel_names": ["channel"]}
    rdf = {
        "format_version": "0.5.4", "type": "model", "name": "care_bmz", "description": "CARE (CAREamics)",
        "authors": [{"name": "A. Person"}], "cite": [{"text": "CAREamics", "url": "https://careamics.github.io"}],
        "license": "BSD-3-Clause", "documentation": "README.md", "version": "0.3.5",
        "inputs": [{"id": "input", "axes": [{"type": "batch"}, channel, space("y", size), space("x", size)],
                    "test_tensor": {"source": "inputs.npy", "sha256": _sha(folder / "inputs.npy")},
                    "preprocessing": [{"id": "fixed_zero_mean_unit_variance",
                                       "kwargs": {"mean": [MEAN], "std": [STD], "axis": "channel"}}]}],
        "outputs": [{"id": "prediction", "axes": [{"type": "batch"}, channel, space("y", size), space("x", size)],
                     "test_tensor": {"source": "outputs.npy", "sha256": _sha(folder / "outputs.npy")},
                     "postprocessing": [{"id": "fixed_zero_mean_unit_variance",
                                         "kwargs": {"mean": [INV_MEAN], "std": [INV_STD], "axis": "channel"}}]}],
        "weights": {"pytorch_state_dict": {
            "source": "weights.pth", "sha256": _sha(folder / "weights.pth"), "pytorch_version": "2.13",
            "architecture": {"callable": "UNet", "import_from": "careamics.models.unet", "kwargs": kwargs},
            "dependencies": {"source": "environment.yml"}}},
        "attachments": [{"source": "careamics.yaml"}],
        "config": {"bioimageio": {"test_kwargs": {"pytorch_state_dict": {"absolute_tolerance": 1e-2,
                                                                          "relative_tolerance": 1e-2}}}},
    }
    (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf, sort_keys=False))
    return folder


def _image(shape, seed=2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:shape[0], 0:shape[1]]
    return (MEAN + 25 * np.sin(x / 7.0) * np.cos(y / 11.0) + 5 * rng.standard_normal(shape)).astype(np.float32)


def test_the_package_is_a_valid_bioimageio_description(tmp_path):
    spec = pytest.importorskip("bioimageio.spec")
    folder = careamics_package(tmp_path / "care", _network())
    summary = spec.load_description(folder / "rdf.yaml", perform_io_checks=False).validation_summary
    assert summary.status in ("valid-format", "passed"), summary.format()


def test_careamics_package_restores_like_careamics_prediction(tmp_path):
    network = _network()
    folder = careamics_package(tmp_path / "care", network)
    package = load_model(folder)
    assert package.card.family == "bioimageio"
    assert package.card.training["architecture"] == "careamics.models.unet UNet"
    assert package.card.training["declared_input_size"] == [64, 64]
    image = _image((64, 64))
    restored = Restorer(package, device="cpu").restore(image).mean
    expected = by_hand(network, image)
    assert expected.std() > 1.0  # not a constant output
    np.testing.assert_allclose(restored, expected, rtol=0, atol=2e-5 * np.abs(expected).max())

    # zipped, through the command line, in the input's intensity units
    zipped = shutil.make_archive(str(tmp_path / "care_bmz"), "zip", folder)
    write_image(tmp_path / "in.tif", image, pixel_size_nm=20.0, axes="YX")
    assert main(["restore", str(tmp_path / "in.tif"), str(tmp_path / "out.ome.tif"), "--model", zipped]) == 0
    np.testing.assert_allclose(read_image(tmp_path / "out.ome.tif").data, restored, atol=1e-4)


def _recorded_window_shapes(package) -> list[tuple[int, int]]:
    shapes: list[tuple[int, int]] = []
    package.generator.module.register_forward_pre_hook(lambda _, args: shapes.append(tuple(args[0].shape[-2:])))
    return shapes


def test_a_declared_fixed_input_size_is_honoured(tmp_path):
    """CAREamics declares its test image's 64 px: a 150 x 200 image runs in 64 x 64 windows."""
    network = _network()
    package = load_model(careamics_package(tmp_path / "fixed", network))
    shapes = _recorded_window_shapes(package)
    odd = _image((150, 202))  # padded to the U-Net's stride 4, and to whole windows
    assert Restorer(package, device="cpu").restore(odd).mean.shape == odd.shape and set(shapes) == {(64, 64)}
    image = _image((148, 200))
    restored = Restorer(package, device="cpu").restore(image).mean
    tiled = Restorer(package, device="cpu").restore(image, tile_size=96).mean
    assert set(shapes) == {(64, 64)}
    whole = by_hand(network, image)  # the U-Net in one pass over the whole image
    # windows keep 16 px of context (a quarter of 64): they differ from one pass over the whole
    # image only through context beyond that, a tiny share of the restored signal
    assert np.abs(restored - whole).max() < 0.01 * whole.std()
    assert np.abs(tiled - whole).max() < 0.01 * whole.std()

    # the same package with a parametrised size (min 16, step 4) runs the image in one pass
    rdf_path = tmp_path / "fixed" / "rdf.yaml"
    rdf = yaml.safe_load(rdf_path.read_text())
    for axis in rdf["inputs"][0]["axes"][2:]:
        axis["size"] = {"min": 16, "step": 4}
    rdf_path.write_text(yaml.safe_dump(rdf, sort_keys=False))
    free = load_model(tmp_path / "fixed")
    shapes = _recorded_window_shapes(free)
    image = _image((148, 200))
    restored = Restorer(free, device="cpu").restore(image).mean
    expected = by_hand(network, image)
    assert shapes.count((148, 200)) == 1  # one pass over the whole image (besides a memory probe)
    np.testing.assert_allclose(restored, expected, rtol=0, atol=2e-5 * np.abs(expected).max())


def test_fixed_windows_cover_the_axis_once_with_context():
    windows = fixed_windows(148, 64, 16)
    assert [w[0] for w in windows] == [0, 32, 64, 84]  # starts on the stride grid, the last one inward
    kept = [i for _, a, b in windows for i in range(a, b)]
    assert kept == list(range(148))
    for start, a, b in windows:
        assert b - a > 0 and start <= a and b <= start + 64
        assert (a == 0 or a - start >= 16) and (b == 148 or start + 64 - b >= 16)
    assert fixed_windows(64, 64, 16) == [(0, 0, 64)]


def test_careamics_variants_load(tmp_path):
    """N2V2 (blur pooling, no top skip), several independent channels, residual with a sigmoid."""
    variants = [dict(n2v2=True, depth=3), dict(in_channels=2, num_classes=2),
                dict(residual=True, final_activation="Sigmoid", use_batch_norm=False, independent_channels=False)]
    for index, change in enumerate(variants):
        kwargs = {**KWARGS, **change}
        network = _network(kwargs, seed=index)
        channels = kwargs["in_channels"]
        folder = careamics_package(tmp_path / f"v{index}", network, kwargs=kwargs)
        rdf = yaml.safe_load((folder / "rdf.yaml").read_text())
        for tensor, mean, std in ((rdf["inputs"][0], MEAN, STD), (rdf["outputs"][0], INV_MEAN, INV_STD)):
            tensor["axes"][1]["channel_names"] = [f"c{c}" for c in range(channels)]
            step = tensor.get("preprocessing", tensor.get("postprocessing"))[0]
            step["kwargs"].update(mean=[mean] * channels, std=[std] * channels)
        (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf, sort_keys=False))
        image = np.stack([_image((64, 64), seed=c) for c in range(channels)])
        restored = Restorer(load_model(folder), device="cpu").restore(image, channel_axis=0).mean
        expected = by_hand(network, image)
        np.testing.assert_allclose(restored.reshape(expected.shape), expected, atol=2e-5 * np.abs(expected).max())


def _variant(folder, change) -> None:
    rdf = yaml.safe_load((folder / "rdf.yaml").read_text())
    change(rdf)
    (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf, sort_keys=False))


def test_packages_that_cannot_be_loaded_are_refused_with_the_reason(tmp_path):
    folder = careamics_package(tmp_path / "care", _network())
    original = (folder / "rdf.yaml").read_text()

    def refused(change, match) -> None:
        (folder / "rdf.yaml").write_text(original)
        _variant(folder, change)
        with pytest.raises(NanoscopyError, match=match):
            load_model(folder)

    def architecture(**fields):
        return lambda rdf: rdf["weights"]["pytorch_state_dict"]["architecture"].update(fields)

    def kwargs(**fields):
        return lambda rdf: rdf["weights"]["pytorch_state_dict"]["architecture"]["kwargs"].update(fields)

    # an architecture it does not know: says which ones load, and how to make any model load
    refused(architecture(import_from="my_lab.nets", callable="ResUNet"),
            r"architecture my_lab.nets ResUNet, which napari-nanoscopy does not rebuild; it loads state dicts of "
            r"CAREamics' U-Net \(careamics.models.unet UNet\) and otherwise runs foreign models from TorchScript only")
    refused(lambda rdf: rdf["weights"]["pytorch_state_dict"]["architecture"].update(
        {"source": "unet.py", "callable": "UNet"}) or rdf["weights"]["pytorch_state_dict"]["architecture"].pop(
        "import_from"), r"unet.py:UNet, which napari-nanoscopy does not rebuild")
    refused(lambda rdf: rdf["weights"].__setitem__("onnx", rdf["weights"].pop("pytorch_state_dict")),
            r"no weights napari-nanoscopy can run \(it has: onnx\)")
    # kwargs that are not CAREamics' U-Net, or too large to build, before any allocation
    refused(kwargs(conv_dims=3), r"only 2D CAREamics U-Nets")
    refused(kwargs(depth=50), r"depth must be a whole number from 1 to 10")
    refused(kwargs(num_channels_init=1024, depth=10), r"million parameters")
    refused(kwargs(kernel_size=5), r"include kernel_size, which CAREamics' U-Net")
    refused(kwargs(architecture="LVAE"), r"name architecture 'LVAE', not 'UNet'; the package is not a CAREamics U-Net")
    # kwargs that do not describe the weights
    refused(kwargs(num_channels_init=16), r"do not fit the architecture in its rdf.yaml.*mis-shaped")
    refused(kwargs(n2v2=True, depth=1), r"unexpected tensors")
    # a fixed size the U-Net cannot take (its sides must be multiples of 2**depth)
    refused(lambda rdf: rdf["inputs"][0]["axes"][2].update(size=66), r"fixed input of 66x64 pixels.*multiples of 4")
    # stored statistics that are not numbers, or not one per channel
    refused(lambda rdf: rdf["outputs"][0]["postprocessing"][0]["kwargs"].update(std=[1.0, 2.0]),
            r"standardises its output with fixed mean .* one pair per channel \(1\)")
    refused(lambda rdf: rdf["inputs"][0]["preprocessing"][0]["kwargs"].update(std=["a"]), r"standardises its input")
    # weights outside the package, or damaged
    refused(lambda rdf: rdf["weights"]["pytorch_state_dict"].update(source="../weights.pth", sha256=None),
            r"outside|inside")
    refused(lambda rdf: rdf["weights"]["pytorch_state_dict"].update(sha256="0" * 64), r"sha256")


class _Payload:
    """Pickled as a call of os.system: unpickling it would run a command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_pickled_payload_in_place_of_the_state_dict_is_refused_without_running(tmp_path):
    folder = careamics_package(tmp_path / "care", _network())
    marker = tmp_path / "ran"
    torch.save({"encoder.encoder_blocks.0.conv1.weight": _Payload(marker)}, folder / "weights.pth")
    _variant(folder, lambda rdf: rdf["weights"]["pytorch_state_dict"].update(sha256=_sha(folder / "weights.pth")))
    with pytest.raises(NanoscopyError, match="cannot be loaded safely"):
        load_model(folder)
    assert not marker.exists()
    torch.save([1, 2, 3], folder / "weights.pth")  # loads with weights_only, but is no state dict
    _variant(folder, lambda rdf: rdf["weights"]["pytorch_state_dict"].update(sha256=_sha(folder / "weights.pth")))
    with pytest.raises(NanoscopyError, match="not a state dict"):
        load_model(folder)


def test_torchscript_weights_with_fixed_output_standardisation_load(tmp_path):
    """The issue's second refusal: TorchScript added, the output step 'fixed_zero_mean_unit_variance'
    (stored mean and std, element-wise) is now applied like the input side's."""
    network = _network()
    folder = careamics_package(tmp_path / "care", network, size={"min": 16, "step": 4})
    script = torch.jit.trace(network, torch.zeros(1, 1, 64, 64))
    script.save(str(folder / "weights_torchscript.pt"))

    def torchscript_only(rdf):
        del rdf["weights"]["pytorch_state_dict"]
        rdf["weights"]["torchscript"] = {"source": "weights_torchscript.pt", "pytorch_version": "2.13",
                                         "sha256": _sha(folder / "weights_torchscript.pt")}

    _variant(folder, torchscript_only)
    package = load_model(folder)
    assert package.card.training["architecture"] == "torchscript"
    image = _image((96, 128))
    restored = Restorer(package, device="cpu").restore(image).mean
    expected = by_hand(network, image)
    np.testing.assert_allclose(restored, expected, rtol=0, atol=2e-5 * np.abs(expected).max())


def test_a_format_0_4_careamics_package_loads(tmp_path):
    """Older CAREamics wrote format 0.4 (architecture as 'module.callable', mode 'fixed' standardisation)."""
    pytest.importorskip("bioimageio.spec")
    network = _network()
    folder = careamics_package(tmp_path / "care04", network)
    standardise = {"name": "zero_mean_unit_variance", "kwargs": {"mode": "fixed", "axes": "yx"}}
    tensor = {"axes": "bcyx", "data_type": "float32", "data_range": [-1e9, 1e9], "shape": [1, 1, 64, 64]}
    rdf04 = {
        "format_version": "0.4.10", "type": "model", "name": "care04", "description": "CARE (CAREamics)",
        "authors": [{"name": "A. Person"}], "cite": [{"text": "CARE", "doi": "10.1038/s41592-018-0216-7"}],
        "license": "BSD-3-Clause", "documentation": "README.md", "covers": [], "tags": ["care"],
        "timestamp": "2024-01-01T00:00:00",
        "inputs": [{**tensor, "name": "input", "preprocessing": [
            {**standardise, "kwargs": {**standardise["kwargs"], "mean": [MEAN], "std": [STD]}}]}],
        "outputs": [{**tensor, "name": "output", "postprocessing": [
            {**standardise, "kwargs": {**standardise["kwargs"], "mean": [INV_MEAN], "std": [INV_STD]}}]}],
        "test_inputs": ["inputs.npy"], "test_outputs": ["outputs.npy"],
        "weights": {"pytorch_state_dict": {"source": "weights.pth", "sha256": _sha(folder / "weights.pth"),
                                           "architecture": "careamics.models.unet.UNet", "kwargs": KWARGS,
                                           "pytorch_version": "2.13"}},
    }
    (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf04, sort_keys=False))
    package = load_model(folder)
    assert package.card.training["declared_input_size"] == [64, 64]
    image = _image((64, 64))
    expected = by_hand(network, image)
    np.testing.assert_allclose(Restorer(package, device="cpu").restore(image).mean, expected,
                               rtol=0, atol=2e-5 * np.abs(expected).max())
