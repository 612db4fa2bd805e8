"""`napari-nanoscopy segment` and its job (plan -> run -> write): labels and probabilities of STED images."""

from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_nanoscopy import cli, io
from napari_nanoscopy.io import read_image, write_image
from napari_nanoscopy.segment_job import SegmentRequest, plan_segment, run_segment
from napari_nanoscopy.segmentation import Segmenter, segment

MODEL = "unet-live-factin"  # bundled: a task network that segments F-actin rings and fibres


@pytest.fixture
def sted(tmp_path, smooth_image):
    path = tmp_path / "sted.ome.tif"
    write_image(path, smooth_image[:96, :112], pixel_size_nm=25.0, axes="YX")
    return path


@pytest.fixture
def no_segmentation(monkeypatch):
    """Fail the test if any model runs: every refusal must come before the segmentation."""
    def must_not_run(*args, **kwargs):
        raise AssertionError("the model ran before the job was refused")

    monkeypatch.setattr(Segmenter, "segment", must_not_run)


def run_cli(capsys, *args):
    code = cli.main(["segment", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def leftovers(folder):
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith("."))


def test_cli_writes_labels_and_probabilities_at_the_input_pixel_size(tmp_path, sted, capsys):
    labels, probabilities = tmp_path / "labels.ome.tif", tmp_path / "prob.ome.tif"
    code, out, err = run_cli(capsys, sted, labels, "--model", MODEL, "--probabilities", probabilities)
    assert code == 0, err
    assert out.splitlines() == [f"wrote {labels}", f"wrote {probabilities}"]
    expected = segment(read_image(sted).data, MODEL, pixel_size_nm=25.0)
    written = read_image(labels)
    assert written.data.dtype == np.uint8 and written.axes == "YX" and written.data.shape == (96, 112)
    np.testing.assert_array_equal(written.data, expected.labels)
    assert written.pixel_size_nm == pytest.approx(25.0)
    assert written.metadata["classes"] == {"0": "background", "1": "rings", "2": "fibres"}
    assert written.metadata["input"] == str(sted) and written.metadata["content"] == "labels"
    with tifffile.TiffFile(labels) as tiff:  # the class names are in the OME-XML, for any OME reader
        assert 'Name="labels: 0 background, 1 rings, 2 fibres"' in tiff.ome_metadata
    prob = read_image(probabilities)
    assert prob.data.dtype == np.float32 and prob.axes == "CYX" and prob.data.shape == (2, 96, 112)
    assert prob.channel_names == ["rings probability", "fibres probability"]
    assert prob.pixel_size_nm == pytest.approx(25.0)
    np.testing.assert_allclose(prob.data, expected.probabilities, atol=1e-6)
    assert 0.0 <= prob.data.min() and prob.data.max() <= 1.0
    assert leftovers(tmp_path) == []


def test_pixel_size_given_or_assumed_is_recorded(tmp_path, smooth_image, capsys):
    bare = tmp_path / "bare.tif"
    tifffile.imwrite(bare, smooth_image[:64, :64])  # no pixel size at all
    code, _, err = run_cli(capsys, bare, tmp_path / "a.ome.tif", "--model", MODEL)
    assert code == 0
    assert "bare.tif records no usable pixel size (none, zero, negative or not a number); assuming the model's 20 nm " \
           "(give --pixel-size to resample)." in err
    assert read_image(tmp_path / "a.ome.tif").pixel_size_nm == pytest.approx(20.0)
    code, _, err = run_cli(capsys, bare, tmp_path / "b.tif", "--model", MODEL, "--pixel-size", 30)
    assert code == 0 and "note" not in err
    written = read_image(tmp_path / "b.tif")  # ImageJ TIFF: pixel size and class names kept too
    assert written.pixel_size_nm == pytest.approx(30.0) and written.data.dtype == np.uint8
    assert written.metadata["classes"]["2"] == "fibres"


def test_a_channel_of_a_multichannel_image_by_name(tmp_path, smooth_image, capsys):
    path = tmp_path / "two.ome.tif"
    stack = np.stack([smooth_image[:64, :64], smooth_image[::-1][:64, :64]])
    write_image(path, stack, pixel_size_nm=20.0, axes="CYX", channel_names=["actin", "tubulin"])
    code, _, err = run_cli(capsys, path, tmp_path / "l.ome.tif", "--model", MODEL)
    assert code == 2 and "has 2 channels (0: actin, 1: tubulin)" in err and "--channel" in err
    code, _, err = run_cli(capsys, path, tmp_path / "l.ome.tif", "--model", MODEL, "--channel", "tubulin")
    assert code == 0, err
    written = read_image(tmp_path / "l.ome.tif")
    assert written.metadata["input_channel"] == 1 and written.metadata["input_channel_name"] == "tubulin"
    np.testing.assert_array_equal(written.data, segment(stack[1], MODEL, pixel_size_nm=20.0).labels)


def test_a_failed_write_publishes_nothing(tmp_path, sted, capsys, monkeypatch):
    calls = []
    real_write = io.write_image

    def write_then_fail(path, data, **kwargs):
        calls.append(path)
        if len(calls) == 2:  # the labels are staged, the probabilities fail
            raise io.NanoscopyError("The disk is full; free some space.")
        real_write(path, data, **kwargs)

    monkeypatch.setattr(io, "write_image", write_then_fail)
    labels, probabilities = tmp_path / "labels.ome.tif", tmp_path / "prob.ome.tif"
    code, out, err = run_cli(capsys, sted, labels, "--model", MODEL, "--probabilities", probabilities)
    assert code == 2 and err.strip() == "napari-nanoscopy: error: The disk is full; free some space."
    assert out == "" and not labels.exists() and not probabilities.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("case, message", [
    ("existing output", "already exists; choose another path or pass --overwrite."),
    ("output is input", "An output path is the input file"),
    ("same outputs", "The labels and the probabilities have the same path; give each output its own file."),
    ("bad suffix", "the name must end in .ome.tif or .ome.tiff (OME-TIFF), in .tif or .tiff"),
    ("missing input", "does not exist; check the path."),
    ("missing folder", "does not exist; create it first."),
    ("not a TIFF", "image.png is not a TIFF image; segment reads TIFF and OME-TIFF files, so convert it to TIFF first."),
    ("no segmentation", "The model 'l2l-twolabel' does not segment"),
    ("bad tile", "The tile size must be a whole number from"),
    ("bad pixel size", "The --pixel-size given is -5 nm, outside the 0.1-100000 nm of a microscope image's pixels"),
])
def test_every_refusal_comes_before_the_model_runs(case, message, tmp_path, sted, capsys, no_segmentation):
    out = tmp_path / "labels.ome.tif"
    if case == "existing output":
        out.write_bytes(b"taken")
    (tmp_path / "image.png").write_bytes(b"png")
    args = {
        "existing output": [sted, out],
        "output is input": [sted, sted, "--overwrite"],
        "same outputs": [sted, out, "--probabilities", out],
        "bad suffix": [sted, tmp_path / "labels.png"],
        "missing input": [tmp_path / "none.tif", out],
        "missing folder": [sted, tmp_path / "no" / "labels.tif"],
        "not a TIFF": [tmp_path / "image.png", out],
        "no segmentation": [sted, out, "--model", "l2l-twolabel"],
        "bad tile": [sted, out, "--tile", 3],
        "bad pixel size": [sted, out, "--pixel-size", -5],
    }[case]
    model = [] if "--model" in args else ["--model", MODEL]
    code, stdout, err = run_cli(capsys, *args, *model)
    assert code == 2 and stdout == ""
    assert err.startswith("napari-nanoscopy: error: ") and len(err.strip().splitlines()) == 1, err
    assert message in err
    assert "Traceback" not in err and leftovers(tmp_path) == []


def test_a_channel_problem_of_the_last_image_refuses_the_run_before_the_first(tmp_path, smooth_image, capsys,
                                                                              no_segmentation):
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_image(inputs / "a.tif", smooth_image[:64, :64], pixel_size_nm=20.0)
    write_image(inputs / "z.ome.tif", np.stack([smooth_image[:64, :64]] * 3), pixel_size_nm=20.0, axes="CYX")
    code, out, err = run_cli(capsys, inputs, tmp_path / "labels", "--model", MODEL)
    assert code == 2 and out == "" and not (tmp_path / "labels").exists()
    assert "z.ome.tif has 3 channels (0, 1, 2 (unnamed)) and the model restores one; pick one with --channel INDEX " \
           "or --channel NAME." in err


def test_folder_and_glob_inputs_go_into_output_folders(tmp_path, smooth_image, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name, offset in (("a.tif", 0), ("b.ome.tiff", 16)):
        write_image(inputs / name, smooth_image[offset:offset + 64, :64], pixel_size_nm=20.0)
    (inputs / "notes.txt").write_text("not an image")
    labels, probabilities = tmp_path / "labels", tmp_path / "prob"
    code, out, err = run_cli(capsys, inputs, labels, "--model", MODEL, "--probabilities", probabilities)
    assert code == 0, err
    assert sorted(p.name for p in labels.iterdir()) == ["a_labels.ome.tif", "b_labels.ome.tif"]
    assert sorted(p.name for p in probabilities.iterdir()) == ["a_probabilities.ome.tif", "b_probabilities.ome.tif"]
    assert len(out.splitlines()) == 4
    np.testing.assert_array_equal(read_image(labels / "b_labels.ome.tif").data,
                                  segment(smooth_image[16:80, :64], MODEL, pixel_size_nm=20.0).labels)
    # again: every output exists, so the plan refuses before any model runs
    code, _, err = run_cli(capsys, f"{inputs}/*.tif*", labels, "--model", MODEL)
    assert code == 2 and "a_labels.ome.tif already exists; choose another folder or pass --overwrite." in err
    write_image(inputs / "a.ome.tif", smooth_image[:64, :64], pixel_size_nm=20.0)
    code, _, err = run_cli(capsys, inputs, tmp_path / "other", "--model", MODEL)
    assert code == 2 and "a.ome.tif and a.tif would both be segmented into a_labels.ome.tif; rename one of them " \
                         "or segment them separately." in err


def test_the_plan_is_frozen_reads_no_pixel_and_names_every_output(tmp_path, sted, monkeypatch):
    read_image = io.read_image

    def headers_only(path, **kwargs):
        assert kwargs.get("header_only"), "the plan read an image's pixels"
        return read_image(path, **kwargs)

    monkeypatch.setattr(io, "read_image", headers_only)
    request = SegmentRequest(input=str(sted), output=str(tmp_path / "l.ome.tif"), model=MODEL,
                             probabilities=str(tmp_path / "p.ome.tif"))
    plan = plan_segment(request)
    [job] = plan.jobs
    assert dict(job.outputs) == {"labels": tmp_path / "l.ome.tif", "probabilities": tmp_path / "p.ome.tif"}
    assert plan.segmenter.class_names == ("rings", "fibres") and plan.label(job) == "segmenting sted.ome.tif"
    with pytest.raises(AttributeError):
        plan.jobs = ()
    monkeypatch.undo()
    assert [path.name for paths in run_segment(plan) for path in paths] == ["l.ome.tif", "p.ome.tif"]


REAL = Path(__file__).parents[1].parent / "shared" / "real" / "STEDActinFCN"


@pytest.mark.skipif(not (REAL / "reference_predictions.npz").is_file(), reason="the real STEDActinFCN files are absent")
@pytest.mark.parametrize("kind, reference_key", [("axon", "STEDActinAxonFCN"), ("dendrite", "STEDActinDendriteFCN")])
def test_cli_reproduces_the_authors_predictions_on_every_held_out_image(kind, reference_key, tmp_path, capsys):
    references = np.load(REAL / "reference_predictions.npz")
    labels, probabilities = tmp_path / "labels", tmp_path / "prob"
    code, _, err = run_cli(capsys, REAL / kind / "to_predict", labels, "--model", REAL / kind / "network",
                           "--probabilities", probabilities)
    assert code == 0, err
    images = sorted((REAL / kind / "to_predict").glob("*.tif"))
    assert images
    for image in images:
        written = read_image(probabilities / f"{image.stem}_probabilities.ome.tif")
        expected = references[f"{reference_key}/{image.name}"].reshape(written.data.shape)
        assert np.abs(written.data - expected).max() <= 1e-4, image.name
        assert written.pixel_size_nm == pytest.approx(20.0)
        classes = read_image(labels / f"{image.stem}_labels.ome.tif").metadata["classes"]
        assert classes == ({"0": "background", "1": "rings"} if kind == "axon"
                           else {"0": "background", "1": "rings", "2": "fibres"})


@pytest.mark.skipif(not (REAL / "reference_predictions.npz").is_file(), reason="the real STEDActinFCN files are absent")
def test_a_preset_names_an_unrecognised_network(tmp_path, capsys):
    """A copy of the axon network that its sha256 no longer identifies: --preset says which it is."""
    import torch

    folder = tmp_path / "retrained"
    folder.mkdir()
    state = torch.load(REAL / "axon" / "network" / "params.net", weights_only=True, map_location="cpu")
    torch.save({key: value.clone() for key, value in state.items()}, folder / "params.net")  # other bytes, same net
    image = REAL / "axon" / "to_predict" / "3.tif"
    code, _, err = run_cli(capsys, image, tmp_path / "a.ome.tif", "--model", folder)
    assert code != 0 and "--preset" in err
    code, _, err = run_cli(capsys, image, tmp_path / "a.ome.tif", "--model", folder, "--preset", "axon",
                           "--probabilities", tmp_path / "p.ome.tif")
    assert code == 0, err
    expected = np.load(REAL / "reference_predictions.npz")["STEDActinAxonFCN/3.tif"]
    written = read_image(tmp_path / "p.ome.tif").data
    assert np.abs(written - expected.reshape(written.shape)).max() <= 1e-4


def test_python_segment_is_in_the_public_api(smooth_image):
    import napari_nanoscopy

    assert napari_nanoscopy.segment is segment and napari_nanoscopy.Segmenter is Segmenter
    assert {"segment", "Segmenter", "SegmentationResult"} <= set(napari_nanoscopy.__all__)
    result = napari_nanoscopy.segment(smooth_image[:64, :64], MODEL, pixel_size_nm=20.0)
    assert result.labels.shape == (64, 64) and result.probabilities.shape == (2, 64, 64)
    assert result.class_names == ("rings", "fibres")
