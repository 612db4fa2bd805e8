"""Datamaps derived from STED images (`datamap`) and the `simulate datamaps` kind."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_nanoscopy.cli import main
from napari_nanoscopy.errors import NanoscopyError
from napari_nanoscopy.io import read_image, write_image
from napari_nanoscopy.simulation import STANDARD_CONDITIONS, acquire
from napari_nanoscopy.simulation.datamap_dataset import augmented_crop, simulate_datamap_dataset
from napari_nanoscopy.simulation.datamap_files import load_datamaps, read_sted_image, write_datamaps
from napari_nanoscopy.simulation.datamaps import (
    EXAMPLE_MOLECULES,
    agreement,
    derive_datamap,
    detector_background,
    imaging_kernel,
    pysted_example,
    reimage,
    richardson_lucy,
)


def _lines(size=48, molecules=12):
    """A known datamap: two crossing lines and a bright dot, molecules per pixel."""
    truth = np.zeros((size, size), np.int32)
    truth[size // 3, 4:-4] = molecules
    truth[4:-4, size // 2] = molecules
    truth[2 * size // 3, size // 4] = 10 * molecules
    return truth


def _blurred(array):
    from scipy import ndimage

    return ndimage.gaussian_filter(np.asarray(array, np.float64), 1.5).ravel()


def test_richardson_lucy_recovers_a_noise_free_datamap_and_keeps_the_flux():
    kernel = imaging_kernel(STANDARD_CONDITIONS)
    from scipy import signal

    truth = _lines().astype(np.float64)
    image = signal.fftconvolve(truth, kernel, mode="same") + 0.64
    estimate, done = richardson_lucy(image, kernel, 0.64, 200)
    assert done == 200
    assert estimate.sum() == pytest.approx(truth.sum(), rel=0.02)
    assert np.corrcoef(_blurred(truth), _blurred(estimate))[0, 1] > 0.97


def test_a_known_datamap_imaged_then_derived_gives_it_back():
    truth = _lines()
    image = acquire(truth, STANDARD_CONDITIONS, sted=True, rng=3)
    derived = derive_datamap(image, 20.0)
    assert derived.datamap.dtype == np.float32 and derived.datamap.shape == truth.shape
    assert derived.info["stopping"] == "fixed" and derived.info["iterations"] == 30
    by_discrepancy = derive_datamap(image, 20.0, iterations=None).info
    assert by_discrepancy["stopping"] == "discrepancy principle" and 1 <= by_discrepancy["iterations"] < 500
    assert derived.datamap.sum() == pytest.approx(truth.sum(), rel=0.1)
    assert np.corrcoef(_blurred(truth), _blurred(derived.datamap))[0, 1] > 0.85
    # Re-imaging the derived datamap gives the image's photon level back.
    simulated = reimage(derived.datamap, STANDARD_CONDITIONS, rng=4)
    figures = agreement(image, simulated, 20.0)
    real, again = figures["statistics"]["real"], figures["statistics"]["simulated"]
    assert again["mean"] == pytest.approx(real["mean"], rel=0.05)
    assert again["p99.9"] == pytest.approx(real["p99.9"], rel=0.3)
    assert again["background"] == pytest.approx(real["background"], abs=0.5)


def test_detector_background_is_pysteds_mean_count():
    assert detector_background(STANDARD_CONDITIONS) == pytest.approx(0.64)
    empty = acquire(np.zeros((64, 64), np.int32), STANDARD_CONDITIONS, sted=True, rng=1)
    assert empty.mean() == pytest.approx(0.64, abs=0.05)


def _sted_folder(tmp_path, pixel_size_nm=20.0, names=("a", "b")):
    folder = tmp_path / "sted"
    folder.mkdir()
    for seed, name in enumerate(names):
        image = acquire(_lines(), STANDARD_CONDITIONS, sted=True, rng=seed + 1)
        write_image(folder / f"{name}.tif", image.astype(np.float32), pixel_size_nm=pixel_size_nm)
    return folder


def test_write_datamaps_carries_the_pixel_size_and_provenance(tmp_path):
    folder = _sted_folder(tmp_path, pixel_size_nm=20.0)
    out = write_datamaps(folder, tmp_path / "maps")
    manifest = json.loads((out / "datamaps.json").read_text())
    assert [r["name"] for r in manifest["datamaps"]] == ["a", "b"]
    for record in manifest["datamaps"]:
        datamap = read_image(out / record["file"])
        assert datamap.data.dtype == np.float32 and datamap.pixel_size_nm == pytest.approx(20.0)
        assert datamap.metadata["datamap"]["source"]["sha256"] == record["source"]["sha256"]
        assert record["agreement"]["statistics"]["simulated"]["mean"] == pytest.approx(
            record["agreement"]["statistics"]["real"]["mean"], rel=0.1)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left
    # --pixel-size replaces the file's, and the datamap is written at it.
    other = write_datamaps(folder / "a.tif", tmp_path / "maps25", pixel_size_nm=25.0, iterations=5)
    record = json.loads((other / "datamaps.json").read_text())["datamaps"][0]
    assert record["derivation"]["iterations"] == 5 and record["derivation"]["stopping"] == "fixed"
    assert read_image(other / "a.tif").pixel_size_nm == pytest.approx(25.0)


def test_write_datamaps_is_deterministic(tmp_path):
    folder = _sted_folder(tmp_path, names=("a",))
    first = write_datamaps(folder, tmp_path / "one", iterations=3)
    second = write_datamaps(folder, tmp_path / "two", iterations=3)
    assert (first / "a.tif").read_bytes() == (second / "a.tif").read_bytes()
    assert (first / "datamaps.json").read_text() == (second / "datamaps.json").read_text()


def test_uint16_images_lose_their_32768_offset(tmp_path):
    counts = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) % 50
    write_image(tmp_path / "offset.tif", counts + np.uint16(32768), pixel_size_nm=20.0)
    read, pixel_size = read_sted_image(tmp_path / "offset.tif")
    assert pixel_size == pytest.approx(20.0)
    np.testing.assert_array_equal(read, counts.astype(np.float64))


@pytest.mark.parametrize("image, message", [
    (np.zeros((32, 32), np.float32), "is empty (every pixel is 0)"),
    (np.full((32, 32), np.nan, np.float32), "holds NaN or infinite values"),
    (np.ones((2, 32, 32), np.float32), "not one 2D plane"),
    (np.ones((8, 8), np.float32), "too small to deconvolve"),
])
def test_bad_images_are_refused_and_nothing_is_written(tmp_path, image, message):
    folder = _sted_folder(tmp_path, names=("good",))
    axes = "CYX" if image.ndim == 3 else "YX"
    write_image(folder / "bad.tif", image, pixel_size_nm=20.0, axes=axes)
    with pytest.raises(NanoscopyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        write_datamaps(folder, tmp_path / "maps")
    assert not (tmp_path / "maps").exists()


def test_refusals_before_any_work(tmp_path, capsys):
    plain = tmp_path / "plain.tif"
    write_image(plain, acquire(_lines(), STANDARD_CONDITIONS, sted=True, rng=1).astype(np.float32))
    with pytest.raises(NanoscopyError, match="carries no pixel size; give it with --pixel-size"):
        write_datamaps(plain, tmp_path / "maps")
    (tmp_path / "taken").mkdir()
    assert main(["datamap", str(plain), str(tmp_path / "taken"), "--pixel-size", "20"]) == 2
    assert "taken already exists; give a new folder for the datamaps." in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(NanoscopyError, match="holds no .tif or .tiff image"):
        write_datamaps(tmp_path / "empty", tmp_path / "maps")
    with pytest.raises(NanoscopyError, match="pixel size of plain.tif is nan nm"):
        write_datamaps(plain, tmp_path / "maps", pixel_size_nm=float("nan"))
    negative = tmp_path / "negative.tif"
    write_image(negative, np.full((32, 32), -3.0, np.float32), pixel_size_nm=20.0)
    with pytest.raises(NanoscopyError, match="holds negative values"):
        write_datamaps(negative, tmp_path / "maps")
    assert not (tmp_path / "maps").exists()


def test_pysted_examples_are_read_as_they_ship(tmp_path):
    example = pysted_example("factin", 0)
    assert example.shape == (224, 224) and example.dtype == np.float32
    assert example.max() == pytest.approx(EXAMPLE_MOLECULES)
    sources = load_datamaps("pysted:tubulin:0,2")
    assert [s.name for s in sources] == ["tubulin-0", "tubulin-2"]
    assert all(s.pixel_size_nm == 20.0 for s in sources)
    out = write_datamaps("pysted:psd95:1", tmp_path / "psd95")
    np.testing.assert_array_equal(read_image(out / "psd95-1.tif").data, pysted_example("psd95", 1))
    for spec, message in [("pysted:actin", "no example datamaps named 'actin'"),
                          ("pysted:factin:x", "not whole numbers"), ("pysted:psd95:3", "ships no example psd95 3"),
                          ("pysted:factin:1,1", "an index twice")]:
        with pytest.raises(NanoscopyError, match=message):
            load_datamaps(spec)


def _datamap_folder(tmp_path, pixel_size_nm=20.0):
    folder = tmp_path / "maps"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("m1", "m2"):
        datamap = np.kron(rng.random((10, 10)) * 4, np.ones((8, 8))).astype(np.float32)
        write_image(folder / f"{name}.tif", datamap, pixel_size_nm=pixel_size_nm)
    return folder


def test_augmented_crops_are_deterministic_and_keep_the_structure():
    datamap = np.kron(np.arange(100, dtype=np.float32).reshape(10, 10), np.ones((8, 8), np.float32))
    first, info, masks = augmented_crop(datamap, 64, np.random.default_rng(5))
    again, _, _ = augmented_crop(datamap, 64, np.random.default_rng(5))
    assert masks is None
    np.testing.assert_array_equal(first, again)
    assert first.shape == (64, 64) and first.dtype == np.float32 and first.min() >= 0
    row, col = info["crop_origin_px"]
    crop = datamap[row:row + 64, col:col + 64]
    assert first.sum() / info["density"] == pytest.approx(crop.sum(), rel=0.05)


def test_simulate_datamaps_same_seed_same_bytes_and_pixel_size(tmp_path):
    folder = _datamap_folder(tmp_path)
    runs = [simulate_datamap_dataset([folder], 3, 64, seed, tmp_path / f"run{i}", mix={"filaments": 0.4})
            for i, seed in enumerate((7, 7, 8))]
    files = sorted(p.relative_to(runs[0]) for p in runs[0].rglob("*") if p.is_file())
    assert {f.parts[0] for f in files} == {"input", "target", "truth", "dataset.json"}
    assert all((runs[0] / f).read_bytes() == (runs[1] / f).read_bytes() for f in files)
    assert any((runs[0] / f).read_bytes() != (runs[2] / f).read_bytes() for f in files if f.suffix == ".tif")
    manifest = json.loads((runs[0] / "dataset.json").read_text())
    assert manifest["kind"] == "datamaps" and manifest["pixel_size_nm"] == 20.0 and manifest["task"] is None
    assert {s["source"] for s in manifest["samples"]} <= {"datamaps", "filaments"}
    for name in ("input", "target", "truth"):
        image = read_image(runs[0] / name / "0000.tif")
        assert image.data.shape == (64, 64) and image.pixel_size_nm == pytest.approx(20.0)
    datamap_samples = [s for s in manifest["samples"] if s["source"] == "datamaps"]
    for sample in datamap_samples:
        assert sample["datamap"] in ("m1", "m2") and len(sample["flips"]) == 2


def test_simulate_datamaps_refusals(tmp_path, capsys):
    folder = _datamap_folder(tmp_path, pixel_size_nm=25.0)
    with pytest.raises(NanoscopyError, match="mix only datamaps of 20 nm pixels"):
        simulate_datamap_dataset([folder], 1, 64, 0, tmp_path / "out", mix={"factin": 0.5})
    with pytest.raises(NanoscopyError, match="keep them below 1"):
        simulate_datamap_dataset([folder], 1, 64, 0, tmp_path / "out", mix={"factin": 0.5, "beads": 0.5})
    with pytest.raises(NanoscopyError, match="smaller than --size 96"):
        simulate_datamap_dataset([folder], 1, 96, 0, tmp_path / "out")
    mixed = _datamap_folder(tmp_path / "other")
    with pytest.raises(NanoscopyError, match="different pixel sizes"):
        simulate_datamap_dataset([folder, mixed], 1, 64, 0, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert main(["simulate", "factin", "--datamaps", str(folder), "--n", "1", "--out", str(tmp_path / "o")]) == 2
    assert "--datamaps and --mix belong to the datamaps kind" in capsys.readouterr().err
    assert main(["simulate", "datamaps", "--mix", "factin", "--datamaps", str(folder), "--n", "1",
                 "--out", str(tmp_path / "o")]) == 2
    assert "is not KIND:SHARE" in capsys.readouterr().err
    # At 25 nm pixels the datamaps are imaged at 25 nm (the conditions take the datamaps' pixel size).
    out = simulate_datamap_dataset([folder], 1, 64, 0, tmp_path / "at25")
    assert read_image(out / "target" / "0000.tif").pixel_size_nm == pytest.approx(25.0)


def test_datamap_command_prints_the_agreement(tmp_path, capsys):
    folder = _sted_folder(tmp_path, names=("a",))
    assert main(["datamap", str(folder), str(tmp_path / "maps"), "--iterations", "auto"]) == 0
    out = capsys.readouterr().out
    assert "a: " in out and "real/re-imaged resolution" in out and "wrote 1 datamaps to" in out
    record = json.loads((tmp_path / "maps" / "datamaps.json").read_text())["datamaps"][0]
    assert record["derivation"]["stopping"] == "discrepancy principle"
    with pytest.raises(SystemExit):
        main(["datamap", str(folder), str(tmp_path / "other"), "--iterations", "many"])
    assert "give a whole number of iterations or auto" in capsys.readouterr().err


def test_an_interrupted_derivation_leaves_nothing(tmp_path):
    from napari_nanoscopy.errors import Cancelled

    folder = _sted_folder(tmp_path, names=("a", "b"))

    def stop_after_the_first(done, total):
        if done == 1:
            raise Cancelled("stopped")

    with pytest.raises(Cancelled):
        write_datamaps(folder, tmp_path / "maps", iterations=2, progress=stop_after_the_first)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sted"]
    with pytest.raises(NanoscopyError, match="lack"):
        write_datamaps(folder, tmp_path / "maps", conditions={"pixelsize": 2e-8})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sted"]
