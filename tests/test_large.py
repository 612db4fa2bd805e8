"""Out-of-core restoration (blocks with halos, OME-Zarr, dask arrays), many files with one progress
bar, and the same restoration on a dask.distributed cluster over loopback."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

from napari_nanoscopy import NanoscopyError, Restorer, load_model
from napari_nanoscopy.cli import main
from napari_nanoscopy.network_runtime import bf16_problem as _bf16_problem
from napari_nanoscopy.io import read_image, write_image
from napari_nanoscopy.blocks import output_shape
from napari_nanoscopy.chunked import restore_chunked
from napari_nanoscopy.lazy import restore_dask
from napari_nanoscopy.ome_zarr import OmeZarrWriter, open_ome_zarr

zarr = pytest.importorskip("zarr")


def make_image(shape, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:shape[-2], 0:shape[-1]]
    base = 200 + 80 * np.sin(x / 7.0) * np.cos(y / 11.0) + 60 * np.exp(-((x - 90) ** 2 + (y - 70) ** 2) / 500.0)
    return rng.poisson(np.broadcast_to(base, shape)).astype(np.uint16)


class CountingSource:
    """An array proxy that records every read, to check that reads stay block-sized."""

    def __init__(self, array):
        self.array, self.shape, self.dtype = array, array.shape, array.dtype
        self.reads: list[int] = []

    def __getitem__(self, index):
        data = np.asarray(self.array[index])
        self.reads.append(data.size)
        return data


@pytest.mark.parametrize("name", ["tagan", "l2l"])
def test_chunked_equals_in_memory(packages_dir, name):
    package = load_model(packages_dir / name)
    image = make_image((2, 200, 230))  # a stack of two planes, blocks that do not divide it
    expected = Restorer(package, device="cpu").restore(image, samples=1).mean
    result = restore_chunked(package, image, block=96, samples=1, device="cpu")
    assert result.blocks == 2 * 3 * 3
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(result.mean, expected, rtol=1e-5, atol=1e-5 * scale)


bf16_here = _bf16_problem(torch.device("cpu")) is None


@pytest.mark.skipif(not bf16_here, reason="this CPU has no native bfloat16")
def test_chunked_and_lazy_bf16_equal_in_memory_bf16(packages_dir):
    """The precision of a Restorer passed in (or given) reaches every block."""
    package = load_model(packages_dir / "l2l")
    image = make_image((200, 230))
    bf16 = Restorer(package, device="cpu", precision="bf16")
    expected = bf16.restore(image, samples=1).mean
    exact = Restorer(package, device="cpu").restore(image, samples=1).mean
    chunked = restore_chunked(bf16, image, block=96, samples=1, device="cpu")
    lazy = restore_dask(package, image, block=96, samples=1, device="cpu", precision="bf16").compute()
    assert chunked.provenance["precision"] == "bf16"
    scale = float(np.abs(expected).max())
    for got in (chunked.mean, lazy):
        # blocks differ from one window only where bfloat16 rounds a halo's sums differently
        assert np.abs(got - expected).max() <= 0.01 * scale
        assert np.abs(got - exact).max() > 1e-5 * scale  # bfloat16 did run, not float32
    with pytest.raises(NanoscopyError, match="precision must be one of"):
        restore_chunked(package, image, block=96, samples=1, device="cpu", precision="fp16")


def test_ome_zarr_in_and_out_and_reads_stay_block_sized(packages_dir, tmp_path):
    package = load_model(packages_dir / "tagan")
    image = make_image((256, 320))
    writer = OmeZarrWriter(tmp_path / "in.zarr", image.shape, "YX", chunks=(64, 64), dtype=image.dtype,
                           pixel_size_nm=20.0, metadata={"note": "test"})
    writer.array[:] = image
    assert not (tmp_path / "in.zarr").exists()  # nothing appears before commit
    writer.commit()
    opened = open_ome_zarr(tmp_path / "in.zarr")
    assert opened.axes == "YX" and opened.pixel_size_nm == pytest.approx(20.0) and opened.metadata == {"note": "test"}

    source = CountingSource(opened.array)
    out = OmeZarrWriter(tmp_path / "out.zarr", image.shape, "YX", chunks=(128, 128), pixel_size_nm=20.0)
    result = restore_chunked(package, source, out.array, pixel_size_nm=20.0, block=128, samples=1, device="cpu")
    out.commit()
    expected = Restorer(package, device="cpu").restore(image, samples=1).mean
    np.testing.assert_allclose(np.asarray(open_ome_zarr(tmp_path / "out.zarr").array), expected, atol=1e-5)
    region = (128 + 2 * result.margin) ** 2
    block_reads = source.reads[1:]  # the first read is the statistics subsample
    assert len(block_reads) == result.blocks and max(block_reads) <= region


def test_peak_memory_does_not_grow_with_the_image(packages_dir, tmp_path, monkeypatch):
    """tracemalloc peak of a chunked zarr-to-zarr restoration: a 4x larger image, about the same peak."""
    import napari_nanoscopy.normalisation as normalisation

    monkeypatch.setattr(normalisation, "PERCENTILE_SAMPLE", 1 << 14)  # statistics from a small subsample
    package = load_model(packages_dir / "l2l")
    peaks = []
    for side in (128, 320, 640):  # the first run (caches, lazy imports) is a warm-up
        image = make_image((side, side))
        source = zarr.open_array(str(tmp_path / f"src{side}.zarr"), mode="w", shape=image.shape, chunks=(128, 128),
                                 dtype=image.dtype, zarr_format=2)
        source[:] = image
        sink = zarr.open_array(str(tmp_path / f"dst{side}.zarr"), mode="w", shape=image.shape, chunks=(128, 128),
                               dtype="float32", zarr_format=2)
        del image
        if side == 128:  # warm-up, untraced (tracemalloc slows every allocation down)
            restore_chunked(package, source, sink, block=128, device="cpu")
            continue
        tracemalloc.start()
        restore_chunked(package, source, sink, block=128, device="cpu")
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    # 640 px has 4x the pixels of 320 px (whose middle block already has full margins); a
    # whole-image restoration would peak 4x higher, block by block the peak stays put
    assert peaks[1] < 1.25 * peaks[0], peaks


def test_dask_array_in_lazy_dask_array_out(packages_dir):
    import dask.array as da

    package = load_model(packages_dir / "tagan")
    image = make_image((200, 232))
    lazy = restore_dask(package, da.from_array(image, chunks=(64, 64)), block=64, samples=1, device="cpu")
    assert isinstance(lazy, da.Array) and lazy.shape == image.shape
    expected = Restorer(package, device="cpu").restore(image, samples=1).mean
    np.testing.assert_allclose(lazy[:64, :64].compute(), expected[:64, :64], atol=1e-5)  # one block, on demand
    np.testing.assert_allclose(lazy.compute(), expected, atol=1e-5)


def test_monte_carlo_blocks_are_seeded_and_std_written(packages_dir):
    package = load_model(packages_dir / "tagan")
    image = make_image((192, 192))
    runs = []
    for _ in range(2):
        mean, std = np.zeros(image.shape, np.float32), np.zeros(image.shape, np.float32)
        restore_chunked(package, image, mean, std_out=std, samples=3, seed=7, block=64, device="cpu")
        runs.append((mean, std))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert runs[0][1].mean() > 1e-4  # dropout gives a spread


def test_errors(packages_dir, tmp_path):
    package = load_model(packages_dir / "tagan")
    with pytest.raises(NanoscopyError, match="resample"):
        restore_chunked(package, make_image((128, 128)), pixel_size_nm=40.0)
    bad = make_image((128, 128)).astype(np.float32)
    bad[5, 5] = np.nan
    with pytest.raises(NanoscopyError, match="NaN"):
        restore_chunked(package, bad)
    with pytest.raises(NanoscopyError, match="shape"):
        restore_chunked(package, make_image((128, 128)), np.zeros((64, 64), np.float32))
    (tmp_path / "exists.zarr").mkdir()
    with pytest.raises(NanoscopyError, match="already exists"):
        OmeZarrWriter(tmp_path / "exists.zarr", (64, 64), "YX", chunks=(64, 64))
    assert output_shape(package, (3, 100, 90)) == (3, 100, 90)


def test_cli_folder_glob_and_zarr(packages_dir, tmp_path, monkeypatch):
    import napari_nanoscopy.cli as cli

    bars = []

    class Recorder:
        def __init__(self, label):
            self.label, self.calls = label, []
            bars.append(self)

        def __call__(self, done, total):
            self.calls.append((done, total))

    monkeypatch.setattr(cli, "_Progress", Recorder)
    folder = tmp_path / "many"
    folder.mkdir()
    images = [make_image((96, 112), seed=k) for k in range(3)]
    for k, image in enumerate(images):
        write_image(folder / f"img{k}.tif", image, pixel_size_nm=20.0, axes="YX")
    model = str(packages_dir / "l2l")
    assert main(["restore", str(folder), str(tmp_path / "out"), "--model", model]) == 0
    assert len(bars) == 1 and bars[0].label == "restoring 3 images"  # one progress bar for all files
    fractions = [done / total for done, total in bars[0].calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len({t for _, t in bars[0].calls}) == 1
    restorer = Restorer(model, device="cpu")
    for k, image in enumerate(images):
        written = read_image(tmp_path / "out" / f"img{k}_restored.ome.tif")
        np.testing.assert_allclose(written.data, restorer.restore(image, pixel_size_nm=20.0).mean, rtol=1e-6)
        assert written.pixel_size_nm == pytest.approx(20.0)
    # a glob, and existing outputs are refused before anything runs
    assert main(["restore", str(folder / "img[01].tif"), str(tmp_path / "out"), "--model", model]) == 2
    assert main(["restore", str(folder / "img[01].tif"), str(tmp_path / "out2"), "--model", model]) == 0
    assert sorted(p.name for p in (tmp_path / "out2").iterdir()) == ["img0_restored.ome.tif", "img1_restored.ome.tif"]

    # TIFF in (read strip by strip, never whole), OME-Zarr out, chunk by chunk
    import napari_nanoscopy.io as nio

    def whole_read(*args, **kwargs):
        raise AssertionError("the TIFF was read whole")

    with monkeypatch.context() as patch:
        patch.setattr(nio, "read_image", whole_read)
        assert main(["restore", str(folder / "img0.tif"), str(tmp_path / "r.zarr"), "--model", model,
                     "--block", "64"]) == 0
    restored = open_ome_zarr(tmp_path / "r.zarr")
    assert restored.pixel_size_nm == pytest.approx(20.0) and restored.metadata["chunked"] is True
    np.testing.assert_allclose(np.asarray(restored.array), restorer.restore(images[0]).mean, rtol=1e-5, atol=1e-3)
    # OME-Zarr in, OME-TIFF out
    assert main(["restore", str(tmp_path / "r.zarr"), str(tmp_path / "again.ome.tif"), "--model", model]) == 0
    assert read_image(tmp_path / "again.ome.tif").data.shape == (96, 112)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging leftovers


def test_distributed_on_loopback_equals_local(packages_dir, tmp_path):
    distributed = pytest.importorskip("distributed")
    package = load_model(packages_dir / "tagan")
    image = make_image((192, 200))
    local_mean, local_std = np.zeros(image.shape, np.float32), np.zeros(image.shape, np.float32)
    restore_chunked(package, image, local_mean, std_out=local_std, samples=3, seed=11, block=64, device="cpu")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None,
                                  protocol="tcp://", host="127.0.0.1") as cluster, distributed.Client(cluster) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        mean, std = np.zeros(image.shape, np.float32), np.zeros(image.shape, np.float32)
        result = restore_chunked(package, image, mean, std_out=std, samples=3, seed=11, block=64, device="cpu",
                                 scheduler=client)
        np.testing.assert_array_equal(mean, local_mean)
        np.testing.assert_array_equal(std, local_std)
        assert result.blocks == 12  # 3 x 4 blocks of 64 px
        # the command line with --scheduler ADDRESS
        write_image(tmp_path / "in.tif", image, pixel_size_nm=20.0, axes="YX")
        assert main(["restore", str(tmp_path / "in.tif"), str(tmp_path / "out.zarr"), "--model",
                     str(packages_dir / "tagan"), "--samples", "3", "--seed", "11", "--block", "64",
                     "--device", "cpu", "--scheduler", cluster.scheduler_address]) == 0
        np.testing.assert_array_equal(np.asarray(open_ome_zarr(tmp_path / "out.zarr").array), local_mean)

        # one image at a time on a remote worker (the live pipeline's GPU computer), pinned to one worker
        from napari_nanoscopy.remote import RemoteRestorer

        live = load_model(packages_dir / "tagan-live")
        frame = np.stack([make_image((128, 128)).astype(np.float32), -np.ones((128, 128), np.float32),
                          -np.ones((128, 128), np.float32)])
        local = Restorer(live, device="cpu").restore(frame, samples=3, seed=5, keep_samples=True)
        worker = sorted(client.scheduler_info()["workers"])[1]
        remote = RemoteRestorer(live, client, device="cpu", worker=worker)
        got = remote.restore(frame, samples=3, seed=5, keep_samples=True)
        np.testing.assert_array_equal(got.samples, local.samples)
        np.testing.assert_array_equal(got.std, local.std)
        assert got.provenance["remote_worker"] is True
        remote.close()
    import napari_nanoscopy.chunked as large

    large.CONNECT_TIMEOUT = "1s"
    try:
        with pytest.raises(NanoscopyError, match="scheduler"):
            restore_chunked(package, image, block=64, scheduler="tcp://127.0.0.1:1")
    finally:
        large.CONNECT_TIMEOUT = "10s"


def test_live_pipeline_inference_on_a_remote_worker(tmp_path, tmp_path_factory):
    """The live loop with its generator and segmenter on a loopback dask worker: same frames as local."""
    distributed = pytest.importorskip("distributed")
    import test_live

    from napari_nanoscopy.remote import use_remote_workers
    from napari_nanoscopy.live.pipeline import LivePipeline

    models = test_live.live_models.__wrapped__(tmp_path_factory)

    def run(remote):
        seen = []
        pipeline = LivePipeline(test_live.simulator(frames=2), tmp_path / ("remote" if remote else "local"),
                                test_live.settings(models), on_frame=seen.append)
        handle = use_remote_workers(pipeline, remote, device="cpu") if remote is not None else None
        try:
            pipeline.run(2)
        finally:
            pipeline.close()
            if handle is not None:
                handle.close()
        return seen

    local = run(None)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None,
                                  protocol="tcp://", host="127.0.0.1") as cluster:
        remote = run(cluster.scheduler_address)
    assert len(local) == len(remote) == 2
    for a, b in zip(local, remote):
        np.testing.assert_array_equal(a.synthetic, b.synthetic)
        np.testing.assert_array_equal(a.disparity, b.disparity)
        np.testing.assert_array_equal(a.segmentation, b.segmentation)
        assert a.decision.to_dict() == b.decision.to_dict() and a.patch == b.patch
