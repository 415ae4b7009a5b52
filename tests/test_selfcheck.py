"""The self-checks rank denoisers like the truth does on fields with a known clean image."""

import itertools

import numpy as np
import pytest
from scipy import ndimage

from nt2c.errors import InputError
from nt2c.evaluation.selfcheck import (
    compare_models,
    noise_probe,
    residual_mismatch_dB,
    residual_tiles,
    stein_check,
)


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


def _stein_field(n=384, signal=2.0, seed=0):
    """Blobs of depth ``signal`` in correlated noise; noise patches cut from a separate noise field."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n]
    clean = np.zeros((n, n))
    for _ in range(30):
        cy, cx = rng.uniform(0, n, 2)
        clean -= signal * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 8.0**2))
    noise = 3 * ndimage.gaussian_filter(rng.normal(size=(2 * n, n)), 0.7, mode="wrap")
    k = n // 64
    patches = noise[n:].reshape(k, 64, k, 64).transpose(0, 2, 1, 3).reshape(-1, 64, 64)
    return clean, clean + noise[:n], patches


def _filters():
    out = {"identity": lambda y: np.asarray(y, float), "blank": lambda y: np.full(np.shape(y), np.mean(y))}
    for sigma in (0.5, 1, 2, 4, 8, 16):
        out[f"gaussian{sigma}"] = lambda y, s=sigma: ndimage.gaussian_filter(np.asarray(y, float), s)
    return out


def _truth(out, clean):
    return 0.0 if np.std(out) == 0 else float(np.corrcoef(out.ravel(), clean.ravel())[0, 1])


def test_stein_estimates_the_correlation_with_the_clean_signal():
    clean, raw, patches = _stein_field()
    checks = {k: stein_check(f, raw, patches) for k, f in _filters().items()}
    truth = {k: _truth(f(raw), clean) for k, f in _filters().items()}
    for name, check in checks.items():
        assert check.correlation == pytest.approx(truth[name], abs=0.1), name
    assert checks["blank"].signal_score == 0.0
    for a, b in itertools.combinations(checks, 2):  # every pair the truth tells apart is ordered alike
        if abs(truth[a] - truth[b]) > 0.05:
            assert (truth[a] > truth[b]) == (checks[a].signal_score > checks[b].signal_score), (a, b)
    mse = float(((ndimage.gaussian_filter(raw, 4) - clean) ** 2).mean())
    assert checks["gaussian4"].mse == pytest.approx(mse, abs=0.05)


def test_stein_sees_signal_loss_where_the_noise_dwarfs_the_signal():
    """Signal power 1/100 of the noise's (a single low-dose frame): removing everything is not rewarded."""
    clean, raw, patches = _stein_field(signal=0.6, seed=2)
    assert clean.var() < 0.02 * (raw - clean).var()
    filters = _filters()
    truth = {k: _truth(f(raw), clean) for k, f in filters.items()}
    stein = {k: stein_check(f, raw, patches).signal_score for k, f in filters.items()}
    best = max(truth, key=truth.get)
    assert max(stein, key=stein.get) == best
    assert stein["blank"] < stein[best] and stein["gaussian16"] < stein[best]


def test_the_probe_has_the_noise_spectrum_and_variance():
    _, _, patches = _stein_field()
    probe, variance = noise_probe((256, 256), patches, seed=1)
    assert variance == pytest.approx(patches.var(axis=(1, 2)).mean())
    assert probe.var() == pytest.approx(variance, rel=0.05)
    tiles = probe.reshape(4, 64, 4, 64).transpose(0, 2, 1, 3).reshape(-1, 64, 64)
    assert residual_mismatch_dB(probe, np.zeros_like(probe), patches).mismatch_dB < 1.0
    assert tiles.shape == (16, 64, 64)


def test_several_probes_give_the_score_a_standard_error():
    clean, raw, patches = _stein_field(seed=3)
    one = stein_check(lambda y: ndimage.gaussian_filter(np.asarray(y, float), 2), raw, patches)
    four = stein_check(lambda y: ndimage.gaussian_filter(np.asarray(y, float), 2), raw, patches, n_probes=4)
    assert np.isnan(one.score_standard_error) and 0 < four.score_standard_error < 0.1 * abs(four.signal_score)
    assert four.signal_score == pytest.approx(one.signal_score, abs=4 * four.score_standard_error + 1e-9)
    with pytest.raises(InputError, match="n_probes"):
        stein_check(lambda y: y, raw, patches, n_probes=0)


def test_stein_bad_inputs_are_named():
    clean, raw, patches = _stein_field(n=128)
    with pytest.raises(InputError, match="epsilon"):
        stein_check(lambda y: y, raw, patches, epsilon=0)
    with pytest.raises(InputError, match="differ in shape"):
        stein_check(lambda y: y[:-1], raw, patches)
    with pytest.raises(InputError, match="constant"):
        stein_check(lambda y: y, raw, np.zeros((3, 64, 64)))
