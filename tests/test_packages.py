"""Model packages: save/load round trips, validation, foreign TA-GAN checkpoints, refusals."""

import json
import os
import pickle
import shutil
import zipfile

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from napari_nanoscopy import NanoscopyError, load_model, restore, save_model
from napari_nanoscopy.models import build_generator, paper_defaults
from napari_nanoscopy.formats import list_models
from napari_nanoscopy.packages import WEIGHTS_FILE, sha256_of

from conftest import SMALL_TAGAN, make_card, randomise_batchnorm


def outputs_of(package, image):
    return restore(image, package, device="cpu", samples=1).mean


def test_folder_and_zip_round_trip(packages_dir, tmp_path, smooth_image):
    source = load_model(str(packages_dir / "tagan-task"))
    assert source.task_network is not None and source.card.task["outputs"] == ["rings", "fibres"]
    card = json.loads((packages_dir / "tagan-task" / "model.json").read_text())
    assert card["weights"]["sha256"] == sha256_of(packages_dir / "tagan-task" / WEIGHTS_FILE)
    assert card["training"]["torch_version"] == torch.__version__
    zipped = tmp_path / "model.zip"
    save_model(zipped, source.card, source.generator, source.task_network)
    assert zipfile.is_zipfile(zipped)
    again = load_model(zipped)
    np.testing.assert_array_equal(outputs_of(source, smooth_image), outputs_of(again, smooth_image))
    assert again.card.to_dict() == source.card.to_dict()


def test_save_refuses_to_overwrite_and_leaves_nothing_on_failure(packages_dir, tmp_path, monkeypatch):
    package = load_model(str(packages_dir / "tagan"))
    with pytest.raises(NanoscopyError, match="already exists"):
        save_model(packages_dir / "tagan", package.card, package.generator)

    import napari_nanoscopy.packages as packages_module

    def failing_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(packages_module, "save_file", failing_save)
    with pytest.raises(OSError):
        save_model(tmp_path / "broken", package.card, package.generator)
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_a_card_that_does_not_match_the_networks(packages_dir, tmp_path):
    package = load_model(str(packages_dir / "tagan"))
    wrong = make_card("tagan", dict(SMALL_TAGAN, ngf=8))
    with pytest.raises(NanoscopyError, match="do not fit"):
        save_model(tmp_path / "wrong", wrong, package.generator)
    assert list(tmp_path.iterdir()) == []


def copy_package(packages_dir, tmp_path, name="tagan"):
    target = tmp_path / name
    shutil.copytree(packages_dir / name, target)
    return target


def rewrite_card(folder, change):
    card = json.loads((folder / "model.json").read_text())
    change(card)
    (folder / "model.json").write_text(json.dumps(card))


def test_tampered_weights_are_refused(packages_dir, tmp_path):
    folder = copy_package(packages_dir, tmp_path)
    with open(folder / WEIGHTS_FILE, "r+b") as handle:
        handle.seek(-4, os.SEEK_END)
        handle.write(b"\x00\x01\x02\x03")
    with pytest.raises(NanoscopyError, match="sha256"):
        load_model(folder)


def resave_weights(folder, tensors):
    save_file(tensors, str(folder / WEIGHTS_FILE))
    rewrite_card(folder, lambda card: card["weights"].update(sha256=sha256_of(folder / WEIGHTS_FILE)))


def test_missing_and_misshaped_tensors_are_refused(packages_dir, tmp_path):
    folder = copy_package(packages_dir, tmp_path)
    tensors = load_file(str(folder / WEIGHTS_FILE))
    missing = dict(tensors)
    del missing["generator.model.1.weight"]
    resave_weights(folder, missing)
    with pytest.raises(NanoscopyError, match="missing tensors: model.1.weight"):
        load_model(folder)
    misshaped = dict(tensors)
    misshaped["generator.model.1.weight"] = torch.zeros(5, 1, 7, 7)
    resave_weights(folder, misshaped)
    with pytest.raises(NanoscopyError, match=r"mis-shaped tensors: model.1.weight \(5, 1, 7, 7\)"):
        load_model(folder)
    extra = dict(tensors)
    extra["discriminator.weight"] = torch.zeros(1)
    resave_weights(folder, extra)
    with pytest.raises(NanoscopyError, match="belong to no network"):
        load_model(folder)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda card: card.update(family="cyclegan"), "unknown family 'cyclegan'"),
        (lambda card: card.pop("architecture"), "no 'architecture'"),
        (lambda card: card.update(pixel_size_nm=-20), "pixel_size_nm must be a finite number from 0.1 to 100000"),
        (lambda card: card["channels"].update(input=["a", "b"]), "names 2 input channels"),
        (lambda card: card.update(format_version=99), "format_version 99"),
        (lambda card: card["normalization"]["input"].update(mode="zscore"), "normalization mode 'zscore'"),
        (lambda card: card.update(task={"outputs": ["rings"], "thresholds": [0.0]}), "no architecture.task_network"),
    ],
)
def test_invalid_cards_are_refused(packages_dir, tmp_path, change, message):
    folder = copy_package(packages_dir, tmp_path)
    rewrite_card(folder, change)
    with pytest.raises(NanoscopyError, match=message):
        load_model(folder)


def test_broken_files_are_refused(packages_dir, tmp_path):
    folder = copy_package(packages_dir, tmp_path)
    (folder / "model.json").write_text("{not json")
    with pytest.raises(NanoscopyError, match="not valid JSON"):
        load_model(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(NanoscopyError, match="holds no model.json"):
        load_model(tmp_path / "empty")
    (tmp_path / "fake.zip").write_bytes(b"PK not really")
    with pytest.raises(NanoscopyError, match="not a valid .zip"):
        load_model(tmp_path / "fake.zip")
    (tmp_path / "weights.h5").write_bytes(b"\x89HDF")
    with pytest.raises(NanoscopyError, match="not a model package"):
        load_model(tmp_path / "weights.h5")
    with pytest.raises(NanoscopyError, match="No model file, folder or bundled model named"):
        load_model("no-such-model")


def test_zip_with_path_traversal_is_refused(packages_dir, tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as archive:
        archive.write(packages_dir / "tagan" / "model.json", arcname="model.json")
        archive.writestr("../../escaped.txt", "gotcha")
    with pytest.raises(NanoscopyError, match="unsafe path"):
        load_model(evil)
    assert not (tmp_path.parent / "escaped.txt").exists()


def public_layout_state_dict(in_channels=1, out_channels=1, ngf=64, n_blocks=9):
    """A generator checkpoint built from the public TA-GAN key layout (REFERENCE.md), not from our module."""
    generator = torch.Generator().manual_seed(0)

    def tensor(*shape):
        return torch.randn(*shape, generator=generator) * 0.05

    def batchnorm(prefix, channels):
        return {
            f"{prefix}.weight": 1 + tensor(channels),
            f"{prefix}.bias": tensor(channels),
            f"{prefix}.running_mean": tensor(channels),
            f"{prefix}.running_var": 1 + tensor(channels).abs(),
            f"{prefix}.num_batches_tracked": torch.tensor(1000),
        }

    state = {"model.1.weight": tensor(ngf, in_channels, 7, 7), **batchnorm("model.2", ngf)}
    state.update({"model.4.weight": tensor(2 * ngf, ngf, 3, 3), **batchnorm("model.5", 2 * ngf)})
    state.update({"model.7.weight": tensor(4 * ngf, 2 * ngf, 3, 3), **batchnorm("model.8", 4 * ngf)})
    for block in range(10, 10 + n_blocks):
        for conv, norm in ((1, 2), (6, 7)):
            state[f"model.{block}.conv_block.{conv}.weight"] = tensor(4 * ngf, 4 * ngf, 3, 3)
            state.update(batchnorm(f"model.{block}.conv_block.{norm}", 4 * ngf))
    up = 10 + n_blocks
    state.update({f"model.{up}.weight": tensor(4 * ngf, 2 * ngf, 3, 3), **batchnorm(f"model.{up + 1}", 2 * ngf)})
    state.update({f"model.{up + 3}.weight": tensor(2 * ngf, ngf, 3, 3), **batchnorm(f"model.{up + 4}", ngf)})
    state[f"model.{up + 7}.weight"] = tensor(out_channels, ngf, 7, 7)
    state[f"model.{up + 7}.bias"] = tensor(out_channels)
    return state


def test_public_tagan_checkpoint_loads_and_restores(tmp_path, smooth_image):
    state = public_layout_state_dict()
    assert "model.26.weight" in state and "model.18.conv_block.7.running_var" in state
    path = tmp_path / "latest_net_G.pth"
    torch.save(state, path)
    package = load_model(path)
    assert package.card.family == "tagan" and package.card.generator == paper_defaults("tagan")
    assert package.card.pixel_size_nm is None and package.card.default_samples == 10
    for key, value in package.generator.state_dict().items():
        assert torch.equal(value, state[key]), key
    result = restore(smooth_image[:64, :64], package, device="cpu", samples=2)
    assert result.mean.shape == (64, 64) and 0 <= result.mean.min() and result.mean.max() <= 1


def test_public_live_checkpoint_with_module_prefix(tmp_path):
    state = {f"module.{k}": v for k, v in public_layout_state_dict(in_channels=3, ngf=8, n_blocks=3).items()}
    path = tmp_path / "best_net_G.pth"
    torch.save(state, path)
    package = load_model(path)
    assert package.card.family == "tagan-live" and package.card.generator["n_blocks"] == 3
    assert package.card.input_channels == ["confocal", "STED patch", "patch mask"]


class _RunsCodeWhenUnpickled:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickled_objects_in_pth_are_refused(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil_net_G.pth"
    with open(path, "wb") as handle:
        pickle.dump({"model.1.weight": _RunsCodeWhenUnpickled(marker)}, handle)
    with pytest.raises(NanoscopyError, match="refused"):
        load_model(path)
    assert not marker.exists()
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(NanoscopyError, match="state dict of tensors"):
        load_model(tmp_path / "list.pth")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other_net_G.pth")
    with pytest.raises(NanoscopyError, match="not a TA-GAN ResNet generator"):
        load_model(tmp_path / "other_net_G.pth")


def test_list_models_reads_cards_only(packages_dir):
    cards = list_models([str(packages_dir / "tagan-task")])
    assert cards[-1].name == "test-tagan" and "rings" in cards[-1].summary()


def test_generator_state_is_independent_of_training_state(tmp_path, smooth_image):
    """Saving a generator that is in train mode must not change what the package computes."""
    torch.manual_seed(1)
    generator = randomise_batchnorm(build_generator("tagan", **SMALL_TAGAN)).train()
    card = make_card("tagan", SMALL_TAGAN)
    save_model(tmp_path / "p", card, generator)
    loaded = load_model(tmp_path / "p")
    assert not loaded.generator.training
    expected = restore(smooth_image, loaded, device="cpu", samples=1).mean
    reference = generator.eval()
    from napari_nanoscopy.packages import ModelPackage

    direct = restore(smooth_image, ModelPackage(card, reference, None, "memory"), device="cpu", samples=1).mean
    np.testing.assert_array_equal(expected, direct)
