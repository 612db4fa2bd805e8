"""Issue 15, items 7 and 8: fine-tuning a bundled model (CLI, Python, Train widget), the live
command's line per frame, `bench --help` and docs/api.md derived from the real parsers, the
four dock widgets in README and docs/widgets.md, and OME-XML that carries channel names and
the provenance."""

import json
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml

from napari_nanoscopy import NanoscopyError, load_model
from napari_nanoscopy.cli import build_parser, main
from napari_nanoscopy.io import write_image
from napari_nanoscopy.simulation import simulate_dataset
from napari_nanoscopy.training import train, training_defaults
from conftest import wait_idle

ROOT = Path(__file__).parents[1]
MANIFEST = ROOT / "src" / "napari_nanoscopy" / "napari.yaml"
SIZE = 64  # the smallest field a bundled TA-GAN discriminator takes as a patch


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """Two tiny pySTED pairs per kind, made the way a user makes training data."""
    root = tmp_path_factory.mktemp("simulated")
    return {kind: simulate_dataset(kind, n=2, size=SIZE, seed=0, out_dir=root / kind) for kind in ("factin", "twolabel", "nanodomains")}


def _parameters(network) -> dict:
    return {name: parameter.detach() for name, parameter in network.named_parameters()}


def _assert_started_from(tuned, source, lr: float) -> None:
    """One Adam step moves each weight by at most the learning rate: the run began at the source's weights."""
    assert tuned.keys() == source.keys()
    differences = [float((tuned[name] - source[name]).abs().max()) for name in source]
    assert 0 < max(differences) <= 1.01 * lr


# -- item 7: fine-tuning -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "family, model, kind",
    [("pix2pix", "pix2pix-factin", "factin"), ("l2l", "l2l-twolabel", "twolabel"), ("tagan", "tagan-nanodomains", "nanodomains")],
)
def test_cli_fine_tunes_a_bundled_model_with_its_architecture_and_weights(family, model, kind, simulated, tmp_path,
                                                                          capsys):
    out = tmp_path / "tuned"
    code = main(["train", family, "--init-from", model, "--data", str(simulated[kind]), "--out", str(out),
                 "--steps", "1", "--patch", str(SIZE), "--batch", "1", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    source, tuned = load_model(model), load_model(out)
    assert {key: tuned.card.generator[key] for key in source.card.generator} == source.card.generator
    assert tuned.card.training["initialised_from"] == {"name": model, "weights_sha256": source.card.weights_sha256}
    assert tuned.card.task_network == source.card.task_network
    recorded = source.card.training.get("discriminator")
    assert tuned.card.training["discriminator"] == recorded  # the discriminator's size, too (fresh weights)
    lr = training_defaults(family)["lr"]
    _assert_started_from(_parameters(tuned.generator), _parameters(source.generator), lr)
    if source.task_network is not None:  # a task network the package trained goes on from its weights
        _assert_started_from(_parameters(tuned.task_network), _parameters(source.task_network), lr)
        assert tuned.card.task["outputs"] == source.card.task["outputs"]


def test_fine_tuning_refuses_a_contradicting_architecture_before_any_work(simulated, tmp_path):
    factin = simulated["factin"]
    with pytest.raises(NanoscopyError) as refusal:
        train("pix2pix", factin, tmp_path / "a", steps=1, patch=SIZE, init_from="pix2pix-factin",
              generator_kwargs={"ngf": 16, "n_blocks": 9})
    assert str(refusal.value) == (
        "The generator of pix2pix-factin differs from this run's in n_blocks (6 in the package, 9 given); "
        "fine-tuning keeps the package's architecture, so leave it out of generator_kwargs."
    )
    with pytest.raises(NanoscopyError) as refusal:
        train("tagan", simulated["nanodomains"], tmp_path / "b", steps=1, patch=SIZE, init_from="tagan-nanodomains",
              task={"network": "unet128", "kwargs": {"ngf": 32}})
    assert str(refusal.value) == (
        "The task network of tagan-nanodomains differs from this run's in network (resnet6 in the package, unet128 "
        "given), ngf (16 in the package, 32 given); fine-tuning keeps the package's architecture, so leave them "
        "out of task."
    )
    with pytest.raises(NanoscopyError, match="init_from needs a U-Net-Live package for unet-live"):
        train("unet-live", factin, tmp_path / "c", steps=1, init_from="l2l-twolabel")
    with pytest.raises(NanoscopyError, match="init_from needs a l2l package .*; unet-live-factin is a U-Net-Live"):
        train("l2l", factin, tmp_path / "d", steps=1, init_from="unet-live-factin")
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_cli_refusal_of_another_family_is_one_line(simulated, tmp_path, capsys):
    code = main(["train", "wang", "--init-from", "tcan-filaments", "--data", str(simulated["factin"]),
                 "--out", str(tmp_path / "w"), "--steps", "1", "--patch", str(SIZE), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and err == (
        "napari-nanoscopy: error: init_from needs a wang package to start the generator from; "
        "tcan-filaments is a tcan package.\n"
    )


def test_train_widget_fine_tunes_the_model_chosen_in_start_from(make_napari_viewer, qtbot, simulated, tmp_path):
    from napari_nanoscopy._widgets.train import TrainWidget

    widget = TrainWidget(make_napari_viewer())
    widget.family_combo.setCurrentText("pix2pix")
    offered = [widget.start_combo.itemText(i) for i in range(widget.start_combo.count())]
    assert offered == ["", "pix2pix-factin", "pix2pix-nanodomains"]  # a new model, or the family's bundled ones
    assert widget.steps_box.value() == 2000
    widget.start_combo.setCurrentText("pix2pix-factin")
    assert widget.steps_box.value() == 200  # fine-tuning on a few pairs: a tenth of the steps
    widget.start_combo.setCurrentText("")
    assert widget.steps_box.value() == 2000
    widget.steps_box.setValue(700)  # a number the user chose stays
    widget.start_combo.setCurrentText("pix2pix-factin")
    assert widget.steps_box.value() == 700
    widget.source_combo.setCurrentIndex(1)
    widget.folder_edit.setText(str(simulated["factin"]))
    widget.steps_box.setValue(1)
    widget.patch_box.setValue(SIZE)
    widget.batch_box.setValue(1)
    out = tmp_path / "tuned-in-napari"
    widget.output_edit.setText(str(out))
    widget.train()
    wait_idle(qtbot, widget, 120_000)
    assert widget.last_error is None, widget.last_error
    card = load_model(out).card
    assert card.training["initialised_from"]["name"] == "pix2pix-factin"
    assert card.generator == load_model("pix2pix-factin").card.generator
    widget.family_combo.setCurrentText("l2l")  # a model of another family is not kept as the start
    assert widget.start_combo.currentText() == ""


# -- item 8: live, bench, docs, OME-XML ---------------------------------------------------------


def test_live_prints_one_line_per_frame_on_stderr(tmp_path, capsys):
    code = main(["live", "--out", str(tmp_path / "session"), "--size", "128", "--roi", "64", "--patch", "32",
                 "--samples", "2", "--frames", "2", "--disparity", "std", "--device", "cpu", "--no-references"])
    captured = capsys.readouterr()
    assert code == 0 and json.loads(captured.out)["frames"] == 2  # stdout stays the JSON summary
    lines = captured.err.strip().splitlines()
    pattern = (r"napari-nanoscopy live: frame (\d)/1: (STED|no STED|STED wanted) \((.+)\); "
               r"dose so far (\S+) photons; \d+\.\d s")
    frames = [re.fullmatch(pattern, line) for line in lines]
    assert all(frames) and [int(m[1]) for m in frames] == [0, 1], lines
    assert frames[0][3] == "no reference STED yet" and frames[1][3].startswith("Dice ")
    doses = [float(m[4]) for m in frames]
    assert 0 < doses[0] < doses[1]  # the dose so far grows


def test_bench_help_lists_every_section():
    from napari_nanoscopy.bench import SECTIONS

    bench = build_parser()._subparsers._group_actions[0].choices["bench"]
    only = next(action for action in bench._actions if action.dest == "only")
    missing = [name for name in SECTIONS if not re.search(rf"\b{name}\b", only.help)]
    assert not missing, f"bench --only does not list {', '.join(missing)}"
    assert all(re.search(rf"\b{name} \(", bench.description) for name in SECTIONS)  # each with what it measures


@pytest.mark.parametrize("command", ["live", "bench"])
def test_api_docs_cover_every_option_of_the_live_and_bench_commands(command):
    from napari_nanoscopy.bench import SECTIONS

    api = (ROOT / "docs" / "api.md").read_text()
    assert f"napari-nanoscopy {command} " in api
    parser = build_parser()._subparsers._group_actions[0].choices[command]
    options = [option for action in parser._actions for option in action.option_strings if option.startswith("--")]
    missing = [option for option in options if option != "--help" and not re.search(rf"{option}\b", api)]
    assert not missing, f"docs/api.md does not mention {command} {', '.join(missing)}"
    if command == "bench":
        assert all(f"`{name}`" in api for name in SECTIONS)


def test_readme_and_widget_docs_name_every_dock_widget():
    manifest = yaml.safe_load(MANIFEST.read_text())
    names = [widget["display_name"] for widget in manifest["contributions"]["widgets"]]
    assert len(names) == 5
    readme = (ROOT / "README.md").read_text()
    in_napari = next(paragraph for paragraph in readme.split("\n\n") if paragraph.startswith("In napari"))
    widgets_doc = (ROOT / "docs" / "widgets.md").read_text()
    introduction = widgets_doc.split("\n## ")[0]
    for name in names:
        assert f"**{name}**" in in_napari, f"README's napari paragraph does not name {name}"
        assert f"**{name}**" in introduction, f"docs/widgets.md's introduction does not name {name}"
        assert f"\n## {name}\n" in widgets_doc, f"docs/widgets.md has no section for {name}"
    assert "three" not in introduction


@pytest.mark.parametrize("axes, shape, names", [("CYX", (2, 32, 32), ["confocal", "STED"]), ("YX", (32, 32), ["STED"])])
def test_ome_xml_carries_channel_names_and_the_provenance(tmp_path, axes, shape, names):
    path = tmp_path / "restored.ome.tif"
    provenance = {"content": "restored", "model": "tagan-factin", "weights_sha256": "ab" * 32, "samples": 10}
    write_image(path, np.zeros(shape, np.float32), axes=axes, pixel_size_nm=20.0, channel_names=names,
                metadata=provenance)
    with tifffile.TiffFile(path) as tiff:
        ome = ElementTree.fromstring(tiff.ome_metadata)
    namespace = {"ome": ome.tag[1:].split("}")[0]}
    assert [c.get("Name") for c in ome.findall("ome:Image/ome:Pixels/ome:Channel", namespace)] == names
    comments = ome.findall("ome:StructuredAnnotations/ome:CommentAnnotation", namespace)
    ours = [c for c in comments if c.get("Namespace") == "napari-nanoscopy/provenance"]
    assert len(ours) == 1
    recorded = json.loads(ours[0].find("ome:Value", namespace).text)
    assert recorded["metadata"] == provenance and recorded["axes"] == axes
    reference = ome.find("ome:Image/ome:AnnotationRef", namespace)
    assert reference is not None and reference.get("ID") == ours[0].get("ID")  # linked to the image
