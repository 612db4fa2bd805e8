"""The npe2 manifest, reader and writers (no viewer needed for these)."""

import subprocess
import sys

import numpy as np
import pytest

from napari_nanoscopy._napari_io import get_reader, write_image_layer, write_labels_layer
from napari_nanoscopy.io import read_image, write_image


def test_manifest_validates_with_npe2():
    completed = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-nanoscopy", "--imports"],
        capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "passed" in completed.stdout.lower() or "valid" in completed.stdout.lower()


def test_manifest_is_found_through_the_entry_point():
    from npe2 import PluginManager

    manager = PluginManager()
    manager.discover()
    manifest = manager.get_manifest("napari-nanoscopy")
    # TIFF / OME-TIFF images, *.polys.txt polygon annotations, and recorded live-assist session folders
    assert {r.command for r in manifest.contributions.readers} == {
        "napari-nanoscopy.get_reader", "napari-nanoscopy.get_polygon_reader", "napari-nanoscopy.get_session_reader"}


def test_reader_sets_physical_scale_and_channel_names(tmp_path):
    data = np.random.default_rng(0).random((2, 40, 50)).astype(np.float32)
    path = tmp_path / "pair.ome.tif"
    write_image(path, data, pixel_size_nm=20.0, axes="CYX", channel_names=["confocal", "STED"])
    assert get_reader(str(tmp_path / "x.png")) is None
    [(array, kwargs, layer_type)] = get_reader(str(path))(str(path))
    assert layer_type == "image" and kwargs["channel_axis"] == 0
    assert kwargs["name"] == ["confocal", "STED"] and kwargs["scale"] == (20.0, 20.0)
    assert kwargs["units"] == ("nm", "nm")
    np.testing.assert_array_equal(array, data)


def test_writer_round_trips_pixel_size_and_provenance(tmp_path):
    data = np.random.default_rng(1).random((3, 40, 50)).astype(np.float32)
    meta = {"name": "restored", "scale": (1.0, 0.025, 0.025), "units": ("pixel", "µm", "µm"),
            "metadata": {"model": "tagan-factin", "weights_sha256": "ab12"}}
    path = tmp_path / "restored.ome.tif"
    assert write_image_layer(str(path), data, meta) == [str(path)]
    image = read_image(path)
    assert image.pixel_size_nm == pytest.approx(25.0) and image.axes == "ZYX"
    assert image.metadata["model"] == "tagan-factin" and image.metadata["layer_name"] == "restored"
    labels = np.zeros((40, 50), dtype=np.int64)
    labels[5:10, 5:10] = 2
    write_labels_layer(str(tmp_path / "seg.tif"), labels, {"name": "seg", "scale": (20.0, 20.0), "units": ("nm", "nm")})
    [(array, kwargs, layer_type)] = get_reader(str(tmp_path / "seg.tif"))(str(tmp_path / "seg.tif"))
    assert layer_type == "labels" and kwargs["scale"] == (20.0, 20.0)
    np.testing.assert_array_equal(array, labels)


def test_viewer_opens_tiff_at_physical_scale(make_napari_viewer, tmp_path):
    data = np.random.default_rng(2).random((48, 64)).astype(np.float32)
    path = tmp_path / "confocal.tif"
    write_image(path, data, pixel_size_nm=20.0, axes="YX")
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(path), plugin="napari-nanoscopy")
    assert tuple(layer.scale) == (20.0, 20.0)
    assert [str(u) for u in layer.units] == ["nanometer", "nanometer"]
    np.testing.assert_array_equal(layer.data, data)
