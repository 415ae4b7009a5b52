"""How strong the signal is against the noise in the user's micrographs, in their own units.

Real micrographs come in arbitrary units (counts, gain-normalised floats, rescaled 8/16-bit grey levels), so
only their own statistics say how much of their variance is signal. With the background patches NT2C already
extracted (pure noise, same units), the variance of a micrograph splits as

    var(micrograph tile) = var(signal in the tile) + var(noise),

both measured on tiles of the noise patches' side ``t`` with each tile's mean removed (coloured noise has more
variance in larger tiles, so the two must be measured alike). With ``band_per_px`` the same split is made on
the power inside a band of spatial frequencies (:func:`band_powers`, e.g. :data:`SIGNAL_BAND_A`), which leaves
out the low-frequency structure of real micrographs (ice thickness, illumination) that the simulation does not
model. The ``reweight`` stage uses the whole variance: on the simulated stand-ins the band estimate was
further from the truth (the SSIM-selected background patches hold less power in that band than the noise
under the particles; figures in ``benchmarks/RESULTS.md``). :func:`measure_signal_noise` returns
the per-pixel noise variance, the signal variance and their ratio ``noise_to_signal`` (NSR). The re-weighting
method ``"calibrated"`` (:mod:`nt2c.reweighting`) builds the fine pairs at this ratio instead of the
simulator's.

The estimate needs a signal that stands out of the noise: at very low dose (a single 2 e/A^2 frame) the
signal variance is a small difference of two large numbers, and :func:`measure_signal_noise` reports it as not
measurable (``nsr = None``) when it is below ``min_signal_fraction`` of the noise variance or below twice its
own standard error. That error has two parts: the statistical one (the spread over tiles and patches) and a
systematic one, the patches' noise level against the micrographs'. The background patches are where the
SSIM test found flat noise; where the noise is not the same everywhere (an ice thickness gradient), they can
carry less of it than the micrographs do. At high spatial frequency (:data:`NOISE_CHECK_BAND_PER_PX`), where
the signal is negligible (envelope, MTF), the micrographs and the patches should carry the same power; their
ratio ``noise_level_ratio`` differs from 1 by the patches' relative error in noise level, and
``|noise_level_ratio - 1| * noise_variance`` is added to the standard error. Measured: 0.98-1.00 on nt2c's
stand-ins and the real EMPIAR-10146 averages, 1.43 on micrographs of an independent simulator with a
20-70 nm ice ramp, whose patches carry 30 % less noise than the truth (``benchmarks/RESULTS.md``).
Tiles much brighter or darker than the rest (contaminants, carbon edges: variance above ``outlier_factor``
times the median) are left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nt2c.errors import InputError
from nt2c.io import validate_image

__all__ = [
    "NOISE_CHECK_BAND_PER_PX",
    "SignalNoise",
    "SIGNAL_BAND_A",
    "signal_band",
    "band_powers",
    "tile_variances",
    "measure_signal_noise",
]

#: The band (A, coarsest first) in which the calibration compares signal and noise: particle detail, above
#: the lowest frequencies (ice thickness, carbon edges, illumination: structure the simulation does not model)
#: and below the highest (detector MTF, aliasing). Chosen from physics, not tuned on any micrograph.
SIGNAL_BAND_A = (40.0, 8.0)


#: Where the noise levels of the patches and the micrographs are compared (cycles/px): the signal is
#: negligible there at the usual samplings (0.3 cycles/px is 5 A at 1.5 A/px); below Nyquist's aliasing.
NOISE_CHECK_BAND_PER_PX = (0.3, 0.45)


def signal_band(pixel_size_A: float) -> tuple[float, float]:
    """:data:`SIGNAL_BAND_A` in cycles/px for ``pixel_size_A`` (the upper edge capped at 0.4 cycles/px)."""
    if not pixel_size_A > 0:
        raise InputError(f"pixel_size_A = {pixel_size_A!r}: must be positive.")
    return pixel_size_A / SIGNAL_BAND_A[0], min(pixel_size_A / SIGNAL_BAND_A[1], 0.4)


@dataclass(frozen=True)
class SignalNoise:
    """Signal and noise variance of a set of micrographs (per pixel, in the micrographs' units squared).

    Attributes
    ----------
    tile_px : int
        Side of the tiles both variances were measured on (the noise patches' side).
    noise_variance : float
        Mean within-patch variance of the noise patches.
    micrograph_variance : float
        Mean within-tile variance of the micrographs (outlier tiles left out).
    signal_variance : float
        ``micrograph_variance - noise_variance``.
    standard_error : float
        Standard error of ``signal_variance``: the spread over tiles and patches and the systematic error
        ``|noise_level_ratio - 1| * noise_variance``, added in quadrature.
    nsr : float or None
        ``noise_variance / signal_variance``; None when the signal is not measurable (see the module
        docstring).
    per_micrograph : dict of str to float
        Each micrograph's own ``noise_variance / (its variance - noise_variance)`` (NaN where not positive).
    noise_level_ratio : float
        Micrographs' power over the patches' in :data:`NOISE_CHECK_BAND_PER_PX`, where the signal is
        negligible: 1 when the patches carry the micrographs' noise level.
    """

    tile_px: int
    noise_variance: float
    micrograph_variance: float
    signal_variance: float
    standard_error: float
    nsr: float | None
    per_micrograph: dict[str, float] = field(default_factory=dict)
    noise_level_ratio: float = 1.0

    def why_not_measurable(self) -> str | None:
        """Say in numbers why ``nsr`` is None (None when it is measured)."""
        if self.nsr is not None:
            return None
        why = (
            f"signal variance {self.signal_variance:.4g} +- {self.standard_error:.3g} against noise variance "
            f"{self.noise_variance:.4g}"
        )
        systematic = abs(self.noise_level_ratio - 1.0) * self.noise_variance
        if systematic**2 > self.standard_error**2 - systematic**2:  # the larger part of the error
            low, high = NOISE_CHECK_BAND_PER_PX
            why += (
                f"; the noise patches' level differs from the micrographs' by "
                f"{100 * (self.noise_level_ratio - 1):+.1f} % (their power at {low}-{high} cycles/px, where "
                "the signal is negligible), more than the signal's share (non-uniform noise, e.g. an ice "
                "thickness gradient, makes the background patches unrepresentative)"
            )
        return why


def tile_variances(image, tile_px: int, *, border_fraction: float = 0.05) -> np.ndarray:
    """Within-tile variances (each tile's mean removed) of non-overlapping ``tile_px`` tiles.

    Parameters
    ----------
    image : array_like, shape (ny, nx)
    tile_px : int
    border_fraction : float
        Share of each side left out at the edges (edge artefacts of motion correction).

    Returns
    -------
    numpy.ndarray, shape (n_tiles,)
    """
    tiles = _tiles(image, tile_px, border_fraction)
    return tiles.reshape(len(tiles), -1).var(axis=1)


def band_powers(tiles, band_per_px: tuple[float, float]) -> np.ndarray:
    """Mean power spectral density of each tile inside a frequency band (each tile's mean removed).

    Parameters
    ----------
    tiles : array_like, shape (n, t, t)
    band_per_px : (float, float)
        Lowest and highest spatial frequency of the band (cycles/px).

    Returns
    -------
    numpy.ndarray, shape (n,)
        ``mean over the band of |FFT(tile - mean)|^2 / t^2`` (white noise of variance ``s^2`` gives ``s^2``).
    """
    a = np.asarray(tiles, dtype=np.float64)
    n, h, w = a.shape
    radius = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :])
    mask = (radius >= band_per_px[0]) & (radius <= band_per_px[1])
    if not mask.any():
        raise InputError(f"the band {band_per_px} cycles/px holds no frequency of {h} px tiles.")
    power = np.abs(np.fft.fft2(a - a.mean(axis=(1, 2), keepdims=True))) ** 2 / (h * w)
    return power[:, mask].mean(axis=1)


def _tiles(image, tile_px: int, border_fraction: float = 0.05) -> np.ndarray:
    img = validate_image(image, name="micrograph").astype(np.float64)
    ny, nx = img.shape
    by, bx = int(border_fraction * ny), int(border_fraction * nx)
    inner = img[by : ny - by, bx : nx - bx]
    ky, kx = inner.shape[0] // tile_px, inner.shape[1] // tile_px
    if ky * kx == 0:
        raise InputError(f"the micrograph ({ny} x {nx} px) holds no {tile_px} px tile inside its borders.")
    cut = inner[: ky * tile_px, : kx * tile_px].reshape(ky, tile_px, kx, tile_px).transpose(0, 2, 1, 3)
    return cut.reshape(ky * kx, tile_px, tile_px)


def measure_signal_noise(
    micrographs,
    noise_patches,
    *,
    names=None,
    band_per_px: tuple[float, float] | None = None,
    outlier_factor: float = 10.0,
    min_signal_fraction: float = 0.01,
) -> SignalNoise:
    """Measure the signal and noise variance of micrographs from their extracted noise patches.

    Parameters
    ----------
    micrographs : sequence of array_like, each (ny, nx)
        The micrographs the noise patches were cut from (same units).
    noise_patches : array_like, shape (n, t, t)
        Background patches (``RUN/noise/patches.mrcs``).
    names : sequence of str, optional
        Names for ``per_micrograph`` (default ``"0"``, ``"1"``, ...).
    band_per_px : (float, float), optional
        Measure the powers inside this band of spatial frequencies (cycles/px, :func:`band_powers`) instead
        of the whole within-tile variance; the "variances" of the result are then mean spectral densities in
        the band.
    outlier_factor : float
        Tiles whose variance exceeds this multiple of the median tile variance are left out.
    min_signal_fraction : float
        Smallest signal variance, relative to the noise variance, reported as measurable.

    Returns
    -------
    SignalNoise
    """
    noise = validate_image(noise_patches, name="noise patches", ndim=3).astype(np.float64)
    t = noise.shape[-1]
    if noise.shape[-2] != t:
        raise InputError(f"noise patches must be square, got {noise.shape[1:]}.")
    if len(micrographs) == 0:
        raise InputError("measure_signal_noise needs at least one micrograph.")
    names = [str(k) for k in range(len(micrographs))] if names is None else [str(n) for n in names]
    if band_per_px is None:
        noise_vars = noise.reshape(len(noise), -1).var(axis=1)
    else:
        noise_vars = band_powers(noise, band_per_px)
    noise_variance = float(noise_vars.mean())
    if not noise_variance > 0:
        raise InputError("the noise patches are constant: no noise level to measure.")
    kept, per_micrograph, high = [], {}, []
    for name, image in zip(names, micrographs):
        tiles = _tiles(image, t)
        total = tiles.reshape(len(tiles), -1).var(axis=1)
        v = total if band_per_px is None else band_powers(tiles, band_per_px)
        inlier = total <= outlier_factor * np.median(total)
        v = v[inlier]
        high.append(band_powers(tiles[inlier], NOISE_CHECK_BAND_PER_PX))
        kept.append(v)
        signal = float(v.mean()) - noise_variance
        per_micrograph[name] = noise_variance / signal if signal > 0 else float("nan")
    tiles = np.concatenate(kept)
    micrograph_variance = float(tiles.mean())
    signal_variance = micrograph_variance - noise_variance
    noise_high = float(band_powers(noise, NOISE_CHECK_BAND_PER_PX).mean())
    noise_level_ratio = float(np.concatenate(high).mean()) / noise_high if noise_high > 0 else float("inf")
    systematic = abs(noise_level_ratio - 1.0) * noise_variance
    standard_error = float(
        np.sqrt(
            tiles.var() / len(tiles)
            + (noise_vars.var() / len(noise_vars) if len(noise_vars) > 1 else 0.0)
            + systematic**2
        )
    )
    measurable = signal_variance > max(min_signal_fraction * noise_variance, 2.0 * standard_error)
    nsr = noise_variance / signal_variance if measurable else None
    return SignalNoise(
        t,
        noise_variance,
        micrograph_variance,
        signal_variance,
        standard_error,
        nsr,
        per_micrograph,
        noise_level_ratio,
    )
