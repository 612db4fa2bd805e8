"""Condition files: one microscope per .yaml/.json file, merged over the standard set, checked key by
key and read as hostile data; the shipped sets; simulate, the live simulator and the recipes take them."""

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_nanoscopy import cli
from napari_nanoscopy.errors import NanoscopyError
from napari_nanoscopy.simulation import (
    STANDARD_CONDITIONS,
    acquire,
    condition_set_names,
    load_conditions,
    save_conditions,
)
from napari_nanoscopy.simulation.conditions import MAX_CONDITION_FILE_BYTES

REPO = Path(__file__).resolve().parents[1]


def _write(tmp_path, text, name="microscope.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _fwhm_nm(image, pixel_nm):
    """FWHM of the central row's peak, linearly interpolated at half maximum."""
    row = image[image.shape[0] // 2].astype(np.float64)
    row -= row.min()
    half = row.max() / 2
    above = np.flatnonzero(row >= half)
    left = above[0] - 1 + (half - row[above[0] - 1]) / (row[above[0]] - row[above[0] - 1])
    right = above[-1] + (row[above[-1]] - half) / (row[above[-1]] - row[above[-1] + 1])
    return (right - left) * pixel_nm


# -- shipped sets, round trip, partial override ----------------------------------------------------

def test_the_shipped_standard_set_is_exactly_the_standard_conditions():
    assert condition_set_names() == ["seed-live-cell", "standard"]
    loaded = load_conditions("standard")
    assert loaded == STANDARD_CONDITIONS
    # same key order and values: a dataset simulated with --conditions standard is byte-identical
    assert json.dumps(loaded) == json.dumps(STANDARD_CONDITIONS)


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
def test_save_then_load_gives_the_same_conditions(tmp_path, suffix):
    seed = load_conditions("seed-live-cell")
    path = save_conditions(seed, tmp_path / f"mine{suffix}")
    assert load_conditions(path) == seed
    assert load_conditions(str(path)) == seed


def test_a_partial_file_overrides_only_what_it_names(tmp_path):
    path = _write(tmp_path, "pdt: 5.0e-06\ndetector:\n  background: 1.0e+05\nobjective:\n  transmission:\n    640: 0.9\n")
    conditions = load_conditions(path)
    assert conditions["pdt"] == 5e-6
    assert conditions["detector"] == {"noise": True, "background": 1e5}  # deep merge: noise kept
    assert conditions["objective"]["transmission"]["640"] == 0.9  # YAML int keys become nm strings
    assert conditions["objective"]["transmission"]["635"] == 0.85
    rest = {k: v for k, v in conditions.items() if k not in ("pdt", "detector", "objective")}
    assert rest == {k: v for k, v in STANDARD_CONDITIONS.items() if k not in ("pdt", "detector", "objective")}
    assert load_conditions(_write(tmp_path, "", "empty.yaml")) == STANDARD_CONDITIONS
    assert load_conditions(_write(tmp_path, '{"p_sted": 0.1}', "c.json"))["p_sted"] == 0.1


def test_the_seed_live_cell_set_states_the_papers_microscope_and_images_at_20_nm():
    seed = load_conditions("seed-live-cell")
    assert seed["pixelsize"] == 20e-9 and seed["pdt"] == 5e-6
    assert seed["excitation"]["lambda_"] == 640e-9 and seed["sted"]["lambda_"] == 775e-9
    assert seed["sted"]["rate"] == 40e6
    # the powers derived from the paper's photon doses (photons/s x h c / wavelength)
    h_c = 6.62607015e-34 * 2.99792458e8
    assert seed["p_ex"] == pytest.approx(1.168e13 * h_c / 640e-9, rel=0.01)
    assert seed["p_sted"] == pytest.approx(1.543e18 * h_c / 775e-9, rel=0.01)
    quiet = {**seed, "detector": {"noise": False, "background": 0.0}}
    point = np.zeros((31, 31), np.int64)
    point[15, 15] = 1000
    confocal = acquire(point, quiet, sted=False, rng=0)
    sted = acquire(point, quiet, sted=True, rng=0)
    assert confocal.shape == sted.shape == (31, 31)
    # measured on 20 nm pixels: about 222 nm confocal, 49 nm STED
    assert 190 < _fwhm_nm(confocal, 20) < 250
    assert 35 < _fwhm_nm(sted, 20) < 65


# -- refusals ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ("detecter:\n  noise: false\n", "microscope.yaml: detecter is not a condition; known: simulator, pixelsize"),
    ("detector:\n  nosie: false\n", "detector.nosie is not a condition; known: detector.n_airy, detector.noise"),
    ("pdt: fast\n", "pdt must be a number from 1e-09 to 0.01 s, not 'fast'"),
    ("pdt: 5e-6\n", "YAML reads 5e-6 as text: write 5.0e-6"),
    ("p_sted: 150.0\n", "p_sted must be a number from 0 to 10 W, not 150.0"),
    ("pixelsize: .nan\n", "pixelsize must be a number"),
    ("detector:\n  noise: 1\n", "detector.noise must be true or false, not 1"),
    ("detector: [1, 2]\n", "detector must be a mapping of parameters, not a list"),
    ("simulator: other\n", "simulator must be 'pysted', not 'other'"),
    ("fluo:\n  sigma_abs:\n    red: 1.0e-20\n", "fluo.sigma_abs has the key 'red'; its keys are wavelengths in nm"),
    ("excitation:\n  lambda_: 6.4e-07\n", "objective.transmission has no entry for the excitation wavelength (640 nm)"),
    ("excitation:\n  lambda_: 6.4e-07\nobjective:\n  transmission:\n    640: 0.85\n",
     "fluo.sigma_abs has no entry for the excitation wavelength (640 nm); add one"),
    ("objective:\n  na: 1.6\n", "objective.na must be below the immersion index objective.n"),
    ("- pdt\n- 5.0e-06\n", "must hold a mapping of conditions (key: value), not a list"),
    ("pdt: [unclosed\n", "is not valid YAML"),
    ("!!python/object/apply:os.system ['echo hacked']\n", "is not valid YAML"),
    ("1: 2\n", "microscope.yaml: 1 is not a condition"),
    ("? [a, b]\n: 1\n", "is not valid YAML"),
])
def test_each_bad_file_is_refused_with_what_to_fix(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(NanoscopyError) as error:
        load_conditions(path)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_hostile_files_are_refused_before_any_work(tmp_path):
    big = _write(tmp_path, "# padding\n" * (MAX_CONDITION_FILE_BYTES // 10 + 1))
    with pytest.raises(NanoscopyError, match="larger than 64 KiB"):
        load_conditions(big)
    # an alias bomb (a billion laughs): refused by its type without ever expanding it
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(9))
    with pytest.raises(NanoscopyError, match="is not a condition"):
        load_conditions(_write(tmp_path, bomb, "bomb.yaml"))
    nested = "pdt: [&a [x, x, x, x, x, x, x, x, x]" + "".join(
        f", &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]" for i in range(9)) + "]\n"
    with pytest.raises(NanoscopyError, match="pdt must be a number .*, not a list"):
        load_conditions(_write(tmp_path, nested, "bomb2.yaml"))
    with pytest.raises(NanoscopyError, match="cannot be read"):
        load_conditions(_write(tmp_path, '{"pdt": 5e-6,}', "broken.json"))
    with pytest.raises(NanoscopyError, match="pdt must be a number"):
        load_conditions(_write(tmp_path, '{"pdt": NaN}', "nan.json"))
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00pdt")
    with pytest.raises(NanoscopyError, match="cannot be read"):
        load_conditions(tmp_path / "binary.yaml")


def test_unknown_names_and_missing_files_are_refused(tmp_path):
    with pytest.raises(NanoscopyError, match="'live' is neither a shipped condition set \\(seed-live-cell, standard\\) "
                                             "nor a .yaml, .yml or .json condition file"):
        load_conditions("live")
    with pytest.raises(NanoscopyError, match="does not exist or is not a file"):
        load_conditions(tmp_path / "missing.yaml")
    with pytest.raises(NanoscopyError, match="does not exist or is not a file"):
        load_conditions((tmp_path / "folder.yaml").mkdir() or tmp_path / "folder.yaml")  # a folder is no file
    with pytest.raises(NanoscopyError, match="must end in .yaml, .yml or .json"):
        save_conditions(STANDARD_CONDITIONS, tmp_path / "c.txt")
    with pytest.raises(NanoscopyError, match="lacks pdt"):
        save_conditions({k: v for k, v in STANDARD_CONDITIONS.items() if k != "pdt"}, tmp_path / "c.yaml")
    assert not (tmp_path / "c.yaml").exists()


# -- the front ends ---------------------------------------------------------------------------------

def test_simulate_records_the_condition_file_in_dataset_json(tmp_path, capsys):
    path = _write(tmp_path, "pdt: 5.0e-06\n")
    out = tmp_path / "data"
    assert cli.main(["simulate", "beads", "--n", "1", "--size", "64", "--conditions", str(path), "--out", str(out)]) == 0
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["conditions"] == load_conditions(path) and manifest["conditions"]["pdt"] == 5e-6
    assert manifest["pixel_size_nm"] == 20.0

    default = tmp_path / "default"
    assert cli.main(["simulate", "beads", "--n", "1", "--size", "64", "--out", str(default)]) == 0
    assert json.loads((default / "dataset.json").read_text())["conditions"] == STANDARD_CONDITIONS

    capsys.readouterr()
    bad = _write(tmp_path, "pixelsize: 3.0e-08\n", "coarse.yaml")
    assert cli.main(["simulate", "beads", "--n", "1", "--conditions", str(bad), "--out", str(tmp_path / "no")]) != 0
    assert "conditions' pixelsize must be 2e-08 m" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()
    assert cli.main(["simulate", "beads", "--n", "1", "--conditions", "nikon", "--out", str(tmp_path / "no")]) != 0
    assert "'nikon' is neither a shipped condition set" in capsys.readouterr().err


def test_the_live_simulator_takes_a_condition_file(tmp_path):
    from napari_nanoscopy.live.cli import adapter_settings
    from napari_nanoscopy.live.connection import AdapterSettings, make_adapter

    path = save_conditions(load_conditions("seed-live-cell"), tmp_path / "live.json")
    args = cli.build_parser().parse_args(["live", "--conditions", str(path), "--size", "64", "--frames", "1"])
    settings = adapter_settings(args)
    assert settings.conditions == str(path)
    adapter = make_adapter(settings)
    try:
        assert adapter.conditions == load_conditions(path)
        caps = adapter.capabilities()
        assert caps.wavelengths_m == {"excitation": 640e-9, "depletion": 775e-9}
        assert caps.max_power_w["depletion"] == pytest.approx(0.395)  # its own STED power is allowed
        assert caps.pixel_size_nm == 20.0
    finally:
        adapter.close()
    with pytest.raises(NanoscopyError, match="simulated F-actin is drawn on 20 nm pixels"):
        make_adapter(AdapterSettings(size=64, frames=1, conditions=str(_write(tmp_path, "pixelsize: 4.0e-08\n"))))
    with pytest.raises(NanoscopyError, match="is not a condition"):
        make_adapter(AdapterSettings(size=64, frames=1, conditions=str(_write(tmp_path, "laser: 1.0\n", "l.yaml"))))


def test_the_live_widget_passes_its_condition_field_to_the_simulator(qtbot, tmp_path):
    from napari_nanoscopy._widgets.live import LiveWidget

    widget = LiveWidget(napari_viewer=None)
    qtbot.addWidget(widget)
    widget.size_box.setValue(64)
    widget.frames_box.setValue(1)
    widget.conditions_edit.setText("seed-live-cell")
    widget.connect_adapter()
    assert widget.adapter is not None and widget.adapter.conditions["pdt"] == 5e-6
    widget.disconnect_adapter()
    widget.conditions_edit.setText(str(_write(tmp_path, "pdt: 5e-6\n")))
    widget.connect_adapter()
    assert widget.adapter is None and "write 5.0e-6" in widget.status.text()


def test_the_recipes_refuse_a_bad_condition_file_and_install_with_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["bundled_models.py", "tagan-factin", "--conditions", "nikon"])
    with pytest.raises(SystemExit):
        runpy.run_path(str(REPO / "recipes" / "bundled_models.py"), run_name="__main__")
    assert "'nikon' is neither a shipped condition set" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["bundled_models.py", "tagan-factin", "--conditions", "standard", "--install"])
    with pytest.raises(SystemExit):
        runpy.run_path(str(REPO / "recipes" / "bundled_models.py"), run_name="__main__")
    assert "--install replaces the bundled models" in capsys.readouterr().err


def test_the_recipes_image_their_datasets_with_the_condition_file(tmp_path, monkeypatch):
    recipes = runpy.run_path(str(REPO / "recipes" / "bundled_models.py"))
    simulate = recipes["simulate"]
    simulate.__globals__["DATASETS"]["tiny"] = ("beads", 1, 64, 0)
    simulate.__globals__["CONDITIONS_SOURCE"] = "seed-live-cell"
    out = simulate("tiny", tmp_path)
    assert json.loads((out / "dataset.json").read_text())["conditions"] == load_conditions("seed-live-cell")
    assert simulate("tiny", tmp_path) == out  # reused: the same conditions
    simulate.__globals__["CONDITIONS_SOURCE"] = "standard"
    with pytest.raises(SystemExit, match="was simulated under other conditions than standard"):
        simulate("tiny", tmp_path)
