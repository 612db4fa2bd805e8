"""Training data: folders of paired TIFFs, normalised the way inference will, served as
augmented patches that depend only on (seed, step).

Folder layout (matched by file name, any of .tif / .tiff / .ome.tif)::

    DIR/input/NAME.tif    low-resolution image (confocal, weak label...), YX or CYX
    DIR/target/NAME.tif   the image to learn (STED, better label...), same size
    DIR/task/NAME.tif     optional task ground truth (mask or map), YX or CYX, same size
    DIR/dataset.json      optional: kind, pixel size, acquisition conditions...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..card import Fixed, InputNormalisation, MinMax, Percentile
from ..errors import NanoscopyError
from ..io import read_image, read_json_object
from ..normalisation import Normaliser, fit_affine, input_spec

IMAGE_SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif")
MANIFEST_FILE = "dataset.json"
DEFAULT_NORMALIZATION = {"mode": "percentile", "low": 1.0, "high": 99.8}
TRAINABLE_NORMALIZATION_MODES = tuple(kind.mode for kind in (Percentile, MinMax, Fixed))
PIXEL_SIZE_TOLERANCE = 0.01
# TA-GAN-Live: the paper's 50-px superpixels in its training crops and 100-px ones in its
# 500-px test fields both split a field into 5 x 5 cells; training reveals 1 or 2 of them.
LIVE_GRID_CELLS = 5
LIVE_MAX_PATCHES = 2
# Sub-streams of the seed, so that data sampling never shares random numbers with anything else.
_EPOCH_STREAM, _SAMPLE_STREAM = 1, 2


@dataclass
class TrainingData:
    """The pairs of one folder, normalised. Arrays are float32 (C, Y, X)."""

    folder: Path
    names: list[str]
    inputs: list[np.ndarray] | None
    targets: list[np.ndarray]
    tasks: list[np.ndarray] | None
    pixel_size_nm: float | None
    input_names: list[str] | None
    target_names: list[str] | None
    task_names: list[str] | None
    task_scaling: dict[str, Any] | None  # how raw task maps were mapped to the task network's range
    task_is_mask: bool
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def smallest_size(self) -> int:
        return min(min(target.shape[-2:]) for target in self.targets)


def normalization_spec(normalization: dict[str, Any] | None, value_range: tuple[float, float]) -> dict[str, Any]:
    """A card normalisation dict: ``normalization`` (mode and its parameters) mapped to ``value_range``."""
    spec = dict(DEFAULT_NORMALIZATION if normalization is None else normalization)
    mode = spec.get("mode")
    if mode not in TRAINABLE_NORMALIZATION_MODES:
        raise NanoscopyError(
            f"The training normalisation mode must be one of {', '.join(TRAINABLE_NORMALIZATION_MODES)}, "
            f"not {mode!r}."
        )
    if mode == "fixed" and not {"min", "max"} <= set(spec):
        raise NanoscopyError('A "fixed" normalisation needs "min" and "max" intensities, e.g. {"mode": "fixed", "min": 0, "max": 255}.')
    if mode == "percentile":
        spec.setdefault("low", DEFAULT_NORMALIZATION["low"])
        spec.setdefault("high", DEFAULT_NORMALIZATION["high"])
        if not 0 <= spec["low"] < spec["high"] <= 100:
            raise NanoscopyError(
                f"Percentiles must satisfy 0 <= low < high <= 100, not low={spec['low']} and high={spec['high']}."
            )
    spec["range"] = [float(value_range[0]), float(value_range[1])]
    return spec


def load_training_data(
    folder,
    *,
    normalization: dict[str, Any],
    need_input: bool = True,
    need_task: bool = False,
    use_task: bool = True,
    input_channels: int | None = None,
    target_channels: int | None = None,
    task_channels: int | None = None,
    invert_task: bool = False,
    task_scaling: dict[str, Any] | None = None,
    why_task: str = "",
    unannotated_tasks: bool = False,
) -> TrainingData:
    """Read, check and normalise every pair of ``folder``.

    Input and target channels are normalised per image with ``normalization`` (a card
    normalisation dict), as the Restorer normalises an image. Task maps are scaled to
    [-1, 1], a tanh task network's range: with ``task_scaling`` when given (a pretrained task
    network's), otherwise from the smallest to the largest value over the whole folder
    (reversed when ``invert_task``), so that a mask maps to -1 / +1. ``why_task`` completes
    the error message when ``need_task`` and there is no task folder. With ``unannotated_tasks``
    a task map may hold NaN where it is not annotated (kept NaN; the loss skips it).
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise NanoscopyError(f"The training folder {folder} does not exist; give a folder with input/ and target/ subfolders.")
    manifest = _read_manifest(folder)
    files = _pair_files(folder, need_input=need_input, need_task=need_task, use_task=use_task, why_task=why_task)
    names = sorted(files["target"])
    raw = _read_pairs(folder, names, files, {"input": input_channels, "target": target_channels, "task": task_channels},
                      unannotated_tasks)
    if task_scaling is None and raw.tasks:
        task_scaling = _task_scaling(folder, raw.tasks, invert_task)

    inputs_by_name, targets_by_name, tasks_by_name = files["input"], files["target"], files["task"]
    return TrainingData(
        folder=folder,
        names=names,
        inputs=[_normalised(image, normalization, path=inputs_by_name[name]) for name, image in zip(names, raw.inputs)]
        if inputs_by_name is not None
        else None,
        targets=[_normalised(image, normalization, path=targets_by_name[name]) for name, image in zip(names, raw.targets)],
        tasks=[scale_task(task, task_scaling) for task in raw.tasks] if tasks_by_name is not None else None,
        pixel_size_nm=_common_pixel_size(folder, raw.pixel_sizes),
        input_names=raw.channel_names.get("input"),
        target_names=raw.channel_names.get("target"),
        task_names=_task_names(manifest, raw.channel_names.get("task")),
        task_scaling=task_scaling if tasks_by_name is not None else None,
        task_is_mask=bool(raw.tasks) and _is_mask(raw.tasks),
        manifest=manifest,
    )


def domain_images_folder(folder: Path) -> Path:
    """Where one domain's images of an unpaired run are: ``folder``, or its target/ in a dataset folder."""
    return folder / "target" if (folder / "target").is_dir() else folder


def load_image_folder(folder, *, normalization: dict[str, Any], channels: int, what: str) -> TrainingData:
    """The images of one domain of an unpaired (TA-CycleGAN) run, normalised as ``load_training_data``
    normalises targets: the TIFFs in ``folder``, or in its target/ folder when it is a dataset
    folder (the inputs and task masks of such a folder are not read). ``what`` names it in messages."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise NanoscopyError(f"The {what} folder {folder} does not exist; give a folder of TIFF images.")
    images_folder = domain_images_folder(folder)
    files = _images_in(images_folder.parent, images_folder.name, required=True)
    raw = _RawPairs()
    names = sorted(files)
    images = [_normalised(raw.read("target", files[name], channels), normalization, path=files[name]) for name in names]
    return TrainingData(
        folder=folder, names=names, inputs=None, targets=images, tasks=None,
        pixel_size_nm=_common_pixel_size(images_folder, raw.pixel_sizes), input_names=None,
        target_names=raw.channel_names.get("target"), task_names=None, task_scaling=None, task_is_mask=False,
        manifest=_read_manifest(folder),
    )


def _pair_files(folder: Path, *, need_input: bool, need_task: bool, use_task: bool,
                why_task: str) -> dict[str, dict[str, Path] | None]:
    """The image files of each kind ("input", "target", "task") by pair name; None for a kind not read."""
    targets_by_name = _images_in(folder, "target", required=True)
    inputs_by_name = _images_in(folder, "input", required=True) if need_input else None
    if inputs_by_name is not None:
        _check_same_names(folder, "input", inputs_by_name, "target", targets_by_name)
    tasks_by_name = _images_in(folder, "task", required=False) if use_task else None
    if need_task and tasks_by_name is None:
        raise NanoscopyError(f"{folder} has no task/ folder with a task map per pair{why_task}.")
    if tasks_by_name is not None:
        _check_same_names(folder, "task", tasks_by_name, "target", targets_by_name)
    return {"input": inputs_by_name, "target": targets_by_name, "task": tasks_by_name}


@dataclass
class _RawPairs:
    """The images of a folder as their files hold them (C, Y, X), with the pixel sizes and
    channel names the files record."""

    inputs: list[np.ndarray] = field(default_factory=list)
    targets: list[np.ndarray] = field(default_factory=list)
    tasks: list[np.ndarray] = field(default_factory=list)
    pixel_sizes: dict[str, float | None] = field(default_factory=dict)
    channel_names: dict[str, list[str] | None] = field(default_factory=dict)

    def read(self, kind: str, path: Path, expected_channels: int | None, unannotated: bool = False) -> np.ndarray:
        """One checked image of ``kind`` as (C, Y, X); ``unannotated``: NaN may mark unannotated pixels."""
        image = read_image(path)
        if image.axes not in ("YX", "CYX"):
            raise NanoscopyError(
                f"{path} has axes {image.axes}; training images must be 2D (YX) or multichannel 2D (CYX)."
            )
        data = image.data if image.axes == "CYX" else image.data[np.newaxis]
        if expected_channels is not None and data.shape[0] != expected_channels:
            raise NanoscopyError(
                f"{path} has {data.shape[0]} channel(s) but the network takes {expected_channels} {kind} "
                f"channel(s); give {expected_channels}-channel {kind} images or change the network's channels."
            )
        if not np.issubdtype(data.dtype, np.number) or np.issubdtype(data.dtype, np.complexfloating):
            raise NanoscopyError(f"{path} has data type {data.dtype}; give real-valued images.")
        if np.isinf(data).any() or (not unannotated and np.isnan(data).any()):
            unannotated_note = (" (a task map's NaN marks unannotated pixels, which only unet-live training skips: "
                                "train unet-live or fill them)" if kind == "task" else "")
            raise NanoscopyError(f"{path} contains NaN or infinite pixels; replace them before training{unannotated_note}.")
        # Annotation tools often write uncalibrated masks: a task map's pixel size counts only when present.
        if kind != "task" or image.pixel_size_nm is not None:
            self.pixel_sizes[f"{kind}/{path.name}"] = image.pixel_size_nm
        self.channel_names.setdefault(kind, image.channel_names)
        return data


def _read_pairs(folder: Path, names: list[str], files: dict[str, dict[str, Path] | None],
                channels: dict[str, int | None], unannotated_tasks: bool = False) -> _RawPairs:
    """Read every pair, checking that the images of a pair, and all task maps, agree in shape."""
    inputs_by_name, targets_by_name, tasks_by_name = files["input"], files["target"], files["task"]
    raw = _RawPairs()
    for name in names:
        target = raw.read("target", targets_by_name[name], channels["target"])
        shape = target.shape[-2:]
        raw.targets.append(target)
        others = []
        if inputs_by_name is not None:
            raw.inputs.append(raw.read("input", inputs_by_name[name], channels["input"]))
            others.append(("input", inputs_by_name[name], raw.inputs[-1]))
        if tasks_by_name is not None:
            raw.tasks.append(raw.read("task", tasks_by_name[name], channels["task"], unannotated_tasks))
            others.append(("task", tasks_by_name[name], raw.tasks[-1]))
        for kind, path, image in others:
            if image.shape[-2:] != shape:
                raise NanoscopyError(
                    f"{path} is {image.shape[-2]}x{image.shape[-1]} pixels but {targets_by_name[name]} is "
                    f"{shape[0]}x{shape[1]}; the images of a pair must have the same size (register and crop them first)."
                )

    if tasks_by_name is not None:
        task_channels = {task.shape[0] for task in raw.tasks}
        if len(task_channels) > 1:
            raise NanoscopyError(
                f"The task maps in {folder / 'task'} have different channel counts ({sorted(task_channels)}); "
                "give every pair the same task channels."
            )
    return raw


def scale_task(task: np.ndarray, scaling: dict[str, Any]) -> np.ndarray:
    """Map raw task values linearly from [min, max] of ``scaling`` to its ``range``."""
    low, high = scaling["min"], scaling["max"]
    range_low, range_high = scaling["range"]
    unit = (task.astype(np.float32) - np.float32(low)) / np.float32(high - low)
    return (np.float32(range_low) + unit * np.float32(range_high - range_low)).astype(np.float32)


def _annotated_values(tasks: list[np.ndarray]) -> list[np.ndarray]:
    """Each task map's annotated values (NaN marks unannotated pixels), leaving out maps with none."""
    values = [task[~np.isnan(task)] if task.dtype.kind == "f" else task.ravel() for task in tasks]
    return [annotated for annotated in values if annotated.size]


def _task_scaling(folder: Path, tasks: list[np.ndarray], invert: bool) -> dict[str, Any]:
    annotated = _annotated_values(tasks)
    if not annotated:
        raise NanoscopyError(f"Every task map in {folder / 'task'} is unannotated (NaN); annotate some pixels.")
    low = float(min(values.min() for values in annotated))
    high = float(max(values.max() for values in annotated))
    if not high > low:
        raise NanoscopyError(
            f"Every task map in {folder / 'task'} holds the same value ({low:g}); they carry nothing to learn, "
            "check that the task folder holds the annotations."
        )
    return {"mode": "fixed", "min": low, "max": high, "range": [1.0, -1.0] if invert else [-1.0, 1.0]}


def _is_mask(tasks: list[np.ndarray]) -> bool:
    """True when the task maps hold two values only (a mask, whatever its dtype), unannotated NaN aside."""
    annotated = _annotated_values(tasks)
    if not annotated:
        return False
    low, high = min(values.min() for values in annotated), max(values.max() for values in annotated)
    return all(bool(np.all((values == low) | (values == high))) for values in annotated)


def _normalised(image: np.ndarray, spec: dict[str, Any], path: Path) -> np.ndarray:
    """Per-channel normalisation by the Restorer's own normaliser, so training and inference agree."""
    for channel, plane in enumerate(image):
        if spec["mode"] != "fixed" and plane.min() == plane.max():
            where = f"channel {channel} of {path}" if len(image) > 1 else str(path)
            raise NanoscopyError(f"{where} is constant (every pixel is {plane.min():g}); remove this pair from the training folder.")
    return Normaliser((spec,) * len(image)).fit(image).apply(image)


def _images_in(folder: Path, kind: str, required: bool) -> dict[str, Path] | None:
    subfolder = folder / kind
    if not subfolder.is_dir():
        if required:
            raise NanoscopyError(
                f"{folder} has no {kind}/ folder; a training folder holds input/NAME.tif and target/NAME.tif "
                "pairs (and optionally task/NAME.tif), see docs/training.md."
            )
        return None
    images: dict[str, Path] = {}
    for path in sorted(subfolder.iterdir()):
        suffix = next((s for s in IMAGE_SUFFIXES if path.name.lower().endswith(s)), None)
        if suffix is None or path.name.startswith(".") or not path.is_file():
            continue
        name = path.name[: -len(suffix)]
        if name in images:
            raise NanoscopyError(
                f"{subfolder} holds both {images[name].name} and {path.name}; pairs are matched by name, keep one of them."
            )
        images[name] = path
    if not images:
        raise NanoscopyError(f"{subfolder} holds no TIFF images (.tif, .tiff); put the training images there.")
    return images


def _check_same_names(folder: Path, kind: str, images: dict[str, Path], other_kind: str, others: dict[str, Path]) -> None:
    only_here = sorted(set(images) - set(others))
    only_there = sorted(set(others) - set(images))
    if not only_here and not only_there:
        return

    def listing(names: list[str]) -> str:
        return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")

    problems = []
    if only_here:
        problems.append(f"{len(only_here)} image(s) in {kind}/ have no partner in {other_kind}/ ({listing(only_here)})")
    if only_there:
        problems.append(f"{len(only_there)} image(s) in {other_kind}/ have no partner in {kind}/ ({listing(only_there)})")
    raise NanoscopyError(
        f"In {folder}, {' and '.join(problems)}; pairs are matched by file name, so give every pair the same name in each folder."
    )


def _common_pixel_size(folder: Path, sizes: dict[str, float | None]) -> float | None:
    known = {name: size for name, size in sizes.items() if size is not None}
    if not known:
        return None
    if len(known) < len(sizes):
        missing = next(name for name, size in sizes.items() if size is None)
        raise NanoscopyError(
            f"{folder / missing} carries no pixel size while other images of {folder} do; "
            "calibrate every image (or none) so the model's pixel size is certain."
        )
    reference_name, reference = next(iter(known.items()))
    for name, size in known.items():
        if abs(size - reference) > PIXEL_SIZE_TOLERANCE * reference:
            raise NanoscopyError(
                f"{folder / name} has {size:g} nm pixels but {folder / reference_name} has {reference:g} nm; "
                "resample the images to one pixel size before training."
            )
    return float(np.median(list(known.values())))


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST_FILE
    if not path.is_file():
        return {}
    return read_json_object(path, str(path), "fix it or remove it")


def _task_names(manifest: dict[str, Any], file_names: list[str] | None) -> list[str] | None:
    names = manifest.get("task_channels") or file_names
    return list(names) if names else None


# --- patches --------------------------------------------------------------------------------


def dihedral(array: np.ndarray, transform: int) -> np.ndarray:
    """One of the 8 flips/rotations of the last two axes: rotate by 90° ``transform % 4`` times,
    then mirror left-right when ``transform >= 4``."""
    rotated = np.rot90(array, transform % 4, axes=(-2, -1))
    return rotated[..., ::-1] if transform >= 4 else rotated


def random_patch_mask(size: int, rng: np.random.Generator) -> np.ndarray:
    """TA-GAN-Live's revealed STED region: 1 or 2 distinct cells of a 5 x 5 grid over the patch."""
    cell = size // LIVE_GRID_CELLS
    count = int(rng.integers(1, LIVE_MAX_PATCHES + 1))
    chosen = rng.choice(LIVE_GRID_CELLS**2, size=count, replace=False)
    mask = np.zeros((size, size), dtype=bool)
    for index in chosen:
        row, col = divmod(int(index), LIVE_GRID_CELLS)
        mask[row * cell:(row + 1) * cell, col * cell:(col + 1) * cell] = True
    return mask


def sted_patch_channels(sted: np.ndarray, mask: np.ndarray, spec: InputNormalisation | dict[str, Any]) -> np.ndarray:
    """Channels 1 and 2 of the TA-GAN-Live input, from a (Y, X) STED image and a boolean mask.

    Channel 1: the STED pixels under the mask, normalised with ``spec`` over those pixels only
    (all a live acquisition of a sub-region has), the range's low end elsewhere and where the
    revealed pixels are all equal; channel 2: the mask as +1 / -1. The card lists both channels as already prepared ("none"); the live
    pipeline builds them with this function from the raw STED patch.
    """
    spec = input_spec(spec)
    low, high = spec.range
    channels = np.empty((2,) + mask.shape, dtype=np.float32)
    channels[0] = low
    revealed = sted[mask]
    if revealed.size and revealed.min() < revealed.max():
        channels[0][mask] = fit_affine(revealed[np.newaxis], spec).apply(revealed)
    channels[1] = np.where(mask, 1.0, -1.0)
    return channels


class PatchSampler:
    """Augmented training batches that depend only on (seed, step), so a resumed run draws
    exactly the batches an uninterrupted one would.

    Pairs are visited epoch by epoch in a seeded random order; each sample gets a random
    crop of ``patch`` pixels and one of the 8 flips/rotations, the same for input, target and
    task. Targets are clipped to ``target_clip`` when given. With ``live_spec`` (the STED
    patch normalisation) the input becomes TA-GAN-Live's 3 channels (confocal, STED patch,
    patch mask) with a fresh random mask per sample.
    """

    def __init__(
        self,
        data: TrainingData,
        patch: int,
        batch: int,
        seed: int,
        target_clip: tuple[float, float] | None = None,
        live_spec: dict[str, Any] | None = None,
    ):
        self.data, self.patch, self.batch, self.seed = data, patch, batch, seed
        self.target_clip, self.live_spec = target_clip, live_spec
        self._epoch_order: tuple[int, np.ndarray] | None = None

    def _rng(self, stream: int, index: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(stream, index)))

    def _pair_index(self, sample: int) -> int:
        count = len(self.data.names)
        epoch = sample // count
        if self._epoch_order is None or self._epoch_order[0] != epoch:
            self._epoch_order = (epoch, self._rng(_EPOCH_STREAM, epoch).permutation(count))
        return int(self._epoch_order[1][sample % count])

    def sample(self, sample: int) -> dict[str, np.ndarray]:
        """Sample number ``sample`` (counting from 0 over the whole run) as (C, patch, patch) arrays."""
        pair = self._pair_index(sample)
        rng = self._rng(_SAMPLE_STREAM, sample)
        target = self.data.targets[pair]
        height, width = target.shape[-2:]
        y0 = int(rng.integers(0, height - self.patch + 1))
        x0 = int(rng.integers(0, width - self.patch + 1))
        transform = int(rng.integers(0, 8))

        def cut(array: np.ndarray) -> np.ndarray:
            crop = array[..., y0:y0 + self.patch, x0:x0 + self.patch]
            return dihedral(crop, transform).copy()  # a copy: clipping below must not touch the data

        out = {"target": cut(target)}
        if self.data.inputs is not None:
            out["input"] = cut(self.data.inputs[pair])
        if self.data.tasks is not None:
            out["task"] = cut(self.data.tasks[pair])
        if self.live_spec is not None:
            mask = random_patch_mask(self.patch, rng)
            out["input"] = np.concatenate([out["input"], sted_patch_channels(out["target"][0], mask, self.live_spec)])
        if self.target_clip is not None:
            np.clip(out["target"], *self.target_clip, out=out["target"])
        return out

    def batch_at(self, step: int, device: torch.device) -> dict[str, torch.Tensor]:
        """The batch of training step ``step`` (from 0), as tensors on ``device``."""
        samples = [self.sample(step * self.batch + b) for b in range(self.batch)]
        return {key: torch.from_numpy(np.stack([s[key] for s in samples])).to(device) for key in samples[0]}
