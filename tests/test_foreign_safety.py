"""Foreign models cannot run code, read outside their folder or fill the disk.

Every malicious artefact is built here, in tmp_path: TorchScript weights whose forward pass or
``__setstate__`` writes and creates files, zip bombs and zips with links, CSBDeep folders and
HDF5 files that point at data elsewhere, packages whose files are links out of the folder.
"""

from __future__ import annotations

import json
import shutil
import stat
import struct
import zipfile
from pathlib import Path
from typing import Tuple

import h5py
import numpy as np
import pytest
import torch
import yaml
from conftest import SMALL_TAGAN, SMALL_TASK, TASK, make_card, make_package
from test_csbdeep import care_layers, make_care_folder, write_keras_h5

from napari_nanoscopy import NanoscopyError, Restorer, load_model
from napari_nanoscopy.cli import main
from napari_nanoscopy import safety
from napari_nanoscopy.interop import load_csbdeep
from napari_nanoscopy.io import write_image

VICTIM_TEXT = "precious data\n"


# --- TorchScript ---------------------------------------------------------------------------------


class WritesFiles(torch.nn.Module):
    """Overwrites ``victim`` and creates ``created`` through memory-mapped tensors in forward."""

    def __init__(self, victim: str, created: str):
        super().__init__()
        self.victim, self.created = victim, created

    def forward(self, x):
        overwritten = torch.from_file(self.victim, shared=True, size=4, dtype=torch.uint8)
        overwritten.fill_(65)
        new = torch.from_file(self.created, shared=True, size=4, dtype=torch.uint8)
        return x + overwritten.float().sum() * 0 + new.float().sum() * 0


class WritesFilesWhenLoaded(torch.nn.Module):
    """A harmless forward, but its ``__setstate__`` (run by torch.jit.load) overwrites ``victim``."""

    def __init__(self, victim: str):
        super().__init__()
        self.victim = victim
        self.gain = torch.nn.Parameter(torch.ones(1))
        self.mapped = torch.zeros(1)

    def forward(self, x):
        return x * self.gain

    @torch.jit.export
    def __getstate__(self) -> Tuple[str, torch.Tensor, bool]:
        return (self.victim, self.gain, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[str, torch.Tensor, bool]) -> None:
        self.victim = state[0]
        mapped = torch.from_file(self.victim, shared=True, size=4, dtype=torch.uint8)
        mapped.fill_(66)
        self.mapped = mapped.float()
        self.gain = state[1]
        self.training = state[2]


class Prints(torch.nn.Module):
    def forward(self, x):
        print("running foreign code")
        return x


class CallsCustomOp(torch.nn.Module):
    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def forward(self, x):
        return x + torch.ops.nanoscopy_test.touch(self.path)


@pytest.fixture(scope="module")
def custom_op():
    """An operator outside aten/prim, as a compiled extension would register, that creates a file."""
    library = torch.library.Library("nanoscopy_test", "DEF")
    library.define("touch(str path) -> int")

    def touch(path):
        Path(path).write_text("created")
        return 1

    library.impl("touch", touch, "CompositeExplicitAutograd")
    yield
    del library


def foreign_package(folder: Path, module: torch.nn.Module) -> Path:
    """A bioimage.io model (format 0.5) with only TorchScript weights, written by hand."""
    folder.mkdir(parents=True)
    torch.jit.save(torch.jit.script(module), str(folder / "weights.pt"))
    axes = [
        {"type": "batch"},
        {"type": "channel", "channel_names": ["c0"]},
        {"type": "space", "id": "y", "size": {"min": 16, "step": 1}},
        {"type": "space", "id": "x", "size": {"min": 16, "step": 1}},
    ]
    rdf = {
        "format_version": "0.5.3", "type": "model", "name": "foreign", "description": "built by the test",
        "inputs": [{"id": "input", "axes": axes}], "outputs": [{"id": "output", "axes": axes}],
        "weights": {"torchscript": {"source": "weights.pt"}},
    }
    (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf))
    return folder


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "victim.txt"
    path.write_text(VICTIM_TEXT)
    return path


def test_pure_torchscript_package_runs(tmp_path):
    network = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.LeakyReLU(0.1),
                                  torch.nn.Upsample(scale_factor=2, mode="bilinear"), torch.nn.MaxPool2d(2),
                                  torch.nn.Conv2d(2, 1, 1), torch.nn.Sigmoid())
    package = load_model(foreign_package(tmp_path / "pure", network))
    restored = Restorer(package, device="cpu").restore(np.random.default_rng(0).random((40, 48))).mean
    assert restored.shape == (40, 48) and np.isfinite(restored).all()


@pytest.mark.parametrize("card", [
    make_card("tagan", SMALL_TAGAN, SMALL_TASK, TASK),
    make_card("tcan", dict(base_filters=4, depth=2, dfcan_filters=4, n_groups=1, n_fcab=1)),
    make_card("wang", dict(base_filters=4, depth=2)),
    make_card("l2l", dict(base_filters=4)),
], ids=lambda card: card.family)
def test_torchscript_that_napari_nanoscopy_exports_passes_the_checks(tmp_path, card):
    from napari_nanoscopy.interop import export_bmz

    exported = export_bmz(make_package(tmp_path, "package", card), tmp_path / "bmz")
    safety.load_torchscript(exported / "weights_torchscript.pt", str(exported))


def test_torchscript_that_writes_files_is_refused_before_it_runs(tmp_path, victim, capsys):
    created = tmp_path / "created.bin"
    folder = foreign_package(tmp_path / "evil", WritesFiles(str(victim), str(created)))
    with pytest.raises(NanoscopyError, match=r"'aten::from_file' \(in forward\).*not run; ask the package's authors"):
        load_model(folder)

    # the same through the command line, zipped as the Model Zoo ships packages: one line, no traceback
    zipped = shutil.make_archive(str(tmp_path / "evil"), "zip", folder)
    write_image(tmp_path / "in.tif", np.ones((32, 32), np.float32), pixel_size_nm=20.0, axes="YX")
    assert main(["restore", str(tmp_path / "in.tif"), str(tmp_path / "out.tif"), "--model", zipped]) == 2
    err = capsys.readouterr().err
    assert "aten::from_file" in err and "Traceback" not in err
    assert victim.read_text() == VICTIM_TEXT
    assert not created.exists() and not (tmp_path / "out.tif").exists()


def test_torchscript_that_runs_code_while_loading_is_refused_before_loading(tmp_path, victim):
    folder = foreign_package(tmp_path / "evil", WritesFilesWhenLoaded(str(victim)))
    assert victim.read_text() == VICTIM_TEXT  # scripting and saving ran nothing
    with pytest.raises(NanoscopyError, match="define __setstate__, code that TorchScript runs while loading"):
        load_model(folder)
    assert victim.read_text() == VICTIM_TEXT


def test_torchscript_given_as_a_pth_file_runs_nothing(tmp_path, victim):
    """TA-GAN .pth/.pt files go through torch.load(weights_only=True), which never dispatches to torch.jit.load."""
    path = tmp_path / "latest_net_G.pt"
    torch.jit.save(torch.jit.script(WritesFilesWhenLoaded(str(victim))), str(path))
    with pytest.raises(NanoscopyError, match="refused"):
        load_model(path)
    assert victim.read_text() == VICTIM_TEXT


def test_print_and_custom_operators_are_refused(tmp_path, custom_op):
    with pytest.raises(NanoscopyError, match="'prim::Print'"):
        load_model(foreign_package(tmp_path / "prints", Prints()))
    touched = tmp_path / "touched.txt"
    with pytest.raises(NanoscopyError, match="'nanoscopy_test::touch'"):
        load_model(foreign_package(tmp_path / "custom", CallsCustomOp(str(touched))))
    assert not touched.exists()


def test_foreign_architecture_code_is_never_executed(tmp_path, packages_dir):
    """pytorch_state_dict weights come with Python source (architecture.py): it is never imported."""
    from napari_nanoscopy.interop import export_bmz

    marker = tmp_path / "architecture-ran.txt"
    folder = export_bmz(packages_dir / "l2l", tmp_path / "ours")
    (folder / "architecture.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    load_model(folder)  # napari-nanoscopy's own card and state dict: rebuilt from our code
    rdf = yaml.safe_load((folder / "rdf.yaml").read_text())
    del rdf["config"], rdf["weights"]["torchscript"]
    (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf))
    with pytest.raises(NanoscopyError, match="TorchScript only"):
        load_model(folder)  # a foreign package with only Python code to run
    assert not marker.exists()


def test_bioimageio_files_outside_the_package_are_refused(tmp_path):
    folder = foreign_package(tmp_path / "pkg", torch.nn.Identity())
    shutil.move(folder / "weights.pt", tmp_path / "weights.pt")
    rdf = yaml.safe_load((folder / "rdf.yaml").read_text())
    rdf["weights"]["torchscript"]["source"] = "../weights.pt"
    (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf))
    with pytest.raises(NanoscopyError, match="'../weights.pt' of .* leads outside its folder"):
        load_model(folder)


# --- zip extraction --------------------------------------------------------------------------


def zip_bomb(path: Path, size: int) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model.json", "{}")
        archive.writestr("zeros.bin", bytes(size))
    return path


def test_zip_bomb_is_refused_before_extraction(tmp_path, monkeypatch):
    monkeypatch.setattr(safety, "MAX_ZIP_TOTAL_BYTES", 4 << 20)
    bomb = zip_bomb(tmp_path / "bomb.zip", 16 << 20)
    assert bomb.stat().st_size < 100_000
    with pytest.raises(NanoscopyError, match=r"bomb.zip declares 16.0 MiB, more than the 4.0 MiB a model package"):
        load_model(bomb)
    monkeypatch.setattr(safety, "MAX_ZIP_MEMBER_BYTES", 1 << 20)
    with pytest.raises(NanoscopyError, match=r"zeros.bin of .* expands to 16.0 MiB, more than the 1.0 MiB allowed"):
        load_model(bomb)


def test_zip_whose_headers_understate_its_size_is_refused(tmp_path, monkeypatch):
    """The sizes in the central directory claim 1 KiB; the data expands to 16 MiB."""
    monkeypatch.setattr(safety, "MAX_ZIP_TOTAL_BYTES", 4 << 20)
    bomb = zip_bomb(tmp_path / "liar.zip", 16 << 20)
    data = bytearray(bomb.read_bytes())
    entry = data.rindex(b"zeros.bin") - 46  # its central directory record: 46 bytes, then the name
    assert data[entry:entry + 4] == b"PK\x01\x02"
    struct.pack_into("<I", data, entry + 24, 1024)  # the uncompressed size
    bomb.write_bytes(bytes(data))
    with pytest.raises(NanoscopyError, match=r"liar.zip cannot be extracted: its member zeros.bin failed \(Bad CRC-32"):
        load_model(bomb)


def test_zip_with_too_many_members_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(safety, "MAX_ZIP_MEMBERS", 20)
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as archive:
        for i in range(30):
            archive.writestr(f"file{i}.txt", "x")
    with pytest.raises(NanoscopyError, match="many.zip holds 30 files, more than the 20 a model package may have"):
        load_model(many)


@pytest.mark.parametrize("name, problem", [("/abs.txt", "an absolute path"), ("a/../../up.txt", "a path with '..'"),
                                           ("link", "a symbolic link")])
def test_zip_with_unsafe_members_is_refused(tmp_path, packages_dir, name, problem):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as archive:
        archive.write(packages_dir / "tagan" / "model.json", arcname="model.json")
        info = zipfile.ZipInfo(name)
        if name == "link":
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, "/etc/passwd" if name == "link" else "x")
    with pytest.raises(NanoscopyError, match=f"unsafe path \\({name}: {problem}\\)"):
        load_model(evil)


# --- CSBDeep folders and HDF5 --------------------------------------------------------------------


def test_csbdeep_checkpoint_outside_the_folder_is_refused(tmp_path):
    folder, config, _ = make_care_folder(tmp_path / "care")
    shutil.move(folder / "weights_best.h5", tmp_path / "elsewhere.h5")
    config["train_checkpoint"] = "../elsewhere.h5"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(NanoscopyError, match="CSBDeep checkpoint '../elsewhere.h5' of .* leads outside its folder"):
        load_csbdeep(folder)
    config["train_checkpoint"] = str(tmp_path / "elsewhere.h5")
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(NanoscopyError, match="leads outside its folder"):
        load_csbdeep(folder)
    del config["train_checkpoint"]
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "weights_best.h5").symlink_to(tmp_path / "elsewhere.h5")
    with pytest.raises(NanoscopyError, match="CSBDeep checkpoint 'weights_best.h5' of .* leads outside its folder"):
        load_csbdeep(folder)


def test_hdf5_data_outside_the_file_is_refused(tmp_path):
    folder, config, _ = make_care_folder(tmp_path / "care")
    layers = care_layers(config["unet_n_depth"], config["unet_n_first"], config["unet_kern_size"], 1, 1)
    write_keras_h5(tmp_path / "other.h5", layers)
    weights = folder / "weights_best.h5"

    with h5py.File(weights, "a") as handle:  # one layer's arrays from another file
        del handle["middle_2"]
        handle["middle_2"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/middle_2")
    with pytest.raises(NanoscopyError, match="'/middle_2' is an external link"):
        load_csbdeep(folder)

    write_keras_h5(weights, layers)
    raw = tmp_path / "bias.raw"
    with h5py.File(weights, "a") as handle:
        group = handle["middle_2/middle_2"]
        bias = group["bias:0"][()]
        bias.tofile(raw)
        del group["bias:0"]
        group.create_dataset("bias:0", shape=bias.shape, dtype=bias.dtype, external=[(str(raw), 0, bias.nbytes)])
    with pytest.raises(NanoscopyError, match="'/middle_2/middle_2/bias:0' is a dataset stored in external files"):
        load_csbdeep(folder)

    write_keras_h5(weights, layers)
    with h5py.File(weights, "a") as handle:
        group = handle["middle_2/middle_2"]
        shape = group["bias:0"].shape
        del group["bias:0"]
        layout = h5py.VirtualLayout(shape=shape, dtype="f4")
        layout[:] = h5py.VirtualSource(str(tmp_path / "other.h5"), "middle_2/middle_2/bias:0", shape=shape)
        group.create_virtual_dataset("bias:0", layout)
    with pytest.raises(NanoscopyError, match="'/middle_2/middle_2/bias:0' is a virtual dataset"):
        load_csbdeep(folder)


# --- model package folders -----------------------------------------------------------------------


def test_package_files_linked_from_outside_are_refused(tmp_path, packages_dir):
    package = tmp_path / "package"
    shutil.copytree(packages_dir / "tagan", package)
    shutil.move(package / "weights.safetensors", tmp_path / "weights.safetensors")
    (package / "weights.safetensors").symlink_to(tmp_path / "weights.safetensors")
    with pytest.raises(NanoscopyError, match="weights file 'weights.safetensors' of .* leads outside its folder"):
        load_model(package)
