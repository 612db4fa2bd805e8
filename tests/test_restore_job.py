"""One restoration job (plan -> run -> write) behind `napari-nanoscopy restore` and Python."""

import dataclasses

import numpy as np
import pytest

from napari_nanoscopy import cli
from napari_nanoscopy.errors import NanoscopyError
from napari_nanoscopy.inference import Restorer
from napari_nanoscopy.io import read_image, write_image
from napari_nanoscopy.restore_job import CHUNKED, MEMORY, RestoreRequest, plan_restore, run_restore


@pytest.fixture
def no_restoration(monkeypatch):
    """Fail the test if any model runs: every refusal must come before the restoration."""
    def must_not_run(*args, **kwargs):
        raise AssertionError("the model ran before the job was refused")

    monkeypatch.setattr(Restorer, "restore", must_not_run)


@pytest.fixture
def two_channel_input(tmp_path, smooth_image):
    path = tmp_path / "two.ome.tif"
    write_image(path, np.stack([smooth_image, smooth_image[::-1]]), pixel_size_nm=20.0, axes="CYX",
                channel_names=["actin", "tubulin"])
    return path


@pytest.fixture
def ome_input(tmp_path, smooth_image):
    path = tmp_path / "confocal.ome.tif"
    write_image(path, smooth_image, pixel_size_nm=20.0, axes="YX")
    return path


@pytest.mark.parametrize("case, message", [
    ("existing output", "already exists; choose another path or pass --overwrite"),
    ("output is input", "is the input file"),
    ("same outputs", "Two outputs have the same path; give each output its own file."),
    ("bad suffix", ".ome.tif"),
    ("no task network", "has no task network, so there is no segmentation to write"),
    ("one sample", "An uncertainty map needs at least 2 samples; pass --samples 2 or more."),
    ("channel not chosen", "--channel"),
    ("no such channel", "has no channel 'dapi'"),
    ("missing input", "does not exist; check the path."),
])
def test_every_refusal_comes_before_the_model_runs(case, message, packages_dir, tmp_path, ome_input,
                                                   two_channel_input, no_restoration):
    out = tmp_path / "out.ome.tif"
    request = RestoreRequest(input=str(ome_input), output=str(out), model=str(packages_dir / "tagan"))
    change = {
        "existing output": {},
        "output is input": {"output": str(ome_input)},
        "same outputs": {"uncertainty": str(out)},
        "bad suffix": {"output": str(tmp_path / "out.png")},
        "no task network": {"segmentation": str(tmp_path / "labels.tif")},
        "one sample": {"uncertainty": str(tmp_path / "std.tif"), "samples": 1},
        "channel not chosen": {"input": str(two_channel_input)},
        "no such channel": {"input": str(two_channel_input), "channel": "dapi"},
        "missing input": {"input": str(tmp_path / "missing.tif")},
    }[case]
    if case == "existing output":
        out.write_bytes(b"keep me")
    with pytest.raises(NanoscopyError) as refused:
        list(run_restore(plan_restore(dataclasses.replace(request, **change))))
    assert message in str(refused.value) and "\n" not in str(refused.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["confocal.ome.tif", "two.ome.tif"] + (["out.ome.tif"] if case == "existing output" else []))


def test_the_plan_is_frozen_and_reads_no_pixel(packages_dir, tmp_path, ome_input, monkeypatch):
    from napari_nanoscopy import io

    read = io.read_image
    headers = []

    def headers_only(*args, **kwargs):
        if not kwargs.get("header_only"):
            raise AssertionError("the plan read an image's pixels")
        headers.append(read(*args, **kwargs))
        return headers[-1]

    monkeypatch.setattr(io, "read_image", headers_only)
    plan = plan_restore(RestoreRequest(input=str(ome_input), output=str(tmp_path / "out.ome.tif"),
                                       model=str(packages_dir / "tagan")))
    assert [header.data.strides for header in headers] == [(0, 0)]  # a shape-only stand-in, no memory
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.jobs = ()
    with pytest.raises(TypeError):
        plan.jobs[0].outputs["restored"] = tmp_path / "elsewhere.tif"


def test_one_plan_serves_a_file_and_a_folder_with_the_same_numbers(packages_dir, tmp_path, smooth_image):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "b"):
        write_image(folder / f"{name}.ome.tif", smooth_image, pixel_size_nm=20.0, axes="YX")
    model = str(packages_dir / "tagan")
    single = plan_restore(RestoreRequest(input=str(folder / "a.ome.tif"), output=str(tmp_path / "a.ome.tif"),
                                         model=model, samples=1))
    several = plan_restore(RestoreRequest(input=str(folder), output=str(tmp_path / "out"), model=model, samples=1))
    assert single.single_file and [job.engine for job in single.jobs] == [MEMORY]
    assert not several.single_file and [job.source.name for job in several.jobs] == ["a.ome.tif", "b.ome.tif"]
    assert [job.engine for job in several.jobs] == [MEMORY, MEMORY]
    assert [p.name for p in several.jobs[1].outputs.values()] == ["b_restored.ome.tif"]

    [written_single] = list(run_restore(single))
    written_several = list(run_restore(several))
    assert [p.name for p in written_single] == ["a.ome.tif"]
    assert [[p.name for p in paths] for paths in written_several] == [["a_restored.ome.tif"], ["b_restored.ome.tif"]]
    one, from_folder = read_image(written_single[0]), read_image(written_several[0][0])
    np.testing.assert_array_equal(one.data, from_folder.data)
    assert one.channel_names == from_folder.channel_names  # one writer names the channels the same way


@pytest.mark.parametrize("extra, output, engine", [
    ({}, "out.ome.tif", MEMORY),
    ({"block": 64}, "out.ome.tif", CHUNKED),
    ({}, "out.zarr", CHUNKED),
])
def test_the_engine_follows_the_plan(extra, output, engine, packages_dir, tmp_path, ome_input, monkeypatch):
    from napari_nanoscopy import restore_job

    used = []
    real_chunked, real_restore = restore_job.restore_chunked, Restorer.restore

    def chunked(*args, **kwargs):
        used.append(CHUNKED)
        return real_chunked(*args, **kwargs)

    def in_memory(self, *args, **kwargs):
        if kwargs.get("normaliser") is None:  # blocks call Restorer.restore with their plane's normaliser
            used.append(MEMORY)
        return real_restore(self, *args, **kwargs)

    monkeypatch.setattr(restore_job, "restore_chunked", chunked)
    monkeypatch.setattr(Restorer, "restore", in_memory)
    plan = plan_restore(RestoreRequest(input=str(ome_input), output=str(tmp_path / output),
                                       model=str(packages_dir / "tagan"), samples=1, **extra))
    assert [job.engine for job in plan.jobs] == [engine]
    [written] = list(run_restore(plan))
    assert used == [engine] and [p.name for p in written] == [output]


def test_cli_is_a_front_end_of_the_job(packages_dir, tmp_path, ome_input, monkeypatch, capsys):
    from napari_nanoscopy import restore_job

    planned = []
    real_plan = restore_job.plan_restore

    def spy(request):
        planned.append(request)
        return real_plan(request)

    monkeypatch.setattr(restore_job, "plan_restore", spy)
    out = tmp_path / "out.ome.tif"
    assert cli.main(["restore", str(ome_input), str(out), "--model", str(packages_dir / "tagan"), "-n", "1"]) == 0
    assert planned == [RestoreRequest(input=str(ome_input), output=str(out), model=str(packages_dir / "tagan"),
                                      samples=1)]
    assert capsys.readouterr().out == f"wrote {out}\n"


# --- arrays already open (the Restore widget's and Python's job) --------------------------------


def _lazy_image(packages_dir):
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:150, 0:170]
    image = rng.poisson(200 + 80 * np.sin(x / 7.0) * np.cos(y / 11.0)).astype(np.uint16)
    return image, da.from_array(image, chunks=64)


def test_restore_array_of_a_lazy_layer_too_large_for_memory_runs_block_by_block(packages_dir, monkeypatch):
    from napari_nanoscopy import restore_job

    image, lazy = _lazy_image(packages_dir)
    restorer = Restorer(packages_dir / "l2l", device="cpu")
    in_memory = restore_job.restore_array(restorer, lazy, samples=1)
    assert in_memory.provenance["engine"] == MEMORY
    monkeypatch.setattr(restore_job, "available_memory", lambda: 100_000)  # too little for the whole image (255 kB)
    assert restore_job.array_engine(lazy, restorer) == CHUNKED
    assert restore_job.array_engine(image, restorer) == MEMORY  # a numpy array is already in memory
    blocks = restore_job.restore_array(restorer, lazy, samples=1)
    assert blocks.provenance["engine"] == CHUNKED and blocks.provenance["blocks"] >= 1
    assert blocks.domain is not None and blocks.provenance["domain"] == blocks.domain.to_dict()  # checked either way
    assert blocks.domain.message == in_memory.domain.message
    assert blocks.mean.shape == in_memory.mean.shape
    scale = float(np.abs(in_memory.mean).max())
    np.testing.assert_allclose(blocks.mean, in_memory.mean, rtol=1e-5, atol=1e-5 * scale)
    with pytest.raises(NanoscopyError, match="keep_samples need the image in memory"):
        restore_job.restore_array(restorer, lazy, samples=2, keep_samples=True)


def test_python_restore_is_the_job_path(packages_dir):
    import napari_nanoscopy

    image, lazy = _lazy_image(packages_dir)
    result = napari_nanoscopy.restore(lazy, packages_dir / "l2l", device="cpu", samples=1)
    assert result.provenance["engine"] == MEMORY and result.mean.shape == image.shape


def test_a_channel_problem_in_a_later_image_refuses_the_run_before_the_first(packages_dir, tmp_path, smooth_image,
                                                                              no_restoration):
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder / "a.ome.tif", smooth_image, pixel_size_nm=20.0, axes="YX")
    write_image(folder / "b.ome.tif", np.stack([smooth_image, smooth_image]), pixel_size_nm=20.0, axes="CYX",
                channel_names=["actin", "tubulin"])
    request = RestoreRequest(input=str(folder), output=str(tmp_path / "out"), model=str(packages_dir / "tagan"),
                             samples=1)
    with pytest.raises(NanoscopyError, match="b.ome.tif has 2 channels") as refused:
        plan_restore(request)
    assert "--channel" in str(refused.value)
    assert not (tmp_path / "out").exists()


def test_a_file_job_scores_the_image_once_before_restoring_it(packages_dir, tmp_path, ome_input, monkeypatch):
    from napari_nanoscopy import inference

    def must_not_score(*args, **kwargs):
        raise AssertionError("the Restorer scored the image again")

    monkeypatch.setattr(inference, "check_frames", must_not_score)
    out = tmp_path / "out.ome.tif"
    plan = plan_restore(RestoreRequest(input=str(ome_input), output=str(out), model=str(packages_dir / "tagan"),
                                       samples=1))
    assert [path.name for written in run_restore(plan) for path in written] == ["out.ome.tif"]
    assert read_image(out).metadata["domain"]["message"].startswith("Domain unknown")
