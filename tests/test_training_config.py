"""The typed training configuration: defaults per family, building it from the Python API's
dicts and from the command line, its messages, and the round trip through a card's training record."""

import dataclasses
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from napari_nanoscopy import NanoscopyError, cli, load_model
from napari_nanoscopy.training import TRAINING_FAMILIES, TrainingConfig, train, training_defaults
from napari_nanoscopy.training.config import (
    MAX_BATCH,
    MAX_PATCH,
    MAX_STEPS,
    ClassifierGanLoss,
    RestorationLoss,
    SegmentationLoss,
    TaskOptions,
    bounds,
    command_line_options,
    family_settings,
)
from napari_nanoscopy.training.losses import MS_SSIM_WEIGHTS

from test_training import PATCH, TINY, write_pairs


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return write_pairs(tmp_path_factory.mktemp("data") / "pairs")


def config(family="l2l", **settings):
    return TrainingConfig(family, **{"data_dir": "data", "out_path": "model", "steps": 1, **settings})


# --- defaults per family -------------------------------------------------------------------


@pytest.mark.parametrize("family", TRAINING_FAMILIES)
def test_left_out_settings_take_the_family_defaults(family):
    built, defaults = config(family), family_settings(family)
    assert (built.patch, built.batch, built.lr) == (defaults.patch, defaults.batch, defaults.lr)
    assert built.loss == defaults.loss and built.loss.as_dict() == training_defaults(family)["loss"]
    assert built.task is None and built.seed == 0 and built.device == "auto" and built.checkpoint_every == 500


def test_each_loss_has_its_type_and_the_papers_values():
    assert config("tcan").loss == ClassifierGanLoss(mse=1.0, ssim=1.0, adversarial=1.0)
    assert config("wang").loss == ClassifierGanLoss(mse=10.0, ssim=0.0, adversarial=1.0)
    assert config("l2l").loss == RestorationLoss(kind="ms-ssim", scales=3)
    assert config("unet-live").loss == SegmentationLoss(class_weights=None)
    assert config("tagan").loss.task_weight == 10.0 and config("pix2pix").loss.pixel_weight == 10.0
    assert set(RestorationLoss.SCALES) == set(MS_SSIM_WEIGHTS)  # the loss code's scales, without importing it


# --- building from the Python API's dicts --------------------------------------------------


def test_dicts_become_typed_sections_and_the_config_is_frozen():
    built = config("wang", loss={"ssim": 2}, task=None, patch=32, out_path="~/model")
    assert built.loss == ClassifierGanLoss(mse=10.0, ssim=2.0, adversarial=1.0) and built.patch == 32
    assert built.out_path == built.out_path.expanduser() and built.out_path.name == "model"
    tagan = config("tagan", task={"invert": True, "outputs": ["nanodomains"]})
    assert tagan.task == TaskOptions(invert=True, outputs=["nanodomains"])
    assert tagan.task.given() == {"invert", "outputs"}
    assert config("tagan", task={}).task is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.steps = 5
    assert dataclasses.replace(built, steps=7) == dataclasses.replace(config("wang", loss={"ssim": 2.0}, patch=32,
                                                                              out_path="~/model"), steps=7)


@pytest.mark.parametrize(
    "family, settings, message",
    [
        ("care", {}, "Unknown training family 'care'; choose one of: tagan, tagan-live, unet-live, tcan, wang, l2l, pix2pix."),
        ("l2l", {"steps": 0}, f"steps must be a whole number from 1 to {MAX_STEPS}, not 0."),
        ("l2l", {"patch": MAX_PATCH + 1}, f"patch must be a whole number from 1 to {MAX_PATCH}, not {MAX_PATCH + 1}."),
        ("l2l", {"batch": "4"}, f"batch must be a whole number from 1 to {MAX_BATCH}, not '4'."),
        ("l2l", {"seed": -1}, "seed must be a whole number from 0 to 9223372036854775807, not -1."),
        ("l2l", {"checkpoint_every": 0}, "checkpoint_every must be a whole number of at least 1, not 0."),
        ("l2l", {"lr": 2}, "The learning rate must be a number between 0 and 1, not 2."),
        ("l2l", {"loss": {"weight": 1}}, "The l2l loss has no setting 'weight'; its settings are: kind, scales."),
        ("l2l", {"loss": {"kind": "l2"}}, "The l2l loss kind must be 'ms-ssim' or 'l1', not 'l2'."),
        ("l2l", {"loss": {"scales": 4}}, "The l2l MS-SSIM uses 1, 3 or 5 scales, not 4."),
        ("tcan", {"loss": {"mse": float("nan")}}, "The loss weight 'mse' must be a non-negative number, not nan."),
        ("tagan", {"loss": {"task_weight": True}}, "The loss weight 'task_weight' must be a non-negative number, not True."),
        ("l2l", {"task": {"network": "unet128"}}, "The l2l family trains no task network; leave task empty."),
        ("tagan", {"task": {"net": "unet128"}},
         "Unknown task option(s) 'net'; the options are: network, kwargs, pretrained, outputs, thresholds, invert."),
    ],
)
def test_bad_settings_are_refused_when_the_config_is_built(family, settings, message):
    with pytest.raises(NanoscopyError) as error:
        config(family, **settings)
    assert str(error.value) == message


def test_train_takes_a_config_or_the_keyword_form_but_not_both(pairs, tmp_path):
    with pytest.raises(TypeError, match="every setting from the config"):
        train(config(out_path=tmp_path / "m"), steps=2)
    with pytest.raises(TypeError):
        train("l2l", pairs, tmp_path / "m")  # steps is required, as before
    with pytest.raises(NanoscopyError, match="trains no task network"):  # the keyword form builds a config
        train("pix2pix", pairs, tmp_path / "m", steps=1, task={"network": "resnet6"})


def test_reading_the_config_does_not_load_pytorch():
    code = ("import sys; from napari_nanoscopy.training import config; config.command_line_options(); "
            "config.family_settings('tagan'); print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr


# --- the command line and the widget derive their options from the config --------------------


def test_the_command_line_options_are_the_config_fields(tmp_path):
    options = {option.flag: option for option in command_line_options()}
    assert list(options) == ["--data", "--out", "--steps", "--patch", "--batch", "--device", "--seed", "--resume",
                             "--init-from", "--task-network", "--domain-b"]
    assert options["--data"].aliases == ("--domain-a",)  # tagan-cycle's domain A folder
    assert [flag for flag, option in options.items() if option.required] == ["--data", "--out", "--steps"]
    args = cli.build_parser().parse_args(["train", "tcan", "--data", "d", "--out", str(tmp_path / "m"), "--steps", "1e3",
                                          "--seed", "7", "--resume", "--init-from", "tcan-beads"])
    built = TrainingConfig(args.family, **{option.name: getattr(args, option.name) for option in options.values()})
    assert built == TrainingConfig("tcan", "d", tmp_path / "m", steps=1000, seed=7, resume=True, init_from="tcan-beads")
    assert (built.patch, built.batch) == (256, 2)  # TCAN's paper


def test_the_command_line_refuses_a_bad_setting_in_one_line(tmp_path, capsys):
    status = cli.main(["train", "l2l", "--data", str(tmp_path), "--out", str(tmp_path / "m"), "--steps", "1",
                       "--patch", "5000"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and err == f"napari-nanoscopy: error: patch must be a whole number from 1 to {MAX_PATCH}, not 5000."


def test_bounds_are_the_checks_limits():
    assert bounds("steps") == (1, MAX_STEPS) and bounds("patch") == (1, MAX_PATCH) and bounds("batch") == (1, MAX_BATCH)
    assert bounds("seed")[0] == 0 and bounds("checkpoint_every") == (1, None)
    config(steps=MAX_STEPS, patch=MAX_PATCH, batch=MAX_BATCH, seed=bounds("seed")[1])  # the largest are accepted


# --- round trip through the card's training record ----------------------------------------


@pytest.mark.parametrize("family", ["l2l", "unet-live", "tcan"])
def test_a_card_gives_back_its_config_and_training_it_again_gives_the_same_model(family, pairs, tmp_path):
    first = TrainingConfig(family, pairs, tmp_path / "first", steps=2, patch=PATCH, batch=2, seed=3, device="cpu",
                           lr=3e-4, **TINY[family])
    card = train(first)
    again = TrainingConfig.from_card(load_model(tmp_path / "first").card, tmp_path / "again", device="cpu")
    for name in ("family", "steps", "patch", "batch", "seed", "lr", "loss"):
        assert getattr(again, name) == getattr(first, name), name
    assert str(again.data_dir) == str(pairs.resolve())
    second = train(again)
    ignored = {"wall_time_s", "steps_per_s"}
    assert {k: v for k, v in second.training.items() if k not in ignored} == \
           {k: v for k, v in card.training.items() if k not in ignored}
    expected, actual = (load_file(tmp_path / name / "weights.safetensors") for name in ("first", "again"))
    assert expected.keys() == actual.keys() and all(torch.equal(expected[k], actual[k]) for k in expected)


def test_a_card_without_a_training_run_is_refused(tmp_path):
    card = load_model("l2l-twolabel").card
    imported = dataclasses.replace(card, training={"method": "csbdeep import"})
    with pytest.raises(NanoscopyError, match="records no napari-nanoscopy training run; give the settings to train"):
        TrainingConfig.from_card(imported, tmp_path / "m")


def test_the_train_widget_takes_its_choices_ranges_and_defaults_from_the_config(make_napari_viewer, tmp_path):
    from napari_nanoscopy._widgets.train import TrainWidget

    widget = TrainWidget(make_napari_viewer())
    combo = widget.family_combo
    assert [combo.itemText(index) for index in range(combo.count())] == list(TRAINING_FAMILIES) + ["tagan-cycle"]
    assert (widget.steps_box.minimum(), widget.steps_box.maximum()) == bounds("steps")
    assert (widget.patch_box.maximum(), widget.batch_box.maximum()) == (MAX_PATCH, MAX_BATCH)
    combo.setCurrentText("wang")
    assert widget.patch_box.specialValueText() == "paper default (64 px)"
    assert widget.batch_box.specialValueText() == "paper default (12)"
    built = widget.config(tmp_path / "pairs", tmp_path / "model", resume=False)
    assert (built.family, built.patch, built.batch, built.steps) == ("wang", 64, 12, widget.steps_box.value())
    assert built.checkpoint_every == 500 and built.init_from is None


@pytest.mark.parametrize("family, change, message", [
    ("l2l", {"generator_kwargs": {"bogus": 1}}, "The l2l generator has no argument 'bogus'; its arguments are: in_channels"),
    ("l2l", {"generator_kwargs": {"depth": 10**6}}, "depth must be a whole number from 1 to 10, not 1000000."),
    ("tagan", {"discriminator_kwargs": {"ndf": "x"}}, "ndf must be a whole number from 1 to 1024, not 'x'."),
])
def test_network_arguments_are_checked_when_the_settings_are_built(family, change, message, tmp_path):
    """Before any data is read (the data folder here does not exist)."""
    with pytest.raises(NanoscopyError) as refused:
        TrainingConfig(family=family, data_dir=tmp_path / "missing", out_path=tmp_path / "out", steps=1, **change)
    assert message in str(refused.value)
