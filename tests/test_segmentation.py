"""Segmentation (segmentation.Segmenter) and polygon annotations (annotations)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_nanoscopy.annotations import (AXON_CLASSES, DENDRITE_CLASSES, parse_polygons, polygons_to_mask,
                                          read_polygons)
from napari_nanoscopy.errors import Cancelled, NanoscopyError
from napari_nanoscopy.formats import load_model
from napari_nanoscopy.segmentation import Segmenter, can_segment, label_classes, segment

REAL = Path(__file__).resolve().parents[2] / "shared" / "real" / "STEDActinFCN"


# --- annotations --------------------------------------------------------------------------------


def test_polygons_parse_as_numbers_rows_first_and_fill_like_the_authors(tmp_path):
    path = tmp_path / "a.polys.txt"
    path.write_text("1 (2.9, 1.0), (8.0, 1.0), (8.0, 6.0), (2.0, 6.0)\n\n3 (0, 0), (1e0, 0), (1, 1)\n")
    first, second = read_polygons(path)
    assert (first.label, second.label) == (1, 3)
    np.testing.assert_allclose(first.vertices[0], [1.0, 2.9])  # (x, y) -> (row, column)
    mask = polygons_to_mask([first, second], (10, 12), labels=DENDRITE_CLASSES)
    assert mask.dtype == np.uint8 and mask[3, 2] == 1  # x 2.9 is cut to column 2, as int() did
    assert mask[0, 0] == 2 and set(np.unique(mask)) == {0, 1, 2}
    assert polygons_to_mask([first], (10, 12), labels=[0]).sum() == 0


def test_polygon_lines_are_never_evaluated(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.polys.txt"
    path.write_text(f"1 __import__('pathlib').Path({str(marker)!r}).touch()\n")
    with pytest.raises(NanoscopyError, match="Line 1 of .* holds something other than"):
        read_polygons(path)
    assert not marker.exists()
    for text, problem in (("x (1, 2), (3, 4), (5, 6)", "whole-number label"), ("1 (1, 2), (3, 4)", "fewer than the 3"),
                          ("1 (1, 2), (3, 4), (5, 1e99)", "not a finite number")):
        with pytest.raises(NanoscopyError, match=problem):
            parse_polygons(text)


def test_polygon_file_size_is_bounded(tmp_path, monkeypatch):
    from napari_nanoscopy import annotations

    path = tmp_path / "big.polys.txt"
    path.write_text("1 (0, 0), (1, 0), (1, 1)\n" * 10)
    monkeypatch.setattr(annotations, "MAX_POLYGON_FILE_BYTES", 100)
    with pytest.raises(NanoscopyError, match="more than the 100 a polygon file may have"):
        read_polygons(path)


@pytest.mark.skipif(not REAL.is_dir(), reason="STEDActinFCN data absent")
def test_real_axon_annotations():
    polygons = read_polygons(REAL / "axon" / "annotations" / "actin_1.polys.txt")
    assert len(polygons) == 7 and {p.label for p in polygons} == {0, 1}
    assert 0 < polygons_to_mask(polygons, (224, 224), AXON_CLASSES).mean() < 0.5
    assert read_polygons(REAL / "axon" / "annotations" / "tubulin.polys.txt") == []


# --- segmentation ---------------------------------------------------------------------------------


def test_labels_take_the_most_probable_passing_class():
    probabilities = np.array([[[0.9, 0.3, 0.6, 0.1]], [[0.8, 0.5, 0.7, 0.1]]], dtype=np.float32)  # (K=2, 1, 4)
    labels = label_classes(probabilities, (0.5, 0.4))
    np.testing.assert_array_equal(labels, [[1, 2, 2, 0]])


def test_task_network_package_segments_a_stack(smooth_image):
    segmenter = Segmenter("unet-live-factin", device="cpu")
    assert segmenter.class_names == ("rings", "fibres")
    # the card's thresholds are on the task network's tanh scale; the result's are probabilities
    from napari_nanoscopy.formats import load_model

    tanh_thresholds = load_model("unet-live-factin").card.task.thresholds
    assert segmenter.thresholds == pytest.approx(tuple((t + 1) / 2 for t in tanh_thresholds))
    stack = np.stack([smooth_image[:96, :96], smooth_image[:96, :96][::-1]])
    result = segmenter.segment(stack, pixel_size_nm=20.0)
    assert result.probabilities.shape == (2, 2, 96, 96) and result.labels.shape == (2, 96, 96)
    assert result.probabilities.dtype == np.float32 and result.labels.dtype == np.uint8
    assert 0.0 <= result.probabilities.min() and result.probabilities.max() <= 1.0
    np.testing.assert_array_equal(result.labels, label_classes(result.probabilities, result.thresholds))
    assert result.provenance["model"] == "unet-live-factin" and result.provenance["thresholds"] == list(result.thresholds)


def test_probabilities_unit_is_the_same_network_and_differentiable(smooth_image):
    segmenter = Segmenter("unet-live-factin", device="cpu")
    image = smooth_image[:128, :128]
    expected = segmenter.segment(image).probabilities
    low, high = np.percentile(image, (1.0, 99.8))
    unit = np.clip((image - low) / (high - low), 0.0, 1.0).astype(np.float32)
    batch = torch.from_numpy(unit)[None, None].requires_grad_(True)
    probabilities = segmenter.probabilities_unit(batch)
    assert probabilities.shape == (1, 2, 128, 128)
    np.testing.assert_allclose(probabilities[0].detach().numpy(), expected, atol=2e-4)
    probabilities.sum().backward()
    assert batch.grad is not None and batch.grad.abs().sum() > 0


def test_a_model_that_does_not_segment_is_refused():
    assert not can_segment(load_model("l2l-twolabel").card)
    with pytest.raises(NanoscopyError, match="does not segment"):
        Segmenter("l2l-twolabel")


def test_bad_images_and_cancel(smooth_image):
    segmenter = Segmenter("unet-live-factin", device="cpu")
    with pytest.raises(NanoscopyError, match="at least two axes"):
        segmenter.segment(np.zeros(5))
    with pytest.raises(Cancelled):
        segmenter.segment(smooth_image[:64, :64], should_cancel=lambda: True)


@pytest.mark.skipif(not REAL.is_dir(), reason="STEDActinFCN data absent")
def test_authors_unet_resamples_other_pixel_sizes_and_reports_progress():
    import tifffile

    image = tifffile.imread(REAL / "axon" / "to_predict" / "3.tif")
    steps = []
    result = segment(image, str(REAL / "axon" / "network"), pixel_size_nm=40.0, progress=lambda d, t: steps.append((d, t)))
    assert result.probabilities.shape == (1, 224, 224) and result.class_names == ("rings",)
    assert result.provenance["tiling"]["zoom"] == 2.0 and steps[-1] == (1, 1)  # 448 px: 16 crops, one batch
    with pytest.raises(NanoscopyError, match="beyond the 16x this resamples"):
        segment(image, str(REAL / "axon" / "network"), pixel_size_nm=1000.0)
