"""The statistics of every candidate patch of a micrograph at once, from box sums.

The background test needs, for each of thousands of overlapping candidates, the means, variances and pairwise
covariances of its local patches. Each is a sum over a box, so each is read from a summed-area table (integral
image) in O(1): a few passes over the image, whatever the number of candidates. Box corners and sides are all
multiples of ``b = gcd(step, local side)``, so the tables are built on ``b x b`` block sums.

The values equal those of :mod:`nt2c.extraction.ssim` patch by patch (tested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nt2c.extraction.ssim import _ssim_from_stats, _unit_range

__all__ = ["CandidateGrid", "candidate_grid", "background_scores", "raw_statistics", "patch_sums"]


def candidate_grid(shape: tuple[int, int], *, patch_size: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-left rows and columns of the candidate patches: multiples of ``step`` that keep the patch inside.

    Returns
    -------
    rows : numpy.ndarray, int64, shape (n_rows,)
    cols : numpy.ndarray, int64, shape (n_cols,)
    """
    ny, nx = shape
    rows = np.arange(0, ny - patch_size + 1, step, dtype=np.int64)
    cols = np.arange(0, nx - patch_size + 1, step, dtype=np.int64)
    return rows, cols


@dataclass(frozen=True)
class CandidateGrid:
    """The candidates of one micrograph: test windows (patch + margin) and the patches cut from them.

    Attributes
    ----------
    test_rows, test_cols : numpy.ndarray, int64
        Top-left row / column (px) of each candidate's test window, ``patch_size + 2 margin_px`` wide.
    patch_size, step, margin_px, grid_side : int
        ``d``, ``s``, the margin and ``g`` (``N = g^2`` local patches per window).
    """

    test_rows: np.ndarray
    test_cols: np.ndarray
    patch_size: int
    step: int
    margin_px: int
    grid_side: int

    @classmethod
    def of(cls, shape, *, patch_size: int, step: int, margin_px: int, grid_side: int) -> CandidateGrid:
        """Build the grid of a ``shape`` micrograph (windows at multiples of ``step``, wholly inside)."""
        rows, cols = candidate_grid(shape, patch_size=patch_size + 2 * margin_px, step=step)
        return cls(rows, cols, patch_size, step, margin_px, grid_side)

    @property
    def rows(self) -> np.ndarray:
        """Top-left rows (px) of the patches cut from the raw micrograph."""
        return self.test_rows + self.margin_px

    @property
    def cols(self) -> np.ndarray:
        """Top-left columns (px) of the patches cut from the raw micrograph."""
        return self.test_cols + self.margin_px

    @property
    def shape(self) -> tuple[int, int]:
        """Candidates per column and per row."""
        return self.test_rows.size, self.test_cols.size

    @property
    def local_px(self) -> int:
        """Side of a local patch (px)."""
        return (self.patch_size + 2 * self.margin_px) // self.grid_side


# ------------------------------------------------------------------------------------------------------------
# box sums on the gcd grid
# ------------------------------------------------------------------------------------------------------------
def _integral(blocks: np.ndarray) -> np.ndarray:
    """Summed-area table with a zero first row and column."""
    out = np.zeros((blocks.shape[0] + 1, blocks.shape[1] + 1), dtype=np.float64)
    np.cumsum(blocks, axis=0, out=out[1:, 1:])
    np.cumsum(out[1:, 1:], axis=1, out=out[1:, 1:])
    return out


def _block_sums(x: np.ndarray, b: int) -> np.ndarray:
    ny, nx = x.shape
    if b == 1:
        return x
    return x.reshape(ny // b, b, nx // b, b).sum(axis=(1, 3))


def _box(table: np.ndarray, r, c, size: int):
    """Sum ``size x size`` boxes (in block units) with top-left block ``(r, c)`` (broadcast)."""
    return table[r + size, c + size] - table[r, c + size] - table[r + size, c] + table[r, c]


def _table(x: np.ndarray, b: int) -> np.ndarray:
    return _integral(_block_sums(x, b))


# ------------------------------------------------------------------------------------------------------------
# the background test on the enhanced micrograph
# ------------------------------------------------------------------------------------------------------------
def background_scores(
    enhanced: np.ndarray,
    grid: CandidateGrid,
    *,
    criterion: str,
    threshold: float,
    std_max: float,
    mean_tol: float,
    var_tol: float,
    clip_percentile: float,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Score every candidate window of the enhanced micrograph with the background test.

    Parameters
    ----------
    enhanced : numpy.ndarray, shape (ny, nx)
        The enhanced micrograph (its own units: it is normalised to [0, 1] here, over the whole image).
    grid : CandidateGrid
    criterion : {"ssim", "std", "meanvar"}
    threshold, std_max, mean_tol, var_tol, clip_percentile : float
        As for :func:`nt2c.extraction.extract_noise_patches`.

    Returns
    -------
    score : numpy.ndarray, float64, shape grid.shape
        Minimum pairwise SSIM (``"ssim"``), largest local std in grey levels of [0, 255] (``"std"``) or
        largest normalised mean/variance deviation (``"meanvar"``).
    passed : numpy.ndarray, bool, shape grid.shape
    limit : float
        The value the score was compared with.
    """
    g, size = grid.grid_side, grid.local_px
    nr, nc = grid.shape
    window = grid.patch_size + 2 * grid.margin_px
    b = math.gcd(grid.step, size)  # every local-patch corner is a multiple of b
    span_y, span_x = int(grid.test_rows[-1]) + window, int(grid.test_cols[-1]) + window

    lo, hi = _unit_range(enhanced, clip_percentile)  # over the whole micrograph, as the paper normalises I'
    x = enhanced[:span_y, :span_x].astype(np.float64)
    x -= lo
    x *= 1.0 / (hi - lo) if hi > lo else 0.0
    if clip_percentile > 0:
        np.clip(x, 0.0, 1.0, out=x)
    centre = float(x.mean())
    x -= centre  # better-conditioned sums; statistics are shift-invariant once the centre is added back
    n_px = float(size * size)
    sb = size // b
    r_loc = (grid.test_rows[:, None] + np.arange(g)[None, :] * size) // b  # (nr, g): block row of local row a
    c_loc = (grid.test_cols[:, None] + np.arange(g)[None, :] * size) // b  # (nc, g)
    rr, cc = r_loc[:, :, None, None], c_loc[None, None, :, :]
    mu = _box(_table(x, b), rr, cc, sb) / n_px  # (nr, g, nc, g), centred
    var = np.maximum(_box(_table(x * x, b), rr, cc, sb) / n_px - mu * mu, 0.0)
    mu = mu.transpose(0, 2, 1, 3).reshape(nr, nc, g * g)  # local patch k = a g + b
    var = var.transpose(0, 2, 1, 3).reshape(nr, nc, g * g)
    mu_abs = mu + centre

    if criterion == "ssim":
        score = _min_pairwise_ssim(
            x, b=b, g=g, size=size, r_loc=r_loc, c_loc=c_loc, mu=mu, mu_abs=mu_abs, var=var
        )
        return score, score > threshold, float(threshold)
    if criterion == "std":
        score = 255.0 * np.sqrt(var.max(axis=2))
        return score, score <= std_max, float(std_max)
    # meanvar (GCBD): every local mean and variance close to the whole patch's
    mu_p = mu_abs.mean(axis=2)
    var_p = np.maximum((var + mu * mu).mean(axis=2) - mu.mean(axis=2) ** 2, 0.0)
    dmean = np.abs(mu_abs - mu_p[..., None]).max(axis=2)
    dvar = np.abs(var - var_p[..., None]).max(axis=2)
    tiny = 1e-300
    score = np.maximum(
        dmean / np.maximum(mean_tol * np.abs(mu_p), tiny), dvar / np.maximum(var_tol * var_p, tiny)
    )
    score = np.where((dmean == 0) & (dvar == 0), 0.0, score)
    return score, score <= 1.0, 1.0


def _min_pairwise_ssim(x, *, b, g, size, r_loc, c_loc, mu, mu_abs, var) -> np.ndarray:
    """Minimum over the local-patch pairs of Eq. 3, for every candidate; shape (nr, nc).

    The covariance of local patches ``k1`` and ``k2`` is a box sum of ``x(p) x(p + offset)``; pairs sharing
    an offset share one product image, so there are ``((2g - 1)^2 - 1) / 2`` products, not one per candidate.
    """
    nr, nc = r_loc.shape[0], c_loc.shape[0]
    ny, nx = x.shape
    n_px = float(size * size)
    sb = size // b
    score = np.full((nr, nc), np.inf)
    pairs: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for k1 in range(g * g):
        for k2 in range(k1 + 1, g * g):
            a1, b1 = divmod(k1, g)
            a2, b2 = divmod(k2, g)
            pairs.setdefault(((a2 - a1) * size, (b2 - b1) * size), []).append((k1, k2))
    prod = np.zeros_like(x)
    for (dy, dx), members in pairs.items():
        prod.fill(0.0)
        c0, c1 = max(0, -dx), nx - max(0, dx)
        np.multiply(x[: ny - dy, c0:c1], x[dy:, c0 + dx : c1 + dx], out=prod[: ny - dy, c0:c1])
        table = _table(prod, b)
        for k1, k2 in members:
            a1, b1 = divmod(k1, g)
            exy = _box(table, r_loc[:, a1][:, None], c_loc[:, b1][None, :], sb) / n_px
            cov = exy - mu[..., k1] * mu[..., k2]
            value = _ssim_from_stats(mu_abs[..., k1], mu_abs[..., k2], var[..., k1], var[..., k2], cov)
            np.minimum(score, value, out=score)
    return score


# ------------------------------------------------------------------------------------------------------------
# sums over the patches cut from the raw micrograph
# ------------------------------------------------------------------------------------------------------------
def patch_sums(image: np.ndarray, grid: CandidateGrid) -> np.ndarray:
    """Sum of ``image`` over each candidate's ``d x d`` patch; shape ``grid.shape``."""
    d = grid.patch_size
    b = math.gcd(math.gcd(grid.step, d), grid.margin_px)  # patch corners and sides are multiples of b
    rows, cols = grid.rows, grid.cols
    span_y, span_x = int(rows[-1]) + d, int(cols[-1]) + d
    table = _table(np.ascontiguousarray(image[:span_y, :span_x], dtype=np.float64), b)
    return _box(table, (rows // b)[:, None], (cols // b)[None, :], d // b)


def raw_statistics(raw: np.ndarray, grid: CandidateGrid) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of every candidate patch of the raw micrograph (its units).

    Returns
    -------
    mean, std : numpy.ndarray, float64, shape grid.shape
    """
    d = grid.patch_size
    span_y, span_x = int(grid.rows[-1]) + d, int(grid.cols[-1]) + d
    y = raw[:span_y, :span_x].astype(np.float64)
    y_centre = float(y.mean())
    y -= y_centre  # better-conditioned sums
    mean = patch_sums(y, grid) / float(d * d)
    ex2 = patch_sums(y * y, grid) / float(d * d)
    std = np.sqrt(np.maximum(ex2 - mean * mean, 0.0))
    return mean + y_centre, std
