"""Evaluation of a model on a held-out dataset folder (the layout ``simulate_dataset`` writes).

Every image is compared with a reference after the same scaling: the reference is scaled by
its own 1-99.8 percentiles to [0, 1], and each compared image is mapped onto it by the affine
transform that minimises the squared error (CSBDeep's ``normalize_minmse``), so that no
method gains or loses from its intensity units. Rows are the model's output and the
baselines: the input itself (the floor), Richardson-Lucy deconvolution with the known confocal
PSF of the acquisition conditions, and any other model passed as a baseline (pix2pix).

Task metrics follow the dataset's kind:

- ``nanodomains``: localisation F1 (a detection matches a true centre within 3 pixels, one
  to one, as in the TA-GAN paper's user study). Nanodomains are found by one detector for
  every row (local maxima of the image smoothed by a 0.75-pixel Gaussian, above a fraction of the
  image's range); the fraction is chosen per row by 2-fold cross-validation (tuned on half the
  images, scored on the other half), as the paper's expert adapted to each kind of image.
  Recall is also given apart for nanodomains within 80 nm of another (about the STED FWHM)
  and for those more than 120 nm from any other, which tells missed resolution from missed
  or misplaced isolated nanodomains;
- ``factin``, ``axons``: Dice of the model's segmentation (rings, fibres; axons: rings) against the true masks;
- ``beads``: FWHM of isolated beads from 2D Gaussian fits (``analysis.fwhm``);
- ``twolabel``: PSNR and SSIM against the clean structure as the microscope images it with a
  perfect label (the structure convolved with the noise-free confocal PSF), and the
  contrast-to-noise ratio (structure-mask mean minus background mean, over the background's
  standard deviation), which no affine intensity change alters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage, optimize

from .analysis import dice, psnr, ssim
from .analysis.fwhm import measure_spots
from .analysis.hallucination import cutoff_from_psf, hallucination_score
from .errors import NanoscopyError
from .io import read_image, read_json_object
from .limits import check_int

MATCH_RADIUS_PX = 3.0  # TA-GAN paper: a detection within 3 pixels of a true centre
CLOSE_NANODOMAINS_NM = 80.0  # about the STED FWHM (72 nm): pairs STED itself barely resolves
ISOLATED_NANODOMAINS_NM = 120.0
RL_ITERATIONS = 30
HALLUCINATION = "hallucination"  # analysis.hallucination.hallucination_score against the target
_PSF_RADIUS_PX = 16
_DETECTION_THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.05), 2)
_DETECTION_SMOOTHING_PX = 0.75


@dataclass
class Evaluation:
    """Per-row metric means over a dataset; ``rows`` maps a row name to {metric: value}."""

    model: str
    dataset: str
    kind: str
    n_images: int
    rows: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: metrics that could not be measured (NaN) become None."""
        rows = {name: {k: (v if np.isfinite(v) else None) for k, v in row.items()} for name, row in self.rows.items()}
        return {"model": self.model, "dataset": self.dataset, "kind": self.kind, "n_images": self.n_images,
                "rows": rows, "notes": self.notes}

    def table(self) -> str:
        """The rows as a Markdown table."""
        metrics = list(dict.fromkeys(key for row in self.rows.values() for key in row))
        lines = ["| image | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
        for name, row in self.rows.items():
            if not row:
                continue
            cells = [_format(row.get(metric)) for metric in metrics]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


def _format(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and not np.isfinite(value):
        return "—"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


# --- scaling and baselines ------------------------------------------------------------------


def percentile_scaled(image: np.ndarray, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    lo, hi = np.percentile(image, [low, high])
    if hi <= lo:
        hi = lo + 1.0
    return ((image - lo) / (hi - lo)).astype(np.float32)


def fit_to_reference(reference: np.ndarray, image: np.ndarray) -> np.ndarray:
    """``a * image + b`` with the ``a, b`` that minimise the squared error to ``reference``."""
    x = image.astype(np.float64).ravel()
    y = reference.astype(np.float64).ravel()
    variance = x.var()
    a = 0.0 if variance == 0 else float(np.mean((x - x.mean()) * (y - y.mean())) / variance)
    b = float(y.mean() - a * x.mean())
    return (a * image + b).astype(np.float32)


def confocal_psf(conditions: dict[str, Any] | None = None, radius_px: int = _PSF_RADIUS_PX) -> np.ndarray:
    """The noise-free confocal image of one point source under ``conditions`` (default: the
    standard set), normalised to sum 1: the PSF Richardson-Lucy deconvolves with."""
    from .simulation import STANDARD_CONDITIONS, acquire

    conditions = dict(STANDARD_CONDITIONS if conditions is None else conditions)
    conditions["detector"] = {**conditions.get("detector", {}), "noise": False, "background": 0.0}
    size = 2 * radius_px + 1
    point = np.zeros((size, size), np.int32)
    point[radius_px, radius_px] = 1000
    image = acquire(point, conditions, sted=False, rng=0).astype(np.float64)
    image = np.clip(image, 0, None)
    return (image / image.sum()).astype(np.float32)


def richardson_lucy(image: np.ndarray, psf: np.ndarray, iterations: int = RL_ITERATIONS) -> np.ndarray:
    """Richardson-Lucy deconvolution (scikit-image) of a non-negative image."""
    from skimage.restoration import richardson_lucy as skimage_rl

    scaled = np.clip(percentile_scaled(image, 0.0, 100.0), 0, None)
    return skimage_rl(scaled.astype(np.float64), psf.astype(np.float64), num_iter=iterations, clip=False).astype(np.float32)


# --- nanodomain localisation -----------------------------------------------------------------


def detect_spots(image: np.ndarray, threshold_rel: float, min_distance_px: int = 1) -> np.ndarray:
    """(row, col) local maxima of the lightly smoothed image above ``threshold_rel`` of its range."""
    from skimage.feature import peak_local_max

    smooth = ndimage.gaussian_filter(image.astype(np.float64), _DETECTION_SMOOTHING_PX)
    lo, hi = np.percentile(smooth, [1.0, 100.0])
    if hi <= lo:
        return np.zeros((0, 2))
    return peak_local_max(
        smooth, min_distance=min_distance_px, threshold_abs=lo + threshold_rel * (hi - lo), exclude_border=False
    ).astype(np.float64)


def matched_truths(detected: np.ndarray, truth: np.ndarray, radius_px: float = MATCH_RADIUS_PX) -> np.ndarray:
    """Which true centres a one-to-one matching within ``radius_px`` pairs with a detection."""
    detected = np.asarray(detected, float).reshape(-1, 2)
    truth = np.asarray(truth, float).reshape(-1, 2)
    found = np.zeros(len(truth), bool)
    if len(detected) == 0 or len(truth) == 0:
        return found
    distances = np.linalg.norm(detected[:, None, :] - truth[None, :, :], axis=-1)
    rows, cols = optimize.linear_sum_assignment(np.where(distances <= radius_px, distances, 1e6))
    found[cols[distances[rows, cols] <= radius_px]] = True
    return found


def match_counts(detected: np.ndarray, truth: np.ndarray, radius_px: float = MATCH_RADIUS_PX) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of a one-to-one matching within ``radius_px``."""
    return _counts(matched_truths(detected, truth, radius_px), len(np.asarray(detected, float).reshape(-1, 2)))


def _counts(found: np.ndarray, n_detected: int) -> tuple[int, int, int]:
    """Match counts from ``matched_truths``' flags and the number of detections."""
    true_positives = int(found.sum())
    return true_positives, n_detected - true_positives, len(found) - true_positives


def nearest_neighbour_distances(centres: np.ndarray) -> np.ndarray:
    """Each centre's distance (pixels) to the closest other one (inf when it is alone)."""
    centres = np.asarray(centres, float).reshape(-1, 2)
    distances = np.linalg.norm(centres[:, None, :] - centres[None, :, :], axis=-1)
    distances[np.eye(len(centres), dtype=bool)] = np.inf
    return distances.min(axis=1) if len(centres) else np.zeros(0)


def f1_score(counts: list[tuple[int, int, int]]) -> tuple[float, float, float]:
    """(precision, recall, F1) from summed match counts."""
    tp, fp, fn = (int(sum(c[i] for c in counts)) for i in range(3))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def best_detection_threshold(images: list[np.ndarray], positions: list[np.ndarray]) -> float:
    """The relative threshold of ``detect_spots`` with the best F1 on ``images``."""
    scores = []
    for threshold in _DETECTION_THRESHOLDS:
        counts = [match_counts(detect_spots(im, threshold), pos) for im, pos in zip(images, positions)]
        scores.append(f1_score(counts)[2])
    return float(_DETECTION_THRESHOLDS[int(np.argmax(scores))])


def cross_validated_detections(images: list[np.ndarray], positions: list[np.ndarray]) -> tuple[list, list[float]]:
    """The spots detected in every image with a detection threshold chosen on the other half
    of the images (2-fold: even and odd indices), so that each kind of image gets the detector
    setting that suits it, as an expert adapts to it, without scoring on what tuned it."""
    folds = [list(range(0, len(images), 2)), list(range(1, len(images), 2))]
    detections, thresholds = [None] * len(images), []
    for tune, score in (folds, folds[::-1]):
        if not score:
            continue
        threshold = best_detection_threshold([images[i] for i in tune or score], [positions[i] for i in tune or score])
        thresholds.append(threshold)
        for i in score:
            detections[i] = detect_spots(images[i], threshold)
    return detections, thresholds


def cross_validated_counts(images: list[np.ndarray], positions: list[np.ndarray]) -> tuple[list, list[float]]:
    """Match counts of every image with the cross-validated detector (``cross_validated_detections``)."""
    detections, thresholds = cross_validated_detections(images, positions)
    return [match_counts(d, p) for d, p in zip(detections, positions)], thresholds


# --- the evaluation ----------------------------------------------------------------------------


@dataclass
class _Item:
    name: str
    input: np.ndarray
    target: np.ndarray
    task: np.ndarray | None
    truth: np.ndarray | None
    positions: np.ndarray | None


def _read_dataset(data_dir: Path, limit: int | None) -> tuple[dict[str, Any], list[_Item], float | None]:
    manifest_path = data_dir / "dataset.json"
    if not manifest_path.is_file():
        raise NanoscopyError(
            f"{data_dir} has no dataset.json; evaluate needs a dataset folder as `napari-nanoscopy simulate` writes it."
        )
    manifest = read_json_object(manifest_path, f"The dataset manifest {manifest_path}", "simulate the dataset again")
    positions = {s["name"]: np.asarray(s["positions_px"]) for s in manifest.get("samples", []) if "positions_px" in s}
    inputs = sorted((data_dir / "input").glob("*.tif"))
    if not inputs:
        raise NanoscopyError(f"{data_dir / 'input'} holds no .tif images to evaluate on.")
    items = []
    pixel_size = None
    for path in inputs[:limit]:
        stem = path.name[: -len(".tif")]
        image = read_image(path)
        pixel_size = image.pixel_size_nm
        target_path = data_dir / "target" / path.name
        if not target_path.is_file():
            raise NanoscopyError(f"{target_path} is missing; every input needs its target image.")
        optional = {}
        for folder in ("task", "truth"):
            other = data_dir / folder / path.name
            optional[folder] = read_image(other).data if other.is_file() else None
        items.append(_Item(stem, image.data.astype(np.float32), read_image(target_path).data.astype(np.float32),
                           optional["task"], optional["truth"], positions.get(stem)))
    return manifest, items, pixel_size


def evaluate(
    model,
    data_dir,
    *,
    baselines: dict[str, Any] | None = None,
    samples: int | None = None,
    device: str = "cpu",
    limit: int | None = None,
    richardson_lucy_baseline: bool = True,
    segmenter=None, scorer=None,
    progress: Callable[[int, int], None] | None = None,
) -> Evaluation:
    """Evaluate ``model`` (name, path or package) on the dataset folder ``data_dir``.

    ``baselines`` maps a row name to another model (e.g. {"pix2pix": "pix2pix-nanodomains"});
    ``samples`` Monte-Carlo samples are averaged per image (default: each model's card); ``limit`` uses the first images only.
    ``segmenter`` (a segmentation package such as a U-Net-Live) is applied to every row's image
    and scored by Dice against the task masks: one segmenter for all rows, as the TA-GAN paper
    scores synthetic images with a network trained on real ones (``scorer``: see :func:`scorer_dice`).

    A TA-GAN-Live model gets its 3-channel input as the live pipeline builds it: the confocal
    image plus the STED pixels of 1-2 cells of a 5 x 5 grid (seeded per image) and their mask.
    """
    from .inference import Restorer
    from .segmentation import Segmenter

    data_dir = Path(data_dir).expanduser()
    if limit is not None:  # a negative or zero limit would slice the dataset to nothing, or from its end
        limit = check_int("The image limit", limit, 1, 10**9, "leave it out to use every image")
    manifest, items, pixel_size = _read_dataset(data_dir, limit)
    kind = manifest.get("kind", "unknown")
    restorer = Restorer(model, device=device)
    card = restorer.card
    segmentation_only = card.training.get("method") == "unet-live"
    others = {name: Restorer(other, device=device) for name, other in (baselines or {}).items()}
    segmenting = Restorer(segmenter, device=device) if segmenter is not None else None
    scoring = Segmenter(scorer, device=device) if scorer is not None else None  # refused here, before any work
    input_psf = confocal_psf(manifest.get("conditions")) if not segmentation_only else None
    psf = input_psf if richardson_lucy_baseline else None
    # a two-label target is confocal too: above the input's cut-off it holds only noise
    cutoff = cutoff_from_psf(input_psf) if input_psf is not None and kind != "twolabel" else None

    images: dict[str, list[np.ndarray]] = {}
    segmentations: dict[str, list[np.ndarray]] = {}
    task_maps: dict[str, list[np.ndarray]] = {}
    target_row = "STED (target)" if kind != "twolabel" else "better label (target)"
    for index, item in enumerate(items):
        source, channel_axis = item.target if segmentation_only else item.input, None
        if card.family == "tagan-live":
            source, channel_axis = _live_input(item, card, index), 0
        result = restorer.restore(source, pixel_size_nm=pixel_size, channel_axis=channel_axis, samples=samples, seed=index)
        rows = {"input": item.input, card.name: result.mean}
        if kind == "nanodomains" and result.task is not None:
            # the task network's localisation map of the generated image (positive side = nanodomain)
            task_maps.setdefault(f"{card.name}, its localisation map", []).append(result.task[0])
        if result.segmentation is not None:
            segmentations.setdefault(card.name, []).append(result.segmentation)
        if psf is not None:
            rows["Richardson-Lucy"] = richardson_lucy(item.input, psf)
        for name, other in others.items():
            other_result = other.restore(item.input, pixel_size_nm=pixel_size, samples=samples, seed=index)
            rows[name] = other_result.mean
            if other_result.segmentation is not None:
                segmentations.setdefault(name, []).append(other_result.segmentation)
        rows[target_row] = item.target
        for name, image in rows.items():
            images.setdefault(name, []).append(image)
            if segmenting is not None:
                key = f"{name}, segmented by {segmenting.card.name}"
                segmentations.setdefault(key, []).append(segmenting.restore(image, pixel_size_nm=pixel_size).segmentation)
        if progress is not None:
            progress(index + 1, len(items))

    evaluation = Evaluation(card.name, str(data_dir), kind, len(items))
    scored = {} if segmentation_only else {name: stack for name, stack in images.items() if name != target_row}
    _image_metrics(evaluation, images, scored, [item.target for item in items], cutoff)
    scorer_dice(evaluation, scoring, scored, [item.target for item in items], pixel_size)
    named = card if card.task is not None else (segmenting.card if segmenting is not None else card)
    _task_metrics(evaluation, manifest, items, {**images, **task_maps}, segmentations, named, pixel_size, psf)
    return evaluation


def _image_metrics(evaluation, images, scored, targets, cutoff: float | None) -> None:
    """A row per image stack; PSNR, SSIM and (given the input's ``cutoff``) the hallucination score for
    the ``scored`` stacks, each mapped onto its percentile-scaled target first."""
    targets = [percentile_scaled(target) for target in targets]
    for name in images:
        row = evaluation.rows[name] = {}
        if name not in scored:  # the target is the reference itself; a segmenter's rows have no image to score
            continue
        fitted = [fit_to_reference(t, im) for t, im in zip(targets, scored[name])]
        row["PSNR vs target (dB)"] = float(np.mean([psnr(t, f, data_range=1.0) for t, f in zip(targets, fitted)]))
        row["SSIM vs target"] = float(np.mean([ssim(t, f, data_range=1.0) for t, f in zip(targets, fitted)]))
        if cutoff is not None:  # power added above the input's cut-off, over the target's power there
            row[HALLUCINATION] = float(np.mean([hallucination_score(f, t, cutoff) for t, f in zip(targets, fitted)]))
    if cutoff is not None:
        evaluation.notes["hallucination_cutoff_cycles_per_px"] = round(cutoff, 4)


def scorer_dice(evaluation, scorer, scored, targets, pixel_size) -> None:
    """Per class, the mean Dice between ``scorer``'s segmentation of each ``scored`` image and of its
    real STED ``targets``: the TA-GAN paper's score of synthetic images (it used the authors' U-Net).

    Each image is first mapped onto its target's intensities (the affine least-squares fit of
    ``fit_to_reference``), so a segmenter with a fixed input scaling sees the units it was trained on.
    """
    if scorer is None:
        return

    def labels(image):
        if np.ptp(image) == 0:  # a blank image shows no structure (and a percentile scaling has no range)
            return np.zeros(image.shape[-2:], np.uint8)
        return scorer.segment(image, pixel_size_nm=pixel_size).labels

    real = [labels(target) for target in targets]
    for name, stack in scored.items():
        segmented = [labels(fit_to_reference(target, image)) for target, image in zip(targets, stack)]
        for index, class_name in enumerate(scorer.class_names, start=1):
            row = evaluation.rows.setdefault(name, {})
            row[f"scorer Dice {class_name}"] = float(np.mean([dice(s == index, r == index) for s, r in zip(segmented, real)]))
    card = scorer.card
    evaluation.notes["scorer"] = {"model": card.name, "weights_sha256": card.weights_sha256,
                                  "classes": list(scorer.class_names), "thresholds": list(scorer.thresholds)}


def _task_metrics(evaluation, manifest, items, images, segmentations, card, pixel_size, psf) -> None:
    kind, task_channels = manifest.get("kind", "unknown"), manifest.get("task_channels")
    if kind == "nanodomains":
        positions = [item.positions for item in items]
        if any(p is None for p in positions):
            raise NanoscopyError("The nanodomain dataset's dataset.json lists no positions_px for some images.")
        neighbours = np.concatenate([nearest_neighbour_distances(p) for p in positions]) * (pixel_size or np.nan)
        close, isolated = neighbours <= CLOSE_NANODOMAINS_NM, neighbours > ISOLATED_NANODOMAINS_NM
        for name, stack in images.items():
            detections, thresholds = cross_validated_detections(stack, positions)
            matched = [matched_truths(d, p) for d, p in zip(detections, positions)]
            precision, recall, f1 = f1_score([_counts(m, len(d)) for m, d in zip(matched, detections)])
            found = np.concatenate(matched)
            row = evaluation.rows.setdefault(name, {})
            row.update({"precision": precision, "recall": recall, "F1 (3 px)": f1})
            # which nanodomains are missed: those too close to resolve, or isolated ones too
            for label, group in ((f"≤ {CLOSE_NANODOMAINS_NM:g}", close), (f"> {ISOLATED_NANODOMAINS_NM:g}", isolated)):
                if group.any():
                    row[f"recall {label} nm apart"] = float(found[group].mean())
            evaluation.notes.setdefault("detection_threshold_rel", {})[name] = thresholds
    elif kind in ("factin", "axons") or (kind == "datamaps" and items[0].task is not None):  # axons: lattice regions
        masks = [item.task > 0 for item in items]
        annotated = [~np.isnan(item.task) if item.task.dtype.kind == "f" else np.ones(item.task.shape, bool)
                     for item in items]  # a class a sample's source did not annotate (NaN) is not scored there
        names = list(card.task.outputs) if card.task is not None else [f"channel {c}" for c in range(masks[0].shape[0])]
        # the dataset's channel of each output: by name where the dataset names its classes (an output it
        # does not annotate is not scored), else by position
        by_name = bool(task_channels) and any(name in task_channels for name in names)
        pairs = [(c, task_channels.index(name) if by_name else c, name) for c, name in enumerate(names)
                 if not by_name or name in task_channels]
        for row_name, stack in segmentations.items():
            row = evaluation.rows.setdefault(row_name, {})
            for output, channel, name in pairs:
                scores = [dice(m[channel], s[output] & a[channel]) for m, s, a in zip(masks, stack, annotated)
                          if a[channel].any()]
                row[f"Dice {name}"] = float(np.mean(scores)) if scores else float("nan")
    elif kind == "beads":
        for name, stack in images.items():
            fits = [fit.fwhm_nm for im in stack for fit in measure_spots(im, pixel_size)]
            evaluation.rows[name].update({
                "bead FWHM (nm)": float(np.median(fits)) if fits else float("nan"),
                "beads fitted": float(len(fits)),
            })
    elif kind == "twolabel":
        clean = [percentile_scaled(ndimage.convolve(item.truth.astype(np.float64), psf.astype(np.float64), mode="reflect"))
                 for item in items] if psf is not None else None
        for name, stack in images.items():
            if clean is not None:
                fitted = [fit_to_reference(c, im) for c, im in zip(clean, stack)]
                evaluation.rows[name]["PSNR vs clean structure (dB)"] = float(
                    np.mean([psnr(c, f, data_range=1.0) for c, f in zip(clean, fitted)]))
                evaluation.rows[name]["SSIM vs clean structure"] = float(
                    np.mean([ssim(c, f, data_range=1.0) for c, f in zip(clean, fitted)]))
            contrasts = []
            for item, image in zip(items, stack):
                mask = item.task > 0 if item.task is not None else item.truth > 0
                background = image[~mask]
                spread = background.std()
                contrasts.append(float((image[mask].mean() - background.mean()) / spread) if spread > 0 else float("nan"))
            evaluation.rows[name]["CNR"] = float(np.nanmean(contrasts))


def _live_input(item: _Item, card, index: int) -> np.ndarray:
    from .training.datasets import random_patch_mask, sted_patch_channels

    if item.input.shape[-1] != item.input.shape[-2]:
        raise NanoscopyError("TA-GAN-Live evaluation needs square images (the STED cells are a 5 x 5 grid).")
    mask = random_patch_mask(item.input.shape[-1], np.random.default_rng(index))
    spec = card.normalization.sted_patch or card.input_normalizations()[0]
    return np.concatenate([item.input[None], sted_patch_channels(item.target, mask, spec)])
