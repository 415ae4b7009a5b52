"""The similarity test of NT2C on one patch: SSIM of Eq. 3 between local patches.

These functions compute the test for a single patch, the way the paper states it; they are what notebook 03
and the tests read. :mod:`nt2c.extraction.statistics` computes exactly the same values for every candidate of
a micrograph at once, from box sums.
"""

from __future__ import annotations

import math

import numpy as np

from nt2c.errors import InputError

__all__ = ["K1", "K2", "normalize_unit", "ssim_eq3", "local_patch_ssim", "grid_side"]

#: Constants of Eq. 3: ``c1 = (K1 L)^2``, ``c2 = (K2 L)^2`` with ``L`` the data range.
K1 = 0.01
K2 = 0.03


def normalize_unit(image, *, clip_percentile: float = 0.0) -> np.ndarray:
    """Scale an image to [0, 1] as the paper does before the SSIM test.

    Parameters
    ----------
    image : array_like, shape (ny, nx)
    clip_percentile : float
        0 (default, the paper): min-max. ``p > 0``: map the ``p``-th and ``(100 - p)``-th percentiles to 0 and
        1 and clip, so that a few hot pixels do not squeeze the range.

    Returns
    -------
    numpy.ndarray, float64, shape (ny, nx)
        A new array; a constant image maps to zeros.
    """
    arr = np.asarray(image, dtype=np.float64)
    lo, hi = _unit_range(arr, clip_percentile)
    if not hi > lo:
        return np.zeros_like(arr)
    out = (arr - lo) * (1.0 / (hi - lo))
    if clip_percentile > 0:
        np.clip(out, 0.0, 1.0, out=out)
    return out


def _unit_range(image: np.ndarray, clip_percentile: float) -> tuple[float, float]:
    """Grey levels mapped to 0 and 1 by :func:`normalize_unit`."""
    if not 0.0 <= clip_percentile < 50.0:
        raise InputError(
            f"clip_percentile={clip_percentile} must be in [0, 50); use 0 for the paper's min-max."
        )
    if clip_percentile > 0:
        lo, hi = np.percentile(image, [clip_percentile, 100.0 - clip_percentile])
        return float(lo), float(hi)
    return float(image.min()), float(image.max())


def _ssim_from_stats(mu1, mu2, var1, var2, cov, data_range: float = 1.0):
    """Eq. 3 from the two patches' means, variances and covariance (broadcasts)."""
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    return ((2 * mu1 * mu2 + c1) * (2 * cov + c2)) / ((mu1**2 + mu2**2 + c1) * (var1 + var2 + c2))


def ssim_eq3(a, b, *, data_range: float = 1.0) -> float:
    """SSIM of two equally sized patches from their global statistics (paper Eq. 3).

    Parameters
    ----------
    a, b : array_like, shape (h, w)
        Patches already on a common scale of width ``data_range`` (the paper normalises images to [0, 1]).
    data_range : float
        ``L`` in ``c1 = (0.01 L)^2``, ``c2 = (0.03 L)^2``.

    Returns
    -------
    float
        ``(2 mu_a mu_b + c1)(2 cov + c2) / ((mu_a^2 + mu_b^2 + c1)(var_a + var_b + c2))`` with population
        (divide-by-n) variances and covariance.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise InputError(f"ssim_eq3 needs two 2-D patches of one shape, got {a.shape} and {b.shape}.")
    mu1, mu2 = a.mean(), b.mean()
    var1, var2 = a.var(), b.var()
    cov = ((a - mu1) * (b - mu2)).mean()
    return float(_ssim_from_stats(mu1, mu2, var1, var2, cov, data_range))


def grid_side(n_sub: int) -> int:
    """Side ``g`` of the ``g x g`` grid of ``n_sub`` local patches (``n_sub`` a square >= 4)."""
    if isinstance(n_sub, bool) or not isinstance(n_sub, (int, np.integer)) or n_sub < 4:
        raise InputError(
            f"n_sub={n_sub!r} must be a square integer >= 4 (4, 9, 16, ...): the local patches form a grid."
        )
    g = math.isqrt(int(n_sub))
    if g * g != n_sub:
        raise InputError(
            f"n_sub={n_sub} is not a square number; use 4, 9, 16, ... (the local patches form a grid)."
        )
    return g


def local_patch_ssim(patch, *, n_sub: int = 4, data_range: float = 1.0) -> np.ndarray:
    """Pairwise SSIM (Eq. 3) between the ``N`` local patches of one candidate patch.

    Parameters
    ----------
    patch : array_like, shape (d, d)
        A patch of the [0, 1]-normalised enhanced image; ``d`` must be divisible by ``sqrt(n_sub)``.
    n_sub : int
        ``N``, a square number; local patch ``k`` is row ``k // g``, column ``k % g`` of the ``g x g`` grid.

    Returns
    -------
    numpy.ndarray, float64, shape (N, N)
        Symmetric, ones on the diagonal. The patch is background for the paper iff every off-diagonal entry
        exceeds ``thre``.
    """
    p = np.asarray(patch, dtype=np.float64)
    g = grid_side(n_sub)
    if p.ndim != 2 or p.shape[0] != p.shape[1] or p.shape[0] % g:
        raise InputError(
            f"patch of shape {p.shape} must be square with a side divisible by sqrt(n_sub) = {g}."
        )
    size = p.shape[0] // g
    local = p.reshape(g, size, g, size).transpose(0, 2, 1, 3).reshape(g * g, size * size)
    mu = local.mean(axis=1)
    dev = local - mu[:, None]
    cov = dev @ dev.T / local.shape[1]
    var = np.diag(cov)
    return _ssim_from_stats(mu[:, None], mu[None, :], var[:, None], var[None, :], cov, data_range)
