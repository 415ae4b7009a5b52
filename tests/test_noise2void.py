"""Noise2Void baseline: the N2V masking scheme, that a short training denoises, determinism, registration."""

from __future__ import annotations

import numpy as np
import pytest

from nt2c.errors import InputError
from nt2c.evaluation.noise2void import blind_spot_mask, noise2void_backend, train_noise2void

TINY = {"arch": "nt2c.UNet", "width": 8, "depth": 3}


@pytest.fixture(scope="module")
def smooth_noisy():
    from scipy import ndimage

    rng = np.random.default_rng(0)
    clean = 8.0 * ndimage.gaussian_filter(rng.standard_normal((192, 192)), 4.0)
    return clean, (clean + rng.standard_normal(clean.shape)).astype(np.float32)


def test_mask_fraction_window_and_never_the_pixel_itself():
    rng = np.random.default_rng(1)
    n, p = 64, 64
    patches = np.arange(n * p * p, dtype=np.float32).reshape(n, p, p)  # every value unique
    masked, mask = blind_spot_mask(patches, mask_fraction=0.005, window_px=5, rng=rng)
    frac = mask.mean()
    assert 0.002 <= frac <= 0.01  # 1 / 14**2 = 0.0051 for the stratified grid (cells cut by the edge)
    assert np.array_equal(masked[~mask], patches[~mask])  # only masked pixels change
    b, y, x = np.nonzero(mask)
    src = masked[b, y, x]
    assert not np.any(src == patches[b, y, x])  # never the pixel itself
    # the replacement comes from the same patch, within the 5 x 5 window
    flat = src.astype(np.int64) - b * p * p
    sy, sx = flat // p, flat % p
    assert np.all((flat >= 0) & (flat < p * p))
    assert np.all(np.abs(sy - y) <= 2) and np.all(np.abs(sx - x) <= 2)
    # uniform over the 24 neighbours (interior pixels only: no reflection), every offset used
    inner = (y >= 2) & (y < p - 2) & (x >= 2) & (x < p - 2)
    offsets = (sy - y)[inner] * 5 + (sx - x)[inner]
    counts = np.bincount(offsets + 12, minlength=25)
    assert counts[12] == 0 and np.all(np.delete(counts, 12) > 0)


def test_mask_at_patch_edges_stays_inside():
    rng = np.random.default_rng(2)
    patches = np.arange(4 * 6 * 6, dtype=np.float32).reshape(4, 6, 6)
    for _ in range(20):
        masked, mask = blind_spot_mask(patches, mask_fraction=0.25, window_px=5, rng=rng)
        assert mask.any()
        assert not np.any(masked[mask] == patches[mask])


def test_mask_bad_settings():
    rng = np.random.default_rng(0)
    with pytest.raises(InputError, match="window_px"):
        blind_spot_mask(np.zeros((1, 16, 16)), window_px=4, rng=rng)
    with pytest.raises(InputError, match="mask_fraction"):
        blind_spot_mask(np.zeros((1, 16, 16)), mask_fraction=0.0, rng=rng)
    with pytest.raises(InputError, match="backend"):
        noise2void_backend("n2v2")


def test_short_training_lowers_masked_loss_and_denoises(smooth_noisy):
    from nt2c.denoiser.inference import denoise_micrograph

    clean, noisy = smooth_noisy
    res = train_noise2void(
        noisy,
        steps=60,
        patch_px=32,
        batch_size=8,
        mask_fraction=0.01,
        model_config=TINY,
        seed=0,
        device="cpu",
    )
    assert res.backend == "nt2c" and len(res.losses) == 60
    assert np.mean(res.losses[-15:]) < np.mean(res.losses[:5])
    out = denoise_micrograph(res.model, noisy, device="cpu", tile=128, overlap=32, show_progress=False)
    assert out.shape == noisy.shape and out.dtype == np.float32
    mse_raw = np.mean((noisy - clean) ** 2)
    mse_n2v = np.mean((out - clean) ** 2)
    assert 10 * np.log10(mse_raw / mse_n2v) > 2.0  # measured ~5 dB


def test_same_seed_same_model(smooth_noisy):
    _, noisy = smooth_noisy
    kw = dict(steps=3, patch_px=32, batch_size=4, model_config=TINY, device="cpu")
    a = train_noise2void(noisy, seed=3, **kw)
    b = train_noise2void(noisy, seed=3, **kw)
    c = train_noise2void(noisy, seed=4, **kw)
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert all(np.array_equal(sa[k].numpy(), sb[k].numpy()) for k in sa)
    assert a.losses == b.losses
    assert not all(np.array_equal(sa[k].numpy(), sc[k].numpy()) for k in sa)


def test_registered_as_baseline(smooth_noisy):
    from nt2c.evaluation.baselines import BASELINES, denoise_with, method_status

    clean, noisy = smooth_noisy
    assert "noise2void" in BASELINES
    status = method_status(["noise2void"])
    assert status["noise2void"] is None  # always runs (nt2c's own training when CAREamics is absent)
    out = denoise_with(
        "noise2void",
        noisy,
        device="cpu",
        n2v_steps=2,
        n2v_patch_px=32,
        n2v_batch_size=2,
        n2v_model_config=TINY,
    )
    assert out.shape == noisy.shape and np.isfinite(out).all()


def test_too_small_micrograph():
    with pytest.raises(InputError, match="patch_px"):
        train_noise2void(np.random.default_rng(0).random((20, 20)), steps=1, patch_px=32, model_config=TINY)
