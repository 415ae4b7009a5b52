"""MRC/TIFF/STAR reading and writing: round trips, headers, corrupt files, no overwriting."""

import os
import stat

import numpy as np
import pytest

from nt2c.errors import InputError
from nt2c.io import (
    atomic_path,
    describe_file,
    read_image,
    read_json,
    read_mrc,
    read_star,
    remove_partial_files,
    validate_image,
    write_json,
    write_mrc,
    write_star,
)


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
    with pytest.raises(InputError, match="not an MRC file: it looks like text"):
        read_mrc(junk)
    binary = tmp_path / "binary.mrc"
    binary.write_bytes(bytes(range(256)) * 2)  # 512 bytes with zero bytes: no known format, too short
    with pytest.raises(InputError, match="not a readable MRC file"):
        read_mrc(binary)
    good = write_mrc(tmp_path / "good.mrc", np.ones((64, 64), np.float32))
    truncated = tmp_path / "cut.mrc"
    truncated.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(InputError):
        read_mrc(truncated)
    with pytest.raises(InputError, match="unknown image type"):
        read_image(tmp_path / "x.jpg")  # .png is a micrograph type since PNG input support


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


# -- issue 15: messages for files that are not what their name says, folders, file modes, leftovers ---------
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(2000)


@pytest.mark.parametrize(
    "content, looks",
    [
        (PNG, "a PNG image"),
        (b"\xff\xd8\xff\xe0" + bytes(2000), "a JPEG image"),
        (b"II*\x00" + bytes(2000), "a TIFF file.*name it .tif"),
        (b"\x1f\x8b\x08" + bytes(2000), "gzip-compressed data.*gunzip"),
        (b"<!DOCTYPE html>\n<html><body>404 Not Found</body></html>\n" * 40, "an HTML/XML page"),
        (b"micrographs/a.mrc\nmicrographs/b.mrc\n" * 60, "text \\(it starts with 'micrographs/a.mrc'\\)"),
        (b"", "an empty file"),
    ],
    ids=["png", "jpeg", "tiff", "gzip", "html", "text", "empty"],
)
def test_a_file_named_mrc_that_is_not_mrc_says_what_it_looks_like(tmp_path, content, looks):
    path = tmp_path / "mic.mrc"
    path.write_bytes(content)
    for reader in (read_image, read_mrc):
        with pytest.raises(InputError, match=f"mic.mrc is not an MRC file: it looks like {looks}") as info:
            reader(path)
        assert "header but no data" not in str(info.value) and "\n" not in str(info.value)


def test_real_mrc_and_tiff_are_not_taken_for_other_formats(tmp_path):
    import tifffile

    mrc = write_mrc(tmp_path / "a.mrc", np.ones((8, 8), np.float32))
    tifffile.imwrite(tmp_path / "a.tif", np.ones((8, 8), np.uint16))
    assert describe_file(mrc) is None
    assert "TIFF" in describe_file(tmp_path / "a.tif")[0]
    (tmp_path / "b.tif").write_bytes(PNG)
    with pytest.raises(InputError, match="b.tif is not a TIFF file: it looks like a PNG image"):
        read_image(tmp_path / "b.tif")


def test_a_folder_is_called_a_folder(tmp_path):
    folder = tmp_path / "mics.mrc"
    folder.mkdir()
    for reader, pattern in ((read_image, "*.mrc"), (read_mrc, "*.mrc"), (read_star, "*.star")):
        with pytest.raises(InputError, match=rf"is a folder, .*'{folder}/\{pattern}' \(quoted\)"):
            reader(folder)
    with pytest.raises(InputError, match="is a folder"):
        read_image(tmp_path)  # no suffix at all: still a folder, not an "unknown image type"
    with pytest.raises(InputError, match="is a folder"):
        read_json(tmp_path)


@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_written_files_get_the_mode_the_umask_gives(tmp_path, umask):
    expected = 0o666 & ~umask
    paths = [
        write_mrc(tmp_path / "a.mrc", np.ones((8, 8), np.float32)),
        write_json(tmp_path / "a.json", {"a": 1}),
        write_star(tmp_path / "a.star", {"rlnCoordinateX": [1.0]}),
    ]
    with atomic_path(tmp_path / "b.bin") as tmp:
        tmp.write_bytes(b"x")
    with atomic_path(tmp_path / "c.bin") as tmp:  # a writer that replaces the file with a private one
        tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)
    paths += [tmp_path / "b.bin", tmp_path / "c.bin"]
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == expected, path


def test_remove_partial_files_removes_only_nt2c_temporaries(tmp_path):
    run = tmp_path / "run"
    (run / "models").mkdir(parents=True)
    killed = atomic_path(run / "models" / "fine.safetensors")
    left = killed.__enter__()  # a run killed while writing: the context never exits
    left.write_bytes(b"half")
    download = run / ".big.mrc.partial"
    download.write_bytes(b"part")
    nested = run / "report" / "deep" / ".x.json.abcdefgh.part"
    nested.parent.mkdir(parents=True)
    nested.write_text("{")
    user = [
        run / "notes.part",
        run / "a.partial",
        run / ".a.part",
        run / ".a.mrc.ABCDEFGH.part",
        run / ".a.mrc.abcdefg.part",
        run / ".a.mrc.abcdefghi.part",
        run / "models" / "fine.json",
    ]
    for path in user:
        path.write_text("mine")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / ".o.abcdefgh.part").write_text("not under run")
    (run / "link").symlink_to(outside, target_is_directory=True)
    (run / ".l.abcdefgh.part").symlink_to(outside / ".o.abcdefgh.part")
    assert remove_partial_files(run, keep=[download]) == sorted([left, nested])
    assert download.exists() and all(p.exists() for p in user)
    assert (outside / ".o.abcdefgh.part").exists() and (run / ".l.abcdefgh.part").is_symlink()
    assert remove_partial_files(run, older_than_s=3600) == []  # just written: maybe still in use
    assert remove_partial_files(run) == [download]
    assert remove_partial_files(tmp_path / "missing") == []
