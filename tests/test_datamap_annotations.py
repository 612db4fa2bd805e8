"""Annotated datamaps: expert polygons carried through `datamap`, `simulate datamaps` and unet-live training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_nanoscopy.annotations import class_masks, parse_polygons
from napari_nanoscopy.cli import main
from napari_nanoscopy.errors import NanoscopyError
from napari_nanoscopy.io import read_image, write_image
from napari_nanoscopy.simulation import STANDARD_CONDITIONS, acquire
from napari_nanoscopy.simulation.datamap_dataset import augmented_crop, simulate_datamap_dataset
from napari_nanoscopy.simulation.datamap_files import load_datamaps, write_datamaps
from napari_nanoscopy.training.losses import weighted_mse
from napari_nanoscopy.training.tasks import calibrate_thresholds

# Two bright blocks: rows 8-23 (left, "rings") and rows 40-55 (right, "fibres" in the dendrite scheme).
POLYGONS = "1 (4, 8), (28, 8), (28, 24), (4, 24)\n3 (36, 40), (60, 40), (60, 56), (36, 56)\n"


def _blocks(size=64):
    molecules = np.zeros((size, size), np.int32)
    molecules[8:24, 4:28] = 6
    molecules[40:56, 36:60] = 6
    return molecules


def _annotated_sted(tmp_path, names=("a", "b"), polygons=POLYGONS):
    images, annotations = tmp_path / "sted", tmp_path / "polys"
    images.mkdir()
    annotations.mkdir()
    for seed, name in enumerate(names):
        image = acquire(_blocks(96), STANDARD_CONDITIONS, sted=True, rng=seed + 1)
        write_image(images / f"{name}.tif", image.astype(np.float32), pixel_size_nm=20.0)
    (annotations / f"{names[0]}.polys.txt").write_text(polygons)  # the others are not annotated
    return images, annotations


def test_class_masks_follow_the_label_schemes():
    polygons = parse_polygons(POLYGONS)
    classes, masks = class_masks(polygons, (64, 64), "dendrite")
    assert classes == ["rings", "fibres"] and masks.shape == (2, 64, 64) and masks.dtype == np.uint8
    assert masks[0, 8:24, 4:28].all() and masks[0].sum() == 17 * 25
    assert masks[1, 40:56, 36:60].all() and masks[1].sum() == 17 * 25
    classes, masks = class_masks(polygons, (64, 64), "axon")  # label 3 means nothing in axon files
    assert classes == ["rings"] and masks.sum() == 17 * 25
    with pytest.raises(NanoscopyError, match="Unknown label scheme 'spines'"):
        class_masks(polygons, (64, 64), "spines")


def test_datamap_writes_the_masks_of_annotated_images(tmp_path, capsys):
    images, annotations = _annotated_sted(tmp_path)
    assert main(["datamap", str(images), str(tmp_path / "maps"), "--iterations", "3", "--annotations",
                 str(annotations), "--labels", "dendrite"]) == 0
    out = capsys.readouterr().out
    assert "a: " in out and "masks of rings, fibres" in out and "b: " in out
    records = {r["name"]: r for r in json.loads((tmp_path / "maps" / "datamaps.json").read_text())["datamaps"]}
    assert records["a"]["annotation"]["classes"] == ["rings", "fibres"] and "annotation" not in records["b"]
    assert records["a"]["annotation"]["source"]["file"] == "a.polys.txt"
    masks = read_image(tmp_path / "maps" / "annotations" / "a.tif")
    assert masks.channel_names == ["rings", "fibres"] and masks.pixel_size_nm == pytest.approx(20.0)
    loaded = {item.name: item for item in load_datamaps(tmp_path / "maps")}
    assert loaded["a"].classes == ("rings", "fibres") and loaded["a"].annotation.shape == (2, 96, 96)
    assert loaded["b"].annotation is None and loaded["b"].classes == ()
    # The datamap is bright where the polygons are: derivation and annotation share one pixel grid.
    datamap = loaded["a"].datamap
    assert datamap[loaded["a"].annotation[0] == 1].mean() > 20 * datamap[loaded["a"].annotation.max(0) == 0].mean()


def test_annotation_refusals(tmp_path):
    images, annotations = _annotated_sted(tmp_path)
    with pytest.raises(NanoscopyError, match="how the polygon labels read with --labels"):
        write_datamaps(images, tmp_path / "maps", annotations=annotations)
    with pytest.raises(NanoscopyError, match="give the folder of them with --annotations"):
        write_datamaps(images, tmp_path / "maps", labels="axon")
    with pytest.raises(NanoscopyError, match="annotation folder .* does not exist"):
        write_datamaps(images, tmp_path / "maps", annotations=tmp_path / "nowhere", labels="axon")
    (annotations / "a.polys.txt").rename(annotations / "other.polys.txt")
    with pytest.raises(NanoscopyError, match=r"No image has a polygon file .*a\.polys\.txt"):
        write_datamaps(images, tmp_path / "maps", annotations=annotations, labels="axon")
    with pytest.raises(NanoscopyError, match="pySTED's example datamaps have no annotation"):
        write_datamaps("pysted:factin:0", tmp_path / "maps", annotations=annotations, labels="axon")
    (annotations / "a.polys.txt").write_text("1 (4, 8), (28, 8)\n")
    with pytest.raises(NanoscopyError, match="has 2 vertices"):
        write_datamaps(images, tmp_path / "maps", annotations=annotations, labels="axon")
    assert not (tmp_path / "maps").exists()


@pytest.mark.parametrize("masks, names, message", [
    (np.ones((1, 32, 32), np.uint8), ["rings"], "not at most 16 masks of the datamap's 64x64 pixels"),
    (np.ones((17, 64, 64), np.uint8), [f"c{i}" for i in range(17)], "not at most 16 masks"),
    (np.full((1, 64, 64), 2, np.uint8), ["rings"], "holds values other than 0 and 1"),
    (np.ones((2, 64, 64), np.uint8), ["rings", "rings"], "does not name each of its classes once"),
    (np.ones((2, 64, 64), np.uint8), None, "does not name each of its classes once"),
])
def test_a_hostile_annotation_beside_a_datamap_is_refused(tmp_path, masks, names, message):
    folder = tmp_path / "maps"
    (folder / "annotations").mkdir(parents=True)
    write_image(folder / "m.tif", np.ones((64, 64), np.float32), pixel_size_nm=20.0)
    write_image(folder / "annotations" / "m.tif", masks, axes="CYX", channel_names=names)
    with pytest.raises(NanoscopyError, match=message):
        load_datamaps(folder)


def test_masks_move_with_their_datamap():
    datamap = np.zeros((96, 96), np.float32)
    datamap[10:40, 20:70] = 5.0
    datamap[60:90, 5:30] = 5.0
    annotation = (datamap > 0).astype(np.uint8)[np.newaxis]
    for seed in range(6):
        crop, info, masks = augmented_crop(datamap, 64, np.random.default_rng(seed), annotation)
        plain, plain_info, _ = augmented_crop(datamap, 64, np.random.default_rng(seed))
        np.testing.assert_array_equal(crop, plain)  # the masks change no random draw
        assert info == plain_info and masks.shape == (1, 64, 64) and masks.dtype == np.uint8
        assert np.array_equal(masks[0] == 1, crop > info["density"] * 2.5)


def test_simulate_datamaps_writes_task_masks_with_unannotated_classes_as_nan(tmp_path):
    images, annotations = _annotated_sted(tmp_path)
    maps = write_datamaps(images, tmp_path / "maps", iterations=3, annotations=annotations, labels="axon")
    out = simulate_datamap_dataset([maps], 12, 64, 3, tmp_path / "set", mix={"factin": 0.4})
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["task_channels"] == ["rings", "fibres"] and "NaN" in manifest["task"]
    seen = set()
    for sample in manifest["samples"]:
        task = read_image(out / "task" / f"{sample['name']}.tif")
        assert task.channel_names == ["rings", "fibres"] and task.data.dtype == np.float32
        rings, fibres = task.data
        source = sample.get("datamap", sample["source"])
        seen.add(source)
        if source == "factin":  # a synthetic dendrite: both classes annotated
            assert np.isfinite(task.data).all() and set(np.unique(task.data)) <= {0.0, 1.0}
        elif source == "a":  # the axon scheme annotates rings only
            assert np.isfinite(rings).all() and np.isnan(fibres).all()
        else:  # b has no polygon file
            assert np.isnan(task.data).all()
    assert seen == {"factin", "a", "b"}
    again = simulate_datamap_dataset([maps], 12, 64, 3, tmp_path / "again", mix={"factin": 0.4})
    assert all((out / "task" / p.name).read_bytes() == p.read_bytes() for p in (again / "task").iterdir())


def test_weighted_mse_and_thresholds_leave_unannotated_pixels_out():
    prediction = torch.zeros(1, 2, 4, 4)
    target = torch.full((1, 2, 4, 4), float("nan"))
    target[0, 0] = 1.0
    assert weighted_mse(prediction, target, [1.0, 2.5]).item() == pytest.approx(1.0)
    target[0, 1] = 0.0
    assert weighted_mse(prediction, target, [1.0, 2.5]).item() == pytest.approx(0.5)

    class Constant(torch.nn.Module):
        size_multiple = 1

        def forward(self, x):  # rings above 0 on the left half; fibres always above 0
            out = torch.full((x.shape[0], 2, *x.shape[-2:]), 0.5)
            out[:, 0, :, x.shape[-1] // 2:] = -0.5
            return out

    image = np.zeros((1, 8, 8), np.float32)
    mask = np.full((2, 8, 8), np.nan, np.float32)
    mask[0] = -1.0
    mask[0, :, :4] = 1.0
    mask[1, :, :2] = 1.0  # only two columns of fibres annotated, both positive
    thresholds = calibrate_thresholds(Constant(), [image], [mask], torch.device("cpu"))
    assert -0.5 <= thresholds[0] < 0.5  # separates the annotated rings perfectly
    assert thresholds[1] < 0.5  # unannotated pixels are not counted as false positives


def test_unet_live_trains_on_partly_annotated_masks_and_other_families_refuse_them(tmp_path):
    from napari_nanoscopy.training import train

    images, annotations = _annotated_sted(tmp_path)
    maps = write_datamaps(images, tmp_path / "maps", iterations=3, annotations=annotations, labels="axon")
    data = simulate_datamap_dataset([maps], 6, 64, 0, tmp_path / "set", mix={"factin": 0.5})
    task = {"network": "unet128", "kwargs": dict(ngf=4, n_down=3), "outputs": ["rings", "fibres"]}
    card = train("unet-live", data, tmp_path / "seg", steps=3, patch=64, batch=2, task=task, seed=0)
    assert card.task.outputs == ("rings", "fibres") and all(np.isfinite(card.task.thresholds))
    assert np.isfinite(card.training["final_losses"]["segmentation"])
    # evaluate scores each output against the dataset's class of that name, where it is annotated
    from napari_nanoscopy.evaluation import evaluate

    rings_only = simulate_datamap_dataset([maps], 2, 64, 1, tmp_path / "rings_only")
    scores = evaluate(tmp_path / "seg", rings_only).rows["seg"]
    assert list(scores) == ["Dice rings"] and 0 <= scores["Dice rings"] <= 1
    scores = evaluate(tmp_path / "seg", data).rows["seg"]
    assert set(scores) == {"Dice rings", "Dice fibres"} and all(0 <= v <= 1 for v in scores.values())
    with pytest.raises(NanoscopyError, match="only unet-live training skips"):
        train("tagan", data, tmp_path / "gan", steps=1, patch=64, batch=1,
              task={"network": "resnet6", "kwargs": dict(ngf=4, n_blocks=1), "outputs": ["rings", "fibres"]},
              generator_kwargs=dict(ngf=4, n_blocks=1), discriminator_kwargs=dict(ndf=4, n_layers=1))
    assert not (tmp_path / "gan").exists()
