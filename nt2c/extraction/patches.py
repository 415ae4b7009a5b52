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

Where the steps live: the test on one patch in :mod:`.ssim`, the same for every candidate at once (box sums
and integral images, a few passes over the image) in :mod:`.statistics`, the guards in :mod:`.guards`, the
pipeline stage in :mod:`.stage`. The inputs are never modified.

One module because :func:`extract_noise_patches` and its result :class:`NoisePatches` are the extraction's
public contract; the computations live in the modules named above, and about a third of this one is the
docstrings of that contract (every option with its unit, its paper value and its default's reason).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from nt2c.errors import InputError
from nt2c.extraction.guards import near_particles, overlap_winners, raw_outliers
from nt2c.extraction.ssim import _unit_range, grid_side
from nt2c.extraction.statistics import CandidateGrid, background_scores, raw_statistics

__all__ = ["NoisePatches", "NoNoisePatchError", "extract_noise_patches", "CRITERIA", "STATUS_NAMES"]

CRITERIA = ("ssim", "std", "meanvar")

#: Meaning of :attr:`NoisePatches.status` codes, in the order the tests are applied.
STATUS_NAMES: tuple[str, ...] = ("selected", "criterion", "excluded", "outlier", "overlap")
_SELECTED, _CRITERION, _EXCLUDED, _OUTLIER, _OVERLAP = range(5)


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


def _check_params(
    shape,
    *,
    patch_size,
    step,
    n_sub,
    threshold,
    criterion,
    std_max,
    mean_tol,
    var_tol,
    clip_percentile,
    outlier_sigma,
    max_overlap,
    exclude_radius_px,
) -> int:
    """Check the options of :func:`extract_noise_patches`; return the local-patch grid side ``g``."""
    for name, value in (("patch_size", patch_size), ("step", step)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InputError(f"{name}={value!r} must be a positive integer number of pixels.")
    g = grid_side(n_sub)
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
    _unit_range(np.zeros(1), clip_percentile)  # raises on a bad clip_percentile
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
    step = max(1, patch_size // 2) if step is None else step
    g = _check_params(
        raw_arr.shape,
        patch_size=patch_size,
        step=step,
        n_sub=n_sub,
        threshold=threshold,
        criterion=criterion,
        std_max=std_max,
        mean_tol=mean_tol,
        var_tol=var_tol,
        clip_percentile=clip_percentile,
        outlier_sigma=outlier_sigma,
        max_overlap=max_overlap,
        exclude_radius_px=exclude_radius_px,
    )
    margin_px = _check_margin(margin_px, raw_arr.shape, patch_size, g)
    grid = CandidateGrid.of(raw_arr.shape, patch_size=patch_size, step=step, margin_px=margin_px, grid_side=g)

    # 1. the background test on the enhanced micrograph (paper steps 1-4)
    score, passed, limit = background_scores(
        enh_arr,
        grid,
        criterion=criterion,
        threshold=threshold,
        std_max=std_max,
        mean_tol=mean_tol,
        var_tol=var_tol,
        clip_percentile=clip_percentile,
    )
    status = np.where(passed, _SELECTED, _CRITERION).astype(np.int8)
    # 2. the guards, in order: known particles, outliers of the raw statistics, overlap
    raw_mean, raw_std = raw_statistics(raw_arr, grid)
    if exclude_coords is not None:
        status[(status == _SELECTED) & near_particles(grid, exclude_coords, exclude_radius_px)] = _EXCLUDED
    reference: dict[str, float] = {}
    if outlier_sigma is not None:
        outlier, reference = raw_outliers(status == _SELECTED, raw_mean, raw_std, outlier_sigma)
        status[outlier] = _OUTLIER
    if max_overlap is not None:
        goodness = score if criterion == "ssim" else -score
        keep = overlap_winners(
            status == _SELECTED, goodness, d=patch_size, s=step, max_overlap=float(max_overlap)
        )
        status[(status == _SELECTED) & ~keep] = _OVERLAP

    # 3. the selected patches, cut from the raw micrograph
    sel_r, sel_c = np.nonzero(status == _SELECTED)
    boxes = np.stack([grid.rows[sel_r], grid.cols[sel_c]], axis=1).astype(np.int64)
    grid_r, grid_c = np.meshgrid(grid.rows, grid.cols, indexing="ij")
    result = NoisePatches(
        boxes=boxes,
        patches=np.zeros((0, patch_size, patch_size), np.float32),
        scores=score[sel_r, sel_c].astype(np.float64),
        candidates=np.stack([grid_r.ravel(), grid_c.ravel()], axis=1),
        candidate_scores=score.ravel().astype(np.float64),
        status=status.ravel(),
        raw_mean=raw_mean.ravel(),
        raw_std=raw_std.ravel(),
        grid_shape=grid.shape,
        patch_size=patch_size,
        step=step,
        n_sub=int(n_sub),
        criterion=criterion,
        threshold=limit,
        reference=reference,
        margin_px=margin_px,
    )
    if len(boxes) == 0:
        if not allow_empty:
            raise NoNoisePatchError(_explain(result))
        return result
    need = len(boxes) * patch_size * patch_size * 4
    if need > max_bytes:
        raise InputError(
            f"the {len(boxes)} selected patches of {patch_size} x {patch_size} px would take "
            f"{need / 2**30:.1f} GiB; "
            f"set max_overlap (e.g. 0.25), raise step (now {step}) or raise max_bytes."
        )
    windows = np.lib.stride_tricks.sliding_window_view(raw_arr, (patch_size, patch_size))  # a view, no copy
    result.patches = windows[boxes[:, 0], boxes[:, 1]]  # fancy indexing copies: (n, d, d) float32
    return result


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
