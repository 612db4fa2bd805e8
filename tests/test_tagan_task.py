"""TA-GAN checkpoint pairs (``*_net_G.pth`` + ``*_net_S.pth``) load with their task network, so the
segmentation appears; presets name the dataset. Pairs are built here from the public code's key
layout (REFERENCE.md), with ``public_layout_state_dict`` for the ResNets and the project's pix2pix
U-Net (whose keys are the public code's) for U-Net-128."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import tifffile
import torch
from test_packages import public_layout_state_dict

from napari_nanoscopy import NanoscopyError, Restorer, load_model
from napari_nanoscopy.cli import main
from napari_nanoscopy.models import build_task_network

SMALL_G = dict(ngf=4, n_blocks=2)


def write_pair(folder, generator=None, task=None, prefix="latest_"):
    """``<prefix>net_G.pth`` (and ``<prefix>net_S.pth`` when ``task`` is given) in ``folder``."""
    folder.mkdir(exist_ok=True)
    torch.save(generator if generator is not None else public_layout_state_dict(**SMALL_G), folder / f"{prefix}net_G.pth")
    if task is not None:
        torch.save(task, folder / f"{prefix}net_S.pth")
    return folder / f"{prefix}net_G.pth"


def resnet_task(out_channels, in_channels=1, n_blocks=6):
    return public_layout_state_dict(in_channels=in_channels, out_channels=out_channels, ngf=4, n_blocks=n_blocks)


def unet_task():
    torch.manual_seed(1)
    state = build_task_network("unet128", ngf=2, n_down=7, out_channels=2).state_dict()
    # The public pix2pix keys: outermost down conv, innermost up conv seven levels down, outermost up conv.
    assert {"model.model.0.weight", "model.model.3.weight", "model.model.3.bias"} <= set(state)
    assert "model.model.1" + ".model.3" * 5 + ".model.3.weight" in state
    return state


def test_dendritic_pair_is_recognised_and_segments(tmp_path, smooth_image):
    task_state = resnet_task(out_channels=2)
    path = write_pair(tmp_path / "dend", task=task_state)
    package = load_model(path)
    card = package.card
    assert card.task_network.kind == "resnet6" and card.task_network.kwargs["n_blocks"] == 6
    assert card.task_network.kwargs["out_channels"] == 2 and card.task_network.kwargs["dropout"] == 0.0
    assert card.task.outputs == ("rings", "fibres") and card.task.thresholds == (-0.5, -0.2)
    assert card.task["preset"] == "dendritic-factin" and "0.25 (rings) and 0.40 (fibres)" in card.task.threshold_method
    for key, value in package.task_network.state_dict().items():
        assert torch.equal(value, task_state[key]), key

    result = Restorer(package, device="cpu").restore(smooth_image[:64, :64], samples=1)
    assert result.task.shape == (2, 64, 64) and result.task_names == ["rings", "fibres"]
    margin = result.task - np.array([-0.5, -0.2], dtype=np.float32)[:, None, None]
    expected = np.where((margin > 0).any(0), margin.argmax(0) + 1, 0)
    assert result.labels.shape == (64, 64) and np.array_equal(result.labels, expected)


def test_live_pair_with_unet128_task_network(tmp_path):
    generator = public_layout_state_dict(in_channels=3, **SMALL_G)
    package = load_model(write_pair(tmp_path, generator, unet_task(), prefix="best_"))
    card = package.card
    assert card.family == "tagan-live" and card.task_network.kind == "unet128"
    assert dict(card.task_network.kwargs) == dict(in_channels=1, out_channels=2, ngf=2, n_down=7, dropout=0.0)
    assert card.task.thresholds == (-0.5294, -0.5294) and card.task.network == "pretrained, frozen"
    with torch.no_grad():
        out = package.task_network(torch.zeros(1, 1, 128, 128))
    assert out.shape == (1, 2, 128, 128)


def test_ambiguous_pair_gets_neutral_outputs_until_a_preset_names_it(tmp_path):
    path = write_pair(tmp_path, task=resnet_task(out_channels=1))
    card = load_model(path).card
    assert card.task.outputs == ("task",) and card.task.thresholds == (0.0,)
    assert "axonal-rings, nanodomains, s-aureus" in card.task.threshold_method
    named = load_model(path, preset="axonal-rings").card
    assert named.task.outputs == ("rings",) and named.task["preset"] == "axonal-rings"
    nano = load_model(path, preset="nanodomains").card
    assert nano.task.kind == "regression" and nano.task.target_normalization is None
    assert named.weights_sha256 != load_model(write_pair(tmp_path / "g")).card.weights_sha256


def test_generator_alone_still_loads_without_task(tmp_path):
    package = load_model(write_pair(tmp_path))
    assert package.task_network is None and package.card.task is None


def test_preset_mistakes_are_refused_in_one_sentence(tmp_path):
    path = write_pair(tmp_path, task=resnet_task(out_channels=1))
    with pytest.raises(NanoscopyError, match=r"^The preset dendritic-factin \(dendritic F-actin rings and fibres\) is a "
                       r"1 -> 1 generator with a resnet6 task network 1 -> 2, but latest_net_S.pth and its generator "
                       r"are a 1 -> 1 generator with a resnet6 task network 1 -> 1; the preset of this pair is "
                       r"axonal-rings or nanodomains or s-aureus\.$"):
        load_model(path, preset="dendritic-factin")
    with pytest.raises(NanoscopyError, match=r"Unknown TA-GAN preset 'axons'; choose one of: axonal-rings, "):
        load_model(path, preset="axons")
    alone = write_pair(tmp_path / "alone")
    with pytest.raises(NanoscopyError, match=r"there is no latest_net_S.pth beside .*alone/latest_net_G.pth; put the "
                       "task network beside the generator or drop the preset"):
        load_model(alone, preset="axonal-rings")
    with pytest.raises(NanoscopyError, match="is not such a file; drop the preset"):
        load_model("tagan-factin", preset="dendritic-factin")


def test_task_network_linked_from_outside_the_folder_is_refused(tmp_path):
    torch.save(resnet_task(out_channels=2), tmp_path / "elsewhere.pth")
    path = write_pair(tmp_path / "pair")
    (tmp_path / "pair" / "latest_net_S.pth").symlink_to(tmp_path / "elsewhere.pth")
    with pytest.raises(NanoscopyError, match="The task network checkpoint 'latest_net_S.pth' of .*latest_net_G.pth "
                       "leads outside its folder"):
        load_model(path)


def test_task_network_that_does_not_fit_the_generator_is_refused(tmp_path):
    path = write_pair(tmp_path, task=resnet_task(out_channels=2, in_channels=2))
    with pytest.raises(NanoscopyError, match=r"reads 2 channel\(s\) but the generator beside it writes 1; these two "
                       "checkpoints are not one TA-GAN"):
        load_model(path)


class _RunsCodeWhenUnpickled:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickled_payload_as_task_network_is_refused_without_running(tmp_path):
    marker = tmp_path / "code-ran"
    path = write_pair(tmp_path / "evil")
    with open(tmp_path / "evil" / "latest_net_S.pth", "wb") as handle:
        pickle.dump({"model.1.weight": _RunsCodeWhenUnpickled(marker)}, handle)
    with pytest.raises(NanoscopyError, match=r"latest_net_S.pth was refused: it is not a plain tensor state dict"):
        load_model(path)
    assert not marker.exists()
    torch.save({"model.model.0.weight": torch.zeros(2, 1, 4, 4)}, tmp_path / "evil" / "latest_net_S.pth")
    with pytest.raises(NanoscopyError, match="does not hold a pix2pix U-Net task network this can build"):
        load_model(path)


def test_cli_restore_writes_the_segmentation_of_a_named_pair(tmp_path, smooth_image, capsys):
    path = write_pair(tmp_path / "pair", task=resnet_task(out_channels=1))
    image = tmp_path / "confocal.tif"
    tifffile.imwrite(image, (smooth_image[:64, :64] * 1000).astype(np.uint16))
    out, labels = tmp_path / "sted.tif", tmp_path / "rings.tif"
    code = main(["restore", str(image), str(out), "--model", str(path), "--preset", "axonal-rings",
                 "--segmentation", str(labels), "--pixel-size", "20", "--samples", "1", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    assert tifffile.imread(labels).shape == (64, 64)
    code = main(["restore", str(image), str(tmp_path / "x.tif"), "--model", "tagan-factin", "--preset", "axonal-rings"])
    assert code == 2 and "drop the preset" in capsys.readouterr().err


def test_restore_widget_opens_a_pair_and_shows_its_segmentation_layer(make_napari_viewer, qtbot, tmp_path, smooth_image):
    from test_widgets import results, wait_idle

    from napari_nanoscopy._widgets.restore import RestoreWidget

    path = write_pair(tmp_path, task=resnet_task(out_channels=2))
    viewer = make_napari_viewer()
    viewer.add_image(smooth_image[:64, :64], name="confocal", scale=(20.0, 20.0))
    widget = RestoreWidget(viewer)
    widget.add_model(path)
    wait_idle(qtbot, widget)
    assert widget.selected_entry().card.name == "latest_net_G"
    widget.samples_box.setValue(1)
    widget.run()
    wait_idle(qtbot, widget)
    assert widget.last_error is None
    segmentation = {l.metadata["nanoscopy_role"]: l for l in results(viewer)}["segmentation"]
    assert segmentation.__class__.__name__ == "Labels" and segmentation.data.shape == (64, 64)
    assert list(segmentation.features["class"]) == ["background", "rings", "fibres"]
