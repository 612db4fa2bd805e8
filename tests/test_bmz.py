"""bioimage.io (BioImage Model Zoo) export and import.

The exported package must pass bioimageio.core's own test (both weight formats reproduce the
test tensors, at several sizes and batch sizes); imported packages must restore like the
original model, and a foreign package (no napari-nanoscopy card, TorchScript only, other pre-
and post-processing) must give what bioimageio.core's own predict gives, tiled or not.
"""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from importlib.metadata import version

import numpy as np
import pytest
import yaml

from napari_nanoscopy import NanoscopyError, Restorer, load_model
from napari_nanoscopy.cli import main
from napari_nanoscopy.interop import export_bmz, is_bmz_package
from napari_nanoscopy.io import read_image, write_image

bioimageio_core = pytest.importorskip("bioimageio.core")


@pytest.fixture(scope="module")
def exported(packages_dir, tmp_path_factory):
    """The task-assisted TA-GAN test model exported as a bioimage.io .zip."""
    out = tmp_path_factory.mktemp("bmz") / "tagan-task.zip"
    export_bmz(packages_dir / "tagan-task", out)
    return out


def test_export_passes_bioimageio_test_model(exported):
    summary = bioimageio_core.test_model(str(exported))
    failures = [(d.name, [e.msg for e in d.errors]) for d in summary.details if d.status != "passed"]
    versions = ", ".join(f"{name} {version(name)}" for name in ("bioimageio.core", "bioimageio.spec", "pydantic"))
    assert summary.status == "passed", (
        f"bioimageio test failed with {versions}: {failures}; if a dependency moved, reinstall the tested set "
        'with python3 -m pip install -e ".[testing]" -c constraints.txt')
    names = " ".join(d.name for d in summary.details)
    assert "pytorch_state_dict" in names and "torchscript" in names


def test_exported_package_contents(exported):
    with zipfile.ZipFile(exported) as archive:
        names = set(archive.namelist())
        rdf = yaml.safe_load(archive.read("rdf.yaml"))
        readme = archive.read("README.md").decode()
        architecture = archive.read("architecture.py").decode()
    assert {"rdf.yaml", "weights.pt", "weights_torchscript.pt", "architecture.py", "test_input.npy",
            "test_output.npy", "test_task.npy", "cover.png", "README.md"} <= names
    assert rdf["cite"][0]["doi"] == "10.1038/s42256-023-00689-3"  # TA-GAN's paper
    assert [o["id"] for o in rdf["outputs"]] == ["restored", "task"]
    assert rdf["inputs"][0]["preprocessing"][1]["id"] == "scale_range"
    assert rdf["outputs"][0]["postprocessing"][0] == {"id": "scale_linear", "kwargs": {"gain": 0.5, "offset": 0.5}}
    assert rdf["config"]["napari-nanoscopy"]["card"]["family"] == "tagan"
    assert "## Validation" in readme
    # the architecture file is self-contained: it runs with torch alone
    assert "napari_nanoscopy" not in architecture.split('"""', 2)[2]
    namespace: dict = {}
    exec(compile(architecture, "architecture.py", "exec"), namespace)
    assert "NanoscopyNetwork" in namespace


def test_round_trip_restores_like_the_original(exported, packages_dir, smooth_image):
    assert is_bmz_package(exported)
    original = Restorer(packages_dir / "tagan-task", device="cpu")
    imported = Restorer(load_model(exported), device="cpu")
    assert imported.card.task == original.card.task and imported.card.default_samples == 4
    a = original.restore(smooth_image, samples=4, seed=3, tile_size=64)
    b = imported.restore(smooth_image, samples=4, seed=3, tile_size=64)
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.std, b.std)  # Monte-Carlo dropout survives the round trip
    np.testing.assert_array_equal(a.labels, b.labels)


def test_care_type_model_round_trip_keeps_input_units(packages_dir, tmp_path, smooth_image):
    out = export_bmz(packages_dir / "l2l", tmp_path / "l2l")  # a folder this time
    assert (out / "rdf.yaml").is_file()
    original = Restorer(packages_dir / "l2l", device="cpu").restore(smooth_image).mean
    imported = Restorer(load_model(out / "rdf.yaml"), device="cpu").restore(smooth_image).mean
    np.testing.assert_array_equal(original, imported)
    assert abs(float(np.median(imported)) - float(np.median(smooth_image))) < 50  # intensity units, not [0, 1]


def _foreignise(exported, folder):
    """Turn our package into a foreign one: no card, TorchScript only, other processing,
    test output recomputed by bioimageio.core itself."""
    with zipfile.ZipFile(exported) as archive:
        archive.extractall(folder)
    rdf = yaml.safe_load((folder / "rdf.yaml").read_text())
    del rdf["config"]
    del rdf["weights"]["pytorch_state_dict"]
    del rdf["weights"]["torchscript"]["parent"]
    rdf["outputs"] = rdf["outputs"][:1]
    rdf["inputs"][0]["preprocessing"] = [
        {"id": "zero_mean_unit_variance", "kwargs": {"axes": ["y", "x"]}},
        {"id": "scale_linear", "kwargs": {"gain": 0.5, "offset": 0.1}},
        {"id": "clip", "kwargs": {"min": -1.5, "max": 1.5}},
    ]
    rdf["outputs"][0]["postprocessing"] = [
        {"id": "scale_linear", "kwargs": {"gain": 2.0, "offset": 0.25}},
        {"id": "sigmoid"},
    ]
    (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf, sort_keys=False))
    prediction = bioimageio_core.predict(model=str(folder / "rdf.yaml"), inputs=np.load(folder / "test_input.npy"))
    np.save(folder / "test_output.npy", prediction.members["restored"].data.values.astype(np.float32))
    rdf["outputs"][0]["test_tensor"]["sha256"] = hashlib.sha256((folder / "test_output.npy").read_bytes()).hexdigest()
    (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf, sort_keys=False))
    return folder / "rdf.yaml"


def test_foreign_package_follows_its_processing_like_bioimageio_core(exported, tmp_path, smooth_image):
    rdf_path = _foreignise(exported, tmp_path / "foreign")
    package = load_model(tmp_path / "foreign")
    assert package.card.family == "bioimageio"
    assert package.card.normalization["input"]["mode"] == "meanstd"
    image = smooth_image[:, :172]  # 160 x 172: sizes bioimage.io allows (min 100, step 4)
    # bioimageio.core's tiled prediction (blocks with the declared halo, statistics of the whole image)
    expected = bioimageio_core.predict(model=str(rdf_path), inputs=image[None, None], blocksize_parameter=10)
    expected = expected.members["restored"].data.values[0, 0]
    restorer = Restorer(package, device="cpu")
    untiled = restorer.restore(image).mean
    tiled = restorer.restore(image, tile_size=64).mean
    assert expected.std() > 1e-3  # not a constant output
    # bioimageio.core pads the image borders with its own mode; beyond the declared halo (the
    # receptive radius) from the border every pixel must agree
    halo = yaml.safe_load(rdf_path.read_text())["outputs"][0]["axes"][2]["halo"]
    inner = (slice(halo, -halo), slice(halo, -halo))
    np.testing.assert_allclose(untiled[inner], expected[inner], atol=2e-6)
    np.testing.assert_allclose(tiled[inner], expected[inner], atol=2e-6)  # the declared halo makes tiles exact
    np.testing.assert_allclose(tiled, untiled, atol=2e-6)

    # zipped, through the command line
    zipped = shutil.make_archive(str(tmp_path / "foreign_zip"), "zip", tmp_path / "foreign")
    write_image(tmp_path / "in.tif", image, pixel_size_nm=20.0, axes="YX")
    assert main(["restore", str(tmp_path / "in.tif"), str(tmp_path / "out.ome.tif"), "--model", zipped]) == 0
    np.testing.assert_allclose(read_image(tmp_path / "out.ome.tif").data, untiled, atol=1e-6)


def test_foreign_packages_that_cannot_be_honoured_are_refused(exported, tmp_path):
    folder = tmp_path / "f"
    rdf_path = _foreignise(exported, folder)
    rdf = yaml.safe_load(rdf_path.read_text())

    def variant(change) -> None:
        data = yaml.safe_load(yaml.safe_dump(rdf))
        change(data)
        rdf_path.write_text(yaml.safe_dump(data))

    variant(lambda d: d["outputs"][0].__setitem__("postprocessing", [{"id": "scale_range", "kwargs": {}}]))
    with pytest.raises(NanoscopyError, match="whole output"):
        load_model(folder)
    variant(lambda d: d["weights"].__setitem__("onnx", d["weights"].pop("torchscript")))
    with pytest.raises(NanoscopyError, match="torchscript"):
        load_model(folder)
    variant(lambda d: d["weights"]["torchscript"].__setitem__("source", "https://example.org/w.pt"))
    with pytest.raises(NanoscopyError, match="offline"):
        load_model(folder)
    variant(lambda d: d.__setitem__("format_version", "0.3.6"))
    with pytest.raises(NanoscopyError, match="formats 0.4 and 0.5"):
        load_model(folder)
    variant(lambda d: d.__setitem__("format_version", "0.4.10"))  # 0.5 fields under a 0.4 version
    with pytest.raises(NanoscopyError, match="cannot convert"):
        load_model(folder)
    variant(lambda d: d["weights"]["torchscript"].__setitem__("sha256", "0" * 64))
    with pytest.raises(NanoscopyError, match="sha256"):
        load_model(folder)


def test_export_errors_leave_nothing_behind(packages_dir, tmp_path, monkeypatch):
    with pytest.raises(NanoscopyError, match="differently"):  # per-channel normalisation of TA-GAN Live
        export_bmz(packages_dir / "tagan-live", tmp_path / "live.zip")
    (tmp_path / "taken.zip").write_bytes(b"keep")
    with pytest.raises(NanoscopyError, match="already exists"):
        export_bmz(packages_dir / "l2l", tmp_path / "taken.zip")
    assert (tmp_path / "taken.zip").read_bytes() == b"keep"

    import torch

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(RuntimeError):
        export_bmz(packages_dir / "l2l", tmp_path / "new.zip")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.zip"]


def test_cli_export_with_a_sample(packages_dir, tmp_path, smooth_image):
    write_image(tmp_path / "sample.tif", smooth_image, pixel_size_nm=20.0, axes="YX")
    out = tmp_path / "cli.zip"
    assert main(["export-bmz", str(packages_dir / "l2l"), str(out), "--sample", str(tmp_path / "sample.tif"),
                 "--author", "A. Person"]) == 0
    with zipfile.ZipFile(out) as archive:
        rdf = yaml.safe_load(archive.read("rdf.yaml"))
        test_input = np.load(archive.open("test_input.npy"))
    assert rdf["authors"] == [{"name": "A. Person"}]
    assert test_input.shape == (1, 1, 128, 128)
    assert main(["export-bmz", str(packages_dir / "l2l"), str(out)]) == 2  # exists, no --overwrite


def test_format_0_4_packages_are_converted_offline(exported, tmp_path):
    """A 0.4 description (axes strings, test_inputs, named processing) runs like its 0.5 equivalent."""
    rdf05 = _foreignise(exported, tmp_path / "v05")
    data = yaml.safe_load(rdf05.read_text())
    data["inputs"][0]["preprocessing"] = [{"id": "zero_mean_unit_variance", "kwargs": {"axes": ["y", "x"]}}]
    data["outputs"][0]["postprocessing"] = [{"id": "sigmoid"}]
    rdf05.write_text(yaml.safe_dump(data, sort_keys=False))
    folder = tmp_path / "v04"
    shutil.copytree(tmp_path / "v05", folder)
    script = folder / "weights_torchscript.pt"
    rdf04 = {
        "format_version": "0.4.10", "type": "model", "name": "foreign v04", "description": "a 0.4 package",
        "authors": [{"name": "A. Person"}], "cite": data["cite"], "license": "CC-BY-4.0",
        "documentation": "README.md", "covers": ["cover.png"], "timestamp": data["timestamp"], "tags": ["test"],
        "inputs": [{"name": "input", "axes": "bcyx", "data_type": "float32", "data_range": [-1e9, 1e9],
                    "shape": {"min": [1, 1, 100, 100], "step": [0, 0, 4, 4]},
                    "preprocessing": [{"name": "zero_mean_unit_variance", "kwargs": {"mode": "per_sample", "axes": "yx"}}]}],
        "outputs": [{"name": "restored", "axes": "bcyx", "data_type": "float32", "data_range": [0.0, 1.0],
                     "shape": {"reference_tensor": "input", "scale": [1, 1, 1, 1], "offset": [0, 0, 0, 0]},
                     "halo": [0, 0, 48, 48], "postprocessing": [{"name": "sigmoid"}]}],
        "test_inputs": ["test_input.npy"], "test_outputs": ["test_output.npy"],
        "weights": {"torchscript": {"source": script.name, "sha256": hashlib.sha256(script.read_bytes()).hexdigest(),
                                    "pytorch_version": "2.13"}},
    }
    (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf04, sort_keys=False))
    old, new = load_model(folder), load_model(tmp_path / "v05")
    assert old.card.normalization == new.card.normalization
    assert old.generator.receptive_radius == new.generator.receptive_radius == 48
    image = np.random.default_rng(3).normal(100, 10, (128, 132)).astype(np.float32)
    np.testing.assert_array_equal(Restorer(old, device="cpu").restore(image).mean,
                                  Restorer(new, device="cpu").restore(image).mean)
    rdf04["weights"]["torchscript"]["sha256"] = "0" * 64  # the 0.4 hashes are still checked
    (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf04, sort_keys=False))
    with pytest.raises(NanoscopyError, match="sha256"):
        load_model(folder)
