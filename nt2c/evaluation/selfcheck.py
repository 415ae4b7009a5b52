"""Which denoiser to trust on the user's own micrographs, without ground truth: the residual test.

A perfect denoiser returns the signal, so what it removes, the residual ``raw - denoised``, is the noise. NT2C
has a sample of that noise from the same micrographs: the extracted background patches. So the residual's
power spectrum should equal the noise patches' power spectrum at every frequency:

* a band where the residual has *less* power than the noise means noise left in the output (under-denoising,
  or structure the network invented: the residual then carries its negative);
* a band with *more* power means signal removed with the noise (particles erased, edges blurred).

:func:`residual_mismatch_dB` measures the root-mean-square of ``10 log10(PSD_residual / PSD_noise)`` over the
frequency rings (0 dB: the residual looks exactly like the noise). :func:`compare_models` scores several
outputs of one micrograph and names the one closest to the noise. The test needs the noise patches in the raw
micrograph's units (``RUN/noise/patches.mrcs`` are cut from the raw micrographs) and assumes the noise is
stationary over the micrograph. How often it picks the better model where the truth is known is measured by
``benchmarks/bench_selfcheck.py`` (figures in ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nt2c.errors import InputError
from nt2c.io import validate_image
from nt2c.noise.fidelity import radial_psd

__all__ = ["ResidualCheck", "residual_tiles", "residual_mismatch_dB", "compare_models"]


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
