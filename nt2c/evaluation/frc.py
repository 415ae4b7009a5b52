"""Fourier ring correlation (Saxton & Baumeister 1982) of two images and its threshold crossings."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nt2c.errors import InputError

__all__ = ["FRCResult", "frc"]


@dataclass
class FRCResult:
    """A Fourier ring correlation curve and its threshold crossings.

    Attributes
    ----------
    frequency : numpy.ndarray, shape (n_rings,)
        Centre of each ring: cycles/px, or 1/A when ``pixel_size_A`` was given.
    correlation : numpy.ndarray, shape (n_rings,)
        FRC of each ring (ring 0 is the lowest non-zero frequency band; the DC term is left out).
    n_pixels : numpy.ndarray of int, shape (n_rings,)
        Fourier pixels in each ring.
    crossing_0143, crossing_05 : float
        Frequency (same units as ``frequency``) where the curve first falls below 0.143 / 0.5, linearly
        interpolated between rings; the last ring's frequency when it never does (the curve stays above the
        threshold up to Nyquist), the first ring's when it starts below.
    pixel_size_A : float or None
    """

    frequency: np.ndarray
    correlation: np.ndarray
    n_pixels: np.ndarray
    crossing_0143: float
    crossing_05: float
    pixel_size_A: float | None = None
    unit: str = field(default="1/px")

    def resolution(self, threshold: float = 0.143) -> float:
        """Return the crossing as a spacing: 1 / frequency, in A (with ``pixel_size_A``) or px."""
        f = self.crossing_0143 if threshold == 0.143 else self.crossing_05 if threshold == 0.5 else None
        if f is None:
            f = _crossing(self.frequency, self.correlation, threshold)
        return float("inf") if f <= 0 else 1.0 / f


def _crossing(freq: np.ndarray, corr: np.ndarray, threshold: float) -> float:
    below = np.nonzero(corr < threshold)[0]
    if len(below) == 0:
        return float(freq[-1])
    k = int(below[0])
    if k == 0:
        return float(freq[0])
    c0, c1 = corr[k - 1], corr[k]
    t = (c0 - threshold) / (c0 - c1) if c0 != c1 else 0.0
    return float(freq[k - 1] + t * (freq[k] - freq[k - 1]))


def _tukey(n: int, alpha: float) -> np.ndarray:
    """Tukey (tapered cosine) window of length ``n``: flat centre, cosine roll-off of ``alpha * n / 2`` px."""
    x = np.arange(n) / max(n - 1, 1)
    w = np.ones(n)
    edge = alpha / 2
    lo, hi = x < edge, x > 1 - edge
    w[lo] = 0.5 * (1 + np.cos(np.pi * (x[lo] / edge - 1)))
    w[hi] = 0.5 * (1 + np.cos(np.pi * ((x[hi] - 1) / edge + 1)))
    return w


def frc(
    a: np.ndarray,
    b: np.ndarray,
    *,
    pixel_size_A: float | None = None,
    n_rings: int | None = None,
    taper: float = 0.1,
) -> FRCResult:
    """Fourier ring correlation of two images (Saxton & Baumeister 1982).

    ``FRC(r) = Re sum_{|k| in r} A(k) B*(k) / sqrt(sum |A(k)|^2 sum |B(k)|^2)`` over rings of spatial
    frequency |k| of equal width ``0.5 / n_rings`` cycles/px from 0 to Nyquist (0.5 cycles/px); corner
    frequencies beyond Nyquist are left out. For a non-square image the frequency of a Fourier pixel is
    ``sqrt((ky/ny)^2 + (kx/nx)^2)`` cycles/px.

    Against a clean image the FRC is the per-frequency correlation, a function of the spectral SNR of the
    output. A linear, rotationally symmetric filter (low-pass, Gaussian) multiplies both images' ring sums by
    the same gain and so leaves the FRC unchanged (up to the ring width): only adaptive, non-linear denoisers
    can raise it. With a CTF-modulated clean image the curve dips at the CTF zeros, and the first crossing
    can come from such a dip.

    Parameters
    ----------
    a, b : numpy.ndarray, shape (ny, nx)
        Typically a denoiser's output and the clean image (FRC is invariant to scale, and the mean is
        removed).
    pixel_size_A : float, optional
        Pixel size (A/px); frequencies are then in 1/A.
    n_rings : int, optional
        Number of rings (default ``min(ny, nx) // 4``, i.e. two Fourier pixels wide, which halves the
        statistical noise of one-pixel rings).
    taper : float
        Fraction of each side rolled off with a cosine (Tukey) window before the transform, so that the
        image edges do not add a spurious cross of correlated frequencies; 0 disables it.

    Returns
    -------
    FRCResult
    """
    from nt2c.evaluation.metrics import _pair

    x, y = _pair(a, b)
    ny, nx = x.shape
    if min(ny, nx) < 8:
        raise InputError(f"images of shape {x.shape} are too small for an FRC (need at least 8 x 8 px).")
    if not 0 <= taper < 1:
        raise InputError(f"taper={taper} must be in [0, 1).")
    if pixel_size_A is not None and pixel_size_A <= 0:
        raise InputError(f"pixel_size_A={pixel_size_A} must be positive.")
    n_rings = int(n_rings or min(ny, nx) // 4)
    if n_rings < 2:
        raise InputError(f"n_rings={n_rings} must be at least 2.")
    x = x - x.mean()
    y = y - y.mean()
    if taper > 0:
        win = np.outer(_tukey(ny, taper), _tukey(nx, taper))
        x = x * win
        y = y * win
    fa = np.fft.rfft2(x)
    fb = np.fft.rfft2(y)
    ky = np.fft.fftfreq(ny)[:, None]
    kx = np.fft.rfftfreq(nx)[None, :]
    radius = np.sqrt(ky * ky + kx * kx)
    # rfft2 holds half the spectrum: the columns 1..(nx-1)//2 stand for two Fourier pixels each
    weight = np.full(kx.shape, 2.0)
    weight[0, 0] = 1.0
    if nx % 2 == 0:
        weight[0, -1] = 1.0
    weight = np.broadcast_to(weight, radius.shape)
    edges = np.linspace(0.0, 0.5, n_rings + 1)
    ring = np.digitize(radius, edges) - 1  # 0 .. n_rings-1 inside Nyquist
    inside = (radius > 0) & (radius <= 0.5)
    ring = np.where(inside, np.clip(ring, 0, n_rings - 1), -1)
    sel = ring >= 0
    idx = ring[sel]
    w = weight[sel]
    cross = np.bincount(idx, weights=w * (fa[sel] * np.conj(fb[sel])).real, minlength=n_rings)
    pa = np.bincount(idx, weights=w * np.abs(fa[sel]) ** 2, minlength=n_rings)
    pb = np.bincount(idx, weights=w * np.abs(fb[sel]) ** 2, minlength=n_rings)
    npx = np.bincount(idx, weights=w, minlength=n_rings).astype(int)
    keep = npx > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(pa * pb > 0, cross / np.sqrt(pa * pb), 0.0)
    freq = 0.5 * (edges[:-1] + edges[1:])
    freq, corr, npx = freq[keep], corr[keep], npx[keep]
    unit = "1/px"
    if pixel_size_A is not None:
        freq = freq / float(pixel_size_A)
        unit = "1/A"
    return FRCResult(
        freq,
        corr,
        npx,
        _crossing(freq, corr, 0.143),
        _crossing(freq, corr, 0.5),
        None if pixel_size_A is None else float(pixel_size_A),
        unit,
    )
