import numpy as np
import pytest
import tifffile

from napari_nanoscopy import io
from napari_nanoscopy.errors import NanoscopyError
from napari_nanoscopy.io import ImageData, atomic_output, read_image, write_image

PROVENANCE = {"model": "tagan-actin", "version": 2, "mc_samples": 10, "tiles": [256, 256]}


def random_data(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return (rng.standard_normal(shape) * 100).astype(dtype)
    if np.dtype(dtype).kind == "b":
        return rng.random(shape) > 0.5
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


def channel_names_for(shape, axes):
    count = shape[axes.index("C")] if "C" in axes else 1
    return [f"channel {index}" for index in range(count)]


def assert_round_trip(path, data, axes, pixel_size_nm, expected_dtype=None):
    names = channel_names_for(data.shape, axes)
    write_image(
        path,
        data,
        pixel_size_nm=pixel_size_nm,
        axes=axes,
        channel_names=names,
        metadata=PROVENANCE,
    )
    image = read_image(path)

    assert isinstance(image, ImageData)
    assert image.axes == axes
    assert image.data.dtype == (expected_dtype or data.dtype)
    np.testing.assert_array_equal(image.data, data.astype(image.data.dtype))
    assert image.pixel_size_nm == pytest.approx(pixel_size_nm, rel=1e-6)
    assert image.channel_names == names
    assert image.metadata == PROVENANCE


OME_CASES = [
    ("YX", (31, 40), np.float64),
    ("CYX", (3, 31, 40), np.uint16),
    ("CYX", (1, 31, 40), np.float32),  # length-1 axis survives the round trip
    ("ZCYX", (4, 2, 31, 40), np.int32),
    ("CTYX", (2, 3, 31, 40), np.uint8),  # an order ImageJ could not store
    ("TCZYX", (2, 1, 3, 31, 40), np.int16),
]


@pytest.mark.parametrize(("axes", "shape", "dtype"), OME_CASES)
@pytest.mark.parametrize("suffix", [".ome.tif", ".ome.tiff"])
def test_ome_tiff_round_trip(tmp_path, axes, shape, dtype, suffix):
    data = random_data(shape, dtype)
    assert_round_trip(tmp_path / f"image{suffix}", data, axes, pixel_size_nm=23.456789)
    with tifffile.TiffFile(tmp_path / f"image{suffix}") as tiff:
        assert tiff.is_ome


IMAGEJ_CASES = [
    ("YX", (31, 40), np.float32),
    ("ZYX", (5, 31, 40), np.uint16),
    ("CZYX", (2, 5, 31, 40), np.uint8),  # not ImageJ's TZCYX order: restored on reading
    ("TCYX", (1, 2, 31, 40), np.uint16),
]


@pytest.mark.parametrize(("axes", "shape", "dtype"), IMAGEJ_CASES)
def test_imagej_tiff_round_trip(tmp_path, axes, shape, dtype):
    data = random_data(shape, dtype)
    assert_round_trip(tmp_path / "image.tif", data, axes, pixel_size_nm=17.3)
    with tifffile.TiffFile(tmp_path / "image.tif") as tiff:
        assert tiff.is_imagej
        assert tiff.imagej_metadata["unit"] == "um"


def test_float64_is_stored_as_float32_in_imagej_tiff(tmp_path):
    data = random_data((31, 40), np.float64)
    assert_round_trip(tmp_path / "image.tiff", data, "YX", 20.0, expected_dtype=np.float32)


@pytest.mark.parametrize("dtype", [np.int32, np.uint32, np.int64, np.int8, np.float16, bool])
def test_dtypes_imagej_cannot_hold_round_trip_as_plain_tiff(tmp_path, dtype):
    data = random_data((3, 31, 40), dtype)
    assert_round_trip(tmp_path / "image.tif", data, "TYX", pixel_size_nm=42.5)
    with tifffile.TiffFile(tmp_path / "image.tif") as tiff:
        assert not tiff.is_imagej


def test_big_endian_data_and_overwriting(tmp_path):
    path = tmp_path / "image.tif"
    write_image(path, np.zeros((8, 8), np.uint8))
    data = random_data((8, 8), np.uint16).astype(">u2")
    write_image(path, data, pixel_size_nm=20)
    image = read_image(path)
    assert image.data.dtype == np.uint16
    np.testing.assert_array_equal(image.data, data)
    assert list(tmp_path.iterdir()) == [path]


def test_provenance_tag_of_another_program_is_ignored(tmp_path):
    path = tmp_path / "foreign.tif"
    foreign_tag = (65417, "s", 0, "some other program's data", True)
    tifffile.imwrite(path, random_data((8, 8), np.uint8), extratags=[foreign_tag])
    with pytest.warns(UserWarning, match="not written by napari-nanoscopy"):
        image = read_image(path)
    assert image.metadata == {}


def test_write_without_optional_information(tmp_path):
    data = random_data((3, 31, 40), np.uint16)
    for name in ("plain.tif", "plain.ome.tif"):
        write_image(tmp_path / name, data)
        image = read_image(tmp_path / name)
        assert image.axes == "ZYX"
        assert image.pixel_size_nm is None
        assert image.channel_names is None
        assert image.metadata == {}
        np.testing.assert_array_equal(image.data, data)


def test_reads_ome_tiff_with_nanometre_unit_written_by_tifffile(tmp_path):
    path = tmp_path / "foreign.ome.tif"
    data = random_data((2, 1, 31, 40), np.uint16)
    tifffile.imwrite(
        path,
        data,
        ome=True,
        photometric="minisblack",
        metadata={
            "axes": "CZYX",
            "PhysicalSizeX": 35.0,
            "PhysicalSizeXUnit": "nm",
            "PhysicalSizeY": 35.0,
            "PhysicalSizeYUnit": "nm",
            "Channel": {"Name": ["STED", "confocal"]},
        },
    )
    image = read_image(path)

    assert image.pixel_size_nm == pytest.approx(35.0, rel=1e-6)
    assert image.axes == "CYX"  # the length-1 Z of a foreign file is squeezed
    np.testing.assert_array_equal(image.data, data[:, 0])
    assert image.channel_names == ["STED", "confocal"]
    assert image.metadata == {}


@pytest.mark.parametrize(
    ("size", "unit", "expected_nm"),
    [(0.02, None, 20.0), (2e-5, "mm", 20.0), (2e-8, "m", 20.0), (200.0, "\u00c5", 20.0)],
)
def test_reads_ome_physical_size_units(tmp_path, size, unit, expected_nm):
    path = tmp_path / "foreign.ome.tif"
    metadata = {"axes": "YX", "PhysicalSizeX": size, "PhysicalSizeY": size}
    if unit is not None:
        metadata.update(PhysicalSizeXUnit=unit, PhysicalSizeYUnit=unit)
    tifffile.imwrite(path, random_data((16, 16), np.uint8), ome=True, metadata=metadata)
    assert read_image(path).pixel_size_nm == pytest.approx(expected_nm, rel=1e-6)


@pytest.mark.parametrize("unit", ["micron", "um", "\\u00B5m"])
def test_reads_imagej_tiff_with_micron_unit_written_by_tifffile(tmp_path, unit):
    path = tmp_path / "foreign.tif"
    data = random_data((4, 31, 40), np.float32)
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(1 / 0.025, 1 / 0.025),
        metadata={"axes": "TYX", "unit": unit},
    )
    image = read_image(path)

    assert image.pixel_size_nm == pytest.approx(25.0, rel=1e-6)
    assert image.axes == "TYX"
    np.testing.assert_array_equal(image.data, data)


def test_reads_imagej_tiff_in_nanometres(tmp_path):
    path = tmp_path / "foreign.tif"
    tifffile.imwrite(
        path,
        random_data((31, 40), np.uint16),
        imagej=True,
        resolution=(0.05, 0.05),
        metadata={"unit": "nm"},
    )
    assert read_image(path).pixel_size_nm == pytest.approx(20.0, rel=1e-6)


def test_plain_tiff_has_no_pixel_size_and_unknown_stack_reads_as_z(tmp_path):
    path = tmp_path / "plain.tif"
    data = random_data((3, 31, 40), np.uint16)
    tifffile.imwrite(path, data, photometric="minisblack", metadata=None)  # no axes information
    image = read_image(path)

    assert image.pixel_size_nm is None
    assert image.axes == "ZYX"
    assert image.channel_names is None
    np.testing.assert_array_equal(image.data, data)


def test_anisotropic_pixels_raise(tmp_path):
    ome_path = tmp_path / "anisotropic.ome.tif"
    tifffile.imwrite(
        ome_path,
        random_data((16, 16), np.uint8),
        ome=True,
        metadata={"axes": "YX", "PhysicalSizeX": 0.02, "PhysicalSizeY": 0.03},
    )
    imagej_path = tmp_path / "anisotropic.tif"
    tifffile.imwrite(
        imagej_path,
        random_data((16, 16), np.uint8),
        imagej=True,
        resolution=(50, 40),
        metadata={"unit": "um"},
    )
    for path in (ome_path, imagej_path):
        with pytest.raises(NanoscopyError, match="anisotropic.*resample"):
            read_image(path)


def test_pixel_sizes_within_one_percent_count_as_square(tmp_path):
    path = tmp_path / "almost_square.ome.tif"
    tifffile.imwrite(
        path,
        random_data((16, 16), np.uint8),
        ome=True,
        metadata={"axes": "YX", "PhysicalSizeX": 0.02, "PhysicalSizeY": 0.0201},
    )
    assert read_image(path).pixel_size_nm == pytest.approx(20.0)


def test_read_errors_name_the_path(tmp_path):
    missing = tmp_path / "missing.tif"
    with pytest.raises(NanoscopyError, match="missing.tif.*does not exist"):
        read_image(missing)

    not_tiff = tmp_path / "image.png"
    not_tiff.write_bytes(b"\x89PNG")
    with pytest.raises(NanoscopyError, match="image.png"):
        read_image(not_tiff)

    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"not a tiff at all" * 10)
    with pytest.raises(NanoscopyError, match="garbage.tif"):
        read_image(garbage)


def test_write_errors(tmp_path):
    data = random_data((31, 40), np.uint16)
    with pytest.raises(NanoscopyError, match="suffix"):
        write_image(tmp_path / "image.png", data)
    with pytest.raises(NanoscopyError, match="axes"):
        write_image(tmp_path / "image.tif", data, axes="XY")
    with pytest.raises(NanoscopyError, match="axes"):
        write_image(tmp_path / "image.tif", data[np.newaxis, np.newaxis])
    with pytest.raises(NanoscopyError, match="pixel_size_nm"):
        write_image(tmp_path / "image.tif", data, pixel_size_nm=-1)
    with pytest.raises(NanoscopyError, match="channel_names"):
        write_image(
            tmp_path / "image.ome.tif", np.stack([data, data]), axes="CYX", channel_names=["a"]
        )
    with pytest.raises(NanoscopyError, match="JSON"):
        write_image(tmp_path / "image.tif", data, metadata={"array": np.zeros(2)})
    with pytest.raises(NanoscopyError, match="OME-TIFF cannot store int64"):
        write_image(tmp_path / "labels.ome.tif", data.astype(np.int64))
    with pytest.raises(NanoscopyError, match="folder"):
        write_image(tmp_path / "no_such_folder" / "image.tif", data)
    assert list(tmp_path.iterdir()) == []


def test_object_array_write_leaves_no_file(tmp_path):
    data = np.empty((4, 4), dtype=object)
    with pytest.raises(NanoscopyError, match="image.tif"):
        write_image(tmp_path / "image.tif", data)
    assert list(tmp_path.iterdir()) == []


def test_write_failing_midway_leaves_no_file(tmp_path, monkeypatch):
    def write_half_then_fail(path, data, **kwargs):
        with open(path, "wb") as partial:
            partial.write(b"II*\x00partial")
        raise OSError("disk full")

    monkeypatch.setattr(io.tifffile, "imwrite", write_half_then_fail)
    with pytest.raises(NanoscopyError, match="disk full"):
        write_image(tmp_path / "image.ome.tif", random_data((8, 8), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_moves_the_file_into_place_on_success(tmp_path):
    target = tmp_path / "result.tif"
    with atomic_output(target) as temporary:
        assert temporary.parent == tmp_path
        assert temporary != target
        temporary.write_bytes(b"complete")
        assert not target.exists()
    assert target.read_bytes() == b"complete"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_output_leaves_nothing_behind_on_error(tmp_path):
    target = tmp_path / "result.tif"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_output(target) as temporary:
            temporary.write_bytes(b"half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_keeps_an_existing_file_on_error(tmp_path):
    target = tmp_path / "result.tif"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as temporary:
            temporary.write_bytes(b"half")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"previous"
    assert list(tmp_path.iterdir()) == [target]
