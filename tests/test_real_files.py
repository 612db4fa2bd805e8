"""Multichannel TIFFs as microscopes and other tools write them restore (issue 15, item 6).

Every file is built here with tifffile the way the tool in question writes it: ImageJ
hyperstacks (axes and slice labels in the ImageJ description), OME-TIFF with a C axis and
channel names, plain stacks as tifffile saves them (3 or 4 planes become separate sample planes,
``SYX``; 6 planes an unnamed stack), the TA-GAN datasets' layouts (axons: confocal, STED, rings;
dendrites: confocal, STED, rings, fibres; synaptic proteins: confocal, STED and segmentation
of two colours) and RGB images.
"""

import re

import numpy as np
import pytest
import tifffile

from napari_nanoscopy import cli, restore
from napari_nanoscopy._napari_io import get_reader
from napari_nanoscopy.errors import NanoscopyError
from napari_nanoscopy.inference import Restorer
from napari_nanoscopy.io import read_image
from napari_nanoscopy.samples import sample_path
from conftest import wait_idle

SIZE = 64


def _planes(count: int) -> np.ndarray:
    """``count`` different uint16 planes (plane k is brighter and shifted), as a (count, Y, X) stack."""
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    noise = np.random.default_rng(3).integers(0, 20, (count, SIZE, SIZE))
    planes = [400 + 200 * (k + 1) * (1 + np.sin((x + 7 * k) / 5.0) * np.cos(y / 7.0)) for k in range(count)]
    return (np.stack(planes) + noise).astype(np.uint16)


def _imagej_hyperstack(path, planes, labels):
    tifffile.imwrite(path, planes, imagej=True, resolution=(50.0, 50.0),  # 50 pixels per µm: 20 nm
                     metadata={"axes": "CYX", "unit": "um", "Labels": labels})


def _ome(path, planes, names):
    tifffile.imwrite(path, planes, ome=True, photometric="minisblack",
                     metadata={"axes": "CYX", "PhysicalSizeX": 0.02, "PhysicalSizeY": 0.02,
                               "Channel": {"Name": names}})


def _plain_stack(path, planes):
    """As ``tifffile.imwrite(path, planes)`` writes 3 or 4 planes (TA-GAN's datasets were written so)."""
    tifffile.imwrite(path, planes, photometric="rgb", planarconfig="separate")


def _restore(args, capsys):
    code = cli.main(["restore", *map(str, args)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.err


# --- reading ---------------------------------------------------------------------------------


def test_imagej_hyperstack_gives_its_axes_channel_names_and_pixel_size(tmp_path):
    data = np.arange(2 * 3 * 2 * 40 * 48, dtype=np.uint16).reshape(2, 3, 2, 40, 48)
    path = tmp_path / "hyperstack.tif"
    labels = [f"{name} t{t} z{z}" for t in range(2) for z in range(3) for name in ("confocal", "STED")]
    labels[:2] = ["confocal", "STED"]
    tifffile.imwrite(path, data, imagej=True, resolution=(50.0, 50.0),
                     metadata={"axes": "TZCYX", "unit": "um", "Labels": labels})
    image = read_image(path)
    assert image.axes == "TZCYX" and image.data.shape == data.shape
    assert image.channel_names == ["confocal", "STED"]  # the first slice labels of C, which varies fastest
    assert image.pixel_size_nm == pytest.approx(20.0)
    np.testing.assert_array_equal(image.data, data)


def test_plain_stacks_are_channels_and_rgb_images_are_refused(tmp_path):
    planes = _planes(3)
    _plain_stack(tmp_path / "axons.tif", planes)
    image = read_image(tmp_path / "axons.tif")
    assert image.axes == "CYX" and image.channel_names is None
    np.testing.assert_array_equal(image.data, planes)

    rgb = np.moveaxis(planes.astype(np.uint8), 0, -1)
    tifffile.imwrite(tmp_path / "photo.tif", rgb, photometric="rgb")
    with pytest.raises(NanoscopyError) as refused:
        read_image(tmp_path / "photo.tif")
    assert str(refused.value) == (
        "photo.tif is an RGB image (3 colour samples per pixel) and nanoscopy models need a single "
        "fluorescence channel; export the raw channel as a greyscale TIFF, or read the samples as channels "
        "(axes 'YXC', --axes YXC on the command line) and pick one."
    )
    as_channels = read_image(tmp_path / "photo.tif", axes="YXC")
    assert as_channels.axes == "CYX"
    np.testing.assert_array_equal(as_channels.data, planes.astype(np.uint8))


def test_given_axes_replace_the_file_s_and_are_checked(tmp_path):
    planes = _planes(6)
    tifffile.imwrite(tmp_path / "synprot.tif", planes)  # an unnamed 6-plane stack
    assert read_image(tmp_path / "synprot.tif").axes == "ZYX"
    assert read_image(tmp_path / "synprot.tif", axes="CYX").axes == "CYX"
    with pytest.raises(NanoscopyError) as refused:
        read_image(tmp_path / "synprot.tif", axes="CZX")
    assert str(refused.value) == (
        "The axes 'CZX' do not fit synprot.tif, whose image has shape (6, 64, 64) (read as 'ZYX'); give one "
        "letter per dimension from 'TCZYX', each at most once, including Y and X (e.g. 'CYX')."
    )


def test_select_channel_by_index_or_name_and_refusals(tmp_path):
    from napari_nanoscopy.io import select_channel

    planes = _planes(3)
    _ome(tmp_path / "pair.ome.tif", planes, ["confocal", "STED", "rings"])
    image = read_image(tmp_path / "pair.ome.tif")
    by_name = select_channel(image, "sted")
    assert by_name.axes == "YX" and by_name.channel_names == ["STED"]
    np.testing.assert_array_equal(by_name.data, planes[1])
    np.testing.assert_array_equal(select_channel(image, 2).data, planes[2])
    np.testing.assert_array_equal(select_channel(image, "0").data, planes[0])
    with pytest.raises(NanoscopyError, match=re.escape(
            "The image has 3 channels (0: confocal, 1: STED, 2: rings) and the model restores one; "
            "pass the channel to restore, by index or name.")):
        select_channel(image)
    with pytest.raises(NanoscopyError, match=re.escape(
            "The image has no channel 'actin'; its channels are 0: confocal, 1: STED, 2: rings: give an index "
            "from 0 to 2 or one of the names.")):
        select_channel(image, "actin")
    single = select_channel(image, 0)
    assert select_channel(single, "confocal") is single and select_channel(single, 0) is single
    with pytest.raises(NanoscopyError, match=re.escape(
            "The image has no channel axis, so there is no channel 1 to pick; restore it without a channel "
            "choice, or give axes that name its channel axis C.")):
        select_channel(single, 1)


# --- the command line ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, channels, choice, expected",
    [
        ("imagej", ["confocal", "STED", "rings"], "confocal", 0),
        ("ome", ["STED", "confocal"], "1", 1),
        ("tagan-axons", None, "0", 0),  # confocal, STED, rings
        ("tagan-dendrites", None, "0", 0),  # confocal, STED, rings, fibres
    ],
)
def test_cli_restores_the_chosen_channel(packages_dir, tmp_path, capsys, kind, channels, choice, expected):
    count = len(channels) if channels else {"tagan-axons": 3, "tagan-dendrites": 4}[kind]
    planes = _planes(count)
    source = tmp_path / ("input.ome.tif" if kind == "ome" else "input.tif")
    {"imagej": lambda: _imagej_hyperstack(source, planes, channels),
     "ome": lambda: _ome(source, planes, channels)}.get(kind, lambda: _plain_stack(source, planes))()
    model = packages_dir / "l2l"
    out = tmp_path / "restored.ome.tif"

    code, err = _restore([source, out, "--model", model], capsys)
    listing = (", ".join(f"{i}: {name}" for i, name in enumerate(channels)) if channels
               else ", ".join(map(str, range(count))) + " (unnamed)")
    assert code == 2 and err == (
        f"napari-nanoscopy: error: {source.name} has {count} channels ({listing}) and the model restores one; "
        "pick one with --channel INDEX or --channel NAME.\n"
    )
    assert not out.exists()

    code, err = _restore([source, out, "--model", model, "--channel", choice], capsys)
    assert code == 0, err
    restored = read_image(out)
    assert restored.axes == "YX" and restored.metadata["input_channel"] == expected
    if channels:
        assert restored.metadata["input_channel_name"] == channels[expected]
    pixel = 20.0 if kind in ("imagej", "ome") else None
    alone = restore(planes[expected], model, device="cpu", pixel_size_nm=pixel)
    np.testing.assert_allclose(restored.data, alone.mean, rtol=1e-5, atol=1e-3)


def test_cli_names_axes_and_refuses_rgb_up_front(packages_dir, tmp_path, capsys):
    planes = _planes(6)  # TA-GAN synaptic proteins: confocal, STED, segmentation at 561 nm, then at 640 nm
    tifffile.imwrite(tmp_path / "synprot.tif", planes)
    model = packages_dir / "l2l"
    out = tmp_path / "restored.ome.tif"
    code, err = _restore([tmp_path / "synprot.tif", out, "--model", model, "--axes", "CYX", "--channel", "3"], capsys)
    assert code == 0, err
    assert read_image(out).metadata["input_channel"] == 3

    rgb = np.moveaxis(planes[:3].astype(np.uint8), 0, -1)
    tifffile.imwrite(tmp_path / "photo.tif", rgb, photometric="rgb")
    code, err = _restore([tmp_path / "photo.tif", tmp_path / "photo_out.ome.tif", "--model", model], capsys)
    assert code == 2 and err.startswith("napari-nanoscopy: error: photo.tif is an RGB image (3 colour samples")
    assert err.count("\n") == 1 and not (tmp_path / "photo_out.ome.tif").exists()
    code, err = _restore([tmp_path / "photo.tif", tmp_path / "photo_out.ome.tif", "--model", model,
                          "--axes", "YXC", "--channel", "2"], capsys)
    assert code == 0, err

    code, err = _restore([tmp_path / "synprot.tif", out, "--model", model, "--axes", "CYX", "--channel", "9",
                          "--overwrite"], capsys)
    assert code == 2 and "has no channel '9'; its channels are 0, 1, 2, 3, 4, 5 (unnamed)" in err


@pytest.mark.parametrize("kind", ["ome", "imagej"])
def test_cli_channel_choice_chunk_by_chunk(packages_dir, tmp_path, capsys, kind):
    planes = _planes(3)
    source = tmp_path / ("pair.ome.tif" if kind == "ome" else "pair.tif")
    (_ome if kind == "ome" else _imagej_hyperstack)(source, planes, ["confocal", "STED", "rings"])
    out = tmp_path / "restored.ome.tif"
    code, err = _restore([source, out, "--model", packages_dir / "l2l", "--channel", "STED", "--block", "64"], capsys)
    assert code == 0, err
    restored = read_image(out)
    assert restored.axes == "YX" and restored.metadata["input_channel_name"] == "STED"
    assert restored.metadata["chunked"] is True


def test_multi_input_models_take_no_channel_choice(packages_dir, tmp_path, capsys):
    source = tmp_path / "live.ome.tif"
    _ome(source, _planes(3), ["confocal", "STED patch", "patch mask"])
    code, err = _restore([source, tmp_path / "out.ome.tif", "--model", packages_dir / "tagan-live",
                          "--channel", "0"], capsys)
    assert code == 2 and err == (
        "napari-nanoscopy: error: The model 'test-tagan-live' takes 3 channels (in0, in1, in2), so there is no "
        "channel to pick; drop --channel.\n"
    )


# --- an assumed pixel size -------------------------------------------------------------------


def test_an_assumed_pixel_size_is_said_and_recorded(packages_dir, tmp_path, capsys):
    source = tmp_path / "uncalibrated.tif"
    tifffile.imwrite(source, _planes(1)[0])
    out = tmp_path / "restored.ome.tif"
    code, err = _restore([source, out, "--model", packages_dir / "l2l"], capsys)
    assert code == 0
    assert ("napari-nanoscopy: note: uncalibrated.tif records no usable pixel size (none, zero, negative or not a "
            "number); assuming the model's 20 nm (give --pixel-size to resample).") in err
    restored = read_image(out)
    assert restored.metadata["pixel_size_assumed"] is True and restored.pixel_size_nm == pytest.approx(20.0)

    calibrated = tmp_path / "calibrated.tif"
    _imagej_hyperstack(calibrated, _planes(1), ["confocal"])
    code, err = _restore([calibrated, tmp_path / "measured.ome.tif", "--model", packages_dir / "l2l"], capsys)
    assert code == 0 and "assuming" not in err
    assert read_image(tmp_path / "measured.ome.tif").metadata["pixel_size_assumed"] is False

    chunked = tmp_path / "chunked.ome.tif"
    code, _ = _restore([source, chunked, "--model", packages_dir / "l2l", "--block", "64"], capsys)
    assert code == 0 and read_image(chunked).metadata["pixel_size_assumed"] is True

    restorer = Restorer(packages_dir / "l2l", device="cpu")
    assert restorer.restore(_planes(1)[0]).provenance["pixel_size_assumed"] is True
    assert restorer.restore(_planes(1)[0], pixel_size_nm=20.0).provenance["pixel_size_assumed"] is False


# --- the napari reader -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["imagej", "tagan-axons"])
def test_napari_reader_opens_each_channel_as_a_layer_at_its_scale(tmp_path, kind):
    planes = _planes(3)
    path = tmp_path / f"{kind}.tif"
    if kind == "imagej":
        _imagej_hyperstack(path, planes, ["confocal", "STED", "rings"])
    else:
        _plain_stack(path, planes)
    [(data, kwargs, layer_type)] = get_reader(str(path))(str(path))
    assert layer_type == "image" and kwargs["channel_axis"] == 0
    np.testing.assert_array_equal(data, planes)
    if kind == "imagej":
        assert kwargs["name"] == ["confocal", "STED", "rings"]
        assert kwargs["scale"] == (20.0, 20.0) and kwargs["units"] == ("nm", "nm")
    else:  # numbered as --channel counts them
        assert kwargs["name"] == ["tagan-axons [0]", "tagan-axons [1]", "tagan-axons [2]"]
        assert "scale" not in kwargs
    assert kwargs["metadata"]["axes"] == "YX"  # the axes of each layer


def test_viewer_shows_channels_as_layers(make_napari_viewer, tmp_path):
    path = tmp_path / "hyperstack.tif"
    _imagej_hyperstack(path, _planes(2), ["confocal", "STED"])
    viewer = make_napari_viewer()
    layers = viewer.open(str(path), plugin="napari-nanoscopy")
    assert [layer.name for layer in layers] == ["confocal", "STED"]
    assert all(tuple(layer.scale) == (20.0, 20.0) and layer.data.shape == (SIZE, SIZE) for layer in layers)


# --- each family's output range is the documented one ------------------------------------------


def test_linear_output_families_run_past_0_and_1_as_documented():
    """wang and tcan end in a linear layer: 0 and 1 are the training targets' 1st and 99.8th
    percentiles, and the outputs are not clipped there (docs/api.md says so)."""
    from pathlib import Path

    for model, sample in (("wang-beads", "beads_confocal"), ("tcan-filaments", "filaments_confocal")):
        image = read_image(sample_path(sample))
        mean = restore(image.data, model, device="cpu", pixel_size_nm=image.pixel_size_nm, samples=1).mean
        low, high = np.percentile(mean, [1.0, 99.8])
        assert -0.15 < low < 0.15 and 0.6 < high < 1.3  # the targets' scale
        assert mean.min() < 0.0 and mean.max() > 1.0  # past it: noise below, the brightest peaks above
    api = Path(__file__).resolve().parents[1] / "docs" / "api.md"
    text = " ".join(api.read_text(encoding="utf-8").split())
    assert "[0, 1] for GAN models" not in text
    assert "`wang` and `tcan` generators end in a linear layer" in text


def test_widget_says_and_records_an_assumed_pixel_size(make_napari_viewer, qtbot, packages_dir, tmp_path):
    from napari_nanoscopy._widgets.restore import RestoreWidget

    path = tmp_path / "axons.tif"
    _plain_stack(path, _planes(3))  # TA-GAN axons: no pixel size in the file
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-nanoscopy")
    widget = RestoreWidget(viewer)
    widget.add_model(packages_dir / "l2l")
    wait_idle(qtbot, widget, 60_000)
    widget.run()
    assert widget.status.text().endswith("with test-l2l at its 20 nm pixels (assumed: the layer has none)…")
    wait_idle(qtbot, widget, 60_000)
    assert widget.last_error is None, widget.last_error
    assert widget.last_result.provenance["pixel_size_assumed"] is True
