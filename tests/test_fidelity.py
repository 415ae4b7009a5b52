"""Noise-fidelity metrics: exact on known inputs, clear errors on bad ones."""

from __future__ import annotations

import numpy as np
import pytest

from nt2c.errors import InputError
from nt2c.noise.fidelity import (
    METRICS,
    autocorrelation,
    fidelity_table,
    format_table,
    noise_fidelity,
    radial_psd,
    random_crops,
    white_noise_like,
)


@pytest.fixture(scope="module")
def white():
    return np.random.default_rng(0).normal(3.0, 2.0, size=(64, 64, 64))


def _ma1(n, seed=1):
    """x[y, x] = w[y, x] + w[y, x - 1]: correlation 0.5 at lag (0, +-1), 0 elsewhere."""
    w = np.random.default_rng(seed).normal(size=(n, 64, 65))
    return w[:, :, 1:] + w[:, :, :-1]


def test_identical_sets_score_zero(white):
    res = noise_fidelity(white, white.copy())
    for key in METRICS:
        assert res[key] == 0.0
    assert res["variance_ratio"] == pytest.approx(1.0)


def test_public_export(white):
    import nt2c

    assert nt2c.noise_fidelity(white[:4], white[:4])["ks_statistic"] == 0.0


def test_white_noise_has_a_flat_spectrum_at_its_variance(white):
    freq, psd = radial_psd(white)
    assert freq[0] == pytest.approx(1 / 64) and freq[-1] == pytest.approx(0.5)
    assert psd.mean() == pytest.approx(4.0, rel=0.02)  # sigma^2 = 4
    assert np.all(np.abs(psd / 4.0 - 1) < 0.15)
    acf = autocorrelation(white, window=3)
    assert acf[3, 3] == 1.0
    off = np.delete(acf.ravel(), 3 * 7 + 3)
    assert np.abs(off).max() < 0.02


def test_scaling_and_offset_are_measured_exactly(white):
    scaled = noise_fidelity(white, 2.0 * white)
    assert scaled["psd_log_ratio_db"] == pytest.approx(20 * np.log10(2.0))
    assert scaled["acf_mad"] == pytest.approx(0.0, abs=1e-12)  # normalised autocorrelation ignores the gain
    assert scaled["variance_ratio"] == pytest.approx(4.0)
    shifted = noise_fidelity(white, white + 5.0)
    assert shifted["wasserstein"] == pytest.approx(5.0)
    assert shifted["psd_log_ratio_db"] == pytest.approx(0.0, abs=1e-9)  # the spectrum excludes the mean
    assert shifted["acf_mad"] == pytest.approx(0.0, abs=1e-12)


def test_ks_statistic_of_disjoint_and_known_sets():
    a = np.zeros((2, 8, 8))
    assert (
        noise_fidelity(a + np.arange(64).reshape(8, 8), a + 100 + np.arange(64).reshape(8, 8))["ks_statistic"]
        == 1.0
    )
    # half of the pixels equal in both sets, the other half shifted above every value: KS = 0.5
    x = np.tile(np.arange(64.0).reshape(8, 8), (2, 1, 1))
    y = x.copy()
    y[:, 4:, :] += 1000
    assert noise_fidelity(x, y)["ks_statistic"] == pytest.approx(0.5)


def test_autocorrelation_of_a_moving_average(white):
    ma = _ma1(64)
    acf = autocorrelation(ma, window=3)
    assert acf[3, 4] == pytest.approx(0.5, abs=0.02) and acf[3, 2] == pytest.approx(0.5, abs=0.02)
    assert acf[4, 3] == pytest.approx(0.0, abs=0.02)
    # only the two lags (0, +-1) of the 48 non-zero lags differ by 0.5
    res = noise_fidelity(white, ma / np.sqrt(2))
    assert res["acf_mad"] == pytest.approx(2 * 0.5 / 48, abs=0.004)
    # the MA(1) spectrum is 2 + 2 cos(2 pi fx): the band-averaged log-ratio against white noise is large
    assert res["psd_log_ratio_db"] > 1.5


def test_fidelity_table_adds_a_matched_white_noise_baseline():
    rng = np.random.default_rng(2)
    real = _ma1(32, seed=3) + 7.0
    rows = fidelity_table(real, {"same process": _ma1(32, seed=4) + 7.0, "skipped": None}, seed=1)
    assert list(rows) == ["same process", "white_gaussian"]
    assert rows["white_gaussian"]["variance_ratio"] == pytest.approx(1.0, rel=0.02)
    assert rows["white_gaussian"]["mean_generated"] == pytest.approx(7.0, abs=0.02)
    for key in ("psd_log_ratio_db", "acf_mad"):
        assert rows["same process"][key] < rows["white_gaussian"][key] / 3
    assert "white_gaussian" in format_table(rows)
    noise = white_noise_like(real, 5, seed=0)
    assert noise.shape == (5, 64, 64) and noise.dtype == np.float32
    assert rng is not None


def test_random_crops():
    stack = np.arange(3 * 10 * 12, dtype=np.float32).reshape(3, 10, 12)
    crops = random_crops(stack, 8, 7, seed=0)
    assert crops.shape == (7, 8, 8)
    np.testing.assert_array_equal(crops, random_crops(stack, 8, 7, seed=0))
    with pytest.raises(InputError, match="cannot crop"):
        random_crops(stack, 11, 2)


def test_bad_input_raises_clear_errors(white):
    with pytest.raises(InputError, match="crop both sets"):
        noise_fidelity(white, white[:, :32, :32])
    bad = white.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        noise_fidelity(white, bad)
    with pytest.raises(InputError, match="empty"):
        noise_fidelity(white, np.zeros((0, 64, 64)))
    with pytest.raises(InputError, match="stack"):
        noise_fidelity(white, np.zeros(64))
    with pytest.raises(InputError, match="band"):
        noise_fidelity(white, white, band=(0.3, 0.2))
    with pytest.raises(InputError, match="constant"):
        noise_fidelity(white, np.ones((4, 64, 64)))


def test_principal_components_expose_a_low_dimensional_set(white):
    """Patches mixing 3 fixed patterns hold all their variance in 3 components; white noise spreads it out."""
    from nt2c.noise.fidelity import top_component_fraction

    rng = np.random.default_rng(5)
    patterns = rng.normal(size=(3, 64 * 64))
    low_rank = (rng.normal(size=(64, 3)) @ patterns).reshape(64, 64, 64) + 3.0
    assert top_component_fraction(low_rank) == pytest.approx(1.0)
    white_top = top_component_fraction(white)  # k = 13 of 63 directions: 13/63 plus a random-matrix excess
    assert 13 / 63 < white_top < 0.4
    res = noise_fidelity(white, low_rank)
    assert res["pca_gap"] == pytest.approx(1.0 - white_top)
    assert noise_fidelity(white[:32], white[32:])["pca_gap"] < 0.05
    assert np.isnan(noise_fidelity(white[:3], white[:3])["pca_gap"])
    with pytest.raises(InputError, match="at least 5"):
        top_component_fraction(white[:4])
