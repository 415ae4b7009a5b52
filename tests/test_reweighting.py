"""Contrast-guided re-weighting (paper section 2.2.3): Eq. 4's closed-form fit, modulation F, the stage."""

from __future__ import annotations

import numpy as np
import pytest

from nt2c.errors import InputError, StageError
from nt2c.reweighting import (
    crop_pairs,
    fit_coefficients,
    modulate,
    modulation_map,
    read_coefficients,
    reweight_pairs,
    reweight_stage,
)


def _lstsq(S, V, X):
    A = np.stack([S.ravel(), V.ravel(), np.ones(S.size)], 1).astype(np.float64)
    return np.linalg.lstsq(A, X.ravel().astype(np.float64), rcond=None)[0]


def test_paper_fit_equals_numpy_lstsq_on_random_data():
    rng = np.random.default_rng(1)
    S, V = rng.normal(size=(2, 40, 24, 24))
    X = 0.7 * S - 0.3 * V + 2.0 + rng.normal(size=S.shape)
    X[::3] = rng.normal(size=X[::3].shape) * 5 + 1  # unrelated patches too
    coef = fit_coefficients(S, V, X, method="paper")
    assert coef.shape == (40, 3)
    expected = np.array([_lstsq(s, v, x) for s, v, x in zip(S, V, X)])
    np.testing.assert_allclose(coef, expected, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(fit_coefficients(S[5], V[5], X[5]), expected[5], rtol=1e-9, atol=1e-10)


def test_paper_fit_with_constant_signal_gives_the_same_composite_as_lstsq():
    rng = np.random.default_rng(2)
    S = np.full((16, 16), 3.0)  # a crop without any particle
    V, X = rng.normal(size=(2, 16, 16))
    a, b, g = fit_coefficients(S, V, X, method="paper")
    assert a == 0.0
    la, lb, lg = _lstsq(S, V, X)
    np.testing.assert_allclose(a * S + b * V + g, la * S + lb * V + lg, atol=1e-10)
    # float32 rounding of a flat background is not signal: no method may blow it up to the level of X
    rounding = (40.0 + 1e-6 * rng.normal(size=(16, 16))).astype(np.float32)
    for method in ("paper", "matched"):
        assert fit_coefficients(rounding, V, X, method=method)[0] == 0.0


def test_paper_beta_vanishes_for_independent_noise_but_matched_beta_carries_the_noise_level():
    rng = np.random.default_rng(3)
    n, d, sigma, sigma_v = 300, 32, 6.0, 0.25
    S = 40 + 3 * rng.normal(size=(n, d, d))
    X = S + sigma * rng.normal(size=(n, d, d))
    V = 5 + sigma_v * rng.normal(size=(n, d, d))  # independent of X's noise, other units
    paper = fit_coefficients(S, V, X, method="paper")
    matched = fit_coefficients(S, V, X, method="matched")
    spread = sigma / (sigma_v * d)  # standard deviation of the least-squares beta
    assert abs(np.median(paper[:, 1])) < 0.3 * spread
    assert np.std(paper[:, 1]) == pytest.approx(spread, rel=0.15)
    np.testing.assert_allclose(np.median(matched[:, 1]), sigma / sigma_v, rtol=0.02)
    np.testing.assert_allclose(np.median(matched[:, 0]), 1.0, atol=0.01)  # X regressed on noise-free S


def test_matched_fit_pools_alpha_and_matches_residual_power_exactly():
    rng = np.random.default_rng(4)
    S, V = rng.normal(size=(2, 10, 20, 20))
    S[3] *= 0.01  # a patch almost without signal: its own regression slope is mostly noise
    X = 2.5 * S + 1.0 + 0.8 * rng.normal(size=S.shape)
    coef = fit_coefficients(S, V, X, method="matched")
    # one slope for the batch: the regression of X on S with one offset per patch
    s = S - S.mean(axis=(1, 2), keepdims=True)
    x = X - X.mean(axis=(1, 2), keepdims=True)
    pooled = np.sum(s * x) / np.sum(s * s)
    np.testing.assert_allclose(coef[:, 0], pooled, rtol=1e-12)
    assert pooled == pytest.approx(2.5, rel=0.02)
    for (a, b, g), s, v, x in zip(coef, S, V, X):
        residual = x - a * s
        assert np.var(b * v) == pytest.approx(np.var(residual), rel=1e-9)
        assert np.mean(a * s + b * v + g) == pytest.approx(np.mean(x), abs=1e-9)  # Y keeps X's mean


def test_matched_fit_does_not_depend_on_the_internal_chunking(monkeypatch):
    import nt2c.reweighting.fit as rw

    rng = np.random.default_rng(9)
    S, V = rng.normal(size=(2, 11, 16, 16))
    X = 1.7 * S + rng.normal(size=S.shape)
    whole = fit_coefficients(S, V, X, method="matched")
    monkeypatch.setattr(rw, "_CHUNK", 3)
    np.testing.assert_allclose(fit_coefficients(S, V, X, method="matched"), whole, rtol=1e-12)


def test_matched_alpha_never_flips_a_weak_patch_where_per_patch_regression_would():
    rng = np.random.default_rng(8)
    n, d = 200, 32
    S = 100 + rng.normal(size=(n, d, d)) * np.where(np.arange(n) % 2, 5.0, 0.05)[:, None, None]
    X = S + 20 * rng.normal(size=(n, d, d))
    s = S - S.mean(axis=(1, 2), keepdims=True)
    x = X - X.mean(axis=(1, 2), keepdims=True)
    per_patch = np.sum(s * x, axis=(1, 2)) / np.sum(s * s, axis=(1, 2))
    assert np.mean(per_patch < 0) > 0.2  # the weak patches: slopes of either sign, mostly noise
    alpha = fit_coefficients(S, rng.normal(size=S.shape), X, method="matched")[:, 0]
    np.testing.assert_allclose(alpha, 1.0, atol=0.02)


def test_modulation_contrast_imposes_reference_mean_and_std_and_is_increasing():
    rng = np.random.default_rng(5)
    Z = 3 * rng.normal(size=(6, 16, 16)) + 10
    X = 0.5 * rng.normal(size=(6, 16, 16)) - 2
    F = modulate(Z, X)
    np.testing.assert_allclose(F.mean(axis=(1, 2)), X.mean(axis=(1, 2)), atol=1e-5)
    np.testing.assert_allclose(F.std(axis=(1, 2)), X.std(axis=(1, 2)), rtol=1e-5)
    scale, offset = modulation_map(Z, X)
    assert np.all(scale > 0)
    # the same map, pixel by pixel: order is kept
    assert np.array_equal(np.argsort(F[0].ravel()), np.argsort(Z[0].ravel()))
    # identity when the composite already has the reference's contrast, and for mode="none"
    np.testing.assert_allclose(modulate(X, X), X, atol=1e-5)
    np.testing.assert_allclose(modulate(Z, X, mode="none"), Z, atol=1e-5)
    # a flat composite is only shifted (no division by zero)
    flat = modulate(np.full((8, 8), 2.0), X[0][:8, :8])
    assert np.isfinite(flat).all() and np.ptp(flat) == 0


def test_reweight_pairs_transfers_exactly_the_gan_noise():
    rng = np.random.default_rng(6)
    n, d = 50, 32
    S = 30 + 2 * rng.normal(size=(n, d, d))
    X = S + 4 * rng.normal(size=(n, d, d))
    V = 0.1 * rng.normal(size=(n, d, d)) + 7
    for method in ("matched", "paper"):
        pairs = reweight_pairs(S, X, V, method=method)
        assert pairs.noisy.shape == pairs.clean.shape == (n, d, d)
        assert pairs.noisy.dtype == np.float32
        Vc = V - V.mean(axis=(1, 2), keepdims=True)
        expected_noise = (pairs.scale * pairs.beta)[:, None, None] * Vc
        np.testing.assert_allclose(pairs.noisy - pairs.clean, expected_noise, atol=2e-4)
    matched = reweight_pairs(S, X, V, method="matched")
    paper = reweight_pairs(S, X, V, method="paper")
    reference_nsr = np.median((X - S).std(axis=(1, 2)) / S.std(axis=(1, 2)))
    assert np.median(matched.noise_to_signal()) == pytest.approx(reference_nsr, rel=0.05)
    assert np.median(paper.noise_to_signal()) < 0.2 * reference_nsr  # the literal fit: almost no noise


def test_crop_pairs_keeps_pairs_aligned_and_augments():
    rng = np.random.default_rng(7)
    noisy = rng.normal(size=(3, 40, 40)).astype(np.float32)
    clean = noisy * 2
    X, S, origins = crop_pairs(noisy, clean, 16, 10, seed=0)
    assert X.shape == S.shape == (10, 16, 16)
    np.testing.assert_array_equal(S, 2 * X)
    for x, (src, r, c) in zip(X, origins):
        np.testing.assert_array_equal(x, noisy[src, r : r + 16, c : c + 16])
    assert set(origins[:, 0]) == {0, 1, 2}
    X2, _, origins2 = crop_pairs(noisy, clean, 16, 10, seed=0)
    np.testing.assert_array_equal(origins, origins2)  # seeded
    with pytest.raises(InputError, match="smaller than the noise patches"):
        crop_pairs(noisy, clean, 64, 4)


def test_bad_inputs_raise_clear_errors():
    a = np.zeros((2, 8, 8))
    with pytest.raises(InputError, match="same shape"):
        fit_coefficients(a, np.zeros((2, 8, 9)), a)
    with pytest.raises(InputError, match="NaN"):
        fit_coefficients(a, a, np.full((2, 8, 8), np.nan))
    with pytest.raises(InputError, match="method"):
        fit_coefficients(a, a, a, method="lsq")
    with pytest.raises(InputError, match="constant"):
        fit_coefficients(
            np.random.rand(2, 8, 8), np.ones((2, 8, 8)), np.random.rand(2, 8, 8), method="matched"
        )
    with pytest.raises(InputError, match="modulation"):
        modulation_map(a, a, mode="gamma")


def _correlated_noise(n, d=32, seed=0):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    white = rng.normal(size=(n, d, d))
    return (3.0 + 0.5 * ndimage.gaussian_filter(white, (0, 1, 1))).astype(np.float32)


@pytest.fixture()
def fake_gan(monkeypatch):
    """Replace the GAN sampler by seeded correlated noise patches.

    GAN training is tested in test_gan.py; here only the stage's contract matters.
    """
    import nt2c.noise.fields

    def sample_noise_fields(model_path, n, size=None, *, seed=0, device="auto"):
        return _correlated_noise(n, 32 if size is None else size, seed)

    monkeypatch.setattr(nt2c.noise.fields, "sample_noise_fields", sample_noise_fields)
    return sample_noise_fields


def _simulated_pairs(run, n=6, p=48):
    from nt2c.io import write_mrc

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:p, :p]
    clean = np.stack([40 + 4 * np.exp(-((yy - p / 2) ** 2 + (xx - p / 2 - k) ** 2) / 60) for k in range(n)])
    noisy = rng.poisson(clean).astype(np.float32)
    write_mrc(run.simulated / "pairs_noisy.mrcs", noisy)
    write_mrc(run.simulated / "pairs_clean.mrcs", clean.astype(np.float32))
    (run.models / "gan.safetensors").write_bytes(b"stand-in")
    write_mrc(run.noise / "patches.mrcs", _correlated_noise(10, 40, seed=1))


@pytest.mark.parametrize(
    ("source", "patch_px", "side"),
    [("gan", None, 32), ("patches", None, 40), ("patches", 32, 32), ("gan", 48, 48)],
)
def test_reweight_stage_writes_the_pinned_artefacts(run_dir, fake_gan, source, patch_px, side):
    from nt2c.config import stage_config
    from nt2c.io import read_json, read_mrc

    with pytest.raises(StageError, match="nt2c simulate"):
        reweight_stage(run_dir, stage_config("reweight", "smoke"), run_dir.params())
    _simulated_pairs(run_dir)
    settings = stage_config("reweight", "smoke", n_pairs=20, noise_source=source, patch_px=patch_px)
    outputs = reweight_stage(run_dir, settings, run_dir.params())
    names = {p.name for p in outputs}
    assert {"pairs_noisy.mrcs", "pairs_clean.mrcs", "coefficients.csv"} <= names
    noisy, pixel = read_mrc(run_dir.pairs / "pairs_noisy.mrcs")
    clean, _ = read_mrc(run_dir.pairs / "pairs_clean.mrcs")
    # the side of the GAN's samples (32) or of the real patches (40), unless patch_px asks for another
    assert noisy.shape == clean.shape == (20, side, side)
    assert pixel == pytest.approx(run_dir.params().pixel_size_A)
    coef = read_coefficients(run_dir.path)
    assert len(coef["alpha"]) == 20 and np.all(coef["beta"] > 0)
    summary = read_json(run_dir.pairs / "summary.json")
    assert summary["method"] == "matched" and summary["noise_source"] == source
    # the synthesized pairs are as noisy as the simulated ones (Poisson at ~40 counts)
    assert summary["median_noise_to_signal"] == pytest.approx(summary["reference_noise_to_signal"], rel=0.1)


def test_reweight_command_runs_through_the_pipeline(run_dir, fake_gan, capsys):
    from nt2c.cli import main

    _simulated_pairs(run_dir)
    run_dir.write_stamp(
        "simulate", [run_dir.simulated / "pairs_noisy.mrcs", run_dir.simulated / "pairs_clean.mrcs"], {}
    )
    run_dir.write_stamp("extract-noise", [run_dir.noise / "patches.mrcs"], {})
    run_dir.write_stamp("train-gan", [run_dir.models / "gan.safetensors"], {})
    assert main(["reweight", "--run", str(run_dir.path), "--profile", "smoke", "--method", "paper"]) == 0
    assert "coefficients.csv" in capsys.readouterr().out
    coef = read_coefficients(run_dir.pairs / "coefficients.csv")
    assert len(coef["beta"]) == 16  # the smoke profile's n_pairs
    assert abs(np.median(coef["beta"])) < np.median(
        read_coefficients(run_dir.path)["alpha"]
    )  # paper: beta ~ 0
    # the noise source and the side of the pairs from the command line (GAN samples blended to 48 px)
    assert (
        main(
            [
                "reweight",
                "--run",
                str(run_dir.path),
                "--profile",
                "smoke",
                "--noise-source",
                "gan",
                "--patch-px",
                "48",
                "--force",
            ]
        )
        == 0
    )
    from nt2c.io import read_json, read_mrc

    assert read_json(run_dir.pairs / "summary.json")["noise_source"] == "gan"
    assert read_mrc(run_dir.pairs / "pairs_noisy.mrcs")[0].shape == (16, 48, 48)


def test_plots_run():
    import matplotlib

    matplotlib.use("Agg")
    from nt2c.plots.reweighting import plot_ablation, plot_coefficients, plot_fit_example, plot_pairs

    rng = np.random.default_rng(8)
    S, V = rng.normal(size=(2, 5, 16, 16))
    X = S + rng.normal(size=S.shape)
    pairs = reweight_pairs(S, X, V)
    figs = [
        plot_coefficients({"paper": fit_coefficients(S, V, X), "matched": pairs.coefficients}),
        plot_fit_example(S[0], V[0], X[0], pairs.noisy[0], pairs.clean[0], pairs.coefficients[0]),
        plot_pairs(pairs.noisy, pairs.clean, X[:2], n=3),
        plot_ablation({"coarse": 20.0, "fine (paper)": [19.5, 19.7], "fine (matched)": 21.2}),
    ]
    for fig in figs:
        assert fig.axes
