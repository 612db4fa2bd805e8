"""Issue 15, item 4: no hang, no runaway, no traceback.

Every malformed value (a pixel size, an image header, a model card field, a checkpoint, a command
line number, an output path) gives one NanoscopyError line that says what is wrong and what to do,
before any heavy work; broken weights give an error instead of a written file. The cases that hung
or allocated gigabytes before run under a deadline (``deadline`` fixture).
"""

import dataclasses
import json
import shutil
import signal

import numpy as np
import pytest
import tifffile
import torch

from napari_nanoscopy import cli
from napari_nanoscopy.errors import NanoscopyError
from napari_nanoscopy.inference import Restorer
from napari_nanoscopy.tiling import axis_options as _axis_options
from napari_nanoscopy.io import write_image
from napari_nanoscopy.formats import load_model
from napari_nanoscopy.packages import CARD_FILE

DEADLINE_S = 60


@pytest.fixture
def deadline():
    """Fail a test that runs past DEADLINE_S seconds (the hang cases) instead of hanging the suite."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {DEADLINE_S} s: this hangs")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(DEADLINE_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def run_cli(capsys, *argv):
    """Run the command line; return (exit status, the stderr line(s))."""
    status = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    return status, err


def assert_one_line_error(status, err, *phrases):
    assert status == 2, err
    lines = [line for line in err.splitlines() if line.startswith("napari-nanoscopy: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


@pytest.fixture
def image():
    return np.random.default_rng(0).random((64, 64)).astype(np.float32) * 100


@pytest.fixture
def restorer(packages_dir):
    return Restorer(str(packages_dir / "tagan"), device="cpu")


# --- pixel sizes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("pixel_size", [0.0, -5.0, float("nan"), float("inf"), 1e9, 1e-6])
def test_implausible_pixel_size_is_refused_at_once(restorer, image, deadline, pixel_size):
    with pytest.raises(NanoscopyError, match=r"outside the 0\.1-100000 nm of a microscope image's pixels; give the"):
        restorer.restore(image, pixel_size_nm=pixel_size)


def test_pixel_size_that_resamples_too_far_names_the_size(restorer, image, deadline):
    # 20000 nm on a 20 nm model: a 64x64 image would become 64000x64000 pixels (a MemoryError before)
    with pytest.raises(NanoscopyError, match=r"resampled to 64000x64000 pixels .*check the pixel size"):
        restorer.restore(image, pixel_size_nm=20000.0)
    with pytest.raises(NanoscopyError, match=r"resampled to 2x2 pixels"):  # and 16x too coarse the other way
        restorer.restore(image, pixel_size_nm=0.5)


def test_axis_options_stay_bounded_for_any_length(deadline):
    options = _axis_options(50_000_000, halo=64, multiple=4)  # the hang at 1e9 nm pixels
    assert 1 < len(options) <= 1025


def test_cli_pixel_size_from_file_and_option(tmp_path, capsys, image, deadline):
    for bad in (0.0, -20.0, float("nan"), 1e9):  # OME PhysicalSize of 1e9 nm hung in _axis_options
        source = tmp_path / f"px{bad:g}.ome.tif"
        tifffile.imwrite(source, image, ome=True, metadata={"axes": "YX", "PhysicalSizeX": bad / 1e3,
                                                            "PhysicalSizeY": bad / 1e3})
        status, err = run_cli(capsys, "restore", source, tmp_path / f"out{bad:g}.ome.tif", "-m", "tagan-nanodomains")
        if bad != 1e9:  # no usable calibration: the model's pixel size is assumed, and said so
            assert status == 0 and "records no usable pixel size" in err
        else:
            assert_one_line_error(status, err, "1e+09 nm", "outside the 0.1-100000 nm")
    source = tmp_path / "ok.ome.tif"
    write_image(source, image, pixel_size_nm=20.0)
    status, err = run_cli(capsys, "restore", source, tmp_path / "o2.ome.tif", "-m", "tagan-nanodomains",
                          "--pixel-size", "20000")
    assert_one_line_error(status, err, "resampled to 64000x64000 pixels")
    assert not (tmp_path / "o2.ome.tif").exists()


# --- numbers of a restoration ----------------------------------------------------------------------


def test_samples_seed_and_tile_are_bounded(restorer, image, deadline):
    with pytest.raises(NanoscopyError, match=r"Monte-Carlo samples must be a whole number from 1 to 1000, not 1000000000"):
        restorer.restore(image, samples=10**9)
    for seed in (10**23, -1, 1.5, "1"):  # 1e23 overflowed torch.manual_seed
        with pytest.raises(NanoscopyError, match=r"The seed must be a whole number from 0 to 9223372036854775807"):
            restorer.restore(image, seed=seed, samples=2)
    with pytest.raises(NanoscopyError, match=r"The tile size must be a whole number from 64 to 65536"):
        restorer.restore(image, tile_size=10**12)
    assert restorer.restore(image, seed=2**63 - 1, samples=2).provenance["seed"] == 2**63 - 1


def test_cli_huge_seed_and_samples(tmp_path, capsys, image, deadline):
    source = tmp_path / "in.ome.tif"
    write_image(source, image, pixel_size_nm=20.0)
    status, err = run_cli(capsys, "restore", source, tmp_path / "o.ome.tif", "-m", "tagan-nanodomains",
                          "--seed", str(10**23))
    assert_one_line_error(status, err, "The seed must be a whole number from 0 to")
    status, err = run_cli(capsys, "restore", source, tmp_path / "o.ome.tif", "-m", "tagan-nanodomains",
                          "--samples", "1000000000")
    assert_one_line_error(status, err, "from 1 to 1000, not 1000000000")


# --- outputs of broken weights ------------------------------------------------------------------------


def _broken(restorer, fill):
    """The restorer with its generator's last convolution replaced by ``fill`` (NaN, or 0 weights)."""
    last = [m for m in restorer.network.generator.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.weight.fill_(fill)
        last.bias.fill_(fill)
    return restorer


@pytest.mark.parametrize("fill, phrase", [(float("nan"), "NaN or infinite pixel"), (0.0, "constant restored image")])
def test_nan_or_constant_output_is_an_error(packages_dir, image, fill, phrase):
    restorer = _broken(Restorer(str(packages_dir / "tagan"), device="cpu"), fill)
    with pytest.raises(NanoscopyError, match=f"The model 'test-tagan' gave .*{phrase}.*weights are broken"):
        restorer.restore(image)


def test_empty_segmentation_is_not_refused(packages_dir, image):
    restorer = Restorer(str(packages_dir / "tagan-task"), device="cpu")
    restorer.card.task = dataclasses.replace(restorer.card.task, thresholds=(1e9, 1e9))  # nothing passes: all-zero labels are a valid answer
    result = restorer.restore(image)
    assert result.labels.max() == 0 and np.ptp(result.mean) > 0


# --- model cards, CSBDeep configurations and TA-GAN checkpoints ---------------------------------------


def copy_package(packages_dir, tmp_path, name="tagan"):
    target = tmp_path / name
    shutil.copytree(packages_dir / name, target)
    return target


def rewrite_card(folder, change):
    card = json.loads((folder / CARD_FILE).read_text())
    change(card)
    (folder / CARD_FILE).write_text(json.dumps(card))


def _set(path, value):
    def change(card):
        *parents, last = path.split(".")
        target = card
        for key in parents:
            target = target[key]
        target[last] = value

    return change


@pytest.mark.parametrize(
    "path, value, phrase",
    [
        ("pixel_size_nm", [20], "pixel_size_nm must be a finite number from 0.1 to 100000, not [20]"),
        ("pixel_size_nm", "20", "pixel_size_nm must be a finite number from 0.1 to 100000, not '20'"),
        ("pixel_size_nm", 1e9, "pixel_size_nm must be a finite number from 0.1 to 100000, not 1000000000.0"),
        ("default_samples", "10", "default_samples must be a whole number from 1 to 1000, not '10'"),
        ("default_samples", 10**9, "default_samples must be a whole number from 1 to 1000, not 1000000000"),
        ("normalization.input.low", 500, "normalization.input.low must be a finite number from 0 to 100, not 500"),
        ("normalization.input.high", "99", "normalization.input.high must be a finite number from 0 to 100, not '99'"),
        ("normalization.input.low", 99.9, "normalization.input.low (99.9) must be below normalization.input.high"),
        ("normalization.input.range", "ab", "normalization.input.range must be a list of two numbers, not 'ab'"),
        ("normalization.output.range", [1, 1], "normalization.output.range must hold two different numbers"),
        ("normalization.input", 7, "normalization.input must be an object or a list of them, not 7"),
        ("channels.input", "abc", "channels.input is 'abc', not a list of names"),
        ("architecture.generator", [1, 2], "architecture.generator is [1, 2], not an object"),
        ("architecture.generator.n_blocks", 10**6, "n_blocks must be a whole number from 0 to 64, not 1000000"),
        ("architecture.generator.ngf", "64", "ngf must be a whole number from 1 to 1024, not '64'"),
        ("architecture.generator.ngf", 1000, "would have 756 million parameters, more than the 250 million"),
    ],
)
def test_malformed_model_card_fields_name_field_and_value(packages_dir, tmp_path, deadline, path, value, phrase):
    folder = copy_package(packages_dir, tmp_path)
    rewrite_card(folder, _set(path, value))
    with pytest.raises(NanoscopyError) as error:
        load_model(folder)
    message = str(error.value)
    assert phrase in message and "malformed" in message and "\n" not in message, message


@pytest.mark.parametrize("field, value, phrase", [
    ("depth", 10**6, "depth must be a whole number from 1 to 10, not 1000000"),  # hung computing 2**1e6 widths
    ("base_filters", 10**9, "base_filters must be a whole number from 1 to 1024, not 1000000000"),
])
def test_l2l_card_sizes_cannot_hang_or_allocate(packages_dir, tmp_path, deadline, field, value, phrase):
    folder = copy_package(packages_dir, tmp_path, "l2l")
    rewrite_card(folder, _set(f"architecture.generator.{field}", value))
    with pytest.raises(NanoscopyError, match="describes a network that cannot be built") as error:
        load_model(folder)
    assert phrase in str(error.value)


def test_task_thresholds_must_be_numbers(packages_dir, tmp_path):
    folder = copy_package(packages_dir, tmp_path, "tagan-task")
    rewrite_card(folder, _set("task.thresholds", ["high", 0.5]))
    with pytest.raises(NanoscopyError, match=r"task.thresholds\[0\] must be a finite number, not 'high'"):
        load_model(folder)


@pytest.mark.parametrize("key, value", [("unet_n_depth", [2]), ("n_channel_in", "1"), ("n_dim", None),
                                        ("unet_kern_size", "3")])
def test_csbdeep_config_with_wrong_types(tmp_path, capsys, key, value):
    from test_csbdeep import make_care_folder

    folder, _, _ = make_care_folder(tmp_path / "care")
    config = json.loads((folder / "config.json").read_text())
    config[key] = value
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(NanoscopyError, match=f"has {key} = .*not a whole number; the model folder is malformed"):
        load_model(folder)
    status, err = run_cli(capsys, "import-csbdeep", folder, tmp_path / "out")
    assert_one_line_error(status, err, f"has {key} = ")


def test_csbdeep_import_percentiles_and_pixel_size(tmp_path, capsys):
    from test_csbdeep import make_care_folder

    folder, _, _ = make_care_folder(tmp_path / "care")
    status, err = run_cli(capsys, "import-csbdeep", folder, tmp_path / "out", "--high", "500")
    assert_one_line_error(status, err, "high percentile must be a number from 0 to 100, not 500.0")
    status, err = run_cli(capsys, "import-csbdeep", folder, tmp_path / "out", "--low", "60", "--high", "40")
    assert_one_line_error(status, err, "low percentile (60) must be below its high percentile (40)")
    status, err = run_cli(capsys, "import-csbdeep", folder, tmp_path / "out", "--pixel-size", "0")
    assert_one_line_error(status, err, "pixel size is 0 nm, outside")
    assert not (tmp_path / "out").exists()


def test_checkpoint_with_thousands_of_blocks_is_refused_unbuilt(tmp_path, deadline):
    # every block shares one storage, so the file is small; building its 3000 blocks (6.9 GB at the
    # paper's width) is what must not happen
    ngf, generator = 8, torch.Generator().manual_seed(0)
    conv = torch.randn(4 * ngf, 4 * ngf, 3, 3, generator=generator)
    norm = {"weight": torch.ones(4 * ngf), "bias": torch.zeros(4 * ngf), "running_mean": torch.zeros(4 * ngf),
            "running_var": torch.ones(4 * ngf), "num_batches_tracked": torch.tensor(1)}
    state = {"model.1.weight": torch.randn(ngf, 1, 7, 7, generator=generator)}
    for block in range(10, 3010):
        for index, part in ((1, None), (2, norm), (6, None), (7, norm)):
            if part is None:
                state[f"model.{block}.conv_block.{index}.weight"] = conv
            else:
                state.update({f"model.{block}.conv_block.{index}.{k}": v for k, v in part.items()})
    state["model.3017.weight"] = torch.randn(1, ngf, 7, 7, generator=generator)
    path = tmp_path / "huge_net_G.pth"
    torch.save(state, path)
    assert path.stat().st_size < 20 << 20
    with pytest.raises(NanoscopyError, match=r"huge_net_G.pth does not hold a TA-GAN ResNet generator this can build "
                                             r"\(3000 residual blocks, at most 64"):
        load_model(path)


def test_oversized_checkpoint_is_refused_before_loading(tmp_path, monkeypatch):
    from napari_nanoscopy.interop import tagan

    path = tmp_path / "big_net_G.pth"
    torch.save({"model.1.weight": torch.zeros(4, 1, 7, 7)}, path)
    monkeypatch.setattr(tagan, "MAX_CHECKPOINT_BYTES", 100)
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("loaded before the size check"))
    with pytest.raises(NanoscopyError, match=r"big_net_G.pth is 0.0 GB, more than the float32 weights"):
        load_model(path)


# --- image headers that claim more than memory or the file holds ------------------------------------


def claiming_tiff(path, height=100_000, width=100_000, dtype=np.float32):
    """A tiny TIFF whose header claims height x width pixels (its tags patched after writing)."""
    write_image(path, np.zeros((64, 64), dtype))
    with tifffile.TiffFile(path, mode="r+b") as tiff:
        tiff.pages.first.tags["ImageWidth"].overwrite(width)
        tiff.pages.first.tags["ImageLength"].overwrite(height)
    return path


def test_huge_header_is_refused_before_reading(tmp_path, capsys, monkeypatch, deadline):
    from napari_nanoscopy import io

    monkeypatch.setattr(io, "available_memory", lambda: 8 << 30, raising=False)  # a laptop's, on any machine
    source = claiming_tiff(tmp_path / "huge.tif")
    monkeypatch.setattr(tifffile.TiffPage, "asarray", lambda *a, **k: pytest.fail("pixels read"))
    status, err = run_cli(capsys, "restore", source, tmp_path / "out.ome.tif", "-m", "tagan-nanodomains")
    assert_one_line_error(status, err, "huge.tif is a 100000x100000 float32 image (40.0 GB), more than the 8.6 GB",
                          "restore it block by block (restore --block")


def test_damaged_header_with_block_is_one_line(tmp_path, capsys, deadline):
    source = claiming_tiff(tmp_path / "huge.tif", dtype=np.uint8)
    for output in ("out.zarr", "out.ome.tif"):  # a KeyError / TiffFileError traceback from tifffile before
        status, err = run_cli(capsys, "restore", source, tmp_path / output, "-m", "tagan-nanodomains", "--block", "256")
        assert_one_line_error(status, err, "huge.tif is damaged: its header describes a 100000x100000 image",
                              "export the image again")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["huge.tif"]


def test_outputs_larger_than_memory_are_refused_before_allocating(restorer, image, monkeypatch):
    from napari_nanoscopy import inference

    monkeypatch.setattr(inference, "_available_memory", lambda: 20_000)
    with pytest.raises(NanoscopyError, match=r"Restoring 64x64 pixels needs 0.0 GB for the outputs, more than the "
                                             r"0.0 GB of memory available; restore it block by block"):
        restorer.restore(image, samples=2)


# --- command line numbers, output paths and the live loop ----------------------------------------------


@pytest.fixture
def no_restoration(monkeypatch):
    """Fail if a restoration starts: the checks under test must come before it."""
    from napari_nanoscopy import inference

    monkeypatch.setattr(inference.Restorer, "restore", lambda *a, **k: pytest.fail("restoration ran"))


@pytest.fixture
def source(tmp_path, image):
    path = tmp_path / "in.ome.tif"
    write_image(path, image, pixel_size_nm=20.0)
    return path


@pytest.mark.parametrize("extra, phrase", [
    (["--samples", "1e9"], "Monte-Carlo samples must be a whole number from 1 to 1000, not 1000000000"),
    (["--tile", "1e12"], "The tile size must be a whole number from 64 to 65536"),
    (["--block", "1e12"], "The block size must be a whole number from 64 to 65536"),
    (["--workers", "1000000"], "The number of dask workers must be a whole number from 1 to 256, not 1000000"),
    (["--workers", "-1"], "The number of dask workers must be a whole number from 1 to 256, not -1"),
])
def test_cli_restore_numbers_get_one_line_with_limits(tmp_path, capsys, source, deadline, extra, phrase):
    status, err = run_cli(capsys, "restore", source, tmp_path / "out.zarr", "-m", "tagan-nanodomains", *extra)
    assert_one_line_error(status, err, phrase)


def test_cli_other_commands_numbers(tmp_path, capsys, deadline):
    status, err = run_cli(capsys, "train", "tagan", "--data", tmp_path, "--out", tmp_path / "m", "--steps", "1",
                          "--seed", str(10**23))  # an OverflowError traceback before
    assert_one_line_error(status, err, "seed must be a whole number from 0 to 9223372036854775807")
    status, err = run_cli(capsys, "train", "tagan", "--data", tmp_path, "--out", tmp_path / "m", "--steps", "1e12")
    assert_one_line_error(status, err, "steps must be a whole number from 1 to 10000000")
    status, err = run_cli(capsys, "bench", "--size", "1e9", "--only", "throughput")  # a MemoryError before
    assert_one_line_error(status, err, "The benchmark size must be a whole number from 64 to 16384")
    status, err = run_cli(capsys, "evaluate", "tagan-nanodomains", "--data", tmp_path, "--limit", "-5")
    assert_one_line_error(status, err, "The image limit must be a whole number from 1 to")  # a ValueError before
    status, err = run_cli(capsys, "simulate", "nanodomains", "--n", "1e9", "--out", tmp_path / "sim")
    assert_one_line_error(status, err, "n must be a whole number from 1 to")
    with pytest.raises(SystemExit) as exit_status:  # argparse's own refusal: usage and one error line
        cli.main(["restore", "x.tif", "y.tif", "-m", "m", "--samples", "1.5"])
    assert exit_status.value.code == 2 and "--samples/-n: '1.5' is not a whole number" in capsys.readouterr().err


@pytest.mark.parametrize("output, extra, phrase", [
    ("out.xyz", [], "the name must end in .ome.tif or .ome.tiff (OME-TIFF), in .tif or .tiff (ImageJ TIFF)"),
    ("folder.ome.tif", ["--overwrite"], "a folder of that name is in the way"),
    ("out.ome.tif", ["--uncertainty", "{tmp}/std.ome.tif", "--samples", "1"], "An uncertainty map needs at least 2"),
])
def test_restore_outputs_are_checked_before_the_restoration(tmp_path, capsys, source, no_restoration,
                                                            output, extra, phrase):
    (tmp_path / "folder.ome.tif").mkdir()
    extra = [e.replace("{tmp}", str(tmp_path)) for e in extra]
    status, err = run_cli(capsys, "restore", source, tmp_path / output, "-m", "tagan-nanodomains", *extra)
    assert_one_line_error(status, err, phrase)
    status, err = run_cli(capsys, "restore", source, tmp_path / output, "-m", "tagan-nanodomains", "--block", "256",
                          *extra)
    assert_one_line_error(status, err, phrase)


@pytest.mark.parametrize("extra, phrase", [
    (["--timeout", "inf"], "timeout_s must be a positive number of seconds up to 86400 (a day); got inf"),
    (["--timeout", "nan"], "timeout_s must be a positive number of seconds up to 86400 (a day); got nan"),
    (["--timeout", "-1"], "timeout_s must be a positive number of seconds up to 86400 (a day); got -1.0"),
    (["--seed", str(10**23)], "The live setting seed must be a whole number from 0 to"),
    (["--samples", "1e9"], "Monte-Carlo samples must be a whole number from 1 to 1000"),
    (["--adapter", "pymmcore", "--arm", "--mm-config", "/no/such/file.cfg"],
     "The Micro-Manager configuration file /no/such/file.cfg does not exist"),
])
def test_live_settings_get_one_line(tmp_path, capsys, deadline, extra, phrase):
    status, err = run_cli(capsys, "live", "--out", tmp_path / "session", "--frames", "1", *extra)
    assert_one_line_error(status, err, phrase)
    assert not (tmp_path / "session").exists()


def test_live_out_that_is_a_file(tmp_path, capsys, deadline):
    (tmp_path / "session").write_text("")
    status, err = run_cli(capsys, "live", "--out", tmp_path / "session", "--frames", "1")
    assert_one_line_error(status, err, "session is a file; give a new folder for the live session")


def test_out_that_is_a_file_gets_one_line_everywhere(tmp_path, capsys, deadline):
    from test_csbdeep import make_care_folder

    taken = tmp_path / "taken"
    taken.write_text("")
    folder, _, _ = make_care_folder(tmp_path / "care")
    for argv, phrase in [
        (["simulate", "nanodomains", "--n", "1", "--out", taken], "taken is a file"),
        (["train", "tagan", "--data", tmp_path, "--out", taken, "--steps", "1"], "taken already exists"),
        (["export-bmz", "tagan-nanodomains", taken], "taken already exists"),
        (["import-csbdeep", folder, taken], "taken already exists"),
        (["live", "--out", taken, "--frames", "1"], "taken is a file"),
    ]:
        status, err = run_cli(capsys, *argv)
        assert_one_line_error(status, err, phrase)
    assert taken.read_text() == ""
