"""The guards applied after the background test: known particles, outliers of the raw statistics, overlap.

Real micrographs need them: ice contamination and carbon are darker than the ice background, an empty hole
brighter and with another shot-noise level, and all three can be smooth enough to pass a similarity test.
"""

from __future__ import annotations

import math

import numpy as np

from nt2c.errors import InputError
from nt2c.extraction.statistics import CandidateGrid, patch_sums

__all__ = ["near_particles", "raw_outliers", "overlap_winners"]

_MIN_REFERENCE = 5  # candidates needed to estimate the background distribution of the outlier guard


def near_particles(grid: CandidateGrid, coords_rc, radius_px: float | None) -> np.ndarray:
    """Candidates whose patch holds a pixel closer than ``radius_px`` to a particle; bool, ``grid.shape``.

    Parameters
    ----------
    grid : CandidateGrid
    coords_rc : array_like, shape (k, 2)
        Particle centres as (row, col) in px.
    radius_px : float
        Exclusion radius (px).
    """
    if radius_px is None:
        raise InputError(
            "exclude_coords was given without exclude_radius_px; give the particle radius in pixels."
        )
    pts = np.asarray(coords_rc, dtype=np.float64)
    if pts.size == 0:
        return np.zeros(grid.shape, dtype=bool)
    if pts.ndim != 2 or pts.shape[1] != 2 or not np.isfinite(pts).all():
        raise InputError(
            f"exclude_coords must be a finite (k, 2) array of (row, col) px, got shape {pts.shape}."
        )
    d = grid.patch_size
    span = (int(grid.rows[-1]) + d, int(grid.cols[-1]) + d)
    return patch_sums(_disc_mask(span, pts, float(radius_px)), grid) > 0.5


def raw_outliers(
    ok: np.ndarray, raw_mean: np.ndarray, raw_std: np.ndarray, sigma: float
) -> tuple[np.ndarray, dict]:
    """Candidates among ``ok`` whose raw mean or std is more than ``sigma`` robust sigmas from the median.

    The median and the robust sigma (1.4826 MAD) are taken over the ``ok`` candidates; with fewer than 5 of
    them the guard is skipped.

    Returns
    -------
    outlier : numpy.ndarray, bool, shape of ``ok``
    reference : dict
        ``mean_median``, ``mean_sigma``, ``std_median``, ``std_sigma`` (empty when skipped).
    """
    reference: dict[str, float] = {}
    if ok.sum() < _MIN_REFERENCE:
        return np.zeros_like(ok), reference
    z = np.zeros(ok.shape)
    for name, values in (("mean", raw_mean), ("std", raw_std)):
        med = float(np.median(values[ok]))
        robust = 1.4826 * float(np.median(np.abs(values[ok] - med)))
        robust = max(robust, 1e-12 * max(1.0, abs(med)))
        reference[f"{name}_median"] = med
        reference[f"{name}_sigma"] = robust
        z = np.maximum(z, np.abs(values - med) / robust)
    return ok & (z > sigma), reference


def _disc_mask(shape, pts: np.ndarray, radius: float) -> np.ndarray:
    """Float mask (1 inside) of the pixels closer than ``radius`` to any point (row, col)."""
    from scipy import ndimage

    ny, nx = shape
    pad = int(math.ceil(radius)) + 1
    seeds = np.ones((ny + 2 * pad, nx + 2 * pad), dtype=bool)
    rr = np.rint(pts[:, 0]).astype(np.int64) + pad
    cc = np.rint(pts[:, 1]).astype(np.int64) + pad
    inside = (rr >= 0) & (rr < seeds.shape[0]) & (cc >= 0) & (cc < seeds.shape[1])
    if not inside.any():
        return np.zeros(shape)
    seeds[rr[inside], cc[inside]] = False
    dist = ndimage.distance_transform_edt(seeds)
    return (dist[pad : pad + ny, pad : pad + nx] < radius).astype(np.float64)


def overlap_winners(
    active: np.ndarray, goodness: np.ndarray, *, d: int, s: int, max_overlap: float
) -> np.ndarray:
    """Greedy best-first selection with an overlap limit, in parallel rounds over the candidate grid.

    A candidate whose rank is the highest among the still-active candidates it conflicts with is kept by the
    sequential greedy algorithm too; keeping all of them at once and dropping their conflicts repeats the
    greedy result exactly, in as many rounds as the longest chain of decreasing scores (a few).
    """
    from scipy import ndimage

    reach = (d - 1) // s  # furthest grid offset that still overlaps
    offs = np.arange(-reach, reach + 1)
    ov = np.clip(d - np.abs(offs) * s, 0, None) / d
    footprint = (ov[:, None] * ov[None, :]) > max_overlap
    widths = footprint.sum(
        axis=1
    )  # the footprint is, row offset by row offset, a centred interval (odd width)
    nr, nc = active.shape

    def neighbourhood_max(values: np.ndarray) -> np.ndarray:
        # maximum over the footprint as a max over row offsets of 1-D running maxima (separable, fast)
        out = np.full_like(values, -1)
        rows_cache: dict[int, np.ndarray] = {}
        for di, w in zip(offs, widths):
            if w == 0:
                continue
            if w not in rows_cache:
                rows_cache[w] = ndimage.maximum_filter1d(
                    values, size=int(w), axis=1, mode="constant", cval=-1
                )
            run = rows_cache[w]
            lo, hi = max(0, -di), min(nr, nr - di)
            if lo < hi:
                np.maximum(out[lo:hi], run[lo + di : hi + di], out=out[lo:hi])
        return out

    order = np.argsort(-goodness.ravel(), kind="stable")
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size)[::-1]  # best gets the largest rank
    rank = rank.reshape(nr, nc)
    active = active.copy()
    keep = np.zeros_like(active)
    while active.any():
        ranked = np.where(active, rank, -1)
        pick = active & (ranked == neighbourhood_max(ranked))
        keep |= pick
        blocked = neighbourhood_max(pick.astype(np.int8)) > 0
        active &= ~blocked
    return keep
