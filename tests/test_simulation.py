"""Simulation: structures, standard pySTED acquisitions, time series and datasets."""

import json

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from napari_nanoscopy.errors import Cancelled, NanoscopyError
from napari_nanoscopy.io import read_image
from napari_nanoscopy.simulation import (
    KINDS,
    STANDARD_CONDITIONS,
    acquire,
    acquire_pair,
    acquire_series,
    beads,
    build_microscope,
    factin,
    factin_series,
    filaments,
    nanodomains,
    simulate_dataset,
    twolabel,
)
from napari_nanoscopy.simulation.axons import axons

GENERATORS = {
    "beads": lambda seed: beads(64, seed=seed),
    "nanodomains": lambda seed: nanodomains(64, seed=seed),
    "factin": lambda seed: factin(64, seed=seed),
    "filaments": lambda seed: filaments(64, seed=seed),
    "twolabel": lambda seed: twolabel(64, seed=seed),
    "axons": lambda seed: axons(64, seed=seed),
}


def _arrays(structure):
    names = ("datamap", "truth", "task", "weak", "better", "mask")
    return {name: getattr(structure, name) for name in names if getattr(structure, name, None) is not None}


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_generators_are_deterministic_per_seed(kind):
    first, again, other = (_arrays(GENERATORS[kind](seed)) for seed in (3, 3, 4))
    assert first.keys() == again.keys()
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
    assert any(not np.array_equal(first[name], other[name]) for name in first)


def test_acquire_pair_is_seeded_and_leaves_numpy_global_rng_alone():
    datamap = nanodomains(64, seed=1).datamap
    np.random.seed(123)
    expected_global_draw = np.random.random()
    np.random.seed(123)
    confocal, sted = acquire_pair(datamap, rng=7)
    assert np.random.random() == expected_global_draw
    again = acquire_pair(datamap, rng=7)
    other = acquire_pair(datamap, rng=8)
    np.testing.assert_array_equal(confocal, again[0])
    np.testing.assert_array_equal(sted, again[1])
    assert not np.array_equal(confocal, other[0])
    assert confocal.dtype == sted.dtype == np.float32
    # Photon counts: STED is much sharper, so its brightest pixel is dimmer than confocal's.
    assert confocal.max() > sted.max() > 0


def test_json_round_trip_of_conditions_gives_the_same_images():
    conditions = json.loads(json.dumps(STANDARD_CONDITIONS))
    datamap = beads(64, seed=2).datamap
    np.testing.assert_array_equal(
        acquire(datamap, conditions, sted=True, rng=5), acquire(datamap, sted=True, rng=5)
    )


def test_nanodomains_follow_the_paper_constraints():
    counts = set()
    for seed in range(30):
        sample = nanodomains(64, seed=seed)
        centres = sample.positions.astype(int)
        n = len(centres)
        counts.add(n)
        assert 1 <= n <= 6 and n == sample.info["n_nanodomains"]
        assert np.all((centres >= 0) & (centres < 64))
        spine = sample.datamap > 0
        edge_distance_nm = ndimage.distance_transform_edt(spine)[centres[:, 0], centres[:, 1]] * 20
        assert np.all(edge_distance_nm <= 140)
        separations = np.hypot(*(centres[:, None] - centres[None]).transpose(2, 0, 1)) * 20
        assert np.all(separations[~np.eye(n, dtype=bool)] >= 40)
        assert np.all(sample.datamap[centres[:, 0], centres[:, 1]] == 105)
        # Localisation map: cube root of the distance to the closest centre, 0 on centres.
        assert np.count_nonzero(sample.task == 0) == n
        rows, cols = np.mgrid[:64, :64]
        nearest = np.min(np.hypot(rows[..., None] - centres[:, 0], cols[..., None] - centres[:, 1]), axis=-1)
        np.testing.assert_allclose(sample.task, np.cbrt(nearest), atol=1e-5)
    assert counts == {1, 2, 3, 4, 5, 6}
    assert len(nanodomains(64, n_nanodomains=6, seed=0).positions) == 6


def test_gaussian_localisation_map_peaks_on_every_centre_of_the_same_structure():
    distance = nanodomains(64, seed=4)
    gaussian = nanodomains(64, seed=4, localisation="gaussian")
    np.testing.assert_array_equal(gaussian.datamap, distance.datamap)  # the map draws no random numbers
    centres = gaussian.positions.astype(int)
    np.testing.assert_allclose(gaussian.task[centres[:, 0], centres[:, 1]], 1.0)
    np.testing.assert_allclose(gaussian.task, np.exp(-0.5 * distance.task.astype(np.float64) ** 6), atol=1e-5)
    assert gaussian.task.min() >= 0 and np.count_nonzero(gaussian.task > 0.7) == len(centres)  # exp(-1/2) = 0.61 one pixel off
    with pytest.raises(NanoscopyError, match="Unknown localisation map 'heat'"):
        nanodomains(64, seed=4, localisation="heat")


def test_gaussian_maps_are_written_and_described_only_for_nanodomains(tmp_path):
    out = simulate_dataset("nanodomains", n=2, size=64, seed=3, out_dir=tmp_path / "g", localisation="gaussian")
    plain = simulate_dataset("nanodomains", n=2, size=64, seed=3, out_dir=tmp_path / "d")
    manifest = json.loads((out / "dataset.json").read_text())
    assert "Gaussian peak" in manifest["task"]
    assert "cube root" in json.loads((plain / "dataset.json").read_text())["task"]
    np.testing.assert_array_equal(tifffile.imread(out / "input" / "0001.tif"), tifffile.imread(plain / "input" / "0001.tif"))
    assert tifffile.imread(out / "task" / "0001.tif").max() == pytest.approx(1.0)
    with pytest.raises(NanoscopyError, match="nanodomains only"):
        simulate_dataset("beads", n=1, size=64, seed=0, out_dir=tmp_path / "b", localisation="gaussian")
    assert not (tmp_path / "b").exists()


def _ring_period_and_direction(rings_mask):
    """Period (nm) and wave-vector angle (degrees) of the strongest non-zero frequency."""
    padded = 512
    spectrum = np.abs(np.fft.fft2(rings_mask - rings_mask.mean(), s=(padded, padded)))
    spectrum[0, 0] = 0
    peak = np.unravel_index(np.argmax(spectrum), spectrum.shape)
    frequency = np.array([(value + padded // 2) % padded - padded // 2 for value in peak]) / padded
    period_nm = 20 / np.hypot(*frequency)
    return period_nm, np.degrees(np.arctan2(frequency[0], frequency[1])) % 180


@pytest.mark.parametrize("seed", range(4))
def test_factin_rings_are_periodic_along_the_dendrite_axis(seed):
    sample = factin(64, fibres=False, seed=seed)
    assert sample.task.shape == (2, 64, 64) and sample.task.dtype == np.uint8
    assert sample.task[1].sum() == 0 and sample.task[0].sum() > 0
    period_nm, direction = _ring_period_and_direction(sample.task[0].astype(float))
    assert 175 <= period_nm <= 205
    angle_to_axis = abs(direction - sample.info["axis_angle_deg"]) % 180
    assert min(angle_to_axis, 180 - angle_to_axis) < 10


def test_factin_fibres_only():
    sample = factin(64, rings=False, seed=0)
    assert sample.task[0].sum() == 0 and sample.task[1].sum() > 0
    on_fibres = sample.datamap[sample.task[1] == 1].mean()
    elsewhere = sample.datamap[(sample.task[1] == 0) & (sample.datamap > 0)].mean()
    assert on_fibres > 5 * elsewhere


def test_factin_series_remodels_rings_into_fibres_after_the_stimulus():
    series = factin_series(8, 3, seed=2)
    assert series.datamaps.shape == (8, 64, 64) and series.masks.shape == (8, 2, 64, 64)
    for frame in range(1, 3):
        np.testing.assert_array_equal(series.datamaps[frame], series.datamaps[0])
    ring_area, fibre_area = series.masks.sum(axis=(2, 3), dtype=int).T
    assert np.all(np.diff(ring_area) <= 0) and np.all(np.diff(fibre_area) >= 0)
    assert ring_area[-1] < ring_area[2] and fibre_area[-1] > fibre_area[2]

    control = factin_series(5, 5, seed=2)
    assert np.all(control.datamaps == control.datamaps[0])


def test_series_bleaching_dims_later_frames_of_the_same_structure():
    static = np.repeat(factin(64, seed=1).datamap[None], 4, axis=0)
    acquired = acquire_series(static, sted=True, rng=0)
    brightness = acquired.confocal.mean(axis=(1, 2))
    assert np.all(np.diff(brightness) < 0) and brightness[-1] < 0.8 * brightness[0]
    assert sorted(acquired.sted) == [0, 1, 2, 3]
    assert np.all(np.diff(acquired.fluorescent.sum(axis=(1, 2))) < 0)
    np.testing.assert_array_equal(static[0], static[1])  # input untouched

    # With the standard fluorophore (k0 = 0) only the depletion beam bleaches.
    confocal_only = acquire_series(static, sted=False, rng=0)
    assert np.all(confocal_only.fluorescent == static)


def test_series_molecules_arriving_are_fresh_and_leaving_ones_are_removed():
    before = np.zeros((64, 64), np.int32)
    before[20:30, 20:30] = 50
    after = before.copy()
    after[40:50, 40:50] = 50  # new structure
    after[20:30, 20:25] = 0  # half of the old one leaves
    acquired = acquire_series(np.stack([before, after]), sted=[0], rng=1)
    assert acquired.fluorescent[0, 20:30, 20:30].sum() < before.sum()  # bleached by STED
    np.testing.assert_array_equal(acquired.fluorescent[1, 40:50, 40:50], 50)
    np.testing.assert_array_equal(acquired.fluorescent[1, 20:30, 20:25], 0)
    staying = (slice(20, 30), slice(25, 30))
    np.testing.assert_array_equal(acquired.fluorescent[1][staying], acquired.fluorescent[0][staying])


def _read(path):
    with tifffile.TiffFile(path) as tiff:
        resolution = tiff.pages[0].tags["XResolution"].value
        return tiff.asarray(), tiff.imagej_metadata, resolution[0] / resolution[1]


def test_dataset_layout_json_and_pixel_size(tmp_path):
    out_dir = tmp_path / "nano"
    calls = []
    returned = simulate_dataset("nanodomains", 2, 64, 11, out_dir, lambda *done_total: calls.append(done_total))
    assert returned == out_dir and calls == [(1, 2), (2, 2)]
    expected = ["dataset.json", "input", "target", "task", "truth"]
    assert sorted(path.name for path in out_dir.iterdir()) == expected
    for folder in ("input", "target", "task", "truth"):
        assert sorted(path.name for path in (out_dir / folder).iterdir()) == ["0000.tif", "0001.tif"]
        data, imagej, pixels_per_um = _read(out_dir / folder / "0000.tif")
        assert data.shape == (64, 64) and data.dtype == np.float32
        assert imagej["unit"] == "um" and pixels_per_um == pytest.approx(50.0)
        assert read_image(out_dir / folder / "0001.tif").pixel_size_nm == pytest.approx(20.0)
    manifest = json.loads((out_dir / "dataset.json").read_text())
    assert (manifest["kind"], manifest["n"], manifest["size"], manifest["seed"]) == ("nanodomains", 2, 64, 11)
    assert manifest["pixel_size_nm"] == 20.0 and manifest["conditions"] == STANDARD_CONDITIONS
    task = tifffile.imread(out_dir / "task" / "0001.tif")
    positions = np.array(manifest["samples"][1]["positions_px"], int)
    assert np.all(task[positions[:, 0], positions[:, 1]] == 0)


@pytest.mark.parametrize("kind", ["beads", "factin", "twolabel"])
def test_dataset_task_folder_per_kind(tmp_path, kind):
    simulate_dataset(kind, 1, 64, 0, tmp_path / kind)
    manifest = json.loads((tmp_path / kind / "dataset.json").read_text())
    has_task = (tmp_path / kind / "task").exists()
    assert has_task == (kind != "beads") == (manifest["task"] is not None)
    if kind == "factin":
        masks = read_image(tmp_path / kind / "task" / "0000.tif")
        assert masks.data.shape == (2, 64, 64) and masks.axes == "CYX" and masks.data.dtype == np.uint8
    if kind == "beads":
        assert len(manifest["samples"][0]["positions_px"]) == 4


def test_dataset_is_reproducible_from_its_seed(tmp_path):
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        simulate_dataset("filaments", 2, 64, seed, tmp_path / name)
    files = [path.relative_to(tmp_path / "a") for path in sorted((tmp_path / "a").rglob("*.*"))]
    for relative in files:
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes()
    assert (tmp_path / "a/input/0001.tif").read_bytes() != (tmp_path / "c/input/0001.tif").read_bytes()
    # A sample depends only on (seed, index): a larger dataset extends a smaller one.
    simulate_dataset("filaments", 1, 64, 5, tmp_path / "d")
    assert (tmp_path / "d/target/0000.tif").read_bytes() == (tmp_path / "a/target/0000.tif").read_bytes()


def test_dataset_refuses_a_non_empty_folder_but_takes_an_empty_one(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(NanoscopyError, match="not empty"):
        simulate_dataset("beads", 1, 64, 0, tmp_path / "full")
    assert [path.name for path in (tmp_path / "full").iterdir()] == ["keep.txt"]
    (tmp_path / "empty").mkdir()
    simulate_dataset("beads", 1, 64, 0, tmp_path / "empty")
    assert (tmp_path / "empty" / "dataset.json").is_file()


def test_cancelled_dataset_keeps_only_whole_files_and_no_manifest(tmp_path):
    def cancel_after_first(done, total):
        if done == 1:
            raise Cancelled()

    with pytest.raises(Cancelled):
        simulate_dataset("beads", 3, 64, 0, tmp_path / "stop", cancel_after_first)
    assert not (tmp_path / "stop" / "dataset.json").exists()
    written = sorted(str(path.relative_to(tmp_path / "stop")) for path in (tmp_path / "stop").rglob("*.*"))
    assert written == ["input/0000.tif", "target/0000.tif", "truth/0000.tif"]


@pytest.mark.parametrize(
    "call",
    [
        lambda tmp: simulate_dataset("spines", 1, 64, 0, tmp / "x"),
        lambda tmp: simulate_dataset("beads", 0, 64, 0, tmp / "x"),
        lambda tmp: simulate_dataset("beads", 1, 16, 0, tmp / "x"),
        lambda tmp: simulate_dataset("beads", 1, 64, -1, tmp / "x"),
        lambda tmp: simulate_dataset("beads", 1, 64, 0, tmp / "x",
                                     conditions={**STANDARD_CONDITIONS, "pixelsize": 10e-9}),
        lambda tmp: nanodomains(64, n_nanodomains=7),
        lambda tmp: factin_series(5, 6),
        lambda tmp: factin(64, rings=False, fibres=False),
        lambda tmp: beads(64, n_isolated=40),
        lambda tmp: acquire_pair(np.zeros((2, 64, 64))),
        lambda tmp: acquire_pair(np.full((64, 64), -1)),
        lambda tmp: acquire_pair(np.full((64, 64), 0.5)),
        lambda tmp: acquire_series(np.zeros((2, 64, 64), int), sted=[2]),
        lambda tmp: acquire_series(np.full((2, 64, 64), 0.5)),
        lambda tmp: acquire_series(np.zeros((64, 64), int)),
        lambda tmp: build_microscope({**STANDARD_CONDITIONS, "fluo": {
            **STANDARD_CONDITIONS["fluo"], "triplet_dynamics_frac": 0}}),
        lambda tmp: build_microscope({"pixelsize": 20e-9}),
    ],
)
def test_user_errors_raise_nanoscopy_error(tmp_path, call):
    with pytest.raises(NanoscopyError) as raised:
        call(tmp_path)
    message = str(raised.value)
    assert message.endswith(".") and len(message.split()) >= 6  # a sentence, not a code
    assert not (tmp_path / "x").exists()


def test_kinds_are_all_simulated():
    assert set(KINDS) == set(GENERATORS)
