"""Give a model package the domain fingerprint of its training images (``napari-nanoscopy fingerprint``).

For models trained before fingerprints existed and for imported ones (TA-GAN ``.pth``, CSBDeep,
bioimage.io): the images the model was trained on (or images like them), and ideally held-out
ones from the same source to calibrate the threshold, give a new package whose card carries the
fingerprint (:mod:`napari_nanoscopy.domain`). A napari-nanoscopy package keeps its weights file
byte for byte (same sha256); a foreign model is written as a new package. The package is written
all or none (:func:`napari_nanoscopy.packages.staged_output`).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from . import io
from .card import DomainFingerprint
from .domain import MAX_PLANES, MIN_HELD_OUT, make_fingerprint, spread
from .errors import NanoscopyError
from .formats import load_model
from .limits import check_pixel_size
from .packages import (CARD_FILE, WEIGHTS_FILE, ModelCard, bundled_model_names, bundled_models_dir, load_package_folder,
                       save_model, staged_output)
from .safety import extracted_zip
from .tile_run import resize_planes

MAX_IMAGES = 5000  # files read from one folder
HELD_OUT_EVERY = 3  # without --held-out, every third image calibrates the threshold instead


def image_files(folder, what: str) -> list[Path]:
    """The TIFF files of ``folder``, or of its ``input/`` when it is a paired dataset folder."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise NanoscopyError(f"The {what} folder {root} does not exist; give a folder of TIFF images.")
    if (root / "input").is_dir():
        root = root / "input"
    files = sorted(p for p in root.iterdir() if p.is_file() and p.name.lower().endswith((".tif", ".tiff")))
    if not files:
        raise NanoscopyError(f"The {what} folder {root} holds no .tif or .tiff image; give the folder of the "
                             "model's input images (or a dataset folder with input/).")
    if len(files) > MAX_IMAGES:
        raise NanoscopyError(f"The {what} folder {root} holds {len(files)} images, more than {MAX_IMAGES}; "
                             f"give a folder of at most {MAX_IMAGES} (a random subset is enough).")
    return files


def read_planes(files: list[Path], card: ModelCard, pixel_size_nm: float | None = None) -> list[np.ndarray]:
    """The (Y, X) planes of the model's first input channel in ``files``, at the model's pixel size
    (each file's own pixel size, or ``pixel_size_nm`` when given; none: the model's)."""
    planes = []
    for path in files:
        image = io.read_image(path)
        data = np.asarray(image.data, dtype=np.float32)
        if "C" in image.axes:
            data = np.take(data, 0, axis=image.axes.index("C"))
        stack = data.reshape((-1,) + data.shape[-2:])
        pixel = pixel_size_nm if pixel_size_nm is not None else image.pixel_size_nm
        zoom = pixel / card.pixel_size_nm if pixel and card.pixel_size_nm else 1.0
        for index in spread(len(stack), MAX_PLANES):
            plane = stack[index]
            if abs(zoom - 1.0) > 1e-3:
                plane = resize_planes(plane[None], tuple(max(1, round(n * zoom)) for n in plane.shape))[0]
            planes.append(plane)
    return planes


def fingerprint_model(model, data, out, *, held_out=None, pixel_size_nm: float | None = None,
                      overwrite: bool = False, source: str | None = None) -> ModelCard:
    """Write ``model`` with the fingerprint of the images in ``data`` to the new package ``out``
    (a folder or .zip); the threshold is calibrated on ``held_out`` (default: every third image of
    ``data``, then left out of the statistics). ``source`` describes the images for the card
    (default: the folders). Returns the card written."""
    target = Path(out).expanduser()
    if target.exists() and not overwrite:
        raise NanoscopyError(f"{target} already exists; choose another path for the new package or pass --overwrite.")
    if not target.parent.is_dir():
        raise NanoscopyError(f"The folder {target.parent} does not exist; create it first or choose another path.")
    if pixel_size_nm is not None:
        pixel_size_nm = check_pixel_size(pixel_size_nm, "The images' pixel size", "give it in nanometres")
    files = image_files(data, "training")
    held_files = image_files(held_out, "held-out") if held_out is not None else None
    package = load_model(model)
    card = package.card
    if held_files is None:
        if len(files) < HELD_OUT_EVERY * MIN_HELD_OUT:
            raise NanoscopyError(f"{len(files)} images are too few to hold some out for calibration; give at least "
                                 f"{HELD_OUT_EVERY * MIN_HELD_OUT}, or a separate --held-out folder.")
        held_files = files[HELD_OUT_EVERY - 1::HELD_OUT_EVERY]
        files = [f for k, f in enumerate(files) if k % HELD_OUT_EVERY != HELD_OUT_EVERY - 1]
    source = source or f"{len(files)} images of {Path(data).expanduser()}, held out: " + (
        f"{len(held_files)} images of {Path(held_out).expanduser()}" if held_out is not None else
        f"every {HELD_OUT_EVERY}rd image of the same folder")
    fingerprint = make_fingerprint(card, read_planes(files, card, pixel_size_nm),
                                   read_planes(held_files, card, pixel_size_nm), source=source)
    card = dataclasses.replace(card, domain=fingerprint)
    with own_package_folder(model) as folder:
        if folder is None:  # a foreign model becomes a package of ours
            return save_model(target, card, package.generator, package.task_network, overwrite=overwrite)
        with staged_output(target, overwrite) as staging:
            shutil.copyfile(folder / WEIGHTS_FILE, staging / WEIGHTS_FILE)
            (staging / CARD_FILE).write_text(json.dumps(card.to_dict(), indent=2) + "\n", encoding="utf-8")
            load_package_folder(staging, str(target))  # what we wrote must load back (the sha256 included)
    return card


@contextmanager
def own_package_folder(model) -> Iterator[Path | None]:
    """The napari-nanoscopy package folder ``model`` names (a bundled name, a folder, a .zip,
    extracted for the block), or None for any other model source."""
    path = Path(str(model)).expanduser()
    if isinstance(model, str) and not path.exists() and model in bundled_model_names():
        yield bundled_models_dir() / model
    elif path.is_dir() and (path / CARD_FILE).is_file():
        yield path
    elif path.is_file() and path.suffix.lower() == ".zip":
        with extracted_zip(path) as root:
            cards = list(root.rglob(CARD_FILE))
            yield cards[0].parent if len(cards) == 1 else None
    else:
        yield None


def summary(card: ModelCard, out) -> str:
    """One line about the fingerprint written to ``out``."""
    fingerprint = card.domain
    held = fingerprint.calibration.get("held_out_scores", {})
    return (f"wrote {out}: fingerprint of {fingerprint.calibration.get('training_images')} training images on "
            f"{fingerprint.window}-pixel windows; threshold {fingerprint.threshold:g} (held-out in-domain scores: "
            f"median {held.get('median')}, highest {held.get('max')})")


TRAINING_IMAGES = 150  # training images a new model's fingerprint reads, spread over its folder


def training_fingerprint(card: ModelCard, folder, images=None) -> DomainFingerprint | None:
    """The fingerprint ``train`` gives a new model: from up to :data:`TRAINING_IMAGES` of the input
    images in the training ``folder`` (``images``: the folder that holds them, where they are not
    its input/; every third one held out to calibrate the threshold). None when the folder holds
    too few images to calibrate one (the model's domain is then unknown)."""
    # a segmenter of STED images (unet-live) takes the pairs' targets as its input
    side = Path(images) if images is not None else Path(folder) / ("target" if card.family == "unet-live" else "input")
    try:
        files = image_files(side, "training")
        files = [files[k] for k in spread(len(files), TRAINING_IMAGES)]
        if len(files) < HELD_OUT_EVERY * MIN_HELD_OUT:
            return None
        held = files[HELD_OUT_EVERY - 1::HELD_OUT_EVERY]
        kept = [f for k, f in enumerate(files) if k % HELD_OUT_EVERY != HELD_OUT_EVERY - 1]
        return make_fingerprint(card, read_planes(kept, card), read_planes(held, card),
                                source=f"{len(kept)} training inputs of {Path(folder).name}, every "
                                       f"{HELD_OUT_EVERY}rd of the {len(files)} read held out")
    except NanoscopyError:  # constant or too few scorable images: no fingerprint rather than no model
        return None
