"""Whole-micrograph inference: tiling equals one pass, seamless blending, memory cap, safe model files."""

import json

import numpy as np
import pytest
import torch

from nt2c.denoiser.inference import (
    blend_weights,
    denoise_micrograph,
    estimate_tile_memory_MB,
    keep_raw_low_frequencies,
    load_model,
    normalization_stats,
    save_model,
    tile_starts,
)
from nt2c.denoiser.network import UNet
from nt2c.errors import InputError


@pytest.fixture(scope="module")
def small_net():
    torch.manual_seed(0)
    return UNet(width=4, depth=2).eval()


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return (100.0 + 5.0 * rng.normal(size=(300, 233))).astype(np.float32)


def _one_pass(net, image):
    """Denoise the whole image in one pass, then take its longest periods from the image."""
    mean, std = normalization_stats(image)
    x = torch.from_numpy(((image - mean) / std).astype(np.float32))[None, None]
    with torch.no_grad():
        return keep_raw_low_frequencies(image, (net(x)[0, 0].numpy() * std + mean).astype(np.float32))


def test_single_tile_equals_one_pass(small_net, image):
    out = denoise_micrograph(small_net, image, tile=512, overlap=64, show_progress=False)
    assert out.shape == image.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, _one_pass(small_net, image), rtol=0, atol=1e-4)


def test_tiling_equals_one_pass_when_overlap_covers_receptive_field(small_net, image):
    # the outer quarter of the overlap is cropped: with a quarter >= the receptive radius tiles are exact
    overlap = 4 * small_net.receptive_radius()
    tile = 2 * overlap + 32
    ref = _one_pass(small_net, image)
    out = denoise_micrograph(small_net, image, tile=tile, overlap=overlap, batch_size=3, show_progress=False)
    assert len(tile_starts(304, tile, tile - overlap)) > 1  # really tiled
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-3)  # values ~100, float32 rounding


def test_default_overlap_is_close_and_seamless(image):
    torch.manual_seed(1)
    net = UNet(width=4, depth=5).eval()
    ref = _one_pass(net, image)
    out = denoise_micrograph(net, image, tile=128, overlap=32, show_progress=False)
    # far below the receptive radius (187 px) the blended tiles still agree with one pass to ~1e-4 of the
    # image's contrast; butting tiles without overlap leaves seams (measured: 0.12)
    rel = np.sqrt(np.mean((out - ref) ** 2)) / ref.std()
    assert rel < 1e-3
    butted = denoise_micrograph(net, image, tile=128, overlap=0, show_progress=False)
    assert np.sqrt(np.mean((butted - ref) ** 2)) / ref.std() > 10 * rel


def test_blend_weights_cover_every_pixel():
    size, tile, overlap = 1000, 256, 64
    starts = tile_starts(size, tile, tile - overlap)
    assert starts[0] == 0 and starts[-1] == size - tile
    total = np.zeros(size)
    for s in starts:
        w = blend_weights(s, tile, size, overlap)
        total[s : s + tile] += w
        if s > 0:
            assert np.all(w[: overlap // 4] == 0)  # the outer quarter is discarded
    assert total.min() > 0.4


def test_memory_cap_shrinks_batches_not_results(small_net, image):
    ref = denoise_micrograph(small_net, image, tile=128, overlap=32, batch_size=8, show_progress=False)
    tight = estimate_tile_memory_MB(small_net, 128, 128, 1) * 1.01
    capped = denoise_micrograph(
        small_net, image, tile=128, overlap=32, batch_size=8, max_memory_MB=tight, show_progress=False
    )
    np.testing.assert_allclose(capped, ref, atol=1e-4)


def test_normalization_ignores_a_contaminant_that_inflates_the_global_std(small_net):
    rng = np.random.default_rng(3)
    image = 500.0 + 2.0 * rng.normal(size=(512, 640))
    yy, xx = np.mgrid[:512, :640]
    image[(yy - 100) ** 2 + (xx - 500) ** 2 < 120**2] -= 60.0  # a large dark ice blob
    mean, std = normalization_stats(image)
    assert std == pytest.approx(2.0, rel=0.05) and mean == pytest.approx(500.0, abs=0.1)
    g_mean, g_std = normalization_stats(image, mode="global")
    assert g_std > 8 * std and g_mean == pytest.approx(image.mean())
    # smaller than one tile: the whole image's statistics
    assert normalization_stats(image[:100, :100]) == pytest.approx(
        normalization_stats(image[:100, :100], mode="global")
    )
    # the network sees the noise at the level it was trained on (std 1 in a typical tile), not at a tenth
    # of it
    for mode, level in (("tiles", 1.0), ("global", std / g_std)):
        tile_stds = []
        hook = small_net.register_forward_pre_hook(
            lambda m, args: tile_stds.extend(args[0].flatten(1).std(1).tolist())
        )
        try:
            denoise_micrograph(small_net, image, normalization=mode, tile=128, overlap=0, show_progress=False)
        finally:
            hook.remove()
        assert np.median(tile_stds) == pytest.approx(level, rel=0.05)
    global_out = denoise_micrograph(small_net, image, normalization="global", show_progress=False)
    tiles_out = denoise_micrograph(small_net, image, show_progress=False)
    assert not np.allclose(global_out, tiles_out)
    with pytest.raises(InputError, match="normalization"):
        denoise_micrograph(small_net, image, normalization="robust", show_progress=False)


def test_longest_periods_come_from_the_raw_micrograph():
    """An output that lost the ice ramp gets it back from the raw image, without the raw image's noise."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:256, 0:256]
    ramp = 2.0 * xx / 256 + np.exp(
        -((yy - 128.0) ** 2 + (xx - 90.0) ** 2) / (2 * 40.0**2)
    )  # periods >> 50 px
    noise = rng.normal(size=ramp.shape)
    raw = (ramp + noise).astype(np.float32)
    erased = np.zeros_like(raw)  # a network that flattened everything
    out = keep_raw_low_frequencies(raw, erased, period_px=50)
    inner = np.s_[30:-30, 30:-30]  # reflected edges bend a ramp
    assert np.abs(out - ramp)[inner].max() < 0.15  # the ramp and the blob are back
    assert (out - ramp)[inner].std() < 0.05 * noise.std()  # white noise: only its few longest periods
    # what the network restored at short periods is kept: the longest periods alone are replaced
    detail = np.sin(2 * np.pi * xx / 6.0).astype(np.float32)
    kept = keep_raw_low_frequencies(raw, erased + detail, period_px=50) - out
    np.testing.assert_allclose(kept[inner], detail[inner], atol=5e-3)
    # 0 switches it off; the period and the shapes are checked
    net = UNet(width=4, depth=2).eval()
    plain = denoise_micrograph(net, raw, low_frequency_from_raw_px=0, show_progress=False)
    full = denoise_micrograph(net, raw, show_progress=False)
    np.testing.assert_allclose(full, keep_raw_low_frequencies(raw, plain), atol=1e-4)
    with pytest.raises(InputError, match="period"):
        keep_raw_low_frequencies(raw, erased, period_px=0)
    with pytest.raises(InputError, match="differ in shape"):
        keep_raw_low_frequencies(raw, erased[:10])
    with pytest.raises(InputError, match="low_frequency_from_raw_px"):
        denoise_micrograph(net, raw, low_frequency_from_raw_px=-1, show_progress=False)


def test_constant_image_stays_constant(small_net):
    out = denoise_micrograph(small_net, np.full((40, 50), 3.5, np.float32), show_progress=False)
    assert np.all(out == 3.5)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((4, 4, 4)), "dimensions"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), "NaN"),
        (np.zeros((0, 5)), "empty"),
    ],
)
def test_bad_images(small_net, bad, match):
    with pytest.raises(InputError, match=match):
        denoise_micrograph(small_net, bad, show_progress=False)


def test_bad_tiling_parameters(small_net, image):
    with pytest.raises(InputError, match="overlap"):
        denoise_micrograph(small_net, image, tile=64, overlap=40, show_progress=False)


def test_save_and_load_round_trip(tmp_path, small_net, image):
    weights, sidecar = save_model(small_net, tmp_path / "m.safetensors", info={"training": {"steps": 1}})
    info = json.loads(sidecar.read_text())
    assert info["model"] == small_net.config() and info["training"] == {"steps": 1}
    loaded = load_model(weights)
    assert loaded.nt2c_info["normalization"]["input"] == "zscore"
    a = denoise_micrograph(small_net, image, show_progress=False)
    b = denoise_micrograph(str(weights), image, show_progress=False)  # a path works too
    np.testing.assert_array_equal(a, b)
    assert load_model(sidecar).config() == small_net.config()  # the .json path is accepted


def test_model_files_are_not_pickles(tmp_path, small_net):
    weights, _ = save_model(small_net, tmp_path / "m.safetensors")
    assert not weights.read_bytes().startswith(b"\x80")  # pickle protocol marker


def test_missing_and_corrupt_model_files(tmp_path, small_net):
    with pytest.raises(InputError, match="do not exist"):
        load_model(tmp_path / "none.safetensors")
    weights, sidecar = save_model(small_net, tmp_path / "m.safetensors")
    sidecar.unlink()
    with pytest.raises(InputError, match="missing"):
        load_model(weights)
    weights, sidecar = save_model(small_net, tmp_path / "c.safetensors")
    weights.write_bytes(b"garbage" * 10)
    with pytest.raises(InputError, match="safetensors"):
        load_model(weights)
    weights, sidecar = save_model(small_net, tmp_path / "w.safetensors")
    info = json.loads(sidecar.read_text())
    info["model"]["width"] = 8
    sidecar.write_text(json.dumps(info))
    with pytest.raises(InputError, match="does not match"):
        load_model(weights)
    sidecar.write_text("{not json")
    with pytest.raises(InputError, match="JSON"):
        load_model(weights)


def test_denoising_figures_run(small_net, image):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nt2c.plots.denoising import (
        plot_before_after,
        plot_learning_curves,
        plot_power_spectra,
        plot_unet,
        unet_table,
    )

    net = UNet(width=8)
    table = unet_table(net, input_px=256)
    assert "down 5" in table and "up 5" in table and "bottleneck" in table
    assert str(sum(p.numel() for p in net.parameters())) in table
    curves = {
        "train": [{"step": s, "loss": 1.0 / s, "lr": 1e-3} for s in range(1, 41)],
        "val": [{"step": 20, "loss": 0.1, "psnr_dB": 20.0}, {"step": 40, "loss": 0.05, "psnr_dB": 22.0}],
        "input_psnr_dB": 12.0,
    }
    denoised = denoise_micrograph(small_net, image, show_progress=False)
    for fig in (
        plot_unet(net),
        plot_learning_curves(curves),
        plot_before_after({"noisy": image, "denoised": denoised}, zoom=64),
        plot_power_spectra({"noisy": image, "denoised": denoised}, pixel_size_A=1.3),
    ):
        assert fig.axes
        plt.close(fig)


# -- issue 15: model files named exactly, one-line mismatch messages, non-finite weights and outputs ---------
def test_load_model_loads_only_the_file_it_is_given(tmp_path, small_net):
    weights, _ = save_model(small_net, tmp_path / "fine.safetensors")
    with pytest.raises(
        InputError,
        match=r"fine\.pt is not an nt2c model file.*beside it is .*fine\.safetensors, pass that path",
    ):
        load_model(tmp_path / "fine.pt")  # used to load fine.safetensors silently
    with pytest.raises(InputError, match=r"other\.pth is not an nt2c model file"):
        load_model(tmp_path / "other.pth")
    with pytest.raises(
        InputError, match=r"is a folder; give the model file NAME\.safetensors.*fine\.safetensors"
    ):
        load_model(tmp_path)
    assert load_model(weights).config() == small_net.config()


def test_architecture_mismatch_is_one_line_naming_the_expected_model(tmp_path, small_net):
    weights, sidecar = save_model(small_net, tmp_path / "m.safetensors")
    info = json.loads(sidecar.read_text())
    info["model"]["width"] = 8
    sidecar.write_text(json.dumps(info))
    with pytest.raises(InputError) as exc:
        load_model(weights)
    message = str(exc.value)
    assert "\n" not in message and len(message) < 600, message
    assert "m.safetensors does not match the architecture in m.json" in message
    assert "width=8" in message and "other shapes" in message
    # the GAN generator is named as such
    gan_weights, gan_sidecar = tmp_path / "gan.safetensors", tmp_path / "gan.json"
    gan_weights.write_bytes(weights.read_bytes())
    gan_sidecar.write_text(json.dumps({"model": "gan-generator", "architecture": {}}))
    with pytest.raises(InputError, match="GAN noise generator, not a denoiser"):
        load_model(gan_weights)


def _nan_net(small_net):
    net = UNet(**{k: v for k, v in small_net.config().items() if k != "arch"}).eval()
    net.load_state_dict(small_net.state_dict())
    with torch.no_grad():
        next(iter(net.parameters())).view(-1)[0] = float("nan")
    return net


def test_models_with_non_finite_weights_are_refused_at_load(tmp_path, small_net):
    weights, _ = save_model(_nan_net(small_net), tmp_path / "diverged.safetensors")
    with pytest.raises(InputError, match=r"diverged\.safetensors holds NaN or infinite weights \(1 of"):
        load_model(weights)


def test_denoising_never_returns_non_finite_pixels(small_net, image):
    with pytest.raises(InputError, match="NaN or infinite pixels.*Nothing was written"):
        denoise_micrograph(_nan_net(small_net), image, show_progress=False)
