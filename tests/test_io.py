"""MRC/TIFF/STAR reading and writing: round trips, headers, corrupt files, no overwriting."""

import numpy as np
import pytest

from nt2c.errors import InputError
from nt2c.io import read_image, read_mrc, read_star, validate_image, write_mrc, write_star


def test_mrc_round_trip_keeps_pixel_size(tmp_path):
    data = np.random.default_rng(0).normal(size=(40, 50)).astype(np.float32)
    path = write_mrc(tmp_path / "a.mrc", data, pixel_size_A=1.34)
    back, pixel = read_mrc(path)
    np.testing.assert_array_equal(back, data)
    assert pixel == pytest.approx(1.34, rel=1e-5)
    stack = write_mrc(tmp_path / "s.mrcs", np.stack([data, data]), pixel_size_A=2.0)
    arr, _ = read_mrc(stack)
    assert arr.shape == (2, 40, 50)


def test_write_never_overwrites_by_default(tmp_path):
    data = np.zeros((8, 8), np.float32)
    path = write_mrc(tmp_path / "a.mrc", data)
    before = path.read_bytes()
    with pytest.raises(InputError, match="already exists"):
        write_mrc(path, data + 1)
    assert path.read_bytes() == before
    assert not list(tmp_path.glob("*.part"))


def test_corrupt_and_missing_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_image(tmp_path / "nope.mrc")
    junk = tmp_path / "junk.mrc"
    junk.write_bytes(b"this is not an MRC file" * 10)
    with pytest.raises(InputError, match="not a readable MRC"):
        read_mrc(junk)
    good = write_mrc(tmp_path / "good.mrc", np.ones((64, 64), np.float32))
    truncated = tmp_path / "cut.mrc"
    truncated.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(InputError):
        read_mrc(truncated)
    with pytest.raises(InputError, match="unknown image type"):
        read_image(tmp_path / "x.png")


def test_nan_and_shape_checks(tmp_path):
    data = np.ones((16, 16), np.float32)
    data[3, 3] = np.nan
    path = write_mrc(tmp_path / "nan.mrc", data)
    with pytest.raises(InputError, match="NaN"):
        read_image(path)
    with pytest.raises(InputError, match="2 dimensions"):
        validate_image(np.ones(5))
    stack = write_mrc(tmp_path / "stack.mrcs", np.ones((3, 16, 16), np.float32))
    with pytest.raises(InputError, match="not one micrograph"):
        read_image(stack)


def test_tiff(tmp_path):
    import tifffile

    data = np.arange(64 * 48, dtype=np.uint16).reshape(64, 48)
    tifffile.imwrite(tmp_path / "m.tif", data)
    image, pixel = read_image(tmp_path / "m.tif")
    assert image.dtype == np.float32 and image.shape == (64, 48) and pixel is None


def test_star_round_trip(tmp_path):
    path = write_star(tmp_path / "c.star", {"rlnCoordinateX": [1.5, 20.0], "rlnCoordinateY": [3.0, 4.25]})
    table = read_star(path)
    np.testing.assert_allclose(table["rlnCoordinateX"], [1.5, 20.0])
    np.testing.assert_allclose(table["rlnCoordinateY"], [3.0, 4.25])
    with pytest.raises(InputError, match="no loop"):
        (tmp_path / "empty.star").write_text("data_\n")
        read_star(tmp_path / "empty.star")


def test_real_autopick_star(shared_data):
    table = read_star(shared_data / "real" / "Ucsf_stack_1142_DW_autopick.star")
    assert len(table["rlnCoordinateX"]) > 10
    image, _ = read_image(shared_data / "real" / "Ucsf_stack_1142_DW.mrc")
    assert image.shape == (959, 927) or image.shape == (927, 959)
    assert 0 <= table["rlnCoordinateX"].max() <= max(image.shape)
