"""The Restorers a process keeps ready for block after block: bounded, and never shared between models."""

from __future__ import annotations

import dataclasses

from napari_nanoscopy import load_model
from napari_nanoscopy.restorer_cache import RestorerCache


def test_a_ready_restorer_is_reused_for_the_same_weights_and_settings(packages_dir):
    cache = RestorerCache(size=2)
    package = load_model(packages_dir / "l2l")
    first = cache.get(package, "cpu", "dropout")
    assert cache.get(package, "cpu", "dropout") is first
    assert cache.get(load_model(packages_dir / "l2l"), "cpu", "dropout") is first  # the same saved weights and card
    assert cache.get(package, "cpu", "train") is not first  # other settings, another Restorer


def test_the_cache_keeps_only_the_most_recently_used(packages_dir):
    cache = RestorerCache(size=2)
    l2l, tagan = load_model(packages_dir / "l2l"), load_model(packages_dir / "tagan")
    oldest = cache.get(l2l, "cpu", "dropout")
    cache.get(tagan, "cpu", "dropout")
    cache.get(l2l, "cpu", "train")
    assert len(cache) == 2
    assert cache.get(l2l, "cpu", "dropout") is not oldest  # evicted, built again


def test_unsaved_models_of_one_name_never_share_a_restorer(packages_dir):
    """Packages without a weights sha256 (never saved) are told apart by the object, not by id() or name."""
    package = load_model(packages_dir / "l2l")
    unsaved = dataclasses.replace(package, card=dataclasses.replace(package.card, weights_sha256=""))
    other = dataclasses.replace(unsaved)  # same name and card, another model object
    cache = RestorerCache()
    assert cache.get(unsaved, "cpu", "dropout").restorer.package is unsaved
    assert cache.get(other, "cpu", "dropout").restorer.package is other
    assert cache.get(unsaved, "cpu", "dropout").restorer.package is unsaved


def test_a_changed_card_with_the_same_weights_gets_its_own_restorer(packages_dir):
    package = load_model(packages_dir / "l2l")
    changed = dataclasses.replace(package, card=dataclasses.replace(package.card, default_samples=7))
    cache = RestorerCache()
    cache.get(package, "cpu", "dropout")
    assert cache.get(changed, "cpu", "dropout").restorer.card.default_samples == 7
    assert cache.get(package, "cpu", "dropout").restorer.card.default_samples == package.card.default_samples
