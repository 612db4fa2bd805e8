"""Translation between the two domains of a TA-CycleGAN package (``train tagan-cycle``).

A translation package stores its A -> B generator as its generator and its B -> A one as the
card's ``cycle`` section describes (:class:`~napari_nanoscopy.card.CycleSection`).
:func:`translation_model` gives the package as a model of one direction, which the restoration
engine then applies like any other model: ``translate`` (Python, arrays and layers) is ``restore``
with it, and ``napari-nanoscopy translate`` is the restore job with it (TIFF in and out, the
input's pixel size kept, all outputs of an image or none). :func:`translate_dataset` translates
the annotated images of a dataset folder and keeps their masks, which is how the TA-GAN paper
builds a segmenter's training set in the domain it has no annotations for.
"""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import replace
from pathlib import Path

from .errors import NanoscopyError
from .formats import load_model
from .inference import RestorationResult, Restorer
from .io import read_image, read_json_object, write_image
from .outputs import StagedOutputs
from .packages import ModelPackage
from .restore_job import restore

DIRECTIONS = ("a2b", "b2a")


def translation_model(model, direction: str = "a2b") -> ModelPackage:
    """The translation package ``model`` (a package, a path or a bundled name) as the model of
    ``direction``: "a2b" (its generator) or "b2a" (its reverse generator, channels swapped)."""
    if direction not in DIRECTIONS:
        raise NanoscopyError(f"The direction must be a2b or b2a, not {direction!r}.")
    package = model if isinstance(model, ModelPackage) else load_model(model)
    card = package.card
    if card.cycle is None or package.reverse_generator is None:
        raise NanoscopyError(
            f"The model '{card.name}' has one generator and translates nothing back; give a tagan-cycle package "
            "(napari-nanoscopy train tagan-cycle), or restore with this one."
        )
    if direction == "a2b":
        return package
    cycle = card.cycle
    reverse = copy.deepcopy(card)
    reverse.name = f"{card.name} (b2a)"
    reverse.input_channels, reverse.output_channels = list(card.output_channels), list(card.input_channels)
    reverse.generator, reverse.domain = cycle.reverse_generator, None  # the fingerprint is of domain A
    reverse.cycle = replace(cycle, domain_a=cycle.domain_b, domain_b=cycle.domain_a, reverse_generator=card.generator)
    # Restorer caches key on the weights' hash: this direction runs other weights than the package's own.
    reverse.weights_sha256 = f"{card.weights_sha256}:b2a"
    return ModelPackage(card=reverse, generator=package.reverse_generator, task_network=None,
                        source=f"{package.source} (b2a)", reverse_generator=package.generator)


def translate(image, model, direction: str = "a2b", device: str | None = "auto", **options) -> RestorationResult:
    """Translate ``image`` (numpy, dask or zarr; YX or with a channel axis) with the TA-CycleGAN
    package ``model`` from domain A to B ("a2b") or back ("b2a"); ``options`` are those of
    :func:`~napari_nanoscopy.restore` (``pixel_size_nm``, ``samples``, ``tile``...)."""
    return restore(image, translation_model(model, direction), device=device, **options)


DATASET_IMAGES = "target"  # the annotated images of a dataset folder (training/datasets.py's layout)
DATASET_MASKS = "task"
DATASET_MANIFEST = "dataset.json"
TIFF_SUFFIXES = (".tif", ".tiff")


def translate_dataset(folder, out, model, direction: str = "a2b", *, device: str | None = "auto",
                      samples: int | None = None, seed: int | None = 0, overwrite: bool = False,
                      progress=None) -> Path:
    """Translate the images of the dataset ``folder`` (its target/ TIFFs) with the TA-CycleGAN
    package ``model`` and write the dataset ``out``: target/ translated (float32, each image's
    pixel size kept), task/ (the masks) and dataset.json copied as they are, the manifest recording
    the translation. The input/ images (another modality) are not carried over. ``out`` appears
    complete or not at all; ``progress(done, total)`` after each image."""
    folder, out = Path(folder).expanduser(), Path(out).expanduser()
    images = _dataset_images(folder)
    if out.exists() and not overwrite:
        raise NanoscopyError(f"{out} already exists; choose another output folder or pass overwrite=True (--overwrite).")
    if not out.parent.is_dir():
        raise NanoscopyError(f"The folder {out.parent} does not exist; create it first or choose another output folder.")
    package = translation_model(model, direction)
    restorer = Restorer(package, device=device)
    with StagedOutputs(overwrite=overwrite) as staged:
        staging = staged.stage(out)
        (staging / DATASET_IMAGES).mkdir(parents=True)
        for done, path in enumerate(images, 1):
            image = read_image(path)
            translated = restorer.restore(image.data, pixel_size_nm=image.pixel_size_nm, samples=samples, seed=seed,
                                          channel_axis=0 if image.axes == "CYX" else None)
            write_image(staging / DATASET_IMAGES / path.name, translated.mean.astype("float32"),
                        pixel_size_nm=image.pixel_size_nm, axes=image.axes)
            if progress is not None:
                progress(done, len(images))
        _copy_masks(folder, staging)
        manifest = (read_json_object(folder / DATASET_MANIFEST, str(folder / DATASET_MANIFEST), "fix it or remove it")
                    if (folder / DATASET_MANIFEST).is_file() else {})
        manifest["translated"] = {"from": str(folder.resolve()), "model": package.card.name, "direction": direction,
                                  "domains": {"from": package.card.cycle.domain_a, "to": package.card.cycle.domain_b}}
        (staging / DATASET_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return out


def _tiffs(folder: Path) -> list[Path]:
    """The TIFFs directly in ``folder``: plain files only, so no link leads outside it."""
    return sorted(path for path in folder.iterdir() if path.is_file() and not path.is_symlink()
                  and not path.name.startswith(".") and path.name.lower().endswith(TIFF_SUFFIXES))


def _dataset_images(folder: Path) -> list[Path]:
    if not (folder / DATASET_IMAGES).is_dir():
        raise NanoscopyError(f"{folder} is not a dataset folder (it has no {DATASET_IMAGES}/ images); give a folder "
                             f"with {DATASET_IMAGES}/NAME.tif and its masks in {DATASET_MASKS}/NAME.tif.")
    images = _tiffs(folder / DATASET_IMAGES)
    if not images:
        raise NanoscopyError(f"{folder / DATASET_IMAGES} holds no TIFF images (.tif, .tiff); put the images to translate there.")
    return images


def _copy_masks(folder: Path, staging: Path) -> None:
    if not (folder / DATASET_MASKS).is_dir():
        return
    (staging / DATASET_MASKS).mkdir()
    for path in _tiffs(folder / DATASET_MASKS):
        shutil.copyfile(path, staging / DATASET_MASKS / path.name)
