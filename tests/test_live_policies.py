"""The dice and variability triggers on segmentations of a simulated remodelling and a static control."""

import numpy as np
import pytest

from napari_nanoscopy.errors import NanoscopyError
from napari_nanoscopy.live.policies import (
    AreaPolicy,
    DicePolicy,
    VariabilityPolicy,
    calibrated_threshold,
    make_policy,
)
from napari_nanoscopy.simulation import factin_series

THRESHOLD = -0.5294  # U-Net-Live's binarisation (tanh scale)


def _outputs(mask, rng, n=10, flip=0.02):
    """N segmentation outputs (tanh scale) of a fibre mask, each with a few pixels flipped."""
    stack = np.repeat(np.where(mask, 0.8, -0.9)[None], n, axis=0)
    flips = rng.random(stack.shape) < flip
    return np.where(flips, -stack, stack).astype(np.float32)


def _run(policy, series, rng):
    """Run a policy over a series; a trigger makes the current ground truth the new reference."""
    reference = series.masks[0, 1].astype(bool)
    triggered = []
    for t in range(series.masks.shape[0]):
        outputs = _outputs(series.masks[t, 1].astype(bool), rng, flip=0.005)
        decision = policy.decide(outputs, THRESHOLD, reference)
        if decision.trigger:
            triggered.append(t)
            reference = series.masks[t, 1].astype(bool)
    return triggered


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dice_triggers_on_remodelling_and_stays_quiet_on_a_static_sample(seed):
    rng = np.random.default_rng(seed)
    stimulated = factin_series(8, 3, seed=seed, size=128)
    control = factin_series(8, 8, seed=seed, size=128)
    policy = DicePolicy()  # the paper's 0.5
    triggered = _run(policy, stimulated, rng)
    assert triggered and 3 <= triggered[0] <= 4  # within one frame of the onset
    assert len(triggered) <= 3  # growing fibres re-trigger only when they changed by half
    assert _run(policy, control, rng) == []


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_area_triggers_on_remodelling_and_stays_quiet_on_a_static_sample(seed):
    rng = np.random.default_rng(seed)
    stimulated = factin_series(8, 3, seed=seed, size=128)
    control = factin_series(8, 8, seed=seed, size=128)
    policy = AreaPolicy(0.1)
    triggered = _run(policy, stimulated, rng)
    assert triggered and 3 <= triggered[0] <= 4
    assert len(triggered) <= 4
    assert _run(policy, control, rng) == []


def test_area_scores_the_relative_change_of_the_segmented_area():
    rng = np.random.default_rng(0)
    mask = np.zeros((64, 64), bool)
    mask[10:20, 5:25] = True  # 200 px
    grown = mask.copy()
    grown[20:30, 5:25] = True  # 400 px
    decision = AreaPolicy().decide(_outputs(grown, rng, flip=0.0), THRESHOLD, mask)
    assert decision.score == pytest.approx(200 / 600) and decision.trigger  # 1/3 > 0.2
    moved = np.roll(mask, 30, axis=1)  # the same area elsewhere: no change of area (Dice would be 0)
    assert AreaPolicy().decide(_outputs(moved, rng, flip=0.0), THRESHOLD, mask).score == 0.0
    empty = np.zeros((64, 64), bool)
    assert AreaPolicy().decide(_outputs(empty, rng, flip=0.0), THRESHOLD, empty).score == 0.0
    assert AreaPolicy().decide(_outputs(mask, rng, flip=0.0), THRESHOLD, empty).score == 1.0
    assert AreaPolicy().decide(_outputs(mask, rng), THRESHOLD, None).trigger  # no reference yet


def test_dice_without_a_reference_always_triggers_and_scores_the_mean_segmentation():
    rng = np.random.default_rng(0)
    mask = np.zeros((32, 32), bool)
    mask[10:20, 5:25] = True
    decision = DicePolicy().decide(_outputs(mask, rng), THRESHOLD, None)
    assert decision.trigger and decision.score is None
    half = mask.copy()
    half[15:] = False
    decision = DicePolicy().decide(_outputs(mask, rng, flip=0.0), THRESHOLD, half)
    assert decision.score == pytest.approx(2 * 100 / (200 + 100))
    assert not decision.trigger and decision.threshold == 0.5
    stray = np.zeros((10, 32, 32), np.float32) - 0.9
    stray[:, 3, 3] = 0.8  # one pixel of "fibre" against an empty reference
    assert not DicePolicy().decide(stray, THRESHOLD, np.zeros((32, 32), bool)).trigger  # below 0.2 % of the ROI
    assert DicePolicy(min_fraction=0.0).decide(stray, THRESHOLD, np.zeros((32, 32), bool)).score == 0.0
    with pytest.raises(NanoscopyError, match="same ROI"):
        DicePolicy().decide(_outputs(mask, rng), THRESHOLD, np.zeros((8, 8), bool))


def test_variability_triggers_when_the_samples_disagree_on_most_of_the_foreground():
    rng = np.random.default_rng(3)
    mask = np.zeros((64, 64), bool)
    mask[20:40, 10:50] = True
    consistent = VariabilityPolicy().decide(_outputs(mask, rng), THRESHOLD, None)
    assert not consistent.trigger and consistent.score < 0.1
    # a new, uncertain structure: each sample sees each of its pixels with probability 1/2
    new = np.zeros((64, 64), bool)
    new[45:60, 5:60] = True
    outputs = _outputs(mask, rng)
    outputs[:, new] = np.where(rng.random((10, int(new.sum()))) < 0.5, 0.8, -0.9)
    uncertain = VariabilityPolicy(0.3).decide(outputs, THRESHOLD, None)
    high_share = uncertain.maps["high_variability"][new].mean()
    assert high_share > 0.8
    assert uncertain.score == pytest.approx(uncertain.maps["high_variability"].sum() / (uncertain.maps["votes"] > 0).sum())
    assert uncertain.trigger and uncertain.score > 0.3
    assert not VariabilityPolicy(0.5).decide(outputs, THRESHOLD, None).trigger or uncertain.score > 0.5


def test_policy_names_and_thresholds_are_checked():
    assert make_policy("variability").threshold == 0.5
    assert isinstance(make_policy("area", 0.1), AreaPolicy) and make_policy("area").threshold == 0.2
    with pytest.raises(NanoscopyError, match="dice, variability, area"):
        make_policy("random")
    with pytest.raises(NanoscopyError, match="from 0 to 1"):
        make_policy("dice", -0.1)
    with pytest.raises(NanoscopyError, match="at least 2 samples"):
        DicePolicy().decide(np.zeros((1, 4, 4)), THRESHOLD, None)


def test_a_calibrated_threshold_triggers_on_at_most_the_allowed_share_of_unchanged_frames():
    unchanged = np.linspace(0.60, 0.89, 30)  # e.g. Dice of frames where nothing changed
    threshold = calibrated_threshold("dice", unchanged, 0.1)
    assert threshold == pytest.approx(unchanged[3])  # the 3 lowest (10 %) trigger, the 4th does not
    assert np.count_nonzero(unchanged < threshold) == 3
    assert calibrated_threshold("dice", unchanged, 0.0) == pytest.approx(0.60)  # nothing below the lowest
    # variability triggers above: the 3 highest may trigger
    threshold = calibrated_threshold("variability", unchanged, 0.1)
    assert np.count_nonzero(unchanged > threshold) == 3
    rng = np.random.default_rng(0)
    unchanged, changed = rng.normal(0.8, 0.03, 200), rng.normal(0.6, 0.03, 50)
    threshold = calibrated_threshold("dice", unchanged, 0.02)
    assert DicePolicy(threshold).threshold == threshold and np.mean(changed < threshold) > 0.95
    with pytest.raises(NanoscopyError, match="at least one frame"):
        calibrated_threshold("dice", [None])
    with pytest.raises(NanoscopyError, match="false-trigger rate"):
        calibrated_threshold("dice", unchanged, 1.5)
    with pytest.raises(NanoscopyError, match="dice, variability, area"):
        calibrated_threshold("size", unchanged)
