"""Micrographs as users have them.

8- and 16-bit rescaled images (PNG, TIFF, MRC modes 0/1/6/12), tiny or inverted grey levels, and shapes
that are neither square nor multiples of 32.
"""

import mrcfile
import numpy as np
import pytest

from nt2c.denoiser.inference import denoise_micrograph, load_model
from nt2c.errors import InputError
from nt2c.io import read_image


def _field(shape=(300, 417), seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    blobs = sum(
        np.exp(-((yy - rng.uniform(0, shape[0])) ** 2 + (xx - rng.uniform(0, shape[1])) ** 2) / 60.0)
        for _ in range(12)
    )
    return (100.0 - 20.0 * blobs + rng.normal(0, 5, shape)).astype(np.float32)


def _rescaled(image, dtype):
    top = np.iinfo(dtype).max
    scaled = (image - image.min()) / (image.max() - image.min()) * top
    return np.round(scaled).astype(dtype)


def test_png_grey_8_and_16_bit_and_colour(tmp_path):
    import imageio.v3 as iio

    grey8 = _rescaled(_field(), np.uint8)
    grey16 = _rescaled(_field(), np.uint16)
    iio.imwrite(tmp_path / "g8.png", grey8)
    iio.imwrite(tmp_path / "g16.png", grey16)
    iio.imwrite(tmp_path / "rgb_grey.png", np.repeat(grey8[..., None], 3, axis=2))
    colour = np.stack([grey8, grey8 // 2, grey8 // 3], axis=2).astype(np.uint8)
    iio.imwrite(tmp_path / "rgb.png", colour)
    for name, expected in (("g8", grey8), ("g16", grey16), ("rgb_grey", grey8)):
        image, pixel_size = read_image(tmp_path / f"{name}.png")
        assert image.dtype == np.float32 and pixel_size is None
        np.testing.assert_array_equal(image, expected.astype(np.float32))
    luminance, _ = read_image(tmp_path / "rgb.png")
    assert luminance.shape == grey8.shape
    expected = colour.astype(np.float32) @ np.array([0.2126, 0.7152, 0.0722], np.float32)
    np.testing.assert_allclose(luminance, expected, rtol=1e-6)


def test_text_named_png_is_refused_clearly(tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image\n")
    with pytest.raises(InputError, match="not a PNG file"):
        read_image(bad)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.uint16, np.float16])
def test_mrc_integer_and_half_modes_keep_their_grey_levels(tmp_path, dtype):
    stored = (
        _rescaled(_field(), np.uint8).astype(dtype) if dtype is not np.uint16 else _rescaled(_field(), dtype)
    )
    if dtype is np.int8:
        stored = (stored.astype(np.int16) - 128).astype(np.int8)
    path = tmp_path / "m.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(stored)
        mrc.voxel_size = 1.5
    image, pixel_size = read_image(path)
    assert image.dtype == np.float32 and pixel_size == pytest.approx(1.5)
    np.testing.assert_array_equal(image, stored.astype(np.float32))


def test_tiff_16_bit(tmp_path):
    import tifffile

    stored = _rescaled(_field(), np.uint16)
    tifffile.imwrite(tmp_path / "m.tif", stored)
    image, pixel_size = read_image(tmp_path / "m.tif")
    np.testing.assert_array_equal(image, stored.astype(np.float32))
    assert pixel_size is None


@pytest.mark.parametrize("normalization", ["tiles", "global"])
def test_denoising_does_not_depend_on_the_units(model_path, normalization):
    """Rescaled 8/16-bit images and tiny pixel values give the same result up to the same affine map."""
    model = load_model(model_path)
    image = _field()
    kwargs = dict(device="cpu", tile=128, overlap=16, normalization=normalization, show_progress=False)
    reference = denoise_micrograph(model, image, **kwargs)
    assert reference.shape == image.shape and np.isfinite(reference).all()
    for scale, offset in ((1e-6, 0.0), (655.35, 1000.0), (2.0, -50.0)):
        out = denoise_micrograph(model, scale * image + offset, **kwargs)
        np.testing.assert_allclose(out, scale * reference + offset, rtol=1e-4, atol=1e-4 * abs(scale) * 100)


def test_inverted_and_odd_shaped_micrographs_denoise_to_finite_images(model_path):
    model = load_model(model_path)
    for shape in ((300, 417), (97, 1000), (64, 64)):
        image = -_field(shape)  # inverted contrast: particles bright
        out = denoise_micrograph(model, image, device="cpu", tile=128, overlap=16, show_progress=False)
        assert out.shape == shape and np.isfinite(out).all()
