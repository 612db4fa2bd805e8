"""The Segment widget and the *.polys.txt reader in napari (under Xvfb), on the real axonal STED images."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from napari_nanoscopy.annotations import DENDRITE_CLASSES, polygons_to_mask, read_polygons
from napari_nanoscopy.io import read_image
from conftest import wait_idle

REAL = Path(__file__).parents[1].parent / "shared" / "real" / "STEDActinFCN"
AXON_IMAGE = REAL / "axon" / "images" / "actin_1.tiff"
AXON_POLYGONS = REAL / "axon" / "annotations" / "actin_1.polys.txt"
AXON_NETWORK = REAL / "axon" / "network"
AXON_HELD_OUT = REAL / "axon" / "to_predict" / "3.tif"
MANIFEST = Path(__file__).parents[1] / "src" / "napari_nanoscopy" / "napari.yaml"

needs_real = pytest.mark.skipif(not AXON_IMAGE.is_file(), reason="the real STEDActinFCN files are not beside the repository")


def axon_model():
    """The authors' axon U-Net folder where it loads, else the bundled U-Net-Live (both segment rings)."""
    from napari_nanoscopy.errors import NanoscopyError
    from napari_nanoscopy.formats import load_model

    try:
        load_model(str(AXON_NETWORK))
    except NanoscopyError:
        return "unet-live-factin"
    return str(AXON_NETWORK)


# -- reader ------------------------------------------------------------------------------------


def test_manifest_contributes_the_segment_widget_and_the_polygon_reader():
    manifest = yaml.safe_load(MANIFEST.read_text())
    commands = {c["id"]: c["python_name"] for c in manifest["contributions"]["commands"]}
    widgets = {w["display_name"]: w["command"] for w in manifest["contributions"]["widgets"]}
    assert commands[widgets["Segment"]] == "napari_nanoscopy._widgets.segment:SegmentWidget"
    [reader] = [r for r in manifest["contributions"]["readers"] if r["filename_patterns"] == ["*.polys.txt"]]
    assert commands[reader["command"]] == "napari_nanoscopy._napari_io:get_polygon_reader"


def test_polygon_reader_gives_rows_and_columns_and_labels(tmp_path):
    from napari_nanoscopy._napari_io import get_polygon_reader

    path = tmp_path / "cell.polys.txt"
    path.write_text("1 (10.0, 2.0), (20.5, 2.0), (20.5, 8.0)\n\n3 (1, 1), (4, 1), (4, 6), (1, 6)\n")
    assert get_polygon_reader(str(tmp_path / "cell.tif")) is None
    [(data, kwargs, layer_type)] = get_polygon_reader(str(path))(str(path))
    assert layer_type == "shapes" and kwargs["name"] == "cell polygons" and kwargs["shape_type"] == "polygon"
    np.testing.assert_allclose(data[0], [[2.0, 10.0], [2.0, 20.5], [8.0, 20.5]])  # (x, y) in the file: (row, col)
    assert kwargs["features"] == {"label": [1, 3]} and len(data) == 2
    empty = tmp_path / "tubulin.polys.txt"
    empty.write_text("")
    [(data, kwargs, _)] = get_polygon_reader(str(empty))(str(empty))
    assert data == [] and kwargs["features"] == {"label": []}


def test_polygon_reader_refuses_code_without_running_it(tmp_path):
    from napari_nanoscopy._napari_io import get_polygon_reader
    from napari_nanoscopy.errors import NanoscopyError

    marker = tmp_path / "ran"
    path = tmp_path / "evil.polys.txt"
    path.write_text(f"1 (__import__('pathlib').Path({str(marker)!r}).touch(), 0), (1, 1), (2, 0)\n")
    with pytest.raises(NanoscopyError, match="Line 1 of .*evil.polys.txt"):
        get_polygon_reader(str(path))(str(path))
    assert not marker.exists()


@needs_real
def test_viewer_opens_the_authors_polygons_as_shapes(make_napari_viewer):
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(AXON_POLYGONS), plugin="napari-nanoscopy")
    polygons = read_polygons(AXON_POLYGONS)
    assert layer.__class__.__name__ == "Shapes" and len(layer.data) == len(polygons)
    assert set(layer.shape_type) == {"polygon"} and list(layer.features["label"]) == [p.label for p in polygons]
    np.testing.assert_allclose(layer.data[0], polygons[0].vertices)


# -- Segment widget ----------------------------------------------------------------------------


@needs_real
def test_segment_a_real_axon_image_gives_labels_at_the_input_scale(make_napari_viewer, qtbot):
    """The authors' axon U-Net (or U-Net-Live where it does not load) on a held-out real STED image."""
    from napari_nanoscopy._widgets.segment import SegmentWidget
    from napari_nanoscopy.segmentation import segment

    viewer = make_napari_viewer()
    image = read_image(AXON_HELD_OUT).data
    layer = viewer.add_image(image, name="axon 3", scale=(20.0, 20.0), translate=(40.0, -20.0), units=("nm", "nm"))
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    model = axon_model()
    if model == str(AXON_NETWORK):
        widget.add_model(model)
        wait_idle(qtbot, widget)
        assert widget.last_error is None
    assert widget.select_model(model)
    assert widget.pixel_box.value() == pytest.approx(20.0)
    assert all(entry.card.name != "l2l-twolabel" for entry in widget._entries)  # only models that segment
    widget.probabilities_box.setChecked(True)
    widget.run()
    wait_idle(qtbot, widget)
    assert widget.last_error is None
    labels = viewer.layers["segmentation: axon 3"]
    assert labels.__class__.__name__ == "Labels" and labels.data.dtype == np.uint8
    assert tuple(labels.scale) == (20.0, 20.0) and tuple(labels.translate) == (40.0, -20.0)
    expected = segment(image, model, pixel_size_nm=20.0)
    np.testing.assert_array_equal(labels.data, expected.labels)
    assert list(labels.features["class"]) == ["background", *expected.class_names]
    assert labels.metadata["source_layer"] == "axon 3" and labels.metadata["pixel_size_nm"] == 20.0
    [rings] = [l for l in viewer.layers if l.name == "rings probability: axon 3"]
    assert tuple(rings.scale) == (20.0, 20.0) and tuple(rings.translate) == (40.0, -20.0) and not rings.visible
    if model == str(AXON_NETWORK):  # the authors' own output, through napari
        reference = np.load(REAL / "reference_predictions.npz")["STEDActinAxonFCN/3.tif"]
        assert np.abs(rings.data - reference).max() <= 1e-4
    np.testing.assert_allclose(rings.data, expected.probabilities[0], atol=1e-6)
    count = len(viewer.layers)
    widget.run()  # a rerun updates the same layers
    wait_idle(qtbot, widget)
    assert len(viewer.layers) == count and viewer.layers["segmentation: axon 3"] is labels
    assert layer in viewer.layers


@needs_real
def test_shapes_to_labels_fills_the_polygons_on_the_image_pixels(make_napari_viewer):
    from napari_nanoscopy._widgets.segment import SegmentWidget

    viewer = make_napari_viewer()
    viewer.add_image(read_image(AXON_IMAGE).data, name="actin_1")
    [shapes] = viewer.open(str(AXON_POLYGONS), plugin="napari-nanoscopy")
    widget = SegmentWidget(viewer)
    widget.shapes_combo.set_layer(shapes)
    labels = widget.shapes_to_labels()
    expected = polygons_to_mask(read_polygons(AXON_POLYGONS), (224, 224), labels=DENDRITE_CLASSES)
    assert expected.sum() > 1000
    np.testing.assert_array_equal(labels.data, expected)
    assert list(labels.features["class"]) == ["background", "rings", "fibres"]


def test_segment_widget_errors_are_messages_not_crashes(make_napari_viewer, qtbot, tmp_path):
    from napari_nanoscopy._widgets.segment import SegmentWidget

    viewer = make_napari_viewer()
    widget = SegmentWidget(viewer)
    assert widget.run() is None and widget.last_error == "Pick an image layer to segment."
    widget.add_model(tmp_path / "nothing-here")
    wait_idle(qtbot, widget)
    assert widget.last_error and "nothing-here" in widget.last_error
    widget.add_model("l2l-twolabel")  # restores, does not segment
    wait_idle(qtbot, widget)
    assert "has no segmentation network" in (widget.last_error or "")


def test_cancel_leaves_the_layers_as_they_were(make_napari_viewer, qtbot, smooth_image):
    from napari_nanoscopy._widgets.segment import SegmentWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.stack([smooth_image] * 6), name="stack", scale=(1.0, 20.0, 20.0))
    widget = SegmentWidget(viewer)
    assert widget.select_model("unet-live-factin")
    count = len(viewer.layers)
    job = widget.run()
    widget.cancel()  # before the first batch: the model is still loading
    assert job.cancelling
    wait_idle(qtbot, widget)
    assert widget.status.text() == "Cancelled; no layers were changed." and widget.last_error is None
    assert len(viewer.layers) == count and widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()
