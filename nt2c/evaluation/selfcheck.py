"""Which denoiser to trust on the user's own micrographs, without ground truth.

Two tests, both fed by the noise NT2C already has: the background patches extracted from the same
micrographs (``RUN/noise/patches.mrcs``, in the raw micrographs' units).

**Stein's estimate (the one** ``nt2c run`` **decides by).** For additive noise ``n`` of covariance ``Sigma``
and a denoiser ``f``, Stein's lemma gives ``E[n . f(s + n)] = E[tr(Sigma J_f)]``: the part of the output that
follows the noise is measured by the denoiser's *divergence* along noise-like directions, which a probe
answers (Ramani, Blu and Unser 2008, "Monte-Carlo SURE"):
``tr(Sigma J_f) ~ b . (f(y + eps b) - f(y)) / eps`` for one probe ``b`` drawn with the noise's power
spectrum. Subtracting it from the output's covariance with the raw micrograph ``y`` leaves its covariance
with the unknown clean signal ``s``: divided by the output's standard deviation, a score that ranks outputs
as their Pearson correlation with ``s`` does (:func:`stein_check`). Correlation after a scale-and-offset fit
is what the frame/average and simulated benchmarks score; the check needs one more pass of each model, and it
sees both failures: noise left in (a large divergence) and signal removed (a small covariance). An output that
erases everything scores 0, whatever the dose.

**The residual test** (:func:`residual_mismatch_dB`): the residual ``raw - denoised`` of a perfect denoiser is
the noise, so its power spectrum should match the noise patches' at every frequency. A band with less power
means noise left in, one with more means signal removed. It needs no extra pass but is blind at very low
dose, where the residual of an output that removes everything already looks like the noise; it is kept as a
diagnostic.

Both assume noise that is additive, stationary over the micrograph and independent of the signal; shot
noise at a few electrons per pixel is only approximately so. How often each picks the better model where the
truth is known is measured by ``benchmarks/bench_selfcheck.py`` (figures in ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nt2c.errors import InputError
from nt2c.io import validate_image
from nt2c.noise.fidelity import radial_psd

__all__ = [
    "ResidualCheck",
    "residual_tiles",
    "residual_mismatch_dB",
    "compare_models",
    "SteinCheck",
    "noise_probe",
    "stein_check",
]


@dataclass
class ResidualCheck:
    """The residual test of one denoised micrograph.

    Attributes
    ----------
    mismatch_dB : float
        Root-mean-square over the frequency rings of ``bands_dB`` (0 = the residual looks like the noise).
    bands_dB : numpy.ndarray, shape (m,)
        ``10 log10(PSD_residual / PSD_noise)`` per ring: negative = noise left in, positive = signal removed.
    freq : numpy.ndarray, shape (m,)
        Ring centres (cycles/px).
    variance_ratio : float
        Residual variance over noise variance (1 for a perfect denoiser).
    """

    mismatch_dB: float
    bands_dB: np.ndarray
    freq: np.ndarray
    variance_ratio: float


def residual_tiles(raw, denoised, tile_px: int) -> np.ndarray:
    """Cut ``raw - denoised`` into non-overlapping ``tile_px`` squares; shape (n, tile_px, tile_px)."""
    raw = validate_image(raw, name="raw micrograph")
    denoised = validate_image(denoised, name="denoised micrograph")
    if raw.shape != denoised.shape:
        raise InputError(f"raw {raw.shape} and denoised {denoised.shape} micrographs differ in shape.")
    ny, nx = raw.shape
    if min(ny, nx) < tile_px:
        raise InputError(f"the micrograph ({ny} x {nx} px) is smaller than the noise patches ({tile_px} px).")
    residual = raw.astype(np.float64) - denoised.astype(np.float64)
    ky, kx = ny // tile_px, nx // tile_px
    cut = residual[: ky * tile_px, : kx * tile_px].reshape(ky, tile_px, kx, tile_px)
    return cut.transpose(0, 2, 1, 3).reshape(ky * kx, tile_px, tile_px)


def residual_mismatch_dB(raw, denoised, noise_patches) -> ResidualCheck:
    """How far the residual ``raw - denoised`` is from the micrograph's noise, spectrally.

    Parameters
    ----------
    raw : array_like, shape (ny, nx)
        The micrograph (any units).
    denoised : array_like, shape (ny, nx)
        A denoiser's output, in the micrograph's units (as :func:`nt2c.denoise_micrograph` returns it).
    noise_patches : array_like, shape (n, d, d)
        Background (pure-noise) patches of the same micrographs, same units (``RUN/noise/patches.mrcs``).

    Returns
    -------
    ResidualCheck
    """
    noise = validate_image(noise_patches, name="noise patches", ndim=3)
    d = noise.shape[-1]
    if noise.shape[-2] != d:
        raise InputError(f"noise patches must be square, got {noise.shape[1:]}.")
    tiles = residual_tiles(raw, denoised, d)
    freq, psd_res = radial_psd(tiles)
    _, psd_noise = radial_psd(noise)
    ok = (psd_noise > 0) & (psd_res > 0)
    bands = np.full(freq.shape, np.nan)
    bands[ok] = 10.0 * np.log10(psd_res[ok] / psd_noise[ok])
    finite = bands[np.isfinite(bands)]
    mismatch = float(np.sqrt(np.mean(finite**2))) if finite.size else float("inf")
    variance_ratio = float(tiles.var(axis=(1, 2)).mean() / noise.var(axis=(1, 2)).mean())
    return ResidualCheck(mismatch, bands, freq, variance_ratio)


def compare_models(raw, outputs: dict[str, np.ndarray], noise_patches) -> dict:
    """Score several denoised versions of one micrograph by the residual test and name the best.

    Parameters
    ----------
    raw : array_like, shape (ny, nx)
    outputs : dict of str to array_like, each (ny, nx)
        Method name to denoised micrograph (e.g. ``{"coarse": ..., "fine": ...}``).
    noise_patches : array_like, shape (n, d, d)

    Returns
    -------
    dict
        ``checks`` (name to :class:`ResidualCheck`), ``best`` (the name with the smallest mismatch) and
        ``margin_dB`` (how much smaller than the runner-up's).
    """
    if not outputs:
        raise InputError("compare_models needs at least one denoised micrograph.")
    checks = {name: residual_mismatch_dB(raw, out, noise_patches) for name, out in outputs.items()}
    ranked = sorted(checks, key=lambda k: checks[k].mismatch_dB)
    margin = (
        checks[ranked[1]].mismatch_dB - checks[ranked[0]].mismatch_dB if len(ranked) > 1 else float("inf")
    )
    return {"checks": checks, "best": ranked[0], "margin_dB": float(margin)}


@dataclass
class SteinCheck:
    """Stein's estimate of how well one denoised micrograph matches the unknown clean signal.

    Attributes
    ----------
    signal_score : float
        Estimated ``cov(denoised, clean) / std(denoised)``, in the micrograph's units: the decision figure
        (the larger, the better), which needs no estimate of the signal's variance.
    correlation : float
        ``signal_score / sqrt(signal_variance)``: the estimated Pearson correlation of the output with the
        clean signal (1 = perfect up to scale and offset, 0 = unrelated or blank); ``nan`` when the
        micrograph's variance does not exceed the noise's. Its scale rests on ``signal_variance``, a small
        difference of two large numbers at low dose: compare models by ``signal_score``.
    mse : float
        Estimated ``mean((denoised - clean)^2)`` in the micrograph's units squared (Stein's unbiased risk
        estimate; without a scale-and-offset fit).
    divergence : float
        Estimated ``tr(Sigma J) / N``: the output's covariance with the noise, per pixel (units squared).
    noise_variance : float
        Per-pixel noise variance of the probe's model of the noise (units squared).
    signal_variance : float
        ``var(raw) - noise_variance``: the estimated variance of the clean signal.
    score_standard_error : float
        Standard error of ``signal_score`` from the spread of the probes' divergences (NaN with one probe). At
        a high noise-to-signal ratio the output's covariance with the noise dwarfs that with the signal, so a
        per cent of Monte-Carlo error in the divergence moves the score by tens of per cent: compare scores
        against this.
    """

    signal_score: float
    correlation: float
    mse: float
    divergence: float
    noise_variance: float
    signal_variance: float
    score_standard_error: float = float("nan")


def _probe_spectrum(shape: tuple[int, int], noise_patches) -> tuple[np.ndarray, float]:
    """Interpolate the noise patches' 2-D power spectrum on a ``shape`` grid, scaled to their variance."""
    from scipy import ndimage

    noise = validate_image(noise_patches, name="noise patches", ndim=3).astype(np.float64)
    n, h, w = noise.shape
    centred = noise - noise.mean(axis=(1, 2), keepdims=True)
    power = np.fft.fftshift((np.abs(np.fft.fft2(centred)) ** 2).mean(axis=0) / (h * w))
    cy, cx = h // 2, w // 2  # the zero frequency, emptied by the centring: its neighbours' mean
    power[cy, cx] = np.mean(
        [power[cy - 1, cx], power[(cy + 1) % h, cx], power[cy, cx - 1], power[cy, (cx + 1) % w]]
    )
    ny, nx = shape
    fy, fx = np.meshgrid(np.fft.fftfreq(ny), np.fft.fftfreq(nx), indexing="ij")
    # the 2-D spectrum (anisotropy such as detector banding kept), interpolated on the micrograph's grid
    spectrum = ndimage.map_coordinates(power, [fy * h + cy, fx * w + cx], order=1, mode="grid-wrap")
    noise_variance = float(noise.var(axis=(1, 2)).mean())
    if not spectrum.mean() > 0:
        raise InputError("the noise patches are constant: no noise to draw a probe from.")
    return spectrum * (noise_variance / spectrum.mean()), noise_variance


def _draw_probe(spectrum: np.ndarray, seed: int) -> np.ndarray:
    white = np.random.default_rng(seed).standard_normal(spectrum.shape)
    return np.fft.ifft2(np.fft.fft2(white) * np.sqrt(spectrum)).real


def noise_probe(shape: tuple[int, int], noise_patches, *, seed: int = 0) -> tuple[np.ndarray, float]:
    """Draw a Gaussian field with the noise patches' 2-D power spectrum.

    Parameters
    ----------
    shape : (int, int)
        (ny, nx) of the micrograph.
    noise_patches : array_like, shape (n, d, d)
        Background patches, in the micrograph's units.
    seed : int

    Returns
    -------
    probe : numpy.ndarray, float64, shape (ny, nx)
    noise_variance : float
        The per-pixel variance of the noise: the patches' mean variance, which the probe's spectrum is
        scaled to.
    """
    spectrum, noise_variance = _probe_spectrum(shape, noise_patches)
    return _draw_probe(spectrum, seed), noise_variance


def stein_check(
    denoise: Callable[[np.ndarray], np.ndarray],
    raw,
    noise_patches,
    *,
    denoised=None,
    epsilon: float = 0.01,
    seed: int = 0,
    n_probes: int = 1,
) -> SteinCheck:
    """Estimate a denoiser's correlation with the clean signal from the raw micrograph and its noise alone.

    Parameters
    ----------
    denoise : callable
        ``denoise(image) -> image``, shape (ny, nx) to (ny, nx), deterministic (for example
        ``lambda y: nt2c.denoise_micrograph(model, y, device="cpu", show_progress=False)``).
    raw : array_like, shape (ny, nx)
        The micrograph.
    noise_patches : array_like, shape (n, d, d)
        Background (pure-noise) patches in ``raw``'s units (``RUN/noise/patches.mrcs``).
    denoised : array_like, shape (ny, nx), optional
        ``denoise(raw)`` when already computed (saves one pass).
    epsilon : float
        Probe step, relative to the noise: ``denoise`` is evaluated again at ``raw + epsilon * probe``.
    seed : int
        Seed of the first probe (probe ``k`` uses ``seed + k``).
    n_probes : int
        Probes averaged (one more pass of ``denoise`` each); two or more give the score's standard error.

    Returns
    -------
    SteinCheck
    """
    raw = validate_image(raw, name="raw micrograph").astype(np.float64)
    if not epsilon > 0:
        raise InputError(f"epsilon={epsilon}: must be > 0.")
    given = denoise(raw.astype(np.float32)) if denoised is None else denoised  # both passes see float32
    out = validate_image(given, name="denoised micrograph")
    if out.shape != raw.shape:
        raise InputError(f"raw {raw.shape} and denoised {out.shape} micrographs differ in shape.")
    if not n_probes >= 1:
        raise InputError(f"n_probes={n_probes}: must be at least 1.")
    out = out.astype(np.float64)
    spectrum, noise_var = _probe_spectrum(raw.shape, noise_patches)
    divergences = []
    for k in range(int(n_probes)):
        probe = _draw_probe(spectrum, seed + k)
        shifted = validate_image(
            denoise((raw + epsilon * probe).astype(np.float32)), name="denoised micrograph"
        )
        divergences.append(float(np.mean(probe * (shifted.astype(np.float64) - out)) / epsilon))
    divergence = float(np.mean(divergences))
    y, d = raw - raw.mean(), out - out.mean()
    signal_var = float(y.var() - noise_var)
    cov_signal = float(np.mean(y * d)) - divergence
    var_d = float(d.var())
    score = cov_signal / np.sqrt(var_d) if var_d > 0 else 0.0  # a blank output follows nothing
    spread = float(np.std(divergences, ddof=1) / np.sqrt(len(divergences))) if n_probes > 1 else float("nan")
    score_se = spread / np.sqrt(var_d) if var_d > 0 else 0.0
    correlation = score / np.sqrt(signal_var) if signal_var > 0 else float("nan")
    mse = float(np.mean((raw - out) ** 2) - noise_var + 2 * divergence)
    return SteinCheck(
        float(score), float(correlation), mse, divergence, noise_var, signal_var, float(score_se)
    )
