"""WGAN-GP noise synthesizer: networks, per-sample gradient penalty, training, resume, sampling, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from nt2c.config import stage_config
from nt2c.errors import ConfigError, InputError, StageError
from nt2c.io import read_json, read_mrc, write_mrc
from nt2c.noise import (
    blend_noise_patches,
    gradient_penalty,
    load_generator,
    resample_patches,
    sample_noise,
    sample_noise_fields,
    save_generator,
    tiles_per_axis,
    train_gan,
    train_gan_stage,
)
from nt2c.noise.fidelity import noise_fidelity, white_noise_like
from nt2c.noise.networks import Critic, Generator


def coloured_noise(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """Spatially correlated (Gaussian-filtered, sigma 1.5 px) and skewed (log-normal) noise, offset 10."""
    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.normal(size=(n, size, size)), (0, 1.5, 1.5), mode="wrap")
    field /= field.std()
    return (10.0 + 3.0 * np.exp(0.8 * field)).astype(np.float32)


# -- networks ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("d", [64, 128, 256])
def test_network_shapes_and_layers(d):
    gen = Generator(patch_px=d, latent_dim=16, width=4)
    critic = Critic(patch_px=d, width=4)
    x = gen(torch.randn(2, 16))
    assert x.shape == (2, 1, d, d)
    assert critic(x).shape == (2,)
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in gen.modules()) == 6
    assert sum(isinstance(m, torch.nn.Conv2d) for m in critic.modules()) == 6
    assert isinstance(list(gen.net)[-1], torch.nn.ConvTranspose2d)  # linear output, no Tanh
    norms = (torch.nn.BatchNorm2d, torch.nn.InstanceNorm2d, torch.nn.LayerNorm, torch.nn.GroupNorm)
    assert not any(isinstance(m, norms) for m in critic.modules())


def test_bad_patch_size_is_a_config_error():
    with pytest.raises(ConfigError, match="64, 128 or 256"):
        Generator(patch_px=100)
    with pytest.raises(ConfigError):
        stage_config("train-gan", "smoke", patch_px=96)


def test_critic_scores_each_sample_independently_of_the_batch():
    critic = Critic(patch_px=64, width=4)
    x = torch.randn(3, 1, 64, 64)
    torch.testing.assert_close(critic(x)[1:2], critic(x[1:2]))


# -- gradient penalty ----------------------------------------------------------------------------------------
def test_gradient_penalty_is_per_sample_over_c_h_w():
    """D(x) = 0.5 ||x||^2 has gradient x: the norm at xhat_i = eps_i a_i 1 is eps_i a_i sqrt(C H W)."""
    b, c, h, w = 3, 2, 4, 4
    a = torch.tensor([0.1, 0.25, 1.0])
    real = a.reshape(b, 1, 1, 1) * torch.ones(b, c, h, w)
    fake = torch.zeros(b, c, h, w)
    eps = torch.tensor([0.5, 1.0, 0.2])

    def critic(x):
        return 0.5 * (x**2).flatten(1).sum(1)

    gp, norms = gradient_penalty(critic, real, fake, eps=eps, return_norms=True)
    expected_norms = eps * a * np.sqrt(c * h * w)  # [0.4, 1.414, 1.131]
    torch.testing.assert_close(norms, expected_norms)
    expected = float(((expected_norms - 1) ** 2).mean())
    assert gp.item() == pytest.approx(expected, rel=1e-6)
    per_pixel = float(
        ((eps * a - 1) ** 2).mean()
    )  # the reference code's norm over dim=1 (here C = 2 differs too)
    assert abs(gp.item() - per_pixel) > 0.1


def test_gradient_penalty_of_a_linear_critic_and_its_gradient():
    wt = torch.randn(1, 1, 8, 8)

    def critic(x):
        return (x * wt).flatten(1).sum(1)

    real, fake = torch.randn(5, 1, 8, 8), torch.randn(5, 1, 8, 8)
    gp = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(0))
    assert gp.item() == pytest.approx((wt.norm().item() - 1) ** 2, rel=1e-5)
    # the penalty is differentiable in the critic's parameters (create_graph=True)
    wt.requires_grad_(True)
    gp = gradient_penalty(critic, real, fake)
    (g,) = torch.autograd.grad(gp, wt)
    torch.testing.assert_close(g, 2 * (wt.norm() - 1) * wt / wt.norm())


# -- training ------------------------------------------------------------------------------------------------
def median_skewness(patches) -> float:
    """Pearson's second skewness of the pixel values, ``3 (mean - median) / std`` (0 for symmetric noise).

    Unlike the third moment it does not hang on the few largest pixels of the log-normal tail.
    """
    x = np.asarray(patches, dtype=np.float64).ravel()
    return float(3.0 * (x.mean() - np.median(x)) / x.std())


@pytest.mark.slow
def test_short_training_learns_coloured_non_gaussian_noise(tmp_path):
    """A short training learns the noise colour, the skew of the histogram and the units of the patches.

    Sixty iterations do not converge: training stops somewhere in its oscillation, and where depends on float
    rounding, which differs between machines (CPU vector kernels, thread count) and which the GAN amplifies;
    pinning threads makes a run repeatable on one machine only. So only what held in every run of a sweep is
    asserted, against matched white noise scored in the same run, with margins of 3-7 sd beyond the sweep's
    mean. Sweep (20 runs: training seeds 0-7 on 1 thread, the same with ``ATEN_CPU_CAPABILITY=avx2
    ONEDNN_MAX_CPU_ISA=AVX2``, seeds 0-3 on 2 threads), mean +- sd [min, max]: gan / white spectrum distance
    0.36 +- 0.05 [0.28, 0.47], autocorrelation distance 0.25 +- 0.11 [0.08, 0.51]; gan / real median
    skewness 1.02 +- 0.25 [0.54, 1.50], std 0.89 +- 0.10 [0.72, 1.05]; |mean offset| 0.10 +- 0.09 [0.01,
    0.33] real std. Not asserted: gan / white KS statistic [0.21, 3.56] and Wasserstein distance [0.21,
    0.99], which the mean offset dominates (the former bounds failed in 8 of the 20 runs, seed 0 among them
    on 2 threads and with AVX2 kernels).
    """
    train, held = coloured_noise(64, seed=0), coloured_noise(64, seed=1)
    settings = stage_config(
        "train-gan",
        "smoke",
        width=8,
        batch_size=16,
        iterations=60,
        lr=2e-3,
        n_critic=5,
        checkpoint_every=1000,
    )
    trained = train_gan(train, settings, device="cpu")
    assert len(trained.curves["iteration"]) == 60
    assert np.isfinite(trained.curves["wasserstein_estimate"]).all()
    model, _ = save_generator(tmp_path / "gan.safetensors", trained)
    generated = sample_noise(model, 64, seed=0, device="cpu")
    white_noise = white_noise_like(held, seed=0)
    gan = noise_fidelity(held, generated)
    white = noise_fidelity(held, white_noise)
    # the baseline is far off in both statistics (deterministic: NumPy draws; 13.0 dB and 0.40 here)
    assert white["psd_log_ratio_db"] > 10.0 and white["acf_mad"] > 0.3
    # noise colour (bounds 4.6 sd above the sweep's mean)
    assert gan["psd_log_ratio_db"] < 0.6 * white["psd_log_ratio_db"]
    assert gan["acf_mad"] < 0.75 * white["acf_mad"]
    # histogram: skewed like the real noise (0.88 here; bound 3.3 sd below the sweep's mean), white is not
    real_skew = median_skewness(held)
    assert real_skew > 0.5 and abs(median_skewness(white_noise)) < 0.05 * real_skew
    assert median_skewness(generated) > 0.2 * real_skew
    # in the units of the patches (bounds 4-7 sd off the sweep's mean; z-scored output: offset 3.6, std 0.26)
    assert abs(generated.mean() - held.mean()) < 0.75 * held.std()
    assert 0.4 < generated.std() / held.std() < 1.5


TINY = dict(width=4, batch_size=4, iterations=4, n_critic=2, checkpoint_every=2, latent_dim=8)


def test_resume_continues_the_interrupted_run_exactly(tmp_path):
    data = coloured_noise(8, size=72, seed=2)
    straight = train_gan(data, stage_config("train-gan", "smoke", **TINY), device="cpu")
    ckpt = tmp_path / "gan.pt"
    first = train_gan(
        data,
        stage_config("train-gan", "smoke", **{**TINY, "iterations": 2}),
        checkpoint_path=ckpt,
        device="cpu",
    )
    assert first.resumed_from == 0 and ckpt.is_file()
    resumed = train_gan(data, stage_config("train-gan", "smoke", **TINY), checkpoint_path=ckpt, device="cpu")
    assert resumed.resumed_from == 2
    assert resumed.curves["critic_loss"] == pytest.approx(straight.curves["critic_loss"], rel=1e-5)
    for key, value in straight.generator.state_dict().items():
        torch.testing.assert_close(resumed.generator.state_dict()[key], value)
    # other settings: the checkpoint is ignored, training starts again
    other = train_gan(
        data, stage_config("train-gan", "smoke", **{**TINY, "lr": 5e-4}), checkpoint_path=ckpt, device="cpu"
    )
    assert other.resumed_from == 0


def test_sampling_is_seeded_batch_independent_and_in_patch_units(tmp_path):
    data = coloured_noise(8, seed=3) * 100
    trained = train_gan(data, stage_config("train-gan", "smoke", **TINY), device="cpu")
    model, sidecar = save_generator(tmp_path / "g.safetensors", trained)
    meta = read_json(sidecar)
    assert meta["normalisation"]["mean"] == pytest.approx(float(data.mean()), rel=1e-5)
    assert meta["architecture"]["patch_px"] == 64
    a = sample_noise(model, 7, seed=5, device="cpu", batch_size=7)
    b = sample_noise(model, 7, seed=5, device="cpu", batch_size=2)
    assert a.shape == (7, 64, 64) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-3)
    assert not np.allclose(a, sample_noise(model, 7, seed=6, device="cpu"))
    gen, _ = load_generator(sidecar, device="cpu")
    assert not gen.training
    with pytest.raises(InputError, match="train-gan"):
        sample_noise(tmp_path / "missing.safetensors", 3)
    with pytest.raises(InputError, match="at least one"):
        sample_noise(model, 0)


def test_sample_noise_fields_blends_generated_patches(tmp_path):
    trained = train_gan(coloured_noise(8, seed=3), stage_config("train-gan", "smoke", **TINY), device="cpu")
    model, _ = save_generator(tmp_path / "g.safetensors", trained)
    same = sample_noise_fields(model, 3, None, seed=2, device="cpu")
    np.testing.assert_array_equal(same, sample_noise(model, 3, seed=2, device="cpu"))
    big = sample_noise_fields(model, 2, 96, seed=2, device="cpu")
    assert big.shape == (2, 96, 96) and big.dtype == np.float32 and np.isfinite(big).all()
    with pytest.raises(InputError, match="smaller than the GAN"):
        sample_noise_fields(model, 2, 32)


# -- noise fields larger than the patches, and the real patches as a noise source ----------------------------
def test_blending_keeps_variance_and_short_range_correlation_without_seams():
    d, size = 32, 80
    k = tiles_per_axis(size, d) ** 2
    assert k == 36  # ceil(80 / 16) + 1 = 6 patches per axis
    rng = np.random.default_rng(0)
    white = rng.normal(2.0, 3.0, size=(400 * k, d, d)).astype(np.float32)
    fields = blend_noise_patches(white, size)
    assert fields.shape == (400, size, size)
    assert fields.mean() == pytest.approx(2.0, abs=0.01)
    # the squared weights sum to one at every pixel: the per-pixel variance is flat (no seams, no dark grid)
    pixel_var = fields.var(axis=0)
    assert pixel_var.mean() == pytest.approx(9.0, rel=0.01)
    for profile in (pixel_var.mean(axis=0), pixel_var.mean(axis=1)):  # across and along the tile seams
        np.testing.assert_allclose(profile, 9.0, rtol=0.05)
    # coloured noise keeps its autocorrelation at short lags (wrap-filtered: stationary within each patch)
    coloured = gaussian_filter(rng.normal(size=(60 * k, d, d)), (0, 1.5, 1.5), mode="wrap").astype(np.float32)
    blended = blend_noise_patches(coloured, size)

    def acf(a, lag):
        a = a - a.mean()
        return float(np.mean(a[:, :, :-lag] * a[:, :, lag:]) / np.mean(a * a))

    centred = coloured - coloured.mean(axis=(1, 2), keepdims=True)  # the blend centres each patch on its mean
    for lag in (1, 2, 4):
        assert acf(blended, lag) == pytest.approx(acf(centred, lag), abs=0.02)
    assert blended.std() == pytest.approx(centred.std(), rel=0.03)


def test_blending_ignores_each_patchs_own_level():
    """Patches cut where the ice is thicker or the gain higher differ in level: no window-shaped bumps."""
    d, size = 32, 80
    k = tiles_per_axis(size, d) ** 2
    rng = np.random.default_rng(2)
    noise = rng.normal(0.0, 1.0, size=(50 * k, d, d)).astype(np.float32)
    levels = rng.normal(5.0, 10.0, size=(50 * k, 1, 1)).astype(np.float32)
    fields = blend_noise_patches(noise + levels, size)
    assert fields.mean() == pytest.approx(float(levels.mean()), abs=0.01)
    within = fields - fields.mean(axis=(1, 2), keepdims=True)
    assert within.var() == pytest.approx(1.0, rel=0.05)  # not 1 + 100: the levels are not blended in


def test_blending_rejects_bad_input():
    with pytest.raises(InputError, match="even"):
        blend_noise_patches(np.zeros((36, 31, 31), np.float32), 64)
    with pytest.raises(InputError, match="smaller"):
        blend_noise_patches(np.zeros((1, 32, 32), np.float32), 16)
    with pytest.raises(InputError, match="whole fields"):
        blend_noise_patches(np.zeros((35, 32, 32), np.float32), 80)


def test_resample_patches_draws_rotated_crops_of_the_real_patches():
    rng = np.random.default_rng(1)
    patches = rng.normal(size=(5, 40, 40)).astype(np.float32)
    crops = resample_patches(patches, 50, 24, seed=3)
    assert crops.shape == (50, 24, 24) and crops.dtype == np.float32
    np.testing.assert_array_equal(crops, resample_patches(patches, 50, 24, seed=3))  # seeded

    def found(crop):  # the crop is a rotated/flipped window of one of the patches
        for p in patches:
            for turn in range(4):
                for flip in (False, True):
                    c = np.rot90(crop, -turn) if not flip else np.rot90(crop[:, ::-1], -turn)
                    hits = np.argwhere(np.isclose(p, c[0, 0]))
                    for r, q in hits:
                        if r + 24 <= 40 and q + 24 <= 40 and np.array_equal(p[r : r + 24, q : q + 24], c):
                            return True
        return False

    assert all(found(c) for c in crops[:10])
    assert resample_patches(patches, 4).shape == (4, 40, 40)  # default: the patches' side
    big = resample_patches(patches, 3, 64, seed=0)  # larger than the patches: blended crops
    assert big.shape == (3, 64, 64) and np.isfinite(big).all()
    with pytest.raises(InputError, match="extract-noise"):
        resample_patches(np.zeros((0, 8, 8), np.float32), 3)


def test_spatial_latent_generator_trains_saves_and_samples(tmp_path):
    gen = Generator(patch_px=128, latent_dim=8, width=4, spatial_latent=True)
    assert gen.latent_size == 8 * 8 * 8
    assert gen(torch.randn(2, gen.latent_size)).shape == (2, 1, 128, 128)
    data = coloured_noise(8, seed=6)
    trained = train_gan(data, stage_config("train-gan", "smoke", spatial_latent=True, **TINY), device="cpu")
    model, sidecar = save_generator(tmp_path / "s.safetensors", trained)
    assert read_json(sidecar)["architecture"]["spatial_latent"] is True
    gen, _ = load_generator(model, device="cpu")
    assert gen.latent_size == 8 * 4 * 4
    assert sample_noise(model, 3, device="cpu").shape == (3, 64, 64)


def test_bad_training_input_raises_clear_errors():
    settings = stage_config("train-gan", "smoke", **TINY)
    with pytest.raises(InputError, match="too few to train the GAN"):
        train_gan(coloured_noise(1), settings)
    with pytest.raises(InputError, match="smaller than the GAN's patch_px"):
        train_gan(coloured_noise(8, size=32), settings)
    bad = coloured_noise(8)
    bad[2, 5, 5] = np.nan
    with pytest.raises(InputError, match="NaN"):
        train_gan(bad, settings)
    with pytest.raises(InputError, match="constant"):
        train_gan(np.ones((8, 64, 64), np.float32), settings)


def test_fewer_patches_than_a_batch_shrink_the_batch_with_a_warning(caplog):
    settings = stage_config("train-gan", "smoke", **{**TINY, "iterations": 2})
    assert settings.batch_size > 3
    with caplog.at_level("WARNING"):
        trained = train_gan(coloured_noise(3), settings, device="cpu")
    assert trained.settings.batch_size == 3
    assert "batches of 3" in caplog.text
    assert len(trained.curves["iteration"]) == 2


def test_resume_continues_the_shuffled_patch_order_bit_for_bit(tmp_path):
    settings = stage_config("train-gan", "smoke", **{**TINY, "iterations": 4, "checkpoint_every": 1})
    patches = coloured_noise(7)  # 7 patches, batches of 4: the shuffle spans iterations
    whole = train_gan(patches, settings, device="cpu")

    def stop_after_two(iteration, values):
        if iteration == 2:
            raise KeyboardInterrupt

    ckpt = tmp_path / "gan.pt"
    with pytest.raises(KeyboardInterrupt):
        train_gan(patches, settings, checkpoint_path=ckpt, device="cpu", on_iteration=stop_after_two)
    resumed = train_gan(patches, settings, checkpoint_path=ckpt, device="cpu")
    assert resumed.resumed_from == 2
    for key, value in whole.generator.state_dict().items():
        assert torch.equal(value, resumed.generator.state_dict()[key]), key


# -- stage, CLI, figures -------------------------------------------------------------------------------------
@pytest.fixture()
def gan_run(run_dir):
    """Make a run whose noise/patches.mrcs and simulated pairs were placed by hand (extract-noise stamped)."""
    patches = coloured_noise(30, size=80, seed=4)
    write_mrc(run_dir.noise / "patches.mrcs", patches, pixel_size_A=1.5)
    clean = np.full((6, 64, 64), 5.0, np.float32)
    write_mrc(run_dir.simulated / "pairs_clean.mrcs", clean)
    write_mrc(
        run_dir.simulated / "pairs_noisy.mrcs",
        clean + np.random.default_rng(0).normal(0, 3, clean.shape).astype(np.float32),
    )
    run_dir.write_stamp("extract-noise", [run_dir.noise / "patches.mrcs"], {})
    return run_dir


def test_stage_writes_model_curves_and_fidelity_report(gan_run):
    from nt2c.run.stages import run_stage

    outputs = run_stage("train-gan", gan_run, profile="smoke", device="cpu")
    names = {p.name for p in outputs}
    assert names == {"gan.safetensors", "gan.json", "gan_curves.json", "noise_fidelity.json"}
    meta = read_json(gan_run.models / "gan.json")
    assert len(meta["split"]["heldout"]) == 6 and len(meta["split"]["train"]) == 24
    assert meta["pixel_size_A"] == pytest.approx(1.5)
    report = read_json(gan_run.report / "noise_fidelity.json")
    assert list(report["rows"]) == ["gan", "white_gaussian", "simulator", "real (train)"]
    for row in report["rows"].values():
        assert row["n_generated"] == 32 and row["psd_log_ratio_db"] >= 0
    # the simulator's white noise is shifted onto the real mean
    assert report["rows"]["simulator"]["mean_generated"] == pytest.approx(report["rows"]["gan"]["mean_real"])
    assert len(read_json(gan_run.report / "gan_curves.json")["iteration"]) == 3
    assert (gan_run.checkpoints / "gan.pt").is_file()
    # complete: a second call skips
    assert {p.name for p in run_stage("train-gan", gan_run, profile="smoke", device="cpu")} == names


def test_stage_errors(run_dir):
    settings = stage_config("train-gan", "smoke")
    with pytest.raises(StageError, match="extract-noise"):
        train_gan_stage(run_dir, settings, run_dir.params())
    write_mrc(run_dir.noise / "patches.mrcs", coloured_noise(1))
    with pytest.raises(InputError, match="too few"):
        train_gan_stage(run_dir, settings, run_dir.params())


def test_cli_train_and_sample(gan_run, capsys):
    from nt2c.cli import main

    assert main(["train-gan", "--run", str(gan_run.path), "--profile", "smoke", "--device", "cpu"]) == 0
    out = gan_run.path / "noise" / "sampled.mrcs"
    assert main(["sample-noise", "--run", str(gan_run.path), "-n", "5", "-o", str(out), "--seed", "1"]) == 0
    stack, pixel_size = read_mrc(out)
    assert stack.shape == (5, 64, 64) and pixel_size == pytest.approx(1.5)
    assert main(["sample-noise", "--run", str(gan_run.path / "nothing"), "-n", "2"]) == 2
    assert "train-gan" in capsys.readouterr().err


def test_figures_run(gan_run):
    import matplotlib

    matplotlib.use("Agg")
    from nt2c.noise import fidelity_sets
    from nt2c.plots.noise import (
        plot_fidelity_table,
        plot_gan_curves,
        plot_noise_statistics,
        show_real_vs_generated,
    )
    from nt2c.run.stages import run_stage

    run_stage("train-gan", gan_run, profile="smoke", device="cpu")
    sets, info = fidelity_sets(gan_run, n=8, device="cpu")
    assert set(sets) == {"real (held-out)", "gan", "simulator", "real (train)"} and "simulator" in info
    figs = [
        show_real_vs_generated(sets["real (held-out)"], sets["gan"], n=3),
        plot_noise_statistics(sets),
        plot_fidelity_table(read_json(gan_run.report / "noise_fidelity.json")["rows"]),
        plot_gan_curves(read_json(gan_run.report / "gan_curves.json")),
    ]
    import matplotlib.pyplot as plt

    for fig in figs:
        assert fig.axes
        plt.close(fig)
