"""The installed package set is one the project is known to work with, and the wheel is complete.

A fresh machine once failed the suite because an unbounded extra pulled in a pydantic release
that breaks bioimageio.spec; these tests name the offending package and the command that fixes it.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
FIX = f'reinstall the tested set: python3 -m pip install -e ".[testing]" -c {ROOT / "constraints.txt"}'
TESTED_EXTRAS = ("pyqt6", "pymmcore", "bmz", "large", "testing")


def _declared_requirements() -> list[tuple[Requirement, str]]:
    """The installed napari-nanoscopy's requirements with the extra (or "") that brings each."""
    declared = []
    for line in requires("napari-nanoscopy") or []:
        requirement = Requirement(line)
        if requirement.marker is None:
            declared.append((requirement, ""))
            continue
        for extra in TESTED_EXTRAS:
            if requirement.marker.evaluate({"extra": extra}):
                declared.append((requirement, extra))
                break
    return declared


def _pinned() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, pinned = line.partition("==")
            pins[_canonical(name)] = pinned.strip()
    return pins


def _canonical(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(".", "-")


def _dependency_closure() -> set[str]:
    """Canonical names of napari-nanoscopy and every installed package it needs, recursively."""
    closure, todo = set(), ["napari-nanoscopy"]
    while todo:
        name = todo.pop()
        if _canonical(name) in closure:
            continue
        closure.add(_canonical(name))
        try:
            lines = requires(name) or []
        except PackageNotFoundError:
            continue
        extras = TESTED_EXTRAS if name == "napari-nanoscopy" else ("",)
        for line in lines:
            requirement = Requirement(line)
            if requirement.marker is None or any(requirement.marker.evaluate({"extra": e}) for e in extras):
                todo.append(requirement.name)
    return closure


def test_pip_check_finds_no_broken_requirements_among_ours():
    # Only packages this project pulls in count: a system Python may hold unrelated tools (awscli
    # pins botocore exactly) whose own conflicts are not ours to judge.
    result = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    closure = _dependency_closure()
    broken = [line for line in result.stdout.splitlines() if line.split(" ")[0] and _canonical(line.split(" ")[0]) in closure]
    assert not broken, "pip check found an incompatible package set:\n" + "\n".join(broken) + f"\n{FIX}"


def test_installed_versions_meet_the_declared_bounds():
    broken = []
    for requirement, extra in _declared_requirements():
        if requirement.name == "napari-nanoscopy":
            continue  # the testing extra's self-references; their own requirements are listed too
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            broken.append(f"{requirement.name} is not installed (needed by napari-nanoscopy[{extra}])")
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            where = f"napari-nanoscopy[{extra}]" if extra else "napari-nanoscopy"
            broken.append(f"{requirement.name} {installed} is installed but {where} needs "
                          f"{requirement.name}{requirement.specifier}")
    assert not broken, "; ".join(broken) + f". {FIX}"


def test_constraints_pin_a_set_within_the_declared_bounds():
    """constraints.txt and pyproject.toml must agree, or the README's install command fails."""
    pins = _pinned()
    outside = [
        f"constraints.txt pins {requirement.name}=={pins[_canonical(requirement.name)]} outside "
        f"{requirement.name}{requirement.specifier}"
        for requirement, _ in _declared_requirements()
        if _canonical(requirement.name) in pins
        and not requirement.specifier.contains(pins[_canonical(requirement.name)], prereleases=True)
    ]
    missing = [requirement.name for requirement, _ in _declared_requirements()
               if requirement.name != "napari-nanoscopy" and _canonical(requirement.name) not in pins]
    assert not outside, "; ".join(outside)
    assert not missing, f"constraints.txt pins no version of {missing}; regenerate it as its header says"


def test_the_wheel_carries_samples_models_manifest_and_licence(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=600)
    (wheel,) = tmp_path.glob("napari_nanoscopy-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    samples = {f"napari_nanoscopy/sample_data/{p.name}" for p in (ROOT / "sample_data").iterdir()
               if p.suffix in {".tif", ".json"}}
    assert "napari_nanoscopy/sample_data/samples.json" in samples
    assert samples <= names, f"the wheel lacks {sorted(samples - names)}"
    assert "napari_nanoscopy/napari.yaml" in names
    assert "napari_nanoscopy/bundled/tagan-nanodomains/weights.safetensors" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: BSD-3-Clause" in metadata
    assert "Project-URL: Source Code," in metadata and "Author: " in metadata


def test_licence_file_is_the_bsd_3_clause_text_the_metadata_claims():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("BSD 3-Clause License")
    assert "Neither the name of the copyright holder nor the names of its" in text
    assert (ROOT / "CHANGELOG.md").is_file()
