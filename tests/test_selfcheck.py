"""The residual self-check: it ranks denoisers like the truth does on fields with a known clean image."""

import numpy as np
import pytest
from scipy import ndimage

from nt2c.errors import InputError
from nt2c.evaluation.selfcheck import compare_models, residual_mismatch_dB, residual_tiles


def _field(n=384, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n]
    clean = np.zeros((n, n))
    for _ in range(30):
        cy, cx = rng.uniform(0, n, 2)
        clean -= 2.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 8.0**2))
    noise = 3 * ndimage.gaussian_filter(rng.normal(size=(n, n)), 0.7)
    patches = np.stack([3 * ndimage.gaussian_filter(rng.normal(size=(64, 64)), 0.7) for _ in range(30)])
    return clean, clean + noise, patches


def test_a_perfect_denoiser_leaves_a_residual_like_the_noise():
    clean, raw, patches = _field()
    perfect = residual_mismatch_dB(raw, clean, patches)
    assert perfect.mismatch_dB < 1.0 and perfect.variance_ratio == pytest.approx(1.0, abs=0.1)
    leaves_noise = residual_mismatch_dB(raw, ndimage.gaussian_filter(raw, 0.5), patches)
    erases_signal = residual_mismatch_dB(raw, np.full_like(raw, raw.mean()), patches)
    assert leaves_noise.mismatch_dB > 5 * perfect.mismatch_dB
    assert np.nanmean(leaves_noise.bands_dB) < 0  # less power than the noise: noise left in
    assert erases_signal.mismatch_dB > perfect.mismatch_dB and np.nanmax(erases_signal.bands_dB) > 0


def test_the_self_check_prefers_the_filter_closer_to_the_truth():
    clean, raw, patches = _field(seed=1)
    outputs = {f"s{s}": ndimage.gaussian_filter(raw, s) for s in (0.5, 1, 2, 6)}
    result = compare_models(raw, outputs, patches)
    mse = {k: float(((v - clean) ** 2).mean()) for k, v in outputs.items()}
    assert result["best"] == min(mse, key=mse.get) == "s6"
    assert result["margin_dB"] > 0


def test_bad_inputs_are_named():
    clean, raw, patches = _field(n=128)
    with pytest.raises(InputError, match="differ in shape"):
        residual_mismatch_dB(raw, raw[:-1], patches)
    with pytest.raises(InputError, match="smaller than the noise patches"):
        residual_tiles(raw[:32, :32], raw[:32, :32], 64)
    with pytest.raises(InputError, match="at least one"):
        compare_models(raw, {}, patches)
