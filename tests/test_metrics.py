"""Metrics with known answers: Eq. 5 SNR, affine-fitted PSNR/SSIM, Pearson, FRC, Eq. 5 region placement."""

from __future__ import annotations

import numpy as np
import pytest

from nt2c.errors import InputError
from nt2c.evaluation.metrics import (
    decorrelated_reference,
    eq5_regions,
    fit_affine,
    frc,
    pearson,
    psnr,
    snr_eq5,
    snr_eq5_terms,
    ssim,
)


def _with_variance(rng, shape, var, mean=0.0):
    """Return an array whose population variance is exactly ``var``."""
    x = rng.normal(size=shape)
    x = (x - x.mean()) / x.std()
    return mean + np.sqrt(var) * x


def test_snr_eq5_known_variances():
    rng = np.random.default_rng(0)
    # pair 1: v_s / v_b = 100 (20 dB); pair 2: 10 (10 dB); pair 3: 0.1 (-10 dB) -> mean 20/3 dB
    ratios = [(100.0, 1.0), (40.0, 4.0), (0.5, 5.0)]
    sig = [_with_variance(rng, (24, 24), vs, mean=50.0) for vs, _ in ratios]
    bg = [_with_variance(rng, (16, 20), vb, mean=-3.0) for _, vb in ratios]
    np.testing.assert_allclose(snr_eq5_terms(sig, bg), [20.0, 10.0, -10.0], atol=1e-9)
    assert snr_eq5(sig, bg) == pytest.approx(20.0 / 3.0, abs=1e-9)


def test_snr_eq5_ignores_offsets_and_common_scale():
    rng = np.random.default_rng(1)
    sig = [rng.normal(size=(20, 20)) * 3 for _ in range(4)]
    bg = [rng.normal(size=(20, 20)) for _ in range(4)]
    base = snr_eq5(sig, bg)
    assert snr_eq5([7 * s + 100 for s in sig], [7 * b + 100 for b in bg]) == pytest.approx(base)
    # the signal is x_s minus the background mean: shifting the background mean changes nothing
    assert snr_eq5(sig, [b + 1000 for b in bg]) == pytest.approx(base)


@pytest.mark.parametrize(
    "sig, bg, match",
    [
        ([np.ones((4, 4)) * np.arange(4)], [], "paired regions"),
        ([], [], "at least one"),
        ([np.zeros((8, 8))], [np.random.default_rng(0).normal(size=(8, 8))], "signal region 0 is constant"),
        (
            [np.random.default_rng(0).normal(size=(8, 8))],
            [np.full((8, 8), 3.0)],
            "background region 0 is constant",
        ),
        ([np.arange(5.0)], [np.arange(5.0)], "2-D"),
        ([np.array([[1.0, np.nan]])], [np.ones((2, 2))], "NaN"),
    ],
)
def test_snr_eq5_errors(sig, bg, match):
    with pytest.raises(InputError, match=match):
        snr_eq5(sig, bg)


def test_fit_affine_recovers_scale_and_offset():
    rng = np.random.default_rng(2)
    clean = rng.normal(size=(32, 32))
    out = (clean - 4.0) / 2.5
    a, b = fit_affine(out, clean)
    assert a == pytest.approx(2.5)
    assert b == pytest.approx(4.0)


def test_psnr_and_ssim_invariant_to_scale_and_offset():
    rng = np.random.default_rng(3)
    clean = np.cumsum(np.cumsum(rng.normal(size=(64, 64)), 0), 1)
    out = clean + rng.normal(scale=clean.std() * 0.3, size=clean.shape)
    p, s = psnr(out, clean), ssim(out, clean)
    assert psnr(-0.01 * out + 1234.0, clean) == pytest.approx(p, abs=1e-6)  # negative scale too
    assert ssim(3.0 * out - 7.0, clean) == pytest.approx(s, abs=1e-6)
    assert psnr(3.0 * out - 7.0, clean, fit=False) < p - 10  # without the fit the units matter
    # known PSNR: range^2 / MSE with a fixed error pattern
    err = np.where(rng.random(clean.shape) < 0.5, 1.0, -1.0) * 0.1
    rng_c = clean.max() - clean.min()
    expected = 10 * np.log10(rng_c**2 / np.mean(err**2))
    assert psnr(clean + err, clean, fit=False) == pytest.approx(expected)


def test_pearson():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(16, 16))
    assert pearson(a, 5 * a + 2) == pytest.approx(1.0)
    assert pearson(a, -a) == pytest.approx(-1.0)
    with pytest.raises(InputError, match="constant"):
        pearson(a, np.ones_like(a))


def test_frc_of_image_with_itself_is_one():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(64, 80))
    res = frc(a, a)
    np.testing.assert_allclose(res.correlation, 1.0, atol=1e-12)
    assert res.frequency[-1] <= 0.5 and res.frequency[0] > 0
    assert res.crossing_0143 == pytest.approx(res.frequency[-1])  # never crosses: Nyquist end
    assert frc(a, 3 * a + 1, pixel_size_A=2.0).unit == "1/A"


def test_frc_independent_noise_and_lowpass_crossing():
    rng = np.random.default_rng(6)
    n = 128
    # clean image with power up to 0.25 cycles/px, noise-free copy vs copy with strong white noise
    white = rng.normal(size=(n, n))
    f = np.fft.fftfreq(n)
    r = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    clean = np.fft.ifft2(np.fft.fft2(white) * (r < 0.25)).real
    noisy = clean + rng.normal(size=(n, n)) * clean.std() * 0.5
    res = frc(noisy, clean, taper=0.0)
    low = res.correlation[res.frequency < 0.2]
    high = res.correlation[res.frequency > 0.3]
    assert low.mean() > 0.8 and abs(high.mean()) < 0.2
    assert 0.2 < res.crossing_0143 < 0.3
    assert res.crossing_05 <= res.crossing_0143
    assert res.resolution(0.143) == pytest.approx(1 / res.crossing_0143)
    # uncorrelated images: FRC near 0 everywhere
    assert abs(frc(rng.normal(size=(n, n)), rng.normal(size=(n, n))).correlation.mean()) < 0.05


def test_eq5_regions_place_background_near_and_clear_of_particles():
    shape = (200, 300)
    coords = np.array([[50.0, 50.0], [150.0, 100.0], [250.0, 60.0], [2.0, 2.0]])  # the last one is cut off
    reg = eq5_regions(shape, coords, box_px=20)
    assert len(reg) == 3
    b = reg.box_px
    for (rs, cs), (rb, cb) in zip(reg.signal_corners, reg.background_corners):
        assert 0 <= rb <= shape[0] - b and 0 <= cb <= shape[1] - b
        # the background box shares no pixel with any particle's square of half-side box // 2
        for x, y in coords:
            h = b // 2
            rows_apart = rb + b - 1 < y - h or rb > y + h
            cols_apart = cb + b - 1 < x - h or cb > x + h
            assert rows_apart or cols_apart
        # ... and as close as possible: adjacent to the particle box (within a pixel)
        assert np.hypot(rb - rs, cb - cs) <= b + 1.5
    image = np.random.default_rng(7).normal(size=shape)
    sig, bg = reg.cut(image)
    assert all(s.shape == (20, 20) for s in sig + bg)
    assert reg.snr(image) == pytest.approx(snr_eq5(sig, bg))
    with pytest.raises(InputError, match="does not match"):
        reg.cut(image[:100])


def test_eq5_regions_respect_mask_and_errors():
    shape = (100, 100)
    mask = np.zeros(shape, bool)
    mask[:, :60] = True  # everything left of column 60 is contamination
    reg = eq5_regions(shape, [[80.0, 50.0]], box_px=16, exclude_mask=mask)
    assert reg.background_corners[0][1] >= 60
    with pytest.raises(InputError, match="no particle coordinates"):
        eq5_regions(shape, np.empty((0, 2)), box_px=16)
    with pytest.raises(InputError, match="free of particles"):
        eq5_regions(shape, [[50.0, 50.0]], box_px=16, exclude_mask=np.ones(shape, bool))
    with pytest.raises(InputError, match="box_px"):
        eq5_regions(shape, [[50.0, 50.0]], box_px=500)


def test_frc_is_blind_to_linear_isotropic_filters():
    """A Gaussian filter rescales every ring of the output: its FRC with the clean image stays put."""
    from scipy import ndimage

    rng = np.random.default_rng(8)
    clean = ndimage.gaussian_filter(rng.normal(size=(128, 128)), 2, mode="wrap")
    noisy = clean + rng.normal(size=clean.shape) * clean.std()
    raw = frc(noisy, clean, taper=0.0).correlation
    smoothed = frc(ndimage.gaussian_filter(noisy, 1.0, mode="wrap"), clean, taper=0.0).correlation
    np.testing.assert_allclose(smoothed, raw, atol=0.03)
    assert pearson(ndimage.gaussian_filter(noisy, 1.0, mode="wrap"), clean) > pearson(noisy, clean) + 0.1


def test_decorrelated_reference_removes_the_shared_noise():
    """Check a frame against a 50-frame average: shared noise gives ~1/sqrt(50); removed, ~0 remains."""
    from scipy import ndimage

    rng = np.random.default_rng(9)
    n = 128
    signal = ndimage.gaussian_filter(rng.normal(size=(n, n)), 4, mode="wrap")
    signal *= 0.05 / signal.std()  # a faint, low-frequency specimen: nothing near Nyquist
    frames = signal + rng.normal(size=(50, n, n))
    frame = frames[0]
    average = 3.0 * frames.mean(0) + 7.0  # arbitrary grey levels, as a rescaled file
    assert pearson(frame, average) > 0.12  # ~1/sqrt(50) from the shared noise
    ref, k = decorrelated_reference(frame, average)
    assert k == pytest.approx(3.0 / 50, rel=0.1)
    assert abs(pearson(frame, ref)) < 0.05  # the frame's noise is gone from the reference
    assert pearson(signal, ref) > 0.2
    smoothed = ndimage.gaussian_filter(frame, 3, mode="wrap")
    assert pearson(smoothed, ref) > pearson(frame, ref) + 0.05  # now smoothing helps, as it should
    # an independent reference keeps (almost) all of itself
    other = 3.0 * (signal + rng.normal(size=(n, n)) / 7) + 7.0
    assert abs(decorrelated_reference(frame, other)[1]) < 0.01
    with pytest.raises(InputError, match="band_cycles_px"):
        decorrelated_reference(frame, average, band_cycles_px=(0.4, 0.6))
