"""Particle picking by mean-shift clustering of thresholded pixels, and its scoring against known positions.

The paper's supplementary case study (section 3.2): on a well-denoised micrograph the particles separate
from the background by grey level alone, so thresholding a smoothed micrograph and clustering the
coordinates of the pixels that pass with mean shift (Comaniciu & Meer 2002; scikit-learn's
:class:`~sklearn.cluster.MeanShift`) finds one cluster per particle; the cluster centres are the picks. On a
raw micrograph the thresholded pixels are mostly noise and the clusters mostly false. Scoring the picks of
every method's output against the true (simulated) or reference (autopicked) coordinates with precision,
recall and F1 turns "easier to pick" into a number.

Steps of :func:`pick_particles`:

1. *heat map* (:func:`picking_heatmap`): Gaussian smoothing at a sixth of the particle diameter (the scale of
   a particle's density), minus a Gaussian background at twice the diameter (ice gradients), divided by the
   robust standard deviation (1.4826 MAD), sign-flipped for dark particles: a map in units of noise sigmas
   where particles are positive;
2. *threshold*: pixels with heat > ``threshold`` (robust sigmas);
3. *mean shift*: the coordinates of those pixels (on a grid coarsened so that a particle spans about
   eight grid steps, for speed) clustered with a flat kernel of radius ``bandwidth_px`` (default half the
   particle diameter);
4. *picks*: clusters closer than 3/4 of a diameter merged (particles do not overlap), then the centres
   of clusters holding at least ``min_area_fraction`` of a particle's disc area.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nt2c.errors import InputError

__all__ = [
    "PickResult",
    "picking_heatmap",
    "pick_particles",
    "score_picks",
    "threshold_sweep",
    "contamination_mask",
]


@dataclass
class PickResult:
    """Output of :func:`pick_particles`.

    Attributes
    ----------
    coords_xy : numpy.ndarray, float, shape (n, 2)
        Picked particle centres (x = column, y = row) in px.
    heat : numpy.ndarray, float32, shape (ny, nx)
        The heat map (robust sigmas; particles positive).
    points_xy : numpy.ndarray, float, shape (m, 2)
        Coordinates (px) of the thresholded pixels that were clustered (coarse grid).
    labels : numpy.ndarray, int, shape (m,)
        Cluster of each point (index into ``cluster_sizes``).
    cluster_centres_xy : numpy.ndarray, float, shape (k, 2)
        All cluster centres (px), before the size filter.
    cluster_area_px : numpy.ndarray, float, shape (k,)
        Area of each cluster (px^2).
    kept : numpy.ndarray of bool, shape (k,)
        Which clusters became picks.
    threshold : float
        The heat threshold used.
    """

    coords_xy: np.ndarray
    heat: np.ndarray
    points_xy: np.ndarray
    labels: np.ndarray
    cluster_centres_xy: np.ndarray
    cluster_area_px: np.ndarray
    kept: np.ndarray
    threshold: float


def _check_diameter(particle_diameter_px: float, shape) -> float:
    d = float(particle_diameter_px)
    if not (2 <= d <= min(shape)):
        raise InputError(
            f"particle_diameter_px={particle_diameter_px} must be between 2 px and the micrograph's "
            f"smaller side ({min(shape)} px)."
        )
    return d


def picking_heatmap(image: np.ndarray, *, particle_diameter_px: float, polarity: str = "dark") -> np.ndarray:
    """Band-passed, robustly standardised micrograph in which particles are positive.

    Parameters
    ----------
    image : numpy.ndarray, shape (ny, nx)
        A raw or denoised micrograph.
    particle_diameter_px : float
        Particle diameter (px).
    polarity : {"dark", "bright"}
        Whether particles are darker (cryo-EM micrographs in counts; the default) or brighter than the ice.

    Returns
    -------
    numpy.ndarray, float32, shape (ny, nx)
        Heat in robust noise sigmas of the band-passed image.
    """
    from scipy import ndimage

    from nt2c.io import validate_image

    x = validate_image(image, name="micrograph").astype(np.float64)
    d = _check_diameter(particle_diameter_px, x.shape)
    if polarity not in ("dark", "bright"):
        raise InputError(f"polarity={polarity!r}: use 'dark' (particles darker than the ice) or 'bright'.")
    band = ndimage.gaussian_filter(x, d / 6.0, mode="reflect") - ndimage.gaussian_filter(
        x, 2.0 * d, mode="reflect"
    )
    mad = 1.4826 * float(np.median(np.abs(band - np.median(band))))
    scale = mad if mad > 0 else float(band.std())
    if scale <= 0:
        raise InputError("the micrograph is constant after band-pass filtering: nothing to pick.")
    heat = (band - np.median(band)) / scale
    return (-heat if polarity == "dark" else heat).astype(np.float32)


def contamination_mask(
    image: np.ndarray, *, particle_diameter_px: float, z: float = 6.0, polarity: str = "dark"
) -> np.ndarray:
    """Pixels of large dark (or bright) objects much stronger than particles: ice, ethane, carbon edges.

    The image is smoothed at the particle diameter and standardised robustly (median, 1.4826 MAD);
    pixels beyond ``z`` sigmas in the particles' direction form the mask, grown by one particle radius.

    Parameters
    ----------
    image : numpy.ndarray, shape (ny, nx)
    particle_diameter_px : float
    z : float
        Threshold in robust sigmas of the smoothed image.
    polarity : {"dark", "bright"}

    Returns
    -------
    numpy.ndarray of bool, shape (ny, nx)
    """
    from scipy import ndimage

    from nt2c.io import validate_image

    x = validate_image(image, name="micrograph").astype(np.float64)
    d = _check_diameter(particle_diameter_px, x.shape)
    if polarity not in ("dark", "bright"):
        raise InputError(f"polarity={polarity!r}: use 'dark' (objects darker than the ice) or 'bright'.")
    s = ndimage.gaussian_filter(x, d / 2.0, mode="reflect")
    mad = 1.4826 * float(np.median(np.abs(s - np.median(s))))
    if mad <= 0:
        return np.zeros(x.shape, dtype=bool)
    score = (s - np.median(s)) / mad
    mask = score < -z if polarity == "dark" else score > z
    if mask.any():
        r = max(int(round(d / 2)), 1)
        yy, xx = np.ogrid[-r : r + 1, -r : r + 1]
        mask = ndimage.binary_dilation(mask, structure=(xx * xx + yy * yy) <= r * r)
    return mask


def pick_particles(
    image: np.ndarray,
    *,
    particle_diameter_px: float,
    threshold: float = 2.5,
    polarity: str = "dark",
    bandwidth_px: float | None = None,
    min_area_fraction: float = 0.25,
    merge_distance_px: float | None = None,
    exclude_mask: np.ndarray | None = None,
    max_points: int = 20000,
    seed: int = 0,
    heat: np.ndarray | None = None,
) -> PickResult:
    """Pick particles by mean-shift clustering of the thresholded heat map (see the module docstring).

    Parameters
    ----------
    image : numpy.ndarray, shape (ny, nx)
        A raw or denoised micrograph.
    particle_diameter_px : float
        Particle diameter (px).
    threshold : float
        Heat threshold in robust sigmas (see :func:`picking_heatmap`).
    polarity : {"dark", "bright"}
        Particle contrast.
    bandwidth_px : float, optional
        Mean-shift kernel radius (px; default ``particle_diameter_px / 2``).
    min_area_fraction : float
        Smallest cluster kept, as a fraction of the particle's disc area ``pi d^2 / 4``.
    merge_distance_px : float, optional
        Clusters whose centres are closer than this (default ``0.75 * particle_diameter_px``) are merged into
        one (area-weighted centre, summed area), largest first: two particles cannot overlap, and a flat
        mean-shift kernel smaller than a particle can leave several modes on one flat-topped blob.
    exclude_mask : numpy.ndarray of bool, shape (ny, nx), optional
        Pixels never clustered (e.g. :func:`contamination_mask`).
    max_points : int
        At most this many thresholded grid points are clustered (a seeded random subset beyond that).
    seed : int
        Seed of that subset.
    heat : numpy.ndarray, shape (ny, nx), optional
        A heat map already computed by :func:`picking_heatmap` for this image, diameter and polarity (reused
        instead of recomputed, e.g. when sweeping the threshold).

    Returns
    -------
    PickResult
    """
    from sklearn.cluster import MeanShift

    if heat is None:
        heat = picking_heatmap(image, particle_diameter_px=particle_diameter_px, polarity=polarity)
    else:
        heat = np.asarray(heat, dtype=np.float32)
        if heat.shape != np.shape(image):
            raise InputError(
                f"heat has shape {heat.shape}, the micrograph {np.shape(image)}; they must match."
            )
    d = float(particle_diameter_px)
    bandwidth = d / 2.0 if bandwidth_px is None else float(bandwidth_px)
    if bandwidth <= 0:
        raise InputError(f"bandwidth_px={bandwidth_px} must be positive.")
    if max_points < 10:
        raise InputError(f"max_points={max_points} must be at least 10.")
    ny, nx = heat.shape
    f = max(1, int(d // 8))  # coarse grid step: a particle spans ~8 steps
    gy, gx = ny // f, nx // f
    coarse = heat[: gy * f, : gx * f].reshape(gy, f, gx, f).mean(axis=(1, 3))
    above = coarse > threshold
    if exclude_mask is not None:
        mask = np.asarray(exclude_mask, dtype=bool)
        if mask.shape != heat.shape:
            raise InputError(f"exclude_mask has shape {mask.shape}, expected the micrograph's {heat.shape}.")
        above &= ~mask[: gy * f, : gx * f].reshape(gy, f, gx, f).any(axis=(1, 3))
    rows, cols = np.nonzero(above)
    points = np.column_stack([cols * f + (f - 1) / 2.0, rows * f + (f - 1) / 2.0]).astype(float)
    empty = np.empty((0, 2))
    if len(points) > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(len(points), max_points, replace=False))
        points = points[idx]
    if len(points) == 0:
        return PickResult(
            empty, heat, points, np.empty(0, int), empty, np.empty(0), np.empty(0, bool), float(threshold)
        )
    ms = MeanShift(bandwidth=bandwidth, bin_seeding=True, min_bin_freq=1, cluster_all=True)
    labels = ms.fit_predict(points)
    area = np.bincount(labels, minlength=len(ms.cluster_centers_)).astype(float) * f * f
    area *= above.sum() / len(points)  # a subsample stands for all thresholded points
    merge = 0.75 * d if merge_distance_px is None else float(merge_distance_px)
    centres, area, labels = _merge_clusters(ms.cluster_centers_, area, labels, merge)
    kept = area >= min_area_fraction * np.pi * d * d / 4.0
    return PickResult(centres[kept].copy(), heat, points, labels, centres, area, kept, float(threshold))


def _merge_clusters(centres: np.ndarray, area: np.ndarray, labels: np.ndarray, distance: float):
    """Greedily merge clusters closer than ``distance``, largest first (area-weighted centres)."""
    order = np.argsort(-area, kind="stable")
    new_of = np.full(len(centres), -1)
    out_c: list[np.ndarray] = []
    out_a: list[float] = []
    for k in order:
        if out_c:
            dist = np.sqrt(((np.asarray(out_c) - centres[k]) ** 2).sum(1))
            j = int(np.argmin(dist))
            if dist[j] < distance:
                total = out_a[j] + area[k]
                out_c[j] = (out_c[j] * out_a[j] + centres[k] * area[k]) / total if total > 0 else out_c[j]
                out_a[j] = total
                new_of[k] = j
                continue
        new_of[k] = len(out_c)
        out_c.append(np.asarray(centres[k], dtype=float))
        out_a.append(float(area[k]))
    return np.asarray(out_c).reshape(-1, 2), np.asarray(out_a), new_of[labels]


def score_picks(picks_xy: np.ndarray, true_xy: np.ndarray, *, radius_px: float) -> dict:
    """Precision, recall and F1 of picks against true coordinates.

    Picks and true particles are matched one-to-one by the Hungarian algorithm
    (:func:`scipy.optimize.linear_sum_assignment`) on their distances, with pairs farther apart than
    ``radius_px`` forbidden (given a cost larger than any sum of allowed ones): this gives the largest
    number of matches within the radius and, among those, the smallest total distance. A matched pick is
    a true positive; unmatched picks are false positives and unmatched particles false negatives.

    Parameters
    ----------
    picks_xy : array_like, shape (n, 2)
        Picked (x, y) in px.
    true_xy : array_like, shape (m, 2)
        True (x, y) in px.
    radius_px : float
        Largest distance of a match (px), typically a particle radius.

    Returns
    -------
    dict
        ``precision, recall, f1`` (floats; 0 when undefined, e.g. no picks), ``tp, fp, fn, n_picked, n_true``
        (ints), ``matches`` (list of (pick index, true index)).
    """
    from scipy.optimize import linear_sum_assignment

    if not radius_px > 0:
        raise InputError(f"radius_px={radius_px} must be positive.")
    p = np.asarray(picks_xy, dtype=float).reshape(-1, 2)
    t = np.asarray(true_xy, dtype=float).reshape(-1, 2)
    matches: list[tuple[int, int]] = []
    if len(p) and len(t):
        dist = np.sqrt(((p[:, None, :] - t[None, :, :]) ** 2).sum(-1))
        allowed = dist <= radius_px
        big = radius_px * (min(len(p), len(t)) + 1) + 1.0
        cost = np.where(allowed, dist, big)
        rows, cols = linear_sum_assignment(cost)
        matches = [(int(r), int(c)) for r, c in zip(rows, cols) if allowed[r, c]]
    tp = len(matches)
    fp = len(p) - tp
    fn = len(t) - tp
    precision = tp / len(p) if len(p) else 0.0
    recall = tp / len(t) if len(t) else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "n_picked": int(len(p)),
        "n_true": int(len(t)),
        "matches": matches,
    }


def threshold_sweep(
    image: np.ndarray,
    true_xy: np.ndarray,
    *,
    particle_diameter_px: float,
    thresholds: np.ndarray | None = None,
    radius_px: float | None = None,
    polarity: str = "dark",
    exclude_mask: np.ndarray | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Precision, recall and F1 of :func:`pick_particles` as a function of the heat threshold.

    One fixed threshold favours some outputs over others (a denoiser that flattens the background changes the
    robust sigma the heat is measured in); the sweep compares methods over all thresholds.

    Parameters
    ----------
    image : numpy.ndarray, shape (ny, nx)
    true_xy : array_like, shape (m, 2)
        True or reference coordinates (x, y), px.
    particle_diameter_px : float
    thresholds : array_like, optional
        Heat thresholds in robust sigmas (default 1 to 6 in steps of 0.5).
    radius_px : float, optional
        Match radius (default half the particle diameter).
    polarity, exclude_mask, seed
        As in :func:`pick_particles`.

    Returns
    -------
    dict of str to numpy.ndarray
        ``threshold``, ``precision``, ``recall``, ``f1`` and ``n_picked``, one entry per threshold.
    """
    ts = np.arange(1.0, 6.01, 0.5) if thresholds is None else np.asarray(thresholds, dtype=float).ravel()
    if ts.size == 0:
        raise InputError("thresholds is empty; give at least one heat threshold (robust sigmas).")
    radius = particle_diameter_px / 2.0 if radius_px is None else float(radius_px)
    heat = picking_heatmap(image, particle_diameter_px=particle_diameter_px, polarity=polarity)
    out = {k: np.zeros(ts.size) for k in ("precision", "recall", "f1", "n_picked")}
    for i, t in enumerate(ts):
        picks = pick_particles(
            image,
            particle_diameter_px=particle_diameter_px,
            threshold=float(t),
            polarity=polarity,
            exclude_mask=exclude_mask,
            seed=seed,
            heat=heat,
        )
        score = score_picks(picks.coords_xy, true_xy, radius_px=radius)
        for k in out:
            out[k][i] = score[k]
    out["threshold"] = ts
    return out
