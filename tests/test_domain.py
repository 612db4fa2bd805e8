"""The domain check (issue 18, items 1 and 4): fingerprints, scores, reports and their front ends.

Shifted inputs are made here: pySTED images under other acquisition conditions, another
structure, a wrong pixel size, and the real STED images of STEDActinFCN given to confocal models.
"""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from napari_nanoscopy import NanoscopyError, load_model
from napari_nanoscopy.cli import main
from napari_nanoscopy.domain import FEATURES, check_array, check_planes, make_fingerprint, window_features, window_scores
from napari_nanoscopy.fingerprint import fingerprint_model
from napari_nanoscopy.inference import Restorer
from napari_nanoscopy.io import read_image, write_image
from napari_nanoscopy.packages import CARD_FILE, WEIGHTS_FILE, ModelCard, bundled_models_dir, sha256_of
from napari_nanoscopy.simulation import simulate_sample
from napari_nanoscopy.simulation.conditions import STANDARD_CONDITIONS
from napari_nanoscopy.training import train

REAL = Path(__file__).resolve().parents[2] / "shared" / "real" / "STEDActinFCN"
REAL_FILES = sorted(REAL.glob("axon/images/*.tif*")) + sorted(REAL.glob("*/to_predict/*.tif"))
needs_real = pytest.mark.skipif(not REAL_FILES, reason="the real STEDActinFCN files are not beside the repository")
FINGERPRINTED = ["l2l-twolabel", "pix2pix-factin", "pix2pix-nanodomains", "tagan-factin", "tagan-live-factin",
                 "tagan-live-factin-synthetic",
                 "tagan-nanodomains", "tcan-filaments", "unet-live-factin", "unet-live-factin-synthetic", "wang-beads"]


def beads(n, seed, conditions=STANDARD_CONDITIONS, kind="beads", first=0):
    """Confocal pySTED images (64 px, 20 nm) from the simulator's per-image seeds."""
    return [simulate_sample(kind, 64, np.random.default_rng([seed, first + k]), conditions).input for k in range(n)]


@pytest.fixture(scope="module")
def wang():
    return load_model("wang-beads")


@pytest.fixture(scope="module")
def in_domain():
    return beads(6, seed=101)


def test_every_bundled_model_carries_a_calibrated_fingerprint():
    for name in FINGERPRINTED:
        card = load_model(name).card
        assert card.domain is not None, name
        assert tuple(card.domain.features) == FEATURES
        assert card.domain.calibration["held_out_images"] >= 20
        assert card.domain.threshold > card.domain.calibration["held_out_scores"]["median"]


def test_in_domain_simulations_pass_and_shifted_ones_are_flagged(wang, in_domain):
    card = wang.card
    assert not any(check_planes(card, [image]).flagged for image in in_domain)
    dwell = copy.deepcopy(STANDARD_CONDITIONS)
    dwell["pdt"] = 1e-6  # a 10x shorter dwell time: other noise
    psf = copy.deepcopy(STANDARD_CONDITIONS)
    psf["objective"]["na"] = 0.9  # a 1.6x wider PSF
    shifts = {"dwell": beads(4, 102, dwell), "psf": beads(4, 103, psf), "structure": beads(4, 104, kind="nanodomains")}
    for what, images in shifts.items():
        reports = [check_planes(card, [image]) for image in images]
        assert all(r.flagged for r in reports), (what, [r.score for r in reports])
        assert reports[0].message.startswith("Outside the model's domain: this image scores")
    # a wrong pixel size: 20 nm images declared at 40 nm or 10 nm are resampled to the wrong scale
    for zoom in (2.0, 0.5):
        assert all(check_planes(card, [image], zoom).flagged for image in in_domain)


@needs_real
def test_real_sted_given_to_confocal_models_is_flagged():
    images = [read_image(path).data.astype(np.float32) for path in REAL_FILES]
    for name in ("tagan-factin", "pix2pix-factin", "wang-beads", "tcan-filaments", "tagan-nanodomains"):
        card = load_model(name).card
        reports = [check_planes(card, [image]) for image in images]
        assert all(r.flagged for r in reports), (name, [round(r.score, 2) for r in reports])
        # 224x224 images are scored window by window
        assert reports[0].per_tile is not None and reports[0].per_tile.shape[0] == 1


def test_per_tile_scores_find_the_shifted_part_of_a_large_image(wang, in_domain):
    mosaic = np.block([[in_domain[0], in_domain[1]], [in_domain[2], in_domain[3]]]).astype(np.float32)
    shifted = mosaic.copy()
    shifted[64:, 64:] = ndimage.zoom(in_domain[3][:32, :32], 2, order=1)  # a quarter at twice the scale
    report = check_planes(wang.card, [shifted])
    assert report.per_tile.shape == (1, 2, 2) and report.tile_size == 64
    flagged = report.per_tile[0] > report.threshold
    assert flagged[1, 1] and not flagged[0, 0]
    # empty background is not scored (NaN): it says nothing about the structure
    empty = mosaic.copy()
    empty[:64, :64] = np.random.default_rng(0).poisson(0.64, (64, 64))
    report = check_planes(wang.card, [empty])
    assert np.isnan(report.per_tile[0, 0, 0]) and np.isfinite(report.per_tile[0, 1, 1]) and not report.flagged
    assert report.to_dict()["tiles_scored"] == 3
    # the stack path reads only the planes and windows it scores (a lazy view of a (T, Y, X) stack)
    stack = check_array(wang.card, np.stack([mosaic, shifted]))
    assert stack.per_tile.shape == (2, 2, 2)


def test_restoration_carries_the_report_and_provenance(wang, in_domain):
    restorer = Restorer(wang, device="cpu")
    result = restorer.restore(in_domain[0], pixel_size_nm=20.0, samples=1)
    assert result.domain is not None and not result.domain.flagged and result.domain.score < result.domain.threshold
    assert result.provenance["domain"]["flagged"] is False
    assert result.provenance["domain"]["message"].startswith("In domain: this image scores")
    flagged = restorer.restore(in_domain[0], pixel_size_nm=40.0, samples=1)
    assert flagged.domain.flagged and flagged.provenance["domain"]["flagged"] is True


def test_a_model_without_fingerprint_says_domain_unknown(packages_dir, smooth_image):
    restorer = Restorer(str(packages_dir / "l2l"), device="cpu")
    assert restorer.card.domain is None
    result = restorer.restore(smooth_image, samples=1)
    assert not result.domain.known and not result.domain.flagged
    assert result.domain.message.startswith(f"Domain unknown: the model '{restorer.card.name}' carries no fingerprint")
    assert result.provenance["domain"]["score"] is None


def test_fingerprint_of_another_version_is_unknown_not_wrong(wang, in_domain):
    data = wang.card.to_dict()
    data["domain"]["features"] = [f"old_{name}" for name in data["domain"]["features"]]
    report = check_planes(ModelCard.from_dict(data), [in_domain[0]])
    assert not report.known and "made with other statistics" in report.message
    # version 1 kept no training windows to measure the nearest-neighbour distance to
    data = wang.card.to_dict()
    del data["domain"]["reference"]
    report = check_planes(ModelCard.from_dict(data), [in_domain[0]])
    assert not report.known and "made with other statistics" in report.message


def test_a_window_scores_its_distance_to_the_nearest_training_windows(wang, in_domain):
    fingerprint = wang.card.domain
    assert fingerprint.neighbours == 2 and 100 <= len(fingerprint.reference) <= 1024
    # a training window itself: its own distance is 0, its score half the distance to its nearest other one
    reference = np.asarray(fingerprint.reference)
    features = np.linalg.solve(np.asarray(fingerprint.whitening), reference[0]) * np.asarray(fingerprint.scale) \
        + np.asarray(fingerprint.center)
    others = np.sqrt(np.mean((reference[1:] - reference[0]) ** 2, axis=1))
    assert window_scores(fingerprint, features[None])[0] == pytest.approx(others.min() / 2, abs=1e-3)


def test_background_photons_and_edge_width_follow_the_physics():
    """Same structure, Poisson counts: a 10x brighter background raises the relative background
    statistic, a 2x wider PSF the edge width; neither moves much with the photon count alone."""
    rng = np.random.default_rng(0)
    bar = np.zeros((64, 64))
    bar[:, 16:48] = 1.0  # wide: its two edges do not meet, so their width is the PSF's
    background, edge = FEATURES.index("log_background_photons"), FEATURES.index("log_edge_width")

    def features(sigma, photons, dark):
        counts = rng.poisson(photons * ndimage.gaussian_filter(bar, sigma) + dark).astype(np.float64)
        low, high = np.percentile(counts, [0, 100])
        return window_features(counts, low, high)

    standard = features(3.0, 40.0, 1.0)
    assert features(3.0, 40.0, 10.0)[background] > standard[background] + 0.5
    assert features(6.0, 40.0, 1.0)[edge] > standard[edge] + 0.2
    assert abs(features(3.0, 80.0, 2.0)[background] - standard[background]) < 0.3


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(whitening=[[1.0]]), f"domain.whitening must be a {len(FEATURES)}x{len(FEATURES)} list of lists"),
    (lambda d: d.update(scale=[0.0] * len(d["scale"])), r"domain.scale\[0\] must be a finite number"),
    (lambda d: d.update(threshold=float("nan")), "domain.threshold must be a finite number"),
    (lambda d: d.update(center=d["center"][:3]), "domain.features, center and scale must be lists of equal length"),
    (lambda d: d.update(window="64"), "domain.window must be a whole number"),
    (lambda d: d.update(reference=[[0.0] * 3]), f"domain.reference must be a list of at most 1024 lists of {len(FEATURES)}"),
    (lambda d: d.update(reference=d["reference"] * 8), "domain.reference must be a list of at most 1024"),
    (lambda d: d.update(neighbours=0), "domain.neighbours must be a whole number from 1 to 64"),
])
def test_malformed_fingerprints_are_refused(wang, change, message):
    data = wang.card.to_dict()
    change(data["domain"])
    with pytest.raises(NanoscopyError, match=message):
        ModelCard.from_dict(data)


def test_card_round_trips_with_its_fingerprint(wang):
    data = json.loads((bundled_models_dir() / "wang-beads" / CARD_FILE).read_text())
    assert ModelCard.from_dict(data).to_dict() == data


# --- the fingerprint command and train --------------------------------------------------------------


@pytest.fixture(scope="module")
def bead_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("fingerprint")
    for name, seed, n in (("train", 0, 16), ("held", 1, 6)):
        (root / name / "input").mkdir(parents=True)
        for k, image in enumerate(beads(n, seed + 200)):
            write_image(root / name / "input" / f"{k:02d}.tif", image, pixel_size_nm=20.0)
    return root


def test_fingerprint_command_writes_a_new_package_with_the_same_weights(bead_folders, tmp_path, capsys):
    out = tmp_path / "wang-fp"
    code = main(["fingerprint", "wang-beads", str(out), "--data", str(bead_folders / "train"),
                 "--held-out", str(bead_folders / "held")])
    assert code == 0
    assert capsys.readouterr().out.startswith(f"wrote {out}: fingerprint of 16 training images on 64-pixel windows")
    assert sha256_of(out / WEIGHTS_FILE) == sha256_of(bundled_models_dir() / "wang-beads" / WEIGHTS_FILE)
    card = load_model(str(out)).card
    assert card.domain.calibration["held_out_images"] == 6 and card.domain.calibration["training_images"] == 16
    # OUT exists: refused before any work, nothing changed
    assert main(["fingerprint", "wang-beads", str(out), "--data", str(bead_folders / "train")]) == 2
    assert "already exists; choose another path for the new package or pass --overwrite." in capsys.readouterr().err


def test_fingerprint_refusals(bead_folders, tmp_path, packages_dir):
    with pytest.raises(NanoscopyError, match="holds no .tif or .tiff image"):
        fingerprint_model("wang-beads", tmp_path, tmp_path / "out")
    with pytest.raises(NanoscopyError, match="too few to hold some out for calibration; give at least 15"):
        fingerprint_model("wang-beads", bead_folders / "held", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    # a package folder (here an untrained l2l) can come out as a .zip
    card = fingerprint_model(str(packages_dir / "l2l"), bead_folders / "train", tmp_path / "new.zip",
                             held_out=bead_folders / "held")
    assert load_model(str(tmp_path / "new.zip")).card.domain == card.domain


def test_train_writes_a_fingerprint(tmp_path):
    rng = np.random.default_rng(0)
    for folder in ("input", "target"):
        (tmp_path / "pairs" / folder).mkdir(parents=True)
    for i in range(15):
        spots = np.zeros((64, 64), np.float32)
        spots[tuple(rng.integers(0, 64, (2, 12)))] = rng.uniform(50, 100, 12)
        confocal = ndimage.gaussian_filter(spots, 3.0) * 10 + rng.poisson(2.0, spots.shape)
        write_image(tmp_path / "pairs" / "input" / f"{i:02d}.tif", confocal.astype(np.float32), pixel_size_nm=20.0)
        write_image(tmp_path / "pairs" / "target" / f"{i:02d}.tif", spots, pixel_size_nm=20.0)
    card = train("l2l", tmp_path / "pairs", tmp_path / "model", steps=1, patch=32, device="cpu",
                 generator_kwargs=dict(base_filters=4))
    assert card.domain is not None and card.domain.calibration["held_out_images"] == 5
    assert load_model(str(tmp_path / "model")).card.domain == card.domain


# --- the command line ---------------------------------------------------------------------------------


@needs_real
def test_cli_warns_and_strict_domain_writes_nothing(tmp_path, capsys):
    source = REAL_FILES[0]
    out = tmp_path / "restored.tif"
    code = main(["restore", str(source), str(out), "--model", "tagan-factin", "--pixel-size", "20", "--samples", "1",
                 "--strict-domain"])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists() and not list(tmp_path.iterdir())
    assert f"error: {source.name}: Outside the model's domain: this image scores" in err
    assert err.rstrip().endswith("nothing was written (--strict-domain).")
    assert main(["restore", str(source), str(out), "--model", "tagan-factin", "--pixel-size", "20",
                 "--samples", "1"]) == 0
    err = capsys.readouterr().err
    assert f"napari-nanoscopy: warning: {source.name}: Outside the model's domain" in err
    assert read_image(out).metadata["domain"]["flagged"] is True


def test_report_without_fingerprint_data_is_refused_cleanly(wang):
    with pytest.raises(NanoscopyError, match="at least 5 held-out in-domain images"):
        make_fingerprint(wang.card, beads(2, 300), beads(2, 301))


def test_the_bundled_samples_are_in_their_models_domain():
    """The README's main job and File > Open Sample must not warn: the samples are pySTED fields
    (128-256 px) of the conditions the models were trained on."""
    samples = Path(__file__).resolve().parents[1] / "sample_data"
    for key, entry in json.loads((samples / "samples.json").read_text()).items():
        card = load_model(entry["model"]).card
        image = read_image(samples / next(layer["file"] for layer in entry["layers"] if layer["role"] == "input"))
        report = check_planes(card, [image.data.astype(np.float32)], image.pixel_size_nm / card.pixel_size_nm)
        assert report.known and not report.flagged, (key, report.message)


def test_an_imported_tagan_checkpoint_becomes_a_fingerprinted_package(bead_folders, tmp_path):
    import torch
    from test_packages import public_layout_state_dict

    checkpoint = tmp_path / "latest_net_G.pth"
    torch.save(public_layout_state_dict(ngf=4, n_blocks=2), checkpoint)
    card = fingerprint_model(str(checkpoint), bead_folders / "train", tmp_path / "imported",
                             held_out=bead_folders / "held", pixel_size_nm=20.0)
    loaded = load_model(str(tmp_path / "imported"))
    assert loaded.card.domain == card.domain and loaded.card.family == "tagan"
    with pytest.raises(NanoscopyError, match="The images' pixel size is -1 nm"):
        fingerprint_model(str(checkpoint), bead_folders / "train", tmp_path / "again", pixel_size_nm=-1)
