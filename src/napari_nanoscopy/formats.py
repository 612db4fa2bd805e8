"""Model sources in any format, loaded as :class:`~napari_nanoscopy.packages.ModelPackage` objects.

A model source is a bundled model's name or a path: a napari-nanoscopy package (folder or .zip),
a bioimage.io package (folder, .zip or its ``rdf.yaml``), a CSBDeep/CARE model folder (or its
.zip), a TA-GAN ``*_net_G.pth`` checkpoint or a U-Net folder of Lavoie-Cardinal et al. 2020
(``params.net``). :func:`load_model` finds the format and calls its
loader; a .zip is extracted safely (:func:`~napari_nanoscopy.safety.extracted_zip`) and the
folder inside it recognised like any other.

Every format is one :class:`ModelFormat` entry of :data:`FORMATS`, which says how to recognise
it and how to load it. Adding a format is writing its loader (foreign ones in ``interop/``)
and adding its entry here; nothing else dispatches on formats.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import NanoscopyError
from .interop.bmz import DESCRIPTION_FILES, is_bmz_package, load_bmz
from .interop.csbdeep import CONFIG_FILE, is_csbdeep_folder, load_csbdeep
from .interop.stedactin import WEIGHTS_FILE as UNET_WEIGHTS_FILE, is_stedactin_folder, load_stedactin
from .interop.tagan import CHECKPOINT_SUFFIXES, load_tagan_pth, load_with_preset
from .packages import (
    CARD_FILE,
    ModelCard,
    ModelPackage,
    bundled_model_names,
    bundled_models_dir,
    load_package_folder,
    read_card,
)
from .safety import extracted_zip


@dataclass(frozen=True)
class ModelFormat:
    """One model format: how to recognise a model in it and how to load one.

    ``load(path, source)`` returns the model at ``path`` (a folder, or a file with one of
    ``suffixes``) and names it ``source`` in messages and in the package it returns.
    ``holds_model(folder)`` says whether a folder is a model in this format; ``markers`` are
    the file names that locate such folders inside an extracted .zip.
    """

    name: str
    load: Callable[[Path, str], ModelPackage]
    holds_model: Callable[[Path], bool] | None = None
    markers: tuple[str, ...] = ()
    suffixes: tuple[str, ...] = ()


def _holds_card(folder: Path) -> bool:
    return (folder / CARD_FILE).exists()


def _load_csbdeep(folder: Path, source: str) -> ModelPackage:
    package = load_csbdeep(folder)
    package.source = source
    return package


def _load_stedactin(folder: Path, source: str) -> ModelPackage:
    package = load_stedactin(folder)
    package.source = source
    return package


def _load_tagan(path: Path, source: str) -> ModelPackage:
    return load_tagan_pth(path)  # its source is the file's path


PACKAGE = ModelFormat("napari-nanoscopy package", load_package_folder, _holds_card, markers=(CARD_FILE,))
# In order of precedence: a folder in several formats (model.json beside an rdf.yaml) is the first.
FORMATS: tuple[ModelFormat, ...] = (
    PACKAGE,
    ModelFormat("bioimage.io package", load_bmz, is_bmz_package, markers=DESCRIPTION_FILES, suffixes=(".yaml",)),
    ModelFormat("CSBDeep model", _load_csbdeep, is_csbdeep_folder, markers=(CONFIG_FILE,)),
    ModelFormat("STEDActinFCN U-Net folder", _load_stedactin, is_stedactin_folder, markers=(UNET_WEIGHTS_FILE,)),
    ModelFormat("TA-GAN checkpoint", _load_tagan, suffixes=CHECKPOINT_SUFFIXES),
)


def folder_format(folder: Path) -> ModelFormat | None:
    """The format of the model in ``folder``, or None when it is in none of :data:`FORMATS`."""
    return next((fmt for fmt in FORMATS if fmt.holds_model is not None and fmt.holds_model(folder)), None)


def load_model(path_or_name: str | os.PathLike, *, preset: str | None = None) -> ModelPackage:
    """Load a model package folder, its .zip, a bundled model by name, a TA-GAN ``.pth``, a CSBDeep
    model folder (``config.json`` + ``weights_best.h5``) or a bioimage.io package (folder or .zip).

    ``preset`` names the dataset of a TA-GAN ``*_net_G.pth`` with its ``*_net_S.pth`` (see
    :data:`~napari_nanoscopy.interop.tagan.PRESETS`), or which published U-Net a ``params.net``
    folder is (``axon`` or ``dendrite``, :data:`~napari_nanoscopy.interop.stedactin.PRESETS`); other
    models refuse one."""
    text = str(path_or_name)
    if preset is not None:
        if is_stedactin_folder(Path(text).expanduser()):  # an authors' U-Net named axon or dendrite
            return load_stedactin(Path(text).expanduser(), preset)
        return load_with_preset(text, preset)
    path = Path(text).expanduser()
    if not path.exists():
        return _load_bundled(text)
    if path.is_dir():
        # A folder in no known format is read as a package, whose loader says what one holds.
        return (folder_format(path) or PACKAGE).load(path, str(path))
    suffix = path.suffix.lower()
    if suffix == ".zip":
        return _load_zip(path)
    for fmt in FORMATS:
        if suffix in fmt.suffixes:
            return fmt.load(path, str(path))
    raise NanoscopyError(
        f"{path} is not a model package: give a folder with {CARD_FILE}, its .zip, a bundled model name, "
        "a TA-GAN *_net_G.pth file, a CSBDeep or bioimage.io model, or a U-Net folder with params.net."
    )


def _load_bundled(name: str) -> ModelPackage:
    known = bundled_model_names()
    if name in known:
        return load_package_folder(bundled_models_dir() / name, f"bundled model '{name}'")
    hint = f" Bundled models: {', '.join(known)}." if known else ""
    raise NanoscopyError(f"No model file, folder or bundled model named '{name}'.{hint}")


def _load_zip(path: Path) -> ModelPackage:
    """The one model in a .zip: its napari-nanoscopy package, or else its one foreign model."""
    with extracted_zip(path) as root:  # no unsafe names or links, bounded size (no zip bombs)
        candidates = {root} | {marker.parent for fmt in FORMATS for name in fmt.markers for marker in root.rglob(name)}
        found = [(fmt, folder) for folder in sorted(candidates) if (fmt := folder_format(folder)) is not None]
        packages = [folder for fmt, folder in found if fmt is PACKAGE]
        if not packages and len(found) == 1:
            fmt, folder = found[0]
            return fmt.load(folder, str(path))
        if len(packages) != 1:
            raise NanoscopyError(
                f"{path} must contain exactly one {CARD_FILE}, found {len(packages)}; zip a single model package folder."
            )
        return load_package_folder(packages[0], str(path))


def list_models(extra: list[str | os.PathLike] = ()) -> list[ModelCard]:
    """Cards of the bundled models (read without loading weights) and of any given models."""
    cards = [read_card(bundled_models_dir() / name, f"bundled model '{name}'") for name in bundled_model_names()]
    for item in extra:
        cards.append(load_model(item).card)
    return cards
