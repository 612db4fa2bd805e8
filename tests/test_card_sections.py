"""Typed model card sections: each section's checks and messages, attribute access, read-only
mapping access, and bundled cards written back byte for byte."""

from __future__ import annotations

import dataclasses
import json
import pickle

import numpy as np
import pytest

from napari_nanoscopy.card import (
    Fixed,
    GeneratorArchitecture,
    InputNormalisation,
    MeanStd,
    MinMax,
    NoNormalisation,
    Normalisation,
    OutputNormalisation,
    Percentile,
    Task,
    TaskNetworkArchitecture,
    card_problem,
)
from napari_nanoscopy.errors import NanoscopyError
from napari_nanoscopy.normalisation import Normaliser, fit_affine
from napari_nanoscopy.packages import CARD_FILE, ModelCard, bundled_model_names, bundled_models_dir

from conftest import make_card

SOURCE = "somewhere/model.json"
FAIL = card_problem(SOURCE)


def invalid(problem: str) -> str:
    return f"The model card {SOURCE} is invalid: {problem}; the package is malformed, fix model.json or re-export it."


@pytest.mark.parametrize("name", bundled_model_names())
def test_every_bundled_card_is_written_back_byte_identical(name):
    text = (bundled_models_dir() / name / CARD_FILE).read_text(encoding="utf-8")
    card = ModelCard.from_dict(json.loads(text), source=name)
    assert json.dumps(card.to_dict(), indent=2) + "\n" == text
    again = ModelCard.from_dict(json.loads(json.dumps(card.to_dict())), source=name)
    assert again.to_dict() == card.to_dict()


def test_sections_are_typed_and_read_by_attribute():
    names = bundled_model_names()
    assert "tagan-live-factin" in names and "tagan-nanodomains" in names
    live = ModelCard.from_dict(json.loads((bundled_models_dir() / "tagan-live-factin" / CARD_FILE).read_text()))
    inputs = live.input_normalizations()
    assert [type(spec) for spec in inputs] == [Percentile, NoNormalisation, NoNormalisation]
    assert (inputs[0].low, inputs[0].high, inputs[0].range) == (1.0, 99.8, (-1.0, 1.0))
    assert not live.normalization.shared and live.normalization.output.mode == "range"
    assert isinstance(live.normalization.sted_patch, Percentile)
    assert live.normalization["target"]["clip"] == [-1.0, 1.0]  # entries without a type are kept as read
    assert live.generator.family == "tagan-live" and live.generator.kwargs["in_channels"] == 3
    assert isinstance(live.task_network, TaskNetworkArchitecture) and live.task_network.kind == "unet128"
    segmenter_card = bundled_models_dir() / "unet-live-factin-synthetic" / CARD_FILE
    segmenter = ModelCard.from_dict(json.loads(segmenter_card.read_text()))
    # the frozen task network keeps the thresholds its own card calibrated
    assert live.task.outputs == ("rings", "fibres") and live.task.thresholds == segmenter.task.thresholds
    assert live.task.network == "pretrained, frozen" and live.task.kind == "segmentation"

    domains = ModelCard.from_dict(json.loads((bundled_models_dir() / "tagan-nanodomains" / CARD_FILE).read_text()))
    assert domains.normalization.shared and len(domains.input_normalizations()) == 1
    assert domains.task.target_normalization["range"] == [1.0, -1.0]


def test_sections_are_frozen_read_only_mappings_of_their_json():
    card = make_card("tagan", task_network={"kind": "resnet6", "kwargs": {"out_channels": 2}},
                     task={"outputs": ["rings", "fibres"], "thresholds": [0.0, -0.1], "kind": "segmentation"})
    assert isinstance(card.task, Task) and isinstance(card.normalization, Normalisation)
    assert card.task == {"outputs": ["rings", "fibres"], "thresholds": [0.0, -0.1], "kind": "segmentation"}
    assert card.task["outputs"] == ["rings", "fibres"] and card.task.get("network") is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        card.task.thresholds = (1.0, 1.0)
    with pytest.raises(TypeError):
        card.task["thresholds"] = [1.0, 1.0]
    card.task["thresholds"].append(5.0)  # a reader gets a copy: the card is unchanged
    card.normalization["input"]["mode"] = "none"
    assert card.task["thresholds"] == [0.0, -0.1] and card.normalization["input"]["mode"] == "percentile"
    changed = dataclasses.replace(card.task, thresholds=(1e9, 1e9))
    assert changed["thresholds"] == [1e9, 1e9] and changed.outputs == card.task.outputs
    assert pickle.loads(pickle.dumps(card)).to_dict() == card.to_dict()


def test_sections_made_in_code_write_the_json_of_their_fields():
    assert Percentile().to_dict() == {"mode": "percentile", "low": 1.0, "high": 99.8, "range": [-1.0, 1.0]}
    assert Fixed(min=0.0, max=4.0, range=(1.0, -1.0)).to_dict() == {"mode": "fixed", "min": 0.0, "max": 4.0,
                                                                     "range": [1.0, -1.0]}
    assert MeanStd(eps=1e-6, range=(0.0, 1.0)).to_dict() == {"mode": "meanstd", "eps": 1e-6, "range": [0.0, 1.0]}
    assert MinMax().to_dict() == {"mode": "minmax", "range": [-1.0, 1.0]}
    assert NoNormalisation().to_dict() == {"mode": "none"}
    assert OutputNormalisation(mode="input").to_dict() == {"mode": "input"}
    normalisation = Normalisation(inputs=(Percentile(), NoNormalisation()), shared=False)
    assert normalisation.to_dict() == {"input": [Percentile().to_dict(), {"mode": "none"}],
                                       "output": {"mode": "range", "range": [-1.0, 1.0]}}
    assert GeneratorArchitecture(family="l2l", kwargs={"depth": 1}) == {"depth": 1}
    card = make_card("l2l", normalization=normalisation.to_dict() | {"input": Percentile().to_dict()})
    assert json.loads(json.dumps(card.to_dict()))["normalization"]["input"] == Percentile().to_dict()


@pytest.mark.parametrize("data, problem", [
    ({"mode": "zscore"}, "normalization mode 'zscore' is not one of percentile, minmax, meanstd, fixed, none"),
    ("percentile", "normalization.input must be an object, not 'percentile'"),
    ({"mode": "percentile", "low": 500}, "normalization.input.low must be a finite number from 0 to 100, not 500"),
    ({"mode": "percentile", "low": 99.9}, "normalization.input.low (99.9) must be below normalization.input.high (99.8)"),
    ({"mode": "percentile", "high": True}, "normalization.input.high must be a finite number from 0 to 100, not True"),
    ({"mode": "fixed", "min": 5, "max": 1}, "normalization.input.min must be below normalization.input.max, not 5 and 1"),
    ({"mode": "fixed", "max": 1}, "normalization.input.min must be a finite number, not None"),
    ({"mode": "meanstd", "eps": -1}, "normalization.input.eps must be a finite number, not -1"),
    ({"mode": "minmax", "range": "ab"}, "normalization.input.range must be a list of two numbers, not 'ab'"),
    ({"mode": "minmax", "range": [2, 2]}, "normalization.input.range must hold two different numbers, not [2, 2]"),
    ({"mode": "minmax", "range": [0, float("nan")]}, "normalization.input.range[1] must be a finite number, not nan"),
])
def test_input_normalisation_messages(data, problem):
    with pytest.raises(NanoscopyError) as error:
        InputNormalisation.from_dict(data, "normalization.input", FAIL)
    assert str(error.value) == invalid(problem)


@pytest.mark.parametrize("data, problem", [
    ({"input": 7}, "normalization.input must be an object or a list of them, not 7"),
    ({"input": [{"mode": "none"}, 3]}, "normalization.input[1] must be an object, not 3"),
    ({"output": {"mode": "clip"}}, "normalization.output mode 'clip' is not one of range, input"),
    ({"output": [1]}, "normalization.output must be an object, not [1]"),
    ({"output": {"mode": "range", "range": [1, 1]}}, "normalization.output.range must hold two different numbers, not [1, 1]"),
    ({"sted_patch": {"mode": "nope"}}, "normalization mode 'nope' is not one of percentile, minmax, meanstd, fixed, none"),
])
def test_normalisation_section_messages(data, problem):
    with pytest.raises(NanoscopyError) as error:
        Normalisation.from_dict(data, FAIL)
    assert str(error.value) == invalid(problem)


@pytest.mark.parametrize("data, problem", [
    ([1], "task must be an object, not [1]"),
    ({"outputs": "rings", "thresholds": [0]}, "task.outputs must be a list of names, not 'rings'"),
    ({"outputs": ["rings"], "thresholds": 0.5}, "task.thresholds must be a list of numbers, not 0.5"),
    ({"outputs": ["rings"], "thresholds": ["high"]}, "task.thresholds[0] must be a finite number, not 'high'"),
    ({"outputs": ["rings"], "thresholds": [0, 1]}, "task.outputs and task.thresholds must be non-empty lists of equal length"),
    ({"outputs": [], "thresholds": []}, "task.outputs and task.thresholds must be non-empty lists of equal length"),
])
def test_task_section_messages(data, problem):
    with pytest.raises(NanoscopyError) as error:
        Task.from_dict(data, FAIL)
    assert str(error.value) == invalid(problem)


@pytest.mark.parametrize("build, problem", [
    (lambda: GeneratorArchitecture.from_dict("tagan", [1, 2], FAIL),
     "architecture.generator must be an object of the generator's arguments, not [1, 2]"),
    (lambda: TaskNetworkArchitecture.from_dict({"kind": "resnet6", "kwargs": [1]}, FAIL),
     "architecture.task_network must be an object with a kind and kwargs, not {'kind': 'resnet6', 'kwargs': [1]}"),
    (lambda: TaskNetworkArchitecture.from_dict({"kind": "vgg"}, FAIL),
     "unknown task network 'vgg' (known: resnet6, unet128)"),
])
def test_architecture_section_messages(build, problem):
    with pytest.raises(NanoscopyError) as error:
        build()
    assert str(error.value) == invalid(problem)


def test_architecture_sections_build_their_networks():
    generator = GeneratorArchitecture(family="l2l", kwargs={"base_filters": 4, "depth": 1}).build()
    assert generator.in_channels == 1 and generator.output_activation == "linear"
    task_network = TaskNetworkArchitecture(kind="resnet6", kwargs={"ngf": 4, "n_blocks": 1, "out_channels": 3}).build()
    assert task_network.out_channels == 3


def test_card_made_in_code_is_checked_when_made():
    with pytest.raises(NanoscopyError, match=r"normalization mode 'zscore'"):
        make_card("tagan", normalization={"input": {"mode": "zscore"}, "output": {"mode": "range"}})
    card = make_card("tagan", normalization={"input": [Percentile().to_dict()] * 2, "output": {"mode": "input"}})
    with pytest.raises(NanoscopyError, match=r"normalization.input lists 2 channels but channels.input has 1"):
        card.validate(SOURCE)


def test_normaliser_reads_dict_specs_into_sections_and_refuses_bad_ones():
    plane = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
    assert fit_affine(plane, {"mode": "minmax", "range": [0.0, 1.0]}) == fit_affine(plane, MinMax(range=(0.0, 1.0)))
    normaliser = Normaliser(({"mode": "fixed", "min": 0, "max": 10},), {"mode": "range", "range": [0, 1]})
    spec, = normaliser.inputs
    assert isinstance(spec, Fixed) and (spec.min, spec.max, spec.range) == (0.0, 10.0, (-1.0, 1.0))
    assert spec == {"mode": "fixed", "min": 0, "max": 10}  # a section equals the JSON it was read from
    assert normaliser.output.range == (0.0, 1.0)
    assert pickle.loads(pickle.dumps(normaliser.fit(plane[None]))).inputs[0].max == 10.0
    with pytest.raises(NanoscopyError) as error:
        Normaliser(({"mode": "fixed", "min": 3, "max": 1},))
    assert str(error.value) == ("The normalisation spec is invalid: spec.min must be below spec.max, not 3 and 1; "
                                "see docs/model-packages.md for the modes.")


def test_unknown_family_is_refused_when_the_card_is_read():
    data = json.loads((bundled_models_dir() / "wang-beads" / CARD_FILE).read_text())
    data["family"] = "cyclegan"
    with pytest.raises(NanoscopyError) as error:
        ModelCard.from_dict(data, source=SOURCE)
    assert str(error.value) == invalid("unknown family 'cyclegan' (known: tagan, tagan-live, tcan, wang, l2l, fcn-unet)")


def test_replacing_a_typed_field_keeps_every_other_entry():
    live = ModelCard.from_dict(json.loads((bundled_models_dir() / "tagan-live-factin" / CARD_FILE).read_text()))
    pinned = dataclasses.replace(live.normalization, inputs=(Fixed(min=0.0, max=1.0), NoNormalisation(), NoNormalisation()))
    assert pinned["input"][0] == {"mode": "fixed", "min": 0.0, "max": 1.0, "range": [-1.0, 1.0]}
    assert {key: pinned[key] for key in ("output", "target", "sted_patch")} == {
        key: live.normalization[key] for key in ("output", "target", "sted_patch")}
    task = Task.from_dict({"outputs": ["rings"], "thresholds": [0.1], "network": "trained alone", "note": "kept"}, FAIL)
    raised = dataclasses.replace(task, thresholds=(0.5,))
    assert raised == {"outputs": ["rings"], "thresholds": [0.5], "network": "trained alone", "note": "kept"}
