"""Exchange with the rest of the ecosystem: CSBDeep/CARE model folders and BioImage Model Zoo
(bioimage.io) packages.

- :func:`load_csbdeep` / :func:`import_csbdeep` read a CSBDeep model folder (``config.json`` +
  ``weights_best.h5``) into the ``l2l`` family with h5py; no TensorFlow is needed.
- :func:`export_bmz` writes a model package as a bioimage.io model (``rdf.yaml``) and
  :func:`load_bmz` reads one back as a :class:`~napari_nanoscopy.packages.ModelPackage`.

Everything here works offline; ``bioimageio.core`` (the ``bmz`` extra) is needed only to test an
exported package, not to write or read one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .csbdeep import import_csbdeep, is_csbdeep_folder, load_csbdeep

__all__ = ["import_csbdeep", "is_csbdeep_folder", "load_csbdeep", "export_bmz", "load_bmz", "is_bmz_package"]

BMZ_DESCRIPTIONS = ("rdf.yaml", "bioimageio.yaml")


def _load_csbdeep_as(folder: Path, source: str):
    package = load_csbdeep(folder)
    package.source = source
    return package


def _load_bmz_as(folder: Path, source: str):
    from .bmz import load_bmz

    return load_bmz(folder, source=source)


def foreign_folder_loader(folder: Path) -> Callable | None:
    """The loader ``(folder, source) -> ModelPackage`` for a foreign model folder, or None."""
    folder = Path(folder)
    if any((folder / name).is_file() for name in BMZ_DESCRIPTIONS):
        return _load_bmz_as
    if is_csbdeep_folder(folder):
        return _load_csbdeep_as
    return None


def foreign_zip_loader(root: Path) -> tuple[Callable, Path] | None:
    """For an extracted .zip: the loader and folder of the one foreign model it holds, or None."""
    root = Path(root)
    folders = {root} | {p.parent for name in ("config.json", *BMZ_DESCRIPTIONS) for p in root.rglob(name)}
    found = [(loader, folder) for folder in sorted(folders) if (loader := foreign_folder_loader(folder)) is not None]
    return found[0] if len(found) == 1 else None


def __getattr__(name):  # the bioimage.io code imports yaml and is loaded only when asked for
    if name in ("export_bmz", "load_bmz", "is_bmz_package"):
        from . import bmz

        return getattr(bmz, name)
    raise AttributeError(name)
