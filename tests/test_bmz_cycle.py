"""bioimage.io export of a translation (tagan-cycle) package: one generator per package, A -> B by default
or B -> A on request, each passing bioimageio.core's test and translating like the original."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch
import yaml
from conftest import SMALL_TAGAN, make_card

from napari_nanoscopy import NanoscopyError, Restorer, load_model
from napari_nanoscopy.cli import main
from napari_nanoscopy.interop import export_bmz
from napari_nanoscopy.models import build_generator
from napari_nanoscopy.packages import save_model
from napari_nanoscopy.translation import translate

bioimageio_core = pytest.importorskip("bioimageio.core")


@pytest.fixture(scope="module")
def cycle_package(tmp_path_factory):
    """A small translation package with two different generators (sim -> real and back)."""
    torch.manual_seed(0)
    card = make_card(name="sim-to-real", generator=SMALL_TAGAN, input_channels=["domain A"],
                     output_channels=["domain B"], description="TA-CycleGAN translation from sim to real.",
                     cycle={"domains": {"a": "sim", "b": "real"}, "reverse_generator": dict(SMALL_TAGAN)})
    path = tmp_path_factory.mktemp("cycle") / "sim-to-real"
    save_model(path, card, build_generator("tagan", **SMALL_TAGAN), reverse_generator=build_generator("tagan", **SMALL_TAGAN))
    return path


@pytest.fixture(scope="module")
def exported(cycle_package, tmp_path_factory):
    """The package exported both ways: the default (A -> B) and B -> A."""
    folder = tmp_path_factory.mktemp("bmz")
    return {"a2b": export_bmz(cycle_package, folder / "a2b.zip"),
            "b2a": export_bmz(cycle_package, folder / "b2a.zip", direction="b2a")}


def rdf_of(path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return yaml.safe_load(archive.read("rdf.yaml")) | {"README": archive.read("README.md").decode()}


@pytest.mark.parametrize("direction", ["a2b", "b2a"])
def test_each_direction_passes_bioimageio_test_model(exported, direction):
    summary = bioimageio_core.test_model(str(exported[direction]))
    failures = [(d.name, [e.msg for e in d.errors]) for d in summary.details if d.status != "passed"]
    assert summary.status == "passed", failures


def test_the_packages_name_their_direction(exported):
    a2b, b2a = rdf_of(exported["a2b"]), rdf_of(exported["b2a"])
    assert a2b["config"]["napari-nanoscopy"]["translation"] == {"direction": "a2b", "from": "sim", "to": "real"}
    assert b2a["config"]["napari-nanoscopy"]["translation"] == {"direction": "b2a", "from": "real", "to": "sim"}
    for rdf in (a2b, b2a):
        assert "cycle" not in rdf["config"]["napari-nanoscopy"]["card"]  # one generator in the package
        assert "image-translation" in rdf["tags"] and "super-resolution" not in rdf["tags"]
        assert [c["doi"] for c in rdf["cite"]] == ["10.1038/s42256-023-00689-3", "10.1109/ICCV.2017.244"]
    assert a2b["inputs"][0]["axes"][1]["channel_names"] == ["domain_A"]
    assert b2a["inputs"][0]["axes"][1]["channel_names"] == ["domain_B"]
    assert "translates real images into sim" in b2a["description"]
    assert "--direction a2b" in b2a["README"] and "--direction b2a" in a2b["README"]


def test_each_package_translates_like_the_original(exported, cycle_package):
    rng = np.random.default_rng(1)
    image = rng.gamma(2.0, 10.0, (64, 64)).astype(np.float32)
    results = {}
    for direction, path in exported.items():
        package = load_model(path)
        assert package.card.cycle is None and package.reverse_generator is None
        results[direction] = Restorer(package, device="cpu").restore(image, samples=1).mean
        expected = translate(image, cycle_package, direction, device="cpu", samples=1).mean
        np.testing.assert_allclose(results[direction], expected, rtol=1e-5, atol=1e-5)
    assert not np.allclose(results["a2b"], results["b2a"])


def test_a_direction_for_a_model_with_one_is_refused(packages_dir, tmp_path, capsys):
    with pytest.raises(NanoscopyError) as refused:
        export_bmz(packages_dir / "l2l", tmp_path / "l2l.zip", direction="b2a")
    assert str(refused.value) == ("The model 'test-l2l' is not a translation (tagan-cycle) model and has one direction; "
                                  "leave out direction (--direction).")
    assert main(["export-bmz", str(packages_dir / "l2l"), str(tmp_path / "l2l.zip"), "--direction", "a2b"]) == 2
    assert "leave out direction (--direction)" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_the_command_exports_b2a(cycle_package, tmp_path, capsys):
    out = tmp_path / "cli.zip"
    assert main(["export-bmz", str(cycle_package), str(out), "--direction", "b2a"]) == 0
    assert f"wrote bioimage.io model {out}" in capsys.readouterr().out
    assert rdf_of(out)["config"]["napari-nanoscopy"]["translation"]["direction"] == "b2a"
