"""The napari-nanoscopy command line, run as a user runs it (subprocess) and in-process."""

import subprocess
import sys

import numpy as np
import pytest

from napari_nanoscopy import cli
from napari_nanoscopy.errors import NanoscopyError
from napari_nanoscopy.formats import load_model
from napari_nanoscopy.io import read_image, write_image


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "napari_nanoscopy", *map(str, args)], capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def ome_input(tmp_path, smooth_image):
    path = tmp_path / "confocal.ome.tif"
    write_image(path, smooth_image, pixel_size_nm=30.0, axes="YX")
    return path


def test_restore_round_trip_keeps_pixel_size(packages_dir, tmp_path, ome_input):
    out = tmp_path / "restored.ome.tif"
    std = tmp_path / "std.ome.tif"
    seg = tmp_path / "labels.tif"
    completed = run_cli(
        "restore", ome_input, out, "--model", packages_dir / "tagan-task",
        "--samples", "3", "--uncertainty", std, "--segmentation", seg, "--seed", "1",
    )
    assert completed.returncode == 0, completed.stderr
    restored, spread, labels = read_image(out), read_image(std), read_image(seg)
    for image in (restored, spread, labels):
        assert image.pixel_size_nm == pytest.approx(30.0)
        assert image.data.shape == (160, 176)
    assert restored.metadata["model"] == "test-tagan" and restored.metadata["zoom"] == pytest.approx(1.5)
    assert restored.metadata["weights_sha256"] and restored.metadata["samples"] == 3
    assert spread.data.max() > 0 and set(np.unique(labels.data)) <= {0, 1, 2}
    assert labels.metadata["content"] == {"1": "rings", "2": "fibres"}
    # every output's OME-XML names its channel, not only the private provenance tag
    [channel] = load_model(packages_dir / "tagan-task").card.output_channels
    assert restored.channel_names == [channel] and spread.channel_names == [f"{channel} uncertainty (pooled MC-dropout std)"]
    assert labels.channel_names == ["segmentation (rings, fibres)"]


def test_models_lists_given_packages(packages_dir):
    completed = run_cli("models", packages_dir / "tagan-task")
    assert completed.returncode == 0, completed.stderr
    assert "test-tagan [tagan] 20 nm" in completed.stdout and "rings, fibres" in completed.stdout


@pytest.mark.parametrize(
    "extra, message",
    [
        ((), "does not exist"),
        (("--samples", "0"), "from 1 to 1000"),
    ],
)
def test_user_errors_print_one_line_and_exit_2(packages_dir, tmp_path, ome_input, extra, message):
    source = ome_input if extra else tmp_path / "missing.tif"
    completed = run_cli("restore", source, tmp_path / "out.tif", "--model", packages_dir / "tagan", *extra)
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr and message in completed.stderr
    assert completed.stderr.strip().count("\n") == 0
    assert not (tmp_path / "out.tif").exists()


def test_refusals_before_any_work(packages_dir, tmp_path, ome_input, capsys):
    out = tmp_path / "out.tif"
    out.write_bytes(b"keep me")
    assert cli.main(["restore", str(ome_input), str(out), "--model", str(packages_dir / "tagan")]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == b"keep me"
    assert cli.main(["restore", str(ome_input), str(ome_input), "--model", str(packages_dir / "tagan")]) == 2
    assert "is the input file" in capsys.readouterr().err
    args = ["restore", str(ome_input), str(tmp_path / "a.tif"), "--model", str(packages_dir / "l2l")]
    assert cli.main(args + ["--segmentation", str(tmp_path / "s.tif")]) == 2
    assert "no task network" in capsys.readouterr().err
    assert cli.main(args + ["--model", "no-such-model"]) == 2
    assert "No model file" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confocal.ome.tif", "out.tif"]


def test_failed_write_leaves_no_partial_output(packages_dir, tmp_path, ome_input, monkeypatch, capsys):
    import napari_nanoscopy.io as io_module

    real_write = io_module.write_image
    calls = []

    def write_then_fail(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the user pressed Ctrl-C while the second output was being written
        real_write(path, *args, **kwargs)

    monkeypatch.setattr(io_module, "write_image", write_then_fail)
    out, std = tmp_path / "restored.tif", tmp_path / "std.tif"
    code = cli.main(["restore", str(ome_input), str(out), "--model", str(packages_dir / "tagan"),
                     "--samples", "2", "--uncertainty", str(std)])
    assert code == 130 and "no output was written" in capsys.readouterr().err
    assert len(calls) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confocal.ome.tif"]


def test_pixel_size_override_and_multichannel_refusal(packages_dir, tmp_path, smooth_image, capsys):
    plain = tmp_path / "plain.tif"
    write_image(plain, smooth_image, axes="YX")
    out = tmp_path / "out.ome.tif"
    assert cli.main(["restore", str(plain), str(out), "--model", str(packages_dir / "l2l")]) == 0
    assert "records no usable pixel size" in capsys.readouterr().err
    assert read_image(out).pixel_size_nm == pytest.approx(20.0)  # the model's, as announced
    out2 = tmp_path / "out2.ome.tif"
    assert cli.main(["restore", str(plain), str(out2), "--model", str(packages_dir / "l2l"), "--pixel-size", "40"]) == 0
    assert read_image(out2).pixel_size_nm == pytest.approx(40.0)
    assert read_image(out2).metadata["zoom"] == pytest.approx(2.0)
    two = tmp_path / "two.ome.tif"
    write_image(two, np.stack([smooth_image, smooth_image]), axes="CYX", pixel_size_nm=20.0)
    assert cli.main(["restore", str(two), str(tmp_path / "x.tif"), "--model", str(packages_dir / "l2l")]) == 2
    assert "has 2 channels" in capsys.readouterr().err


def test_simulate_writes_a_dataset_with_pixel_size(tmp_path, capsys):
    out = tmp_path / "beads"
    assert cli.main(["simulate", "beads", "--n", "2", "--size", "64", "--seed", "5", "--out", str(out)]) == 0
    assert "wrote 2 beads samples" in capsys.readouterr().out
    confocal = read_image(out / "input" / "0001.tif")
    assert confocal.pixel_size_nm == pytest.approx(20.0) and confocal.data.shape == (64, 64)
    assert read_image(out / "target" / "0001.tif").data.shape == (64, 64)
    assert cli.main(["simulate", "beads", "--n", "1", "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    gaussian = tmp_path / "nano"
    assert cli.main(["simulate", "nanodomains", "--n", "1", "--localisation", "gaussian", "--out", str(gaussian)]) == 0
    assert read_image(gaussian / "task" / "0000.tif").data.max() == pytest.approx(1.0)
    assert cli.main(["simulate", "beads", "--n", "1", "--localisation", "gaussian", "--out", str(tmp_path / "b")]) == 2
    assert "nanodomains only" in capsys.readouterr().err


def test_train_writes_a_package_that_restores(tmp_path, capsys):
    data = tmp_path / "pairs"
    assert cli.main(["simulate", "twolabel", "--n", "3", "--size", "64", "--seed", "2", "--out", str(data)]) == 0
    out = tmp_path / "model"
    assert cli.main(["train", "l2l", "--data", str(data), "--out", str(out), "--steps", "3",
                     "--patch", "48", "--batch", "2", "--device", "cpu"]) == 0
    assert "wrote model package" in capsys.readouterr().out
    restored = tmp_path / "restored.tif"
    assert cli.main(["restore", str(data / "input" / "0000.tif"), str(restored), "--model", str(out)]) == 0
    assert read_image(restored).pixel_size_nm == pytest.approx(20.0)
    assert cli.main(["train", "l2l", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m2"),
                     "--steps", "3"]) == 2


def test_bundled_model_restores_the_bundled_sample(tmp_path, capsys):
    from napari_nanoscopy.samples import sample_path

    assert cli.main(["models"]) == 0
    assert "l2l-twolabel [l2l] 20 nm" in capsys.readouterr().out
    sample = sample_path("twolabel_weak_label")
    out = tmp_path / "restored.ome.tif"
    assert cli.main(["restore", str(sample), str(out), "--model", "l2l-twolabel"]) == 0
    restored, weak = read_image(out), read_image(sample)
    better = read_image(sample.parent / "twolabel_better_label.tif").data
    assert restored.pixel_size_nm == pytest.approx(20.0) and restored.data.shape == weak.data.shape
    # the trained model brings the weak label closer to the better label
    assert np.corrcoef(restored.data.ravel(), better.ravel())[0, 1] > np.corrcoef(weak.data.ravel(), better.ravel())[0, 1]


def test_samples_are_found_by_name_and_unknown_names_are_refused():
    from napari_nanoscopy.samples import list_samples, sample_path

    assert "twolabel_weak_label" in list_samples()
    assert sample_path("twolabel_weak_label.tif") == sample_path("twolabel_weak_label")
    with pytest.raises(NanoscopyError, match="Available samples: .*twolabel_weak_label"):
        sample_path("no-such-sample")


def test_readme_main_job_restores_the_nanodomain_sample_with_uncertainty_and_segmentation(tmp_path, capsys):
    from napari_nanoscopy.samples import sample_path

    sample = sample_path("nanodomains_confocal")
    outputs = [tmp_path / name for name in ("restored.ome.tif", "uncertainty.ome.tif", "nanodomains.ome.tif")]
    assert cli.main(["restore", str(sample), str(outputs[0]), "--model", "tagan-nanodomains",
                     "--uncertainty", str(outputs[1]), "--segmentation", str(outputs[2])]) == 0
    confocal = read_image(sample).data
    restored, spread, labels = (read_image(path) for path in outputs)
    for image in (restored, spread, labels):
        assert image.pixel_size_nm == pytest.approx(20.0) and image.data.shape == confocal.shape
    assert spread.data.min() >= 0 and spread.data.max() > 0  # 10 MC-dropout samples differ
    # nanodomains are small: the segmentation covers a small part of the spine, not the field
    assert 0 < np.mean(labels.data > 0) < 0.05
    sted = read_image(sample.parent / "nanodomains_sted.tif").data
    assert np.corrcoef(restored.data.ravel(), sted.ravel())[0, 1] > np.corrcoef(confocal.ravel(), sted.ravel())[0, 1]
