"""torch.compile as an opt-in restoration engine: same deterministic result as eager, seeded
Monte-Carlo samples, clear refusals where it cannot run."""

import numpy as np
import pytest
import torch

from napari_nanoscopy import NanoscopyError, Restorer
from napari_nanoscopy import inference
from napari_nanoscopy.cli import main
from napari_nanoscopy.io import write_image

compile_here = inference.compile_problem(torch.device("cpu")) is None


@pytest.mark.skipif(not compile_here, reason="no C++ compiler for torch.compile's CPU backend")
def test_compiled_restoration_matches_eager_and_seeds_its_samples(packages_dir, smooth_image):
    eager = Restorer(str(packages_dir / "tagan-task"), device="cpu")
    compiled = Restorer(eager.package, device="cpu", compile=True)
    image = smooth_image[:64, :64]
    exact, fast = eager.restore(image, samples=1), compiled.restore(image, samples=1)
    assert fast.provenance["compiled"] and not exact.provenance["compiled"]
    scale = np.abs(exact.mean).max()
    assert np.abs(fast.mean - exact.mean).max() <= 1e-4 * scale
    assert np.abs(fast.task - exact.task).max() <= 1e-4 * np.abs(exact.task).max()
    first, again = (compiled.restore(image, samples=3, seed=2, keep_samples=True) for _ in range(2))
    np.testing.assert_array_equal(first.samples, again.samples)
    assert first.std.max() > 0 and not np.array_equal(first.samples[0], first.samples[1])
    # the compiled dropout masks differ from eager ones, but they are dropout at the same rate:
    # the sample spread is of the eager one's size
    eager_std = eager.restore(image, samples=3, seed=2).std
    assert 0.3 < first.std.mean() / eager_std.mean() < 3


@pytest.mark.skipif(not compile_here, reason="no C++ compiler for torch.compile's CPU backend")
def test_chunked_restoration_keeps_the_restorers_compile(packages_dir):
    from napari_nanoscopy.chunked import restore_chunked

    eager = Restorer(str(packages_dir / "l2l"), device="cpu")
    compiled = Restorer(eager.package, device="cpu", compile=True)
    image = np.random.default_rng(0).poisson(200, (128, 128)).astype(np.float32)
    exact = restore_chunked(eager, image, block=64, samples=1, device="cpu")
    fast = restore_chunked(compiled, image, block=64, samples=1, device="cpu")
    assert fast.provenance["compiled"] and not exact.provenance["compiled"]
    assert np.abs(fast.mean - exact.mean).max() <= 1e-4 * np.abs(exact.mean).max()


def test_compile_is_refused_with_a_reason_where_it_cannot_run(packages_dir, smooth_image, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(inference, "compile_problem", lambda device: "no compiler here")
    with pytest.raises(NanoscopyError, match="no compiler here.*without compile"):
        Restorer(str(packages_dir / "l2l"), device="cpu", compile=True)
    source = tmp_path / "confocal.ome.tif"
    write_image(source, smooth_image, pixel_size_nm=20.0, axes="YX")
    out = tmp_path / "restored.ome.tif"
    assert main(["restore", str(source), str(out), "--model", str(packages_dir / "l2l"), "--compile"]) != 0
    assert "no compiler here" in capsys.readouterr().err and not out.exists()
