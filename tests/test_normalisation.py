"""The public normaliser: from a card's specs, fitted to a plane, applied and inverted; and the
same fitted statistics for an in-memory restoration and a chunked one."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import napari_nanoscopy.normalisation as normalisation
from napari_nanoscopy import NanoscopyError, Restorer, load_model
from napari_nanoscopy.chunked import restore_chunked
from napari_nanoscopy.normalisation import Normaliser, fit_affine, statistics_sample

from conftest import make_card


def make_frame(shape=(1, 120, 140), seed=0):
    rng = np.random.default_rng(seed)
    return rng.gamma(2.0, 300.0, size=shape).astype(np.float32) + 50.0


INPUT_SPECS = {
    "percentile": {"mode": "percentile", "low": 2.0, "high": 99.0, "range": [-1.0, 1.0]},
    "minmax": {"mode": "minmax", "range": [0.0, 1.0]},
    "meanstd": {"mode": "meanstd", "eps": 1e-6, "range": [0.0, 1.0]},
    "fixed": {"mode": "fixed", "min": 0.0, "max": 4000.0, "range": [-1.0, 1.0]},
    "none": {"mode": "none"},
}


@pytest.mark.parametrize("mode", list(INPUT_SPECS))
def test_fit_apply_invert_round_trip(mode):
    frame = make_frame()
    card = make_card("l2l", normalization={"input": INPUT_SPECS[mode], "output": {"mode": "input"}})
    fitted = Normaliser.from_card(card).fit(frame)
    model_input = fitted.apply(frame)
    assert model_input.dtype == np.float32 and model_input.shape == frame.shape
    np.testing.assert_allclose(fitted.invert(model_input), frame, rtol=1e-5)
    assert fitted.depends_on_data() == (mode not in ("fixed", "none"))


def test_each_mode_maps_its_statistics_to_the_range():
    frame = make_frame()
    plane = frame[0]
    expected = {
        "percentile": (np.percentile(plane, [2.0, 99.0]), (-1.0, 1.0)),
        "minmax": ((plane.min(), plane.max()), (0.0, 1.0)),
        "meanstd": ((plane.mean(dtype=np.float64), plane.mean(dtype=np.float64) + plane.std(dtype=np.float64)), (0.0, 1.0)),
        "fixed": ((0.0, 4000.0), (-1.0, 1.0)),
    }
    for mode, (intensities, targets) in expected.items():
        affine = fit_affine(plane, INPUT_SPECS[mode])
        np.testing.assert_allclose(affine.apply(np.asarray(intensities, dtype=np.float32)), targets, atol=1e-4)
    assert fit_affine(plane, INPUT_SPECS["none"]) == normalisation.IDENTITY


def test_per_channel_specs_and_range_output():
    frame = np.stack([make_frame(seed=1)[0], make_frame(seed=2)[0] * 10])
    card = make_card("l2l", generator=dict(in_channels=2),
                     normalization={"input": [INPUT_SPECS["minmax"], INPUT_SPECS["none"]],
                                    "output": {"mode": "range", "range": [-1.0, 1.0]}})
    fitted = Normaliser.from_card(card).fit(frame)
    model_input = fitted.apply(frame)
    assert model_input[0].min() == pytest.approx(0.0, abs=1e-6) and model_input[0].max() == pytest.approx(1.0)
    np.testing.assert_array_equal(model_input[1], frame[1])  # "none" leaves the channel as it is
    np.testing.assert_allclose(fitted.invert(np.array([-1.0, 0.0, 1.0], dtype=np.float32)), [0.0, 0.5, 1.0])
    assert pickle.loads(pickle.dumps(fitted)) == fitted  # plain data, as dask workers receive it


def test_misuse_and_constant_planes_are_refused_with_a_remedy():
    card = make_card("l2l")
    normaliser = Normaliser.from_card(card)
    with pytest.raises(NanoscopyError, match=r"has not been fitted; call its fit\(\)"):
        normaliser.apply(make_frame())
    with pytest.raises(NanoscopyError, match="has 1 input channel\\(s\\) but the plane has 2"):
        normaliser.fit(make_frame((2, 40, 40)))
    flat = np.full((2, 1, 40, 40), 7.0, dtype=np.float32)
    with pytest.raises(NanoscopyError, match="^The image is constant \\(every pixel is 7\\)"):
        normaliser.fit(flat[0])
    with pytest.raises(NanoscopyError, match="^Channel 0 of plane 3 is constant"):
        normaliser.fit(flat[1], plane=3)


def test_statistics_sample_reads_only_the_subsample(monkeypatch):
    monkeypatch.setattr(normalisation, "PERCENTILE_SAMPLE", 100)
    stack = np.arange(2 * 3 * 50 * 40, dtype=np.float32).reshape(2, 3, 50, 40)
    reads = []

    class Lazy:
        shape, dtype = stack.shape, stack.dtype

        def __getitem__(self, index):
            reads.append(index)
            return stack[index]

    sample = statistics_sample(Lazy(), (1,))
    step = normalisation.statistics_step(50, 40)  # ceil(sqrt(2000 / 100)) = 5
    assert step == 5
    np.testing.assert_array_equal(sample, stack[1, :, ::5, ::5])
    assert reads == [(1, slice(None), slice(None, None, 5), slice(None, None, 5))]


def test_restore_refuses_an_unfitted_or_mismatched_normaliser(packages_dir):
    package = load_model(packages_dir / "l2l")
    restorer = Restorer(package, device="cpu")
    image = make_frame((64, 64))
    with pytest.raises(NanoscopyError, match="must be fitted to 1 input channel"):
        restorer.restore(image, normaliser=restorer.normaliser)
    two = Normaliser((INPUT_SPECS["minmax"],) * 2).fit(make_frame((2, 64, 64)))
    with pytest.raises(NanoscopyError, match="must be fitted to 1 input channel"):
        restorer.restore(image, normaliser=two)


def test_chunked_and_in_memory_runs_fit_the_same_statistics(packages_dir, monkeypatch):
    """Each plane is fitted once, from the same regular subsample, in memory and block by block;
    every block of a chunked run gets its plane's fitted normaliser, not a rewritten card."""
    monkeypatch.setattr(normalisation, "PERCENTILE_SAMPLE", 1 << 10)  # a 200x230 plane is subsampled
    package = load_model(packages_dir / "l2l")
    rng = np.random.default_rng(3)
    image = rng.poisson(300.0, size=(2, 200, 230)).astype(np.uint16)
    image[1] *= 3

    fits = []
    original_fit = Normaliser.fit

    def recording_fit(self, frame, *, plane=0):
        fitted = original_fit(self, frame, plane=plane)
        fits.append(fitted.affines)
        return fitted

    monkeypatch.setattr(Normaliser, "fit", recording_fit)
    restorer = Restorer(package, device="cpu")
    expected = restorer.restore(image, samples=1).mean
    in_memory, fits[:] = list(fits), []

    given = []
    original_restore = Restorer.restore

    def recording_restore(self, region, **options):
        given.append(options["normaliser"])
        assert self.card is package.card  # the card is never swapped
        return original_restore(self, region, **options)

    monkeypatch.setattr(Restorer, "restore", recording_restore)
    result = restore_chunked(package, image, block=96, samples=1, device="cpu")
    assert len(in_memory) == 2 and fits == in_memory  # the same affines, plane by plane
    assert len(given) == result.blocks == 2 * 3 * 3
    assert {normaliser.affines for normaliser in given} == set(in_memory)
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(result.mean, expected, rtol=1e-5, atol=1e-5 * scale)


def test_a_flat_block_of_a_varying_image_is_restored(packages_dir):
    """A block normalised with its plane's statistics may be constant: it is not refused as a broken model."""
    package = load_model(packages_dir / "l2l")
    image = make_frame((1, 200, 200))[0]
    image[:96, :96] = 500.0  # the first block's core and most of its margin
    result = restore_chunked(package, image, block=96, samples=1, device="cpu")
    assert np.isfinite(result.mean).all()
