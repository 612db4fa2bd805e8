"""TA-CycleGAN (``train tagan-cycle``): unpaired training between two image folders against a frozen
task network, exact resume, the two-generator package, and translation both ways (Python and CLI)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from scipy import ndimage

from napari_nanoscopy import NanoscopyError, load_model, translate
from napari_nanoscopy.cli import main
from napari_nanoscopy.errors import Cancelled
from napari_nanoscopy.inference import Restorer
from napari_nanoscopy.io import read_image, write_image
from napari_nanoscopy.training import TrainingConfig, checkpoint_folder, train
from napari_nanoscopy.training import cycle
from napari_nanoscopy.translation import translation_model

FROZEN = "unet-live-axons"
SIZE, PATCH = 48, 32
TINY = dict(generator_kwargs=dict(ngf=4, n_blocks=1), discriminator_kwargs=dict(ndf=4), patch=PATCH, device="cpu")


def write_blobs(folder, n, sigma, seed, pixel_size_nm=20.0, size=SIZE):
    """Unpaired toy domains: the same kind of spots, sharp (A) or blurred (B)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        spots = np.zeros((size, size), np.float32)
        rows, cols = rng.integers(0, size, (2, 10))
        spots[rows, cols] = rng.uniform(50, 100, 10)
        image = ndimage.gaussian_filter(spots, sigma) * 10 + rng.poisson(1.0, spots.shape)
        write_image(folder / f"{seed}_{i}.tif", image.astype(np.float32), pixel_size_nm=pixel_size_nm)
    return folder


@pytest.fixture(scope="module")
def domains(tmp_path_factory):
    root = tmp_path_factory.mktemp("cycle")
    return write_blobs(root / "sharp", 4, 1.0, seed=0), write_blobs(root / "blurred", 5, 2.5, seed=1)


@pytest.fixture(scope="module")
def trained(domains, tmp_path_factory):
    a, b = domains
    out = tmp_path_factory.mktemp("model") / "cycle"
    history = []
    card = train("tagan-cycle", a, out, domain_b=b, task_network=FROZEN, steps=40, seed=2,
                 callback=lambda step, steps, losses: history.append(losses), **TINY)
    return out, card, history


def test_the_cycle_and_task_losses_fall(trained):
    _, card, history = trained
    assert set(history[0]) == {"g_a2b", "g_b2a", "cycle_a", "cycle_b", "task", "d_a", "d_b"}
    assert all(np.isfinite(list(losses.values())).all() for losses in history)

    def mean(key, part):
        return np.mean([losses[key] for losses in part])

    for key in ("cycle_a", "cycle_b", "task"):
        assert mean(key, history[-5:]) < 0.8 * mean(key, history[:5]), key
    assert card.training["loss"] == {"cycle_weight": 10.0, "task_weight": 1.0}


def test_the_package_holds_both_generators_and_names_the_domains(trained, domains):
    out, card, _ = trained
    package = load_model(out)
    assert package.card.to_dict() == card.to_dict()
    assert card.family == "tagan" and card.training["method"] == "tagan-cycle"
    assert card.cycle.domain_a == "sharp" and card.cycle.domain_b == "blurred"
    assert card.input_channels == ["domain A"] and card.output_channels == ["domain B"]
    assert card.training["domain_b"]["n_images"] == 5 and card.training["n_images_a"] == 4
    assert card.training["task_network"]["source"] == FROZEN and card.task_network is None
    assert card.pixel_size_nm == 20.0 and card.default_samples == 10  # dropout: MC samples
    tensors = load_file(out / "weights.safetensors")
    assert {key.split(".")[0] for key in tensors} == {"generator", "reverse_generator"}
    forward = {k: v for k, v in package.generator.state_dict().items()}
    assert all(torch.equal(tensors[f"generator.{k}"], v) for k, v in forward.items())
    assert all(torch.equal(tensors[f"reverse_generator.{k}"], v) for k, v in package.reverse_generator.state_dict().items())
    assert not all(torch.equal(forward[k], v) for k, v in package.reverse_generator.state_dict().items())


def test_a_restorer_translates_a_to_b_and_translate_goes_either_way(trained, domains):
    out, _, _ = trained
    image = read_image(next(domains[0].iterdir())).data
    a2b = Restorer(out).restore(image, pixel_size_nm=20.0, samples=1, seed=0)
    assert a2b.mean.shape == image.shape
    same = translate(image, out, pixel_size_nm=20.0, samples=1, seed=0)
    np.testing.assert_array_equal(same.mean, a2b.mean)
    back = translate(image, out, direction="b2a", pixel_size_nm=20.0, samples=1, seed=0)
    assert back.mean.shape == image.shape and not np.allclose(back.mean, a2b.mean)
    view = translation_model(out, "b2a")
    assert view.card.input_channels == ["domain B"] and view.card.cycle.domain_a == "blurred"
    assert view.card.weights_sha256 != load_model(out).card.weights_sha256  # no Restorer cache shares them


def test_translate_command_keeps_shape_and_pixel_size(trained, domains, tmp_path, capsys):
    out, _, _ = trained
    source = next(domains[1].iterdir())
    target = tmp_path / "translated.tif"
    assert main(["translate", str(source), str(target), "--model", str(out), "--direction", "b2a", "--samples", "1"]) == 0
    written = read_image(target)
    assert written.data.shape == (SIZE, SIZE) and written.pixel_size_nm == pytest.approx(20.0)
    assert f"wrote {target}" in capsys.readouterr().out
    # Only a translation package translates; one-line message, nothing written.
    assert main(["translate", str(source), str(tmp_path / "no.tif"), "--model", "pix2pix-factin"]) == 2
    message = capsys.readouterr().err.strip()
    assert "translates nothing back; give a tagan-cycle package" in message and "\n" not in message
    assert not (tmp_path / "no.tif").exists()


def test_stop_and_resume_match_an_uninterrupted_run(domains, tmp_path, monkeypatch):
    monkeypatch.setattr(cycle, "POOL_SIZE", 2)  # the pool is full after 2 steps: its random swaps are resumed too
    a, b = domains
    settings = dict(domain_b=b, task_network=FROZEN, steps=6, seed=5, checkpoint_every=100, **TINY)
    whole = train("tagan-cycle", a, tmp_path / "whole", **settings)
    done = []
    with pytest.raises(Cancelled, match="after 3 of 6 steps"):
        train("tagan-cycle", a, tmp_path / "parts", should_stop=lambda: len(done) == 3,
              callback=lambda *args: done.append(args), **settings)
    assert not (tmp_path / "parts").exists()
    saved = torch.load(checkpoint_folder(tmp_path / "parts") / "checkpoint.pt", weights_only=True)
    assert int(saved["networks"]["pool_b"]["count"]) == 2
    with pytest.raises(NanoscopyError, match="other settings.*domain_b"):
        train("tagan-cycle", a, tmp_path / "parts", resume=True, **{**settings, "domain_b": a})
    resumed = train("tagan-cycle", a, tmp_path / "parts", resume=True, **settings)
    assert resumed.training["resumed"] and resumed.training["final_losses"] == whole.training["final_losses"]
    expected, actual = load_file(tmp_path / "whole" / "weights.safetensors"), load_file(tmp_path / "parts" / "weights.safetensors")
    assert expected.keys() == actual.keys() and all(torch.equal(expected[k], actual[k]) for k in expected)
    # The card records the whole run, domain B and the task network included: training it again gives the same model.
    train(TrainingConfig.from_card(load_model(tmp_path / "whole").card, tmp_path / "again", device="cpu"))
    again = load_file(tmp_path / "again" / "weights.safetensors")
    assert all(torch.equal(expected[k], again[k]) for k in expected)


def test_the_package_fingerprints_domain_a_the_images_it_translates(tmp_path):
    """The domain check of a translation model: its input is domain A (a flat folder here)."""
    # 15 images (a third of them calibrate the threshold), 96 px: the fingerprint's windows are 64 px
    a = write_blobs(tmp_path / "sharp", 15, 1.0, seed=3, size=96)
    b = write_blobs(tmp_path / "blurred", 3, 2.5, seed=4, size=96)
    card = train("tagan-cycle", a, tmp_path / "cycle", domain_b=b, task_network=FROZEN, steps=1, seed=0, **TINY)
    assert card.domain is not None and "sharp" in card.domain.calibration["source"]
    result = Restorer(tmp_path / "cycle", device="cpu").restore(read_image(a / "3_0.tif").data, samples=1)
    assert result.domain.known and not result.domain.flagged  # a domain A image is in its domain


def test_refusals_before_any_training(domains, tmp_path):
    a, b = domains
    with pytest.raises(NanoscopyError, match=r"give task_network \(--task-network MODEL\)"):
        TrainingConfig("tagan-cycle", a, tmp_path / "m", steps=1, domain_b=b)
    with pytest.raises(NanoscopyError, match=r"give the domain B folder \(domain_b, --domain-b DIR\)"):
        TrainingConfig("tagan-cycle", a, tmp_path / "m", steps=1, task_network=FROZEN)
    with pytest.raises(NanoscopyError, match=r"drop domain_b \(--domain-b\)"):
        TrainingConfig("tagan", a, tmp_path / "m", steps=1, domain_b=b)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NanoscopyError, match="holds no TIFF images"):
        train("tagan-cycle", a, tmp_path / "m", steps=1, domain_b=empty, task_network=FROZEN, **TINY)
    other_pixels = write_blobs(tmp_path / "coarse", 2, 2.5, seed=3, pixel_size_nm=30.0)
    with pytest.raises(NanoscopyError, match="resample one domain"):
        train("tagan-cycle", a, tmp_path / "m", steps=1, domain_b=other_pixels, task_network=FROZEN, **TINY)
    assert not (tmp_path / "m").exists() and not checkpoint_folder(tmp_path / "m").exists()


def test_train_command_takes_the_domain_options(domains, tmp_path, capsys):
    a, b = domains
    out = tmp_path / "cli"
    assert main(["train", "tagan-cycle", "--domain-a", str(a), "--domain-b", str(b), "--task-network", FROZEN,
                 "--out", str(out), "--steps", "2", "--patch", str(PATCH), "--device", "cpu"]) == 0
    assert f"wrote model package {out}" in capsys.readouterr().out
    card = json.loads((out / "model.json").read_text())
    assert card["cycle"]["domains"] == {"a": "sharp", "b": "blurred"} and card["training"]["method"] == "tagan-cycle"
    assert main(["train", "tagan-cycle", "--domain-a", str(a), "--out", str(tmp_path / "x"), "--steps", "1",
                 "--task-network", FROZEN]) == 2
    message = capsys.readouterr().err.strip()
    assert "give the domain B folder" in message and "\n" not in message


def test_translate_dataset_translates_the_images_and_keeps_the_masks(trained, domains, tmp_path, capsys):
    out_model, _, _ = trained
    dataset = tmp_path / "annotated"
    for name in ("input", "task"):
        (dataset / name).mkdir(parents=True)
    images = write_blobs(dataset / "target", 2, 1.0, seed=7)
    for path in sorted(images.iterdir()):
        write_image(dataset / "input" / path.name, np.ones((SIZE, SIZE), np.float32), pixel_size_nm=20.0)
        mask = (read_image(path).data > 30).astype(np.uint8)
        write_image(dataset / "task" / path.name, mask, pixel_size_nm=20.0)
    (dataset / "dataset.json").write_text(json.dumps({"kind": "spots", "pixel_size_nm": 20.0}))

    out = tmp_path / "translated"
    assert main(["translate-dataset", str(dataset), str(out), "--model", str(out_model), "--samples", "1"]) == 0
    assert f"wrote translated dataset {out}" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["dataset.json", "target", "task"]  # input/ is another modality
    for path in sorted((dataset / "target").iterdir()):
        translated = read_image(out / "target" / path.name)
        assert translated.data.shape == (SIZE, SIZE) and translated.pixel_size_nm == pytest.approx(20.0)
        assert not np.allclose(translated.data, read_image(path).data)
        assert (out / "task" / path.name).read_bytes() == (dataset / "task" / path.name).read_bytes()
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["kind"] == "spots" and manifest["translated"]["direction"] == "a2b"
    assert manifest["translated"]["domains"] == {"from": "sharp", "to": "blurred"}

    # All or none: an unreadable image leaves no output folder; refusals are one line.
    (dataset / "target" / "zz_broken.tif").write_bytes(b"not a tiff")
    assert main(["translate-dataset", str(dataset), str(tmp_path / "partial"), "--model", str(out_model)]) == 2
    assert not (tmp_path / "partial").exists() and not list(tmp_path.glob(".*partial*"))
    capsys.readouterr()
    assert main(["translate-dataset", str(domains[0]), str(tmp_path / "flat"), "--model", str(out_model)]) == 2
    message = capsys.readouterr().err.strip()
    assert "is not a dataset folder (it has no target/ images)" in message and "\n" not in message
    assert message.endswith("give a folder with target/NAME.tif and its masks in task/NAME.tif.")
    assert main(["translate-dataset", str(dataset), str(out), "--model", str(out_model)]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("change, message", [
    (lambda card: card["cycle"]["reverse_generator"].update(ngf=8), "reverse .B -> A. generator weights .* do not fit"),
    (lambda card: card["cycle"]["reverse_generator"].update(in_channels=2), "must map the 1 output channel"),
    (lambda card: card.pop("cycle"), "tensors that belong to no network of this model"),
    (lambda card: card["cycle"].update(domains="ab"), "cycle must be an object with domains"),
])
def test_a_malformed_translation_package_is_refused(trained, tmp_path, change, message):
    out, _, _ = trained
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    card = json.loads((copy / "model.json").read_text())
    change(card)
    (copy / "model.json").write_text(json.dumps(card))
    with pytest.raises(NanoscopyError, match=message):
        load_model(copy)
