"""Patch-similarity guided noise-patch extraction (paper section 2.2.2).

NT2C learns the noise of a dataset from *background* patches of its own micrographs: where the beam crossed
only vitreous ice, the recorded image is pure noise (shot noise, detector noise, structural noise of the ice),
with the dataset's real statistics. Finding those patches in a raw micrograph is hard at cryo-EM SNRs, so the
test runs on an *enhanced* copy (the coarse denoiser's output) and the patches are then cut from the *raw*
micrograph.

The paper's algorithm (:func:`extract_noise_patches` with ``criterion="ssim"``):

1. normalise the enhanced image ``I'`` to [0, 1] (min-max over the micrograph);
2. cut it into ``d x d`` candidate patches with step ``s`` (top-left corners ``(i s, j s)``);
3. split each candidate into ``N = g^2`` local patches (a ``g x g`` grid of ``d/g`` squares) and compute the
   SSIM of Eq. 3 for every pair, from the means, variances and covariance of the *whole* local patches, with
   ``c1 = (K1 L)^2``, ``c2 = (K2 L)^2``, ``L = 1``, ``K1 = 0.01``, ``K2 = 0.03`` (population statistics,
   i.e. divided by the number of pixels);
4. call the candidate background when every pair's SSIM exceeds ``thre``; cut it from the raw ``I``.

Two other background tests are selectable: ``criterion="std"`` (what the public reference code actually ran:
the enhanced image min-max scaled to [0, 255] grey levels, background iff every local patch has a standard
deviation of at most ``std_max`` grey levels) and ``criterion="meanvar"`` (GCBD, Chen et al. 2018: background
iff every local patch ``q`` of the patch ``p`` has ``|mean(q) - mean(p)| <= mean_tol mean(p)`` and ``|var(q) -
var(p)| <= var_tol var(p)``).

Guards that real micrographs need, applied after the test:

* ``outlier_sigma``: the raw mean and standard deviation of each candidate are compared with the distribution
  over the candidates that passed the test (median and 1.4826 MAD); a candidate more than ``outlier_sigma``
  robust sigmas away in either is rejected. Ice contamination and carbon are darker than the ice background,
  an empty hole brighter and with a different shot-noise level, and all three can be smooth enough to pass a
  similarity test.
* ``exclude_coords`` / ``exclude_radius_px``: candidates holding a pixel within that radius of a given
  particle coordinate are rejected.
* ``max_overlap``: at most this fraction of a patch's area may be shared with another selected patch (greedy
  best-first non-maximum suppression, computed in parallel rounds).

Everything is vectorised: every statistic is a box sum, computed from block sums on the grid of
``gcd(s, d/g)`` pixels and integral images, so the cost is a few passes over the image whatever the number
of candidates. The inputs are never modified.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from nt2c.errors import InputError, StageError

__all__ = [
    "NoisePatches",
    "NoNoisePatchError",
    "extract_noise_patches",
    "extract_noise_stage",
    "normalize_unit",
    "ssim_eq3",
    "local_patch_ssim",
    "list_micrographs",
    "candidate_grid",
    "box_particle_distance",
    "STATUS_NAMES",
]

K1 = 0.01
K2 = 0.03
CRITERIA = ("ssim", "std", "meanvar")

#: Meaning of :attr:`NoisePatches.status` codes, in the order the tests are applied.
STATUS_NAMES: tuple[str, ...] = ("selected", "criterion", "excluded", "outlier", "overlap")
_SELECTED, _CRITERION, _EXCLUDED, _OUTLIER, _OVERLAP = range(5)
_MIN_REFERENCE = 5  # candidates needed to estimate the background distribution of the outlier guard


class NoNoisePatchError(InputError):
    """No candidate patch passed the background test and the guards; the message says what to relax."""


@dataclass
class NoisePatches:
    """Result of :func:`extract_noise_patches`.

    Attributes
    ----------
    boxes : numpy.ndarray, int64, shape (n, 2)
        Top-left (row, col) of the selected patches, in pixels, in raster order.
    patches : numpy.ndarray, float32, shape (n, d, d)
        The selected patches cut from the *raw* micrograph (copies).
    scores : numpy.ndarray, float64, shape (n,)
        The criterion's statistic of each selected patch: minimum pairwise SSIM (``"ssim"``, higher is more
        background-like), maximum local standard deviation in grey levels of [0, 255] (``"std"``, lower is
        better) or maximum normalised mean/variance deviation (``"meanvar"``, background iff <= 1).
    candidates : numpy.ndarray, int64, shape (m, 2)
        Top-left (row, col) of every candidate on the grid, raster order (``grid_shape`` rows of candidates).
    candidate_scores : numpy.ndarray, float64, shape (m,)
        The criterion's statistic of every candidate.
    status : numpy.ndarray, int8, shape (m,)
        Why each candidate was kept or dropped; index into :data:`STATUS_NAMES`
        (selected, criterion, excluded, outlier, overlap).
    raw_mean, raw_std : numpy.ndarray, float64, shape (m,)
        Mean and standard deviation of each candidate in the raw micrograph (its units).
    grid_shape : tuple of int
        Candidates per column and per row, ``(n_rows, n_cols)``.
    patch_size, step, n_sub : int
        ``d``, ``s`` and ``N`` used.
    criterion : str
    threshold : float
        The value the statistic was compared with (``threshold``, ``std_max`` or 1 for ``"meanvar"``).
    margin_px : int
        Margin around each patch included in the background test.
    reference : dict
        Median and robust sigma of ``raw_mean`` and ``raw_std`` used by the outlier guard (empty when it was
        off or had too few candidates to work with).
    """

    boxes: np.ndarray
    patches: np.ndarray
    scores: np.ndarray
    candidates: np.ndarray
    candidate_scores: np.ndarray
    status: np.ndarray
    raw_mean: np.ndarray
    raw_std: np.ndarray
    grid_shape: tuple[int, int]
    patch_size: int
    step: int
    n_sub: int
    criterion: str
    threshold: float
    reference: dict = field(default_factory=dict)
    margin_px: int = 0

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def __repr__(self) -> str:
        return (
            f"NoisePatches(n={len(self)} of {self.candidates.shape[0]} candidates, d={self.patch_size}, "
            f"s={self.step}, N={self.n_sub}, criterion={self.criterion!r}, counts={self.counts()})"
        )

    def counts(self) -> dict[str, int]:
        """How many candidates ended in each :data:`STATUS_NAMES` class."""
        tally = np.bincount(self.status.astype(np.int64), minlength=len(STATUS_NAMES))
        return {name: int(c) for name, c in zip(STATUS_NAMES, tally)}

    @property
    def passed_criterion(self) -> np.ndarray:
        """Boolean (m,): candidates that passed the background test (before the guards)."""
        return self.status != _CRITERION

    def explain_empty(self) -> str:
        """Say which parameter to relax when nothing was selected."""
        return _explain(self)


# ------------------------------------------------------------------------------------------------------------
# SSIM of Eq. 3 and helpers (used by the tests and the notebook; the extraction computes the same in bulk)
# ------------------------------------------------------------------------------------------------------------
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


def _grid_side(n_sub: int) -> int:
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
    g = _grid_side(n_sub)
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


def _check_margin(margin_px, shape, d: int, g: int) -> int:
    if isinstance(margin_px, bool) or not isinstance(margin_px, (int, np.integer)) or margin_px < 0:
        raise InputError(
            f"margin_px={margin_px!r} must be a non-negative integer number of pixels (0 = the paper)."
        )
    big = d + 2 * int(margin_px)
    if big % g:
        raise InputError(
            f"patch_size + 2 margin_px = {big} is not divisible by sqrt(n_sub) = {g}; "
            "change margin_px by one or two."
        )
    if min(shape) < big:
        raise InputError(
            f"the micrograph ({shape[0]} x {shape[1]} px) is smaller than patch_size + 2 margin_px = {big}; "
            f"lower margin_px or patch_size."
        )
    return int(margin_px)


def _check_params(
    shape,
    patch_size,
    step,
    n_sub,
    threshold,
    criterion,
    std_max,
    mean_tol,
    var_tol,
    outlier_sigma,
    max_overlap,
    exclude_radius_px,
):
    for name, value in (("patch_size", patch_size), ("step", step)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InputError(f"{name}={value!r} must be a positive integer number of pixels.")
    g = _grid_side(n_sub)
    if patch_size % g:
        raise InputError(
            f"patch_size={patch_size} is not divisible by sqrt(n_sub) = {g}; "
            "choose a patch size that is a multiple "
            f"of {g} (e.g. {patch_size - patch_size % g}) so the {n_sub} local patches tile it."
        )
    if patch_size // g < 2:
        raise InputError(
            f"patch_size={patch_size} with n_sub={n_sub} gives local patches of 1 px; use a larger patch."
        )
    if criterion not in CRITERIA:
        raise InputError(f"criterion={criterion!r} is unknown; use one of {', '.join(map(repr, CRITERIA))}.")
    if not -1.0 <= float(threshold) <= 1.0:
        raise InputError(f"threshold={threshold} must be in [-1, 1] (an SSIM value; the paper uses 0.7).")
    if not std_max > 0:
        raise InputError(
            f"std_max={std_max} must be positive (grey levels of [0, 255]; the reference code used 1.0)."
        )
    if not (mean_tol > 0 and var_tol > 0):
        raise InputError(
            f"mean_tol={mean_tol} and var_tol={var_tol} must be positive (GCBD used 0.1 and 0.25)."
        )
    if outlier_sigma is not None and not outlier_sigma > 0:
        raise InputError(f"outlier_sigma={outlier_sigma} must be positive, or None to switch the guard off.")
    if max_overlap is not None and not 0.0 <= max_overlap < 1.0:
        raise InputError(
            f"max_overlap={max_overlap} must be in [0, 1) (a fraction of the patch area), or None."
        )
    if exclude_radius_px is not None and not exclude_radius_px >= 0:
        raise InputError(f"exclude_radius_px={exclude_radius_px} must be >= 0.")
    ny, nx = shape
    if ny < patch_size or nx < patch_size:
        raise InputError(
            f"the micrograph ({ny} x {nx} px) is smaller than patch_size={patch_size}; "
            "use a patch size of at most "
            f"{min(ny, nx)} px (e.g. --patch-size {max(g, (min(ny, nx) // 2) // g * g)})."
        )
    return g


# ------------------------------------------------------------------------------------------------------------
# the extraction
# ------------------------------------------------------------------------------------------------------------
def extract_noise_patches(
    raw,
    enhanced,
    *,
    patch_size: int = 320,
    step: int | None = None,
    n_sub: int = 4,
    threshold: float = 0.7,
    criterion: Literal["ssim", "std", "meanvar"] = "ssim",
    std_max: float = 1.0,
    mean_tol: float = 0.1,
    var_tol: float = 0.25,
    clip_percentile: float = 0.0,
    outlier_sigma: float | None = 6.0,
    exclude_coords=None,
    exclude_radius_px: float | None = None,
    max_overlap: float | None = None,
    margin_px: int = 0,
    allow_empty: bool = False,
    max_bytes: int = 4 * 2**30,
) -> NoisePatches:
    """Find background (pure-noise) patches of a micrograph with the patch-similarity test of NT2C.

    Parameters
    ----------
    raw : array_like, shape (ny, nx)
        The raw micrograph ``I`` (any units); the patches are cut from it.
    enhanced : array_like, shape (ny, nx)
        The enhanced micrograph ``I'`` (coarse-denoised, or any smoothed copy) on which the test runs.
    patch_size : int
        ``d``, side of the candidate patches (px). Paper: 320.
    step : int, optional
        ``s``, stride between candidates (px). Default ``d // 2`` (paper).
    n_sub : int
        ``N``, local patches per candidate (a square number). Paper: 4.
    threshold : float
        ``thre`` of the ``"ssim"`` criterion: background iff every pairwise SSIM is larger. Paper: 0.7.
    criterion : {"ssim", "std", "meanvar"}
        The background test (see the module docstring).
    std_max : float
        ``"std"`` criterion: largest local standard deviation of a background patch, in grey levels of the
        enhanced image min-max scaled to [0, 255] (reference code: 1.0).
    mean_tol, var_tol : float
        ``"meanvar"`` criterion: relative tolerances on the local means and variances (GCBD: 0.1 and 0.25).
    clip_percentile : float
        Normalisation of the enhanced image before the test: 0 = min-max (paper); ``p > 0`` maps the ``p``-th
        and ``(100 - p)``-th percentiles to 0 and 1 and clips (robust to hot pixels).
    outlier_sigma : float or None
        Reject candidates whose raw mean or raw standard deviation lies more than this many robust sigmas
        (1.4826 MAD) from the median over the candidates that passed the test (contamination, carbon, empty
        holes). None switches the guard off. The guard is skipped when fewer than 5 candidates passed. The
        default, 6, keeps background under a slightly thicker or thinner ice (a few robust sigmas on a real
        micrograph) and rejects contamination (100 to 160 inside the contaminant of
        ``Ucsf_stack_1142_DW.mrc``).
    exclude_coords : array_like, shape (k, 2), optional
        Particle coordinates (row, col) in px (note: RELION's rlnCoordinateY, rlnCoordinateX). Candidates
        holding a pixel closer than ``exclude_radius_px`` to one of them are rejected.
    exclude_radius_px : float, optional
        Exclusion radius (px); required with ``exclude_coords``.
    max_overlap : float or None
        Largest fraction of its area a selected patch may share with another selected one; ``0`` forbids any
        overlap. Best scores first (greedy non-maximum suppression). None (default, paper): no limit.
    margin_px : int
        Run the background test on the patch grown by this many pixels on every side (a ``(d + 2 margin)``
        window split into ``N`` local patches), while cutting only the central ``d x d`` from ``raw``. The
        paper uses 0. A margin keeps out particles whose edge or CTF fringes (delocalised signal) reach just
        inside a patch: a thin sliver of signal barely changes the SSIM of whole local patches.
    allow_empty : bool
        Return an empty result instead of raising :class:`NoNoisePatchError` when nothing is selected.
    max_bytes : int
        Refuse to allocate more than this for ``patches`` (raise a step or set ``max_overlap`` instead).

    Returns
    -------
    NoisePatches
        ``.boxes`` (n, 2) top-left (row, col), ``.patches`` (n, d, d) float32 from ``raw``, ``.scores`` and
        the per-candidate diagnostics.

    Raises
    ------
    InputError
        Bad arrays or parameters, or a micrograph smaller than ``patch_size``.
    NoNoisePatchError
        Nothing selected (unless ``allow_empty``); the message names the parameter to relax.

    Notes
    -----
    Candidates are at multiples of ``step`` and lie wholly inside the image; pixels past the last candidate on
    the bottom/right border are not scanned (as in the paper). The SSIM statistics are population ones
    (divided by the number of pixels), equal to scikit-image's ``structural_similarity`` with a uniform window
    as large as the local patch, ``use_sample_covariance=False`` and ``data_range=1``.
    """
    from nt2c.io import validate_image

    raw_arr = validate_image(raw, name="raw micrograph")
    enh_arr = validate_image(enhanced, name="enhanced micrograph")
    if raw_arr.shape != enh_arr.shape:
        raise InputError(
            f"raw micrograph {raw_arr.shape} and enhanced micrograph {enh_arr.shape} differ in shape; "
            "the enhanced image must be the denoised copy of the raw one, pixel for pixel."
        )
    d = patch_size
    s = d // 2 if step is None else step
    if step is None and s < 1:
        s = 1
    g = _check_params(
        raw_arr.shape,
        d,
        s,
        n_sub,
        threshold,
        criterion,
        std_max,
        mean_tol,
        var_tol,
        outlier_sigma,
        max_overlap,
        exclude_radius_px,
    )
    m = _check_margin(margin_px, raw_arr.shape, d, g)
    big = d + 2 * m  # side of the window the background test sees
    size = big // g  # local patch side
    rows_t, cols_t = candidate_grid(raw_arr.shape, patch_size=big, step=s)  # test windows
    rows, cols = rows_t + m, cols_t + m  # the patches cut from the raw micrograph
    nr, nc = rows.size, cols.size
    b = math.gcd(s, size)  # every local-patch corner is a multiple of b
    span_y, span_x = int(rows_t[-1]) + big, int(cols_t[-1]) + big  # multiples of b

    # ---- local statistics of the normalised enhanced image -------------------------------------------------
    lo, hi = _unit_range(enh_arr, clip_percentile)  # over the whole micrograph, as the paper normalises I'
    x = enh_arr[:span_y, :span_x].astype(np.float64)
    x -= lo
    x *= 1.0 / (hi - lo) if hi > lo else 0.0
    if clip_percentile > 0:
        np.clip(x, 0.0, 1.0, out=x)
    centre = float(x.mean())
    x -= centre  # better-conditioned sums; statistics are shift-invariant once the centre is added back
    n_px = float(size * size)
    sb = size // b
    r_loc = (rows_t[:, None] + np.arange(g)[None, :] * size) // b  # (nr, g) block row of local patch row a
    c_loc = (cols_t[:, None] + np.arange(g)[None, :] * size) // b  # (nc, g)
    table = _integral(_block_sums(x, b))
    rr, cc = r_loc[:, :, None, None], c_loc[None, None, :, :]
    mu = _box(table, rr, cc, sb) / n_px  # (nr, g, nc, g), centred
    table = _integral(_block_sums(x * x, b))
    ex2 = _box(table, rr, cc, sb) / n_px
    var = np.maximum(ex2 - mu * mu, 0.0)
    mu = mu.transpose(0, 2, 1, 3).reshape(nr, nc, g * g)  # local patch k = a g + b
    var = var.transpose(0, 2, 1, 3).reshape(nr, nc, g * g)
    mu_abs = mu + centre

    if criterion == "ssim":
        score = _min_pairwise_ssim(
            x,
            table_fn=lambda q: _integral(_block_sums(q, b)),
            g=g,
            size=size,
            sb=sb,
            r_loc=r_loc,
            c_loc=c_loc,
            mu=mu,
            mu_abs=mu_abs,
            var=var,
        )
        passed = score > threshold
        limit = float(threshold)
    elif criterion == "std":
        score = 255.0 * np.sqrt(var.max(axis=2))
        passed = score <= std_max
        limit = float(std_max)
    else:  # meanvar (GCBD)
        mu_p = mu_abs.mean(axis=2)
        var_p = (var + mu * mu).mean(axis=2) - mu.mean(axis=2) ** 2
        var_p = np.maximum(var_p, 0.0)
        dmean = np.abs(mu_abs - mu_p[..., None]).max(axis=2)
        dvar = np.abs(var - var_p[..., None]).max(axis=2)
        tiny = 1e-300
        score = np.maximum(
            dmean / np.maximum(mean_tol * np.abs(mu_p), tiny), dvar / np.maximum(var_tol * var_p, tiny)
        )
        score = np.where((dmean == 0) & (dvar == 0), 0.0, score)
        passed = score <= 1.0
        limit = 1.0
    del x, table

    status = np.full((nr, nc), _SELECTED, dtype=np.int8)
    status[~passed] = _CRITERION

    # ---- raw statistics of the whole candidates ------------------------------------------------------------
    b = math.gcd(math.gcd(s, d), m)  # patch corners and sides are multiples of b
    span_y, span_x = int(rows[-1]) + d, int(cols[-1]) + d
    y = raw_arr[:span_y, :span_x].astype(np.float64)
    y_centre = float(y.mean())
    y -= y_centre
    bd = d // b
    rd, cd = (rows // b)[:, None], (cols // b)[None, :]
    raw_mu = _box(_integral(_block_sums(y, b)), rd, cd, bd) / float(d * d)
    raw_ex2 = _box(_integral(_block_sums(y * y, b)), rd, cd, bd) / float(d * d)
    raw_sd = np.sqrt(np.maximum(raw_ex2 - raw_mu * raw_mu, 0.0))
    raw_mu += y_centre
    del y

    # ---- exclusion of given coordinates --------------------------------------------------------------------
    if exclude_coords is not None:
        if exclude_radius_px is None:
            raise InputError(
                "exclude_coords was given without exclude_radius_px; give the particle radius in pixels."
            )
        pts = np.asarray(exclude_coords, dtype=np.float64)
        if pts.size:
            if pts.ndim != 2 or pts.shape[1] != 2 or not np.isfinite(pts).all():
                raise InputError(
                    f"exclude_coords must be a finite (k, 2) array of (row, col) px, got shape {pts.shape}."
                )
            mask = _disc_mask((span_y, span_x), pts, float(exclude_radius_px))
            hits = _box(_integral(_block_sums(mask, b)), rd, cd, bd)
            status[(status == _SELECTED) & (hits > 0.5)] = _EXCLUDED

    # ---- robust outlier guard on the raw statistics --------------------------------------------------------
    reference: dict[str, float] = {}
    if outlier_sigma is not None:
        ok = status == _SELECTED
        if ok.sum() >= _MIN_REFERENCE:
            z = np.zeros((nr, nc))
            for name, values in (("mean", raw_mu), ("std", raw_sd)):
                med = float(np.median(values[ok]))
                sigma = 1.4826 * float(np.median(np.abs(values[ok] - med)))
                sigma = max(sigma, 1e-12 * max(1.0, abs(med)))
                reference[f"{name}_median"] = med
                reference[f"{name}_sigma"] = sigma
                z = np.maximum(z, np.abs(values - med) / sigma)
            status[ok & (z > outlier_sigma)] = _OUTLIER

    # ---- overlap limit: parallel greedy non-maximum suppression --------------------------------------------
    if max_overlap is not None:
        goodness = score if criterion == "ssim" else -score
        keep = _nms(status == _SELECTED, goodness, d=d, s=s, max_overlap=float(max_overlap))
        status[(status == _SELECTED) & ~keep] = _OVERLAP

    sel_r, sel_c = np.nonzero(status == _SELECTED)
    boxes = np.stack([rows[sel_r], cols[sel_c]], axis=1).astype(np.int64)
    grid_r, grid_c = np.meshgrid(rows, cols, indexing="ij")
    result = NoisePatches(
        boxes=boxes,
        patches=np.zeros((0, d, d), np.float32),
        scores=score[sel_r, sel_c].astype(np.float64),
        candidates=np.stack([grid_r.ravel(), grid_c.ravel()], axis=1),
        candidate_scores=score.ravel().astype(np.float64),
        status=status.ravel(),
        raw_mean=raw_mu.ravel(),
        raw_std=raw_sd.ravel(),
        grid_shape=(nr, nc),
        patch_size=d,
        step=s,
        n_sub=int(n_sub),
        criterion=criterion,
        threshold=limit,
        reference=reference,
        margin_px=m,
    )
    if len(boxes) == 0:
        if not allow_empty:
            raise NoNoisePatchError(_explain(result))
        return result
    need = len(boxes) * d * d * 4
    if need > max_bytes:
        raise InputError(
            f"the {len(boxes)} selected patches of {d} x {d} px would take {need / 2**30:.1f} GiB; "
            "set max_overlap "
            f"(e.g. 0.25), raise step (now {s}) or raise max_bytes."
        )
    windows = np.lib.stride_tricks.sliding_window_view(raw_arr, (d, d))  # a read-only view, no copy
    result.patches = windows[boxes[:, 0], boxes[:, 1]]  # fancy indexing copies: (n, d, d) float32
    return result


def _min_pairwise_ssim(x, *, table_fn, g, size, sb, r_loc, c_loc, mu, mu_abs, var) -> np.ndarray:
    """Minimum over the local-patch pairs of Eq. 3, for every candidate; shape (nr, nc)."""
    nr, nc = r_loc.shape[0], c_loc.shape[0]
    ny, nx = x.shape
    n_px = float(size * size)
    score = np.full((nr, nc), np.inf)
    pairs: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for k1 in range(g * g):
        for k2 in range(k1 + 1, g * g):
            a1, b1 = divmod(k1, g)
            a2, b2 = divmod(k2, g)
            pairs.setdefault(((a2 - a1) * size, (b2 - b1) * size), []).append((k1, k2))
    prod = np.zeros_like(x)
    for (
        dy,
        dx,
    ), members in pairs.items():  # a handful of offsets ((2g-1)^2 - 1) / 2, not a loop over patches
        prod.fill(0.0)
        c0, c1 = max(0, -dx), nx - max(0, dx)
        np.multiply(x[: ny - dy, c0:c1], x[dy:, c0 + dx : c1 + dx], out=prod[: ny - dy, c0:c1])
        table = table_fn(prod)
        for k1, k2 in members:
            a1, b1 = divmod(k1, g)
            exy = _box(table, r_loc[:, a1][:, None], c_loc[:, b1][None, :], sb) / n_px
            cov = exy - mu[..., k1] * mu[..., k2]
            value = _ssim_from_stats(mu_abs[..., k1], mu_abs[..., k2], var[..., k1], var[..., k2], cov)
            np.minimum(score, value, out=score)
    return score


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


def _nms(active: np.ndarray, goodness: np.ndarray, *, d: int, s: int, max_overlap: float) -> np.ndarray:
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


def _explain(result: NoisePatches) -> str:
    counts = result.counts()
    m = result.candidates.shape[0]
    head = (
        f"no noise patch found among {m} candidates "
        f"(d={result.patch_size}, s={result.step}, N={result.n_sub})"
    )
    if counts["criterion"] == m:
        scores = result.candidate_scores
        if result.criterion == "ssim":
            best = float(np.max(scores))
            head = (
                f"{head}: none passed the SSIM test (best minimum pairwise SSIM {best:.3f} <= threshold "
                f"{result.threshold})."
            )
            if best > result.threshold - 0.2:
                return (
                    f"{head} Lower --threshold (e.g. {best - 0.02:.2f}), --patch-size or --n-sub, "
                    "or set margin_px to 0."
                )
            return (
                f"{head} The enhanced image is too noisy (or the micrograph too crowded) for the test: "
                "train the coarse denoiser longer (nt2c train-coarse --steps ...), "
                "use a smaller --patch-size, "
                "or try --criterion meanvar; a threshold that low would accept particles."
            )
        if result.criterion == "std":
            best = float(np.min(scores))
            return (
                f"{head}: none passed the std test (smallest local std {best:.3g} grey levels > std_max "
                f"{result.threshold}). Raise std_max (e.g. {best * 1.1:.3g}) or lower --patch-size."
            )
        best = float(np.min(scores))
        return (
            f"{head}: none passed the mean/variance test (best normalised deviation {best:.3g} > 1). Raise "
            "mean_tol / var_tol, or lower --patch-size."
        )
    if counts["excluded"] and counts["outlier"] == 0 and counts["overlap"] == 0:
        return f"{head}: every candidate that passed holds a given particle; lower exclude_radius_px."
    if counts["outlier"]:
        return (
            f"{head}: the candidates that passed were rejected as outliers of the raw background statistics; "
            "raise outlier_sigma or set it to None."
        )
    return f"{head}: relax --threshold or --patch-size."


# ------------------------------------------------------------------------------------------------------------
# the pipeline stage
# ------------------------------------------------------------------------------------------------------------
def box_particle_distance(boxes: np.ndarray, patch_size: int, particles_xy: np.ndarray) -> np.ndarray:
    """Distance from each box to the nearest particle centre (0 when a centre lies inside the box).

    Parameters
    ----------
    boxes : numpy.ndarray, shape (n, 2)
        Top-left (row, col) of the boxes (px).
    patch_size : int
        Box side d (px).
    particles_xy : numpy.ndarray, shape (m, 2)
        Particle centres as (x, y) = (col, row) in px, as in RELION STAR files.

    Returns
    -------
    numpy.ndarray, shape (n,)
        Distances in px (``inf`` when there is no particle).
    """
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 2)
    xy = np.asarray(particles_xy, dtype=float).reshape(-1, 2)
    if len(xy) == 0:
        return np.full(len(boxes), np.inf)
    rows, cols = boxes[:, :1], boxes[:, 1:]
    dy = np.maximum(0.0, np.maximum(rows - xy[:, 1], xy[:, 1] - (rows + patch_size - 1)))
    dx = np.maximum(0.0, np.maximum(cols - xy[:, 0], xy[:, 0] - (cols + patch_size - 1)))
    return np.hypot(dy, dx).min(axis=1)


def list_micrographs(run, patterns=None) -> list[Path]:
    """List the micrographs an extraction scans.

    Parameters
    ----------
    run : RunDir
    patterns : sequence of str, optional
        Glob patterns or paths (relative to the working directory, then to the run directory).
        Default: the paths listed in ``RUN/micrographs.txt`` (one per line; relative ones are relative to the
        run directory; blank lines and ``#`` comments skipped), or when it is absent the noisy simulated
        micrographs ``RUN/simulated/mic_????.mrc``.

    Returns
    -------
    list of pathlib.Path
    """
    import glob

    root = Path(run.path)
    found: list[Path] = []
    if patterns:
        for pat in patterns:
            hits = sorted(glob.glob(os.path.expanduser(pat))) or sorted(glob.glob(str(root / pat)))
            if not hits:
                raise InputError(f"--micrographs {pat!r} matches no file; check the path or quote the glob.")
            found += [Path(h) for h in hits]
    elif (root / "micrographs.txt").is_file():
        for line in (root / "micrographs.txt").read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            path = Path(line).expanduser()
            if not path.is_absolute():
                path = root / path
            if not path.is_file():
                raise InputError(
                    f"{root / 'micrographs.txt'} lists {line}, which does not exist; fix the list."
                )
            found.append(path)
    else:
        found = sorted((root / "simulated").glob("mic_????.mrc"))
    if not found:
        raise StageError(
            f"no micrograph to scan in {root}: write RUN/micrographs.txt (one path per line), "
            "pass --micrographs, "
            f"or run `nt2c simulate --run {root}` first."
        )
    return found


def extract_noise_stage(run, settings, params) -> list[Path]:
    """Pipeline stage ``extract-noise``: background patches of every micrograph of the run.

    Reads the micrographs of :func:`list_micrographs`, enhances each with the coarse denoiser
    (``RUN/models/coarse.safetensors``), runs :func:`extract_noise_patches` with ``settings``
    (:class:`~nt2c.config.ExtractConfig`) and writes

    * ``RUN/noise/patches.mrcs``: the (n, d, d) float32 patches from the raw micrographs, voxel size set;
    * ``RUN/noise/patches.csv``: ``micrograph,row,col,score,raw_mean,raw_std`` per patch;
    * ``RUN/noise/<mic>_boxes.png``: each micrograph with its selected boxes.

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    import csv

    from nt2c.io import atomic_path, read_image, write_mrc
    from nt2c.progress import progress

    micrographs = list_micrographs(run, getattr(settings, "micrographs", None))
    model_path = Path(run.path) / "models" / "coarse.safetensors"
    if not model_path.is_file():
        raise StageError(f"{model_path} is missing; run `nt2c train-coarse --run {run.path}` first.")
    from nt2c.denoiser.inference import denoise_micrograph, load_model  # lazy: torch

    model = load_model(model_path)
    noise_dir = run.noise
    options = _extract_options(settings)
    stacks, rows, outputs = [], [], []
    pixel_size = None
    empty_reasons = []
    for path in progress(micrographs, desc="extract-noise", unit="mic"):
        raw, px = read_image(path)
        pixel_size = pixel_size or px
        enhanced = np.asarray(
            denoise_micrograph(model, raw, device=settings.device, show_progress=False), dtype=np.float32
        )
        result = extract_noise_patches(raw, enhanced, allow_empty=True, **options)
        if len(result) == 0:
            empty_reasons.append(f"{path.name}: {result.explain_empty()}")
        stacks.append(result.patches)
        for (r, c), score, i in zip(result.boxes, result.scores, np.flatnonzero(result.status == _SELECTED)):
            rows.append(
                (path.name, int(r), int(c), float(score), float(result.raw_mean[i]), float(result.raw_std[i]))
            )
        figure_path = noise_dir / f"{path.stem}_boxes.png"
        title = f"{path.name}: {len(result)} noise patches of {result.candidates.shape[0]} candidates"
        _save_boxes_figure(figure_path, raw, result, title=title)
        outputs.append(figure_path)
    total = sum(len(s) for s in stacks)
    if total == 0:
        raise NoNoisePatchError("no noise patch found in any micrograph. " + " | ".join(empty_reasons))
    stack_path = write_mrc(
        noise_dir / "patches.mrcs",
        np.concatenate(stacks, axis=0),
        pixel_size_A=pixel_size or params.pixel_size_A,
        overwrite=True,
    )
    table_path = noise_dir / "patches.csv"
    with atomic_path(table_path) as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["micrograph", "row", "col", "score", "raw_mean", "raw_std"])
            writer.writerows(rows)
    return [stack_path, table_path, *outputs]


def _extract_options(settings) -> dict[str, Any]:
    """Keyword arguments of :func:`extract_noise_patches` from an :class:`~nt2c.config.ExtractConfig`."""
    names = (
        "patch_size",
        "step",
        "n_sub",
        "threshold",
        "criterion",
        "std_max",
        "margin_px",
        "outlier_sigma",
        "max_overlap",
    )
    return {name: getattr(settings, name) for name in names if hasattr(settings, name)}


def _save_boxes_figure(path: Path, image: np.ndarray, result: NoisePatches, *, title: str) -> None:
    from nt2c.io import atomic_path
    from nt2c.plots.extraction import plot_boxes

    fig = plot_boxes(image, result, title=title)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=80)
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
