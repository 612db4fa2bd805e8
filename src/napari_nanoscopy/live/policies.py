"""When to acquire a full STED image: the TA-GAN paper's two triggers, and one of ours.

All take the segmentation network's raw outputs for the class being monitored (F-actin
fibres) on the N synthetic samples of the ROI, ``(N, Y, X)`` in the network's units, and the
binarisation threshold of that output (from the segmentation model's card):

- ``dice``: the mean of the N outputs, binarised, against the segmentation of the last real
  STED image (the reference); trigger when their Dice is below the threshold (0.5 in the
  paper; its code used 0.3). Without a reference it always triggers. A mask covering less
  than ``min_fraction`` of the ROI (default 0.2 %) counts as empty: with an empty reference
  (no fibres before a stimulus) one stray pixel would otherwise give a Dice of 0 and a
  trigger, while two empty masks agree (Dice 1).
- ``variability``: each output binarised, the variability score of the N masks (share of
  high-variability pixels among the foreground); trigger when it is above the threshold
  (0.5 in the paper).
- ``area`` (ours): the relative change of the segmented area against the reference,
  ``|A - A_ref| / (A + A_ref)`` (0: same area, 0.2: +50 %, 1: from or to nothing); trigger
  above the threshold. The paper monitors the remodelling as a change of the fibre area; this
  measures it directly, so that the score does not depend on where the model puts its false
  positives, only on how many there are (with ``reference="synthetic"`` in the pipeline their
  number cancels too). The area of a mask below ``min_fraction`` of the ROI counts as 0.

The paper chose its thresholds by trials on its microscope and says they should be adapted to
the experiment; :func:`calibrated_threshold` picks one from scores of frames where nothing
changed (see docs/live.md, "Calibrating the thresholds").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_nanoscopy.analysis.metrics import dice
from napari_nanoscopy.analysis.variability import variability_score
from napari_nanoscopy.errors import NanoscopyError

POLICIES = ("dice", "variability", "area")
DEFAULT_THRESHOLDS = {"dice": 0.5, "variability": 0.5, "area": 0.2}


@dataclass
class Decision:
    policy: str
    score: float | None
    threshold: float
    trigger: bool
    reason: str
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # mean segmentation, variability...

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "score": self.score, "threshold": self.threshold,
                "trigger": self.trigger, "reason": self.reason}


class Policy:
    name = "policy"

    def __init__(self, threshold: float | None = None):
        threshold = DEFAULT_THRESHOLDS[self.name] if threshold is None else threshold
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
            raise NanoscopyError(f"The {self.name} threshold must be a number from 0 to 1; got {threshold!r}.")
        self.threshold = float(threshold)

    def decide(self, outputs: np.ndarray, binarisation: float, reference: np.ndarray | None) -> Decision:
        raise NotImplementedError


class DicePolicy(Policy):
    name = "dice"

    def __init__(self, threshold: float | None = None, min_fraction: float = 0.002):
        super().__init__(threshold)
        if not 0 <= min_fraction < 1:
            raise NanoscopyError(f"min_fraction must be from 0 to 1 (a share of the ROI); got {min_fraction!r}.")
        self.min_fraction = float(min_fraction)

    def _significant(self, mask: np.ndarray) -> np.ndarray:
        return mask if np.count_nonzero(mask) >= self.min_fraction * mask.size else np.zeros_like(mask)

    def decide(self, outputs, binarisation, reference):
        outputs = _checked_outputs(outputs)
        mean_mask = outputs.mean(axis=0) > binarisation
        if reference is None:
            return Decision(self.name, None, self.threshold, True, "no reference STED yet", {"mean_segmentation": mean_mask})
        reference = np.asarray(reference, dtype=bool)
        if reference.shape != mean_mask.shape:
            raise NanoscopyError(
                f"The reference segmentation is {reference.shape} but the synthetic one is {mean_mask.shape}; "
                "both must cover the same ROI."
            )
        score, trigger, reason = self._score(self._significant(mean_mask), self._significant(reference))
        return Decision(self.name, score, self.threshold, trigger, reason, {"mean_segmentation": mean_mask})

    def _score(self, mask: np.ndarray, reference: np.ndarray) -> tuple[float, bool, str]:
        score = float(dice(mask, reference))
        trigger = score < self.threshold
        return score, trigger, f"Dice {score:.3f} {'<' if trigger else '>='} {self.threshold:g}"


class AreaPolicy(DicePolicy):
    """Relative change of the segmented area; shares the dice policy's masks and empty-mask rule."""

    name = "area"

    def _score(self, mask, reference):
        area, reference_area = np.count_nonzero(mask), np.count_nonzero(reference)
        score = abs(area - reference_area) / (area + reference_area) if area + reference_area else 0.0
        trigger = score > self.threshold
        return float(score), trigger, (f"area {area} px vs {reference_area} px: change {score:.3f} "
                                       f"{'>' if trigger else '<='} {self.threshold:g}")


class VariabilityPolicy(Policy):
    name = "variability"

    def decide(self, outputs, binarisation, reference):
        outputs = _checked_outputs(outputs)
        result = variability_score(outputs > binarisation)
        trigger = result.score > self.threshold
        reason = f"variability {result.score:.3f} {'>' if trigger else '<='} {self.threshold:g}"
        maps = {"mean_segmentation": outputs.mean(axis=0) > binarisation, "high_variability": result.high,
                "votes": result.votes}
        return Decision(self.name, result.score, self.threshold, trigger, reason, maps)


def make_policy(name: str, threshold: float | None = None) -> Policy:
    if name == "dice":
        return DicePolicy(threshold)
    if name == "variability":
        return VariabilityPolicy(threshold)
    if name == "area":
        return AreaPolicy(threshold)
    raise NanoscopyError(f"The policy must be one of {', '.join(POLICIES)}; got {name!r}.")


def calibrated_threshold(policy: str, unchanged_scores, false_trigger_rate: float = 0.02) -> float:
    """The threshold that triggers on at most ``false_trigger_rate`` of frames where nothing changed.

    It is the most sensitive such threshold (the highest for dice, the lowest for
    variability and area): any more sensitive one would trigger on more of these frames.
    """
    if policy not in POLICIES:
        raise NanoscopyError(f"The policy must be one of {', '.join(POLICIES)}; got {policy!r}.")
    scores = np.sort(np.asarray([s for s in unchanged_scores if s is not None], dtype=float))
    if scores.size == 0:
        raise NanoscopyError("Calibration needs the scores of at least one frame where nothing changed.")
    if not 0 <= false_trigger_rate < 1:
        raise NanoscopyError(f"The false-trigger rate must be from 0 to 1; got {false_trigger_rate!r}.")
    allowed = int(np.floor(false_trigger_rate * scores.size))  # frames that may trigger
    if policy == "dice":  # trigger when score < threshold: at most `allowed` scores below it
        return float(scores[allowed])
    return float(scores[scores.size - 1 - allowed])  # variability, area: trigger when score > threshold


def _checked_outputs(outputs) -> np.ndarray:
    array = np.asarray(outputs, dtype=np.float32)
    if array.ndim != 3 or array.shape[0] < 2:
        raise NanoscopyError(
            f"A policy decides from (samples, Y, X) segmentation outputs of at least 2 samples; got shape {array.shape}."
        )
    return array
