"""Outputs appear all together or not at all, and never replace a file that appeared meanwhile."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from napari_nanoscopy import cli
from napari_nanoscopy import io as nio
from napari_nanoscopy import outputs as staging
from napari_nanoscopy.io import OutputAppeared, StagedOutputs, read_image, write_image

# Runs `napari-nanoscopy restore ARGS...` with the writing made slow: once the first output (or
# the chunked restoration) is complete on disk, it touches MARKER and waits to be terminated.
SLOW_WRITE_SCRIPT = """
import pathlib, sys, time
from napari_nanoscopy import cli, io, restore_job as large
marker, stage, *args = sys.argv[1:]

def then_wait(write):
    def slow(*a, **k):
        result = write(*a, **k)
        pathlib.Path(marker).touch()
        time.sleep(300)
        return result
    return slow

if stage == "tiff":
    io.write_image = then_wait(io.write_image)
else:
    large.restore_chunked = then_wait(large.restore_chunked)
sys.exit(cli.main(["restore", *args]))
"""


@pytest.fixture
def ome_input(tmp_path, smooth_image):
    path = tmp_path / "confocal.ome.tif"
    write_image(path, smooth_image, pixel_size_nm=20.0, axes="YX")  # the models' pixel size
    return path


def everything_in(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def terminate_while_writing(tmp_path, stage, args):
    marker = tmp_path / "writing"
    process = subprocess.Popen([sys.executable, "-c", SLOW_WRITE_SCRIPT, str(marker), stage, *map(str, args)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the run never started writing"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, stderr


@pytest.mark.parametrize("stage, names", [
    ("tiff", ["restored.ome.tif", "std.ome.tif", "labels.tif"]),
    ("ome-zarr", ["restored.zarr", "std.zarr"]),
])
def test_sigterm_while_writing_leaves_no_output_and_no_temporary(stage, names, packages_dir, tmp_path, ome_input):
    out = tmp_path / "out"
    out.mkdir()
    args = [ome_input, out / names[0], "--model", packages_dir / "tagan-task", "--samples", "2",
            "--uncertainty", out / names[1]]
    if stage == "tiff":
        args += ["--segmentation", out / names[2]]
    else:
        args += ["--block", "64"]
    code, stderr = terminate_while_writing(tmp_path, stage, args)
    assert code == 130 and "interrupted; no output was written" in stderr
    assert "Traceback" not in stderr
    assert everything_in(out) == []  # neither a finished first output nor a hidden temporary


def test_an_output_that_appears_during_the_run_is_never_replaced(packages_dir, tmp_path, ome_input, monkeypatch,
                                                                capsys):
    out, std = tmp_path / "restored.ome.tif", tmp_path / "std.ome.tif"
    real_write = nio.write_image

    def another_run_finishes_first(path, *args, **kwargs):
        std.write_bytes(b"another run's result")
        real_write(path, *args, **kwargs)

    monkeypatch.setattr(nio, "write_image", another_run_finishes_first)
    command = ["restore", str(ome_input), str(out), "--model", str(packages_dir / "tagan"), "--samples", "2",
               "--uncertainty", str(std)]
    assert cli.main(command) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error
    assert f"{std} appeared while this run was writing it" in error and "--overwrite" in error
    assert std.read_bytes() == b"another run's result"
    assert everything_in(tmp_path) == ["confocal.ome.tif", "std.ome.tif"]  # all outputs or none

    assert cli.main([*command, "--overwrite"]) == 0  # --overwrite replaces it
    assert read_image(std).metadata["content"] == "pooled MC-dropout std"
    assert everything_in(tmp_path) == ["confocal.ome.tif", "restored.ome.tif", "std.ome.tif"]


@pytest.mark.parametrize("suffix", [".ome.tif", ".zarr"])
def test_two_runs_to_the_same_path_one_wins_and_the_other_is_refused(suffix, packages_dir, tmp_path, ome_input,
                                                                     monkeypatch, capsys):
    out = tmp_path / f"restored{suffix}"
    both_restored = threading.Barrier(2, timeout=300)
    if suffix == ".zarr":
        from napari_nanoscopy import restore_job as large

        real_restore = large.restore_chunked

        def restore_then_wait(*args, **kwargs):
            result = real_restore(*args, **kwargs)
            both_restored.wait()  # both runs have checked the path and written their output
            return result

        monkeypatch.setattr(large, "restore_chunked", restore_then_wait)
    else:
        real_write = nio.write_image

        def write_then_wait(*args, **kwargs):
            real_write(*args, **kwargs)
            both_restored.wait()

        monkeypatch.setattr(nio, "write_image", write_then_wait)
    codes = []

    def run(seed):
        codes.append(cli.main(["restore", str(ome_input), str(out), "--model", str(packages_dir / "tagan"),
                               "--seed", str(seed)]))

    runs = [threading.Thread(target=run, args=(seed,)) for seed in (1, 2)]
    for thread in runs:
        thread.start()
    for thread in runs:
        thread.join(600)
    assert sorted(codes) == [0, 2]
    captured = capsys.readouterr()
    assert captured.out.count(f"wrote {out}") == 1
    assert f"{out} appeared while this run was writing it" in captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confocal.ome.tif", out.name]  # no temporary


def test_publishing_takes_back_every_output_when_one_cannot_be_placed(tmp_path):
    first, second = tmp_path / "a.tif", tmp_path / "b.zarr"
    second.mkdir()
    (second / "theirs").write_text("kept")
    with pytest.raises(OutputAppeared, match="b.zarr appeared while this run was writing it"):
        with StagedOutputs() as staged:
            staged.stage(first).write_bytes(b"ours")
            staging = staged.stage(second)
            staging.mkdir()
            (staging / "ours").write_text("ours")
    assert everything_in(tmp_path) == ["b.zarr", "b.zarr/theirs"]


def test_overwrite_puts_back_what_it_replaced_when_publishing_fails(tmp_path, monkeypatch):
    first, second = tmp_path / "a.tif", tmp_path / "b.tif"
    first.write_bytes(b"previous")
    real_move = staging._move_exclusively

    def disk_full_on_second(source, target):
        if target == second:
            raise OSError(28, "No space left on device")
        real_move(source, target)

    monkeypatch.setattr(staging, "_move_exclusively", disk_full_on_second)
    with pytest.raises(OSError, match="No space"):
        with StagedOutputs(overwrite=True) as staged:
            staged.stage(first).write_bytes(b"new")
            staged.stage(second).write_bytes(b"new")
    assert first.read_bytes() == b"previous"
    assert everything_in(tmp_path) == ["a.tif"]


def test_overwrite_never_replaces_a_folder_with_a_file(tmp_path):
    folder = tmp_path / "image.tif"
    folder.mkdir()
    with pytest.raises(nio.NanoscopyError, match="it is a folder and the output is a file"):
        with StagedOutputs(overwrite=True) as staged:
            staged.stage(folder).write_bytes(b"new")
    assert everything_in(tmp_path) == ["image.tif"]


def test_a_signal_while_publishing_takes_back_the_outputs_already_placed(tmp_path, monkeypatch):
    outputs = [tmp_path / "a.tif", tmp_path / "b.tif"]
    real_move = staging._move_exclusively
    handled = []

    def terminated_after_the_first(source, target):
        real_move(source, target)
        if target == outputs[0]:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)  # Python runs a pending handler here, unless publishing holds it

    monkeypatch.setattr(staging, "_move_exclusively", terminated_after_the_first)
    previous = signal.signal(signal.SIGTERM, lambda number, frame: handled.append(number))
    try:
        with pytest.raises(KeyboardInterrupt):
            with StagedOutputs() as staged:
                for path in outputs:
                    staged.stage(path).write_bytes(b"complete")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert handled == []  # never run half-way through publishing
    assert everything_in(tmp_path) == []  # interrupted: no output, no temporary


@pytest.mark.parametrize("name", ["model", "model.zip"])
def test_a_package_that_appears_while_it_is_saved_is_not_replaced(tmp_path, name):
    from napari_nanoscopy.outputs import OutputAppeared
    from napari_nanoscopy.packages import staged_output

    target = tmp_path / name
    with pytest.raises(OutputAppeared):
        with staged_output(target, overwrite=False) as staging:
            (staging / "model.json").write_text("{}")
            target.mkdir()  # another run's package
            (target / "theirs").write_text("kept")
    assert [p.name for p in target.iterdir()] == ["theirs"]
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no scratch or staged copy left
