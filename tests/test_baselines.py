"""Baselines behind one interface: shapes, dtypes, what each filter does, and clear skips."""

from __future__ import annotations

import numpy as np
import pytest

from nt2c.errors import InputError
from nt2c.evaluation.baselines import (
    BASELINES,
    MethodUnavailableError,
    bm3d_denoise,
    denoise_with,
    estimate_noise_sigma,
    lowpass_bin2,
    method_status,
    topaz_command,
)


@pytest.fixture(scope="module")
def noisy():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :72]
    clean = 5.0 * np.exp(-((xx - 30) ** 2 + (yy - 34) ** 2) / 60.0) + 100.0
    return clean, (clean + rng.normal(scale=1.0, size=clean.shape)).astype(np.float32)


@pytest.mark.parametrize("method", ["raw", "lowpass", "gaussian", "bm3d"])
def test_methods_keep_shape_and_dtype(method, noisy):
    clean, image = noisy
    out = denoise_with(method, image, stages="hard")
    assert out.shape == image.shape and out.dtype == np.float32
    assert np.isfinite(out).all()
    if method == "raw":
        np.testing.assert_array_equal(out, image)
    else:  # every filter reduces the error against the clean image
        assert np.mean((out - clean) ** 2) < 0.5 * np.mean((image - clean) ** 2)


def test_lowpass_is_2x_binning():
    x = np.arange(36, dtype=np.float32).reshape(6, 6)
    out = lowpass_bin2(x)
    assert out.shape == (6, 6)
    assert out.mean() == pytest.approx(x.mean(), rel=1e-6)  # binning and interpolation keep the mean
    checker = np.indices((8, 8)).sum(0) % 2 * 2.0 - 1  # Nyquist pattern: removed completely by 2x2 averaging
    np.testing.assert_allclose(lowpass_bin2(checker), 0.0, atol=1e-6)
    assert lowpass_bin2(np.ones((7, 9))).shape == (7, 9)  # odd sizes


def test_noise_sigma_estimate():
    rng = np.random.default_rng(1)
    ramp = np.linspace(0, 50, 128)[None, :] * np.ones((128, 1))  # an ice gradient is not noise
    image = 1000 + ramp + rng.normal(scale=3.0, size=(128, 128))
    assert estimate_noise_sigma(image) == pytest.approx(3.0, rel=0.1)
    with pytest.raises(InputError, match="constant"):
        estimate_noise_sigma(np.ones((32, 32)))


def test_bm3d_uses_given_sigma_and_units(noisy):
    clean, image = noisy
    out = bm3d_denoise(image * 10 + 5, sigma=10.0, stages="hard")
    assert abs(out.mean() - (image.mean() * 10 + 5)) < 1.0  # stays in the input's units
    with pytest.raises(InputError, match="stages"):
        bm3d_denoise(image, stages="fast")


def test_unknown_method_and_bad_input():
    with pytest.raises(InputError, match="unknown denoising method"):
        denoise_with("median", np.zeros((8, 8)))
    with pytest.raises(InputError, match="NaN"):
        denoise_with("gaussian", np.full((8, 8), np.nan))
    with pytest.raises(InputError, match="2 dimensions"):
        denoise_with("lowpass", np.zeros((2, 8, 8)))


def test_missing_topaz_and_models_are_reported(monkeypatch, tmp_path):
    monkeypatch.setenv("NT2C_TOPAZ", "")
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        "nt2c.evaluation.topaz.importlib.util.find_spec",
        lambda name: None if name == "topaz" else real_find_spec(name),
    )
    monkeypatch.setattr("nt2c.evaluation.topaz.shutil.which", lambda name: None)
    assert topaz_command() is None
    status = method_status(run=tmp_path)
    assert set(status) == set(BASELINES)
    assert status["raw"] is None and status["lowpass"] is None
    assert "pip install topaz-em" in status["topaz"]
    assert "fine.safetensors" in status["nt2c-fine"] and "train-fine" in status["nt2c-fine"]
    with pytest.raises(MethodUnavailableError, match="topaz-em"):
        denoise_with("topaz", np.zeros((16, 16)))
    with pytest.raises(MethodUnavailableError, match="coarse"):
        denoise_with("nt2c-coarse", np.zeros((16, 16)), run=tmp_path)


def test_topaz_failure_is_reported(monkeypatch):
    # a "topaz" that exits with an error: the message shows its output and what to do
    monkeypatch.setenv("NT2C_TOPAZ", "python -c \"import sys; sys.exit('topaz exploded')\"")
    with pytest.raises(MethodUnavailableError, match="topaz exploded"):
        denoise_with("topaz", np.random.default_rng(0).normal(size=(16, 16)), device="cpu")


def test_nt2c_model_through_inference(tmp_path):
    """A tiny untrained U-Net in a run's models folder is found and run through nt2c.denoiser.inference."""
    inference = pytest.importorskip("nt2c.denoiser.inference")
    unet = pytest.importorskip("nt2c.denoiser.network")
    import torch

    torch.manual_seed(0)
    try:
        model = unet.UNet(width=4)
    except TypeError:
        pytest.skip("nt2c.denoiser.network.UNet has another signature")
    inference.save_model(model, tmp_path / "models" / "fine.safetensors")
    image = np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32)
    out = denoise_with(
        "nt2c-fine", image, run=tmp_path, device="cpu", inference_options={"tile": 64, "overlap": 0}
    )
    assert out.shape == image.shape and out.dtype == np.float32 and np.isfinite(out).all()


@pytest.mark.skipif(topaz_command() is None, reason="Topaz-Denoise (topaz-em, GPL) is not installed")
def test_topaz_runs_when_installed(noisy):
    clean, image = noisy
    out = denoise_with("topaz", image, device="cpu")
    assert out.shape == image.shape and out.dtype == np.float32
    assert np.mean((out - clean) ** 2) < np.mean((image - clean) ** 2)


def test_method_status_describe_names_what_runs(monkeypatch, tmp_path):
    monkeypatch.setenv("NT2C_TOPAZ", "")
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        "nt2c.evaluation.topaz.importlib.util.find_spec",
        lambda name: None if name == "topaz" else real_find_spec(name),
    )
    monkeypatch.setattr("nt2c.evaluation.topaz.shutil.which", lambda name: None)
    status = method_status(["raw", "noise2void", "topaz", "nt2c-fine"], run=tmp_path, describe=True)
    assert status["raw"] == "Raw"
    assert status["topaz"].startswith("unavailable: ") and status["nt2c-fine"].startswith("unavailable: ")
    expected = "CAREamics" if importlib.util.find_spec("careamics") else "nt2c's own blind-spot"
    assert expected in status["noise2void"]
    assert method_status(["noise2void"]) == {"noise2void": None}
