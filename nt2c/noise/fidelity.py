"""Noise fidelity: how closely one set of noise patches matches another, statistic by statistic.

Three views of a stationary noise process, each reduced to one number that is 0 for identical sets and
grows with the mismatch:

``psd_log_ratio_db``
    Radially averaged power spectra of the two sets (periodogram ``|FFT(p - mean(p))|^2 / (h w)``, averaged
    over the patches and over rings of integer radius ``k`` = 1 ... d/2, i.e. 1/d to 0.5 cycles/px); the mean
    over the rings of ``|10 log10(P_generated(k) / P_real(k))|``, in dB. It sees the noise colour
    (correlations between pixels) and the overall power.
``ks_statistic`` and ``wasserstein``
    The two-sample Kolmogorov-Smirnov statistic (largest gap between the empirical CDFs, in [0, 1]) and the
    1-Wasserstein distance (in the units of the patches) between the pixel values of the two sets. They see
    the marginal distribution: mean, spread, skew, tails.
``acf_mad``
    The 2-D autocorrelation of the mean-subtracted patches (linear, not circular: zero-padded FFT, divided by
    the number of overlapping pixels of each lag, normalised to 1 at lag 0), averaged over each set; the mean
    absolute difference over the lags ``|dy|, |dx| <= window`` except (0, 0). It sees the shape of short-range
    correlations independently of the noise power.
``pca_gap``
    The difference between the two sets of the share of variance in their leading principal components
    (:func:`top_component_fraction`, on equally many patches). It sees *diversity*: the three statistics above
    are averages over patches and are met by a set of patches that all come from a low-dimensional family,
    independent noise patches are not.

:func:`fidelity_table` scores a generated set and the baselines (white Gaussian noise of matched mean and
variance, the simulator's noise) against the same held-out real patches.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from nt2c.errors import InputError

__all__ = [
    "noise_fidelity",
    "radial_psd",
    "autocorrelation",
    "fidelity_table",
    "white_noise_like",
    "random_crops",
    "top_component_fraction",
    "format_table",
    "METRICS",
]

METRICS: tuple[str, ...] = ("psd_log_ratio_db", "ks_statistic", "wasserstein", "acf_mad", "pca_gap")


def _patches(arr, name: str) -> np.ndarray:
    a = np.asarray(arr)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise InputError(f"{name} must be one patch (d, d) or a stack (n, d, d), got shape {a.shape}.")
    if a.size == 0:
        raise InputError(f"{name} is empty (shape {a.shape}); give at least one patch.")
    if np.iscomplexobj(a) or not np.issubdtype(a.dtype, np.number):
        raise InputError(f"{name} must hold real numbers, got dtype {a.dtype}.")
    a = a.astype(np.float64, copy=False)
    if not np.isfinite(a).all():
        raise InputError(
            f"{name} contains {int((~np.isfinite(a)).sum())} NaN or infinite values; drop those patches."
        )
    if a.shape[1] < 4 or a.shape[2] < 4:
        raise InputError(
            f"{name} patches of shape {a.shape[1:]} are too small; use patches of at least 4 x 4 px."
        )
    return a


def radial_psd(patches) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of a set of noise patches.

    Parameters
    ----------
    patches : array_like, shape (n, h, w) or (h, w)
        Noise patches (any units ``u``).

    Returns
    -------
    freq : numpy.ndarray, shape (m,)
        Ring centres in cycles per pixel, ``k / min(h, w)`` for ``k = 1 ... min(h, w) // 2``.
    psd : numpy.ndarray, shape (m,)
        Mean periodogram ``|FFT(p - mean(p))|^2 / (h w)`` over the patches and the ring (``u^2`` per
        cycle/px^2; white noise of variance ``s^2`` has ``psd = s^2`` at every frequency).
    """
    a = _patches(patches, "patches")
    n, h, w = a.shape
    a = a - a.mean(axis=(1, 2), keepdims=True)
    power = (np.abs(np.fft.fft2(a)) ** 2).mean(axis=0) / (h * w)
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    side = min(h, w)
    ring = np.rint(np.hypot(fy, fx) * side).astype(int)
    m = side // 2
    sums = np.bincount(ring.ravel(), weights=power.ravel(), minlength=m + 1)
    counts = np.bincount(ring.ravel(), minlength=m + 1)
    k = np.arange(1, m + 1)
    return k / side, sums[1 : m + 1] / counts[1 : m + 1]


def autocorrelation(patches, *, window: int = 3) -> np.ndarray:
    """Mean normalised 2-D autocorrelation of noise patches at small lags.

    Parameters
    ----------
    patches : array_like, shape (n, h, w) or (h, w)
    window : int
        Largest lag (px) in each direction.

    Returns
    -------
    numpy.ndarray, shape (2 window + 1, 2 window + 1)
        ``acf[window + dy, window + dx]``: the correlation between pixels ``(y, x)`` and ``(y + dy, x + dx)``
        (linear, each lag averaged over its overlapping pixels), averaged over the patches and divided by its
        value at lag 0 (the mean variance), so ``acf[window, window] = 1``.
    """
    a = _patches(patches, "patches")
    n, h, w = a.shape
    if not 0 <= window < min(h, w) // 2:
        raise InputError(
            f"window = {window} must be between 0 and {min(h, w) // 2 - 1} for {h} x {w} patches."
        )
    a = a - a.mean(axis=(1, 2), keepdims=True)
    shape = (2 * h, 2 * w)
    spec = np.fft.rfft2(a, s=shape)
    corr = np.fft.irfft2(np.abs(spec) ** 2, s=shape).mean(axis=0)
    ones = np.fft.rfft2(np.ones((h, w)), s=shape)
    overlap = np.rint(np.fft.irfft2(np.abs(ones) ** 2, s=shape))
    corr = np.fft.fftshift(corr / np.maximum(overlap, 1))
    cy, cx = h, w  # lag (0, 0) after fftshift of a (2h, 2w) array
    acf = corr[cy - window : cy + window + 1, cx - window : cx + window + 1]
    if acf[window, window] <= 0:
        raise InputError("the patches are constant (zero variance); noise patches must vary.")
    return acf / acf[window, window]


def _ks_statistic(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic sup |F_x - F_y| (exact, ties handled)."""
    x = np.sort(x)
    y = np.sort(y)
    grid = np.concatenate([x, y])
    fx = np.searchsorted(x, grid, side="right") / x.size
    fy = np.searchsorted(y, grid, side="right") / y.size
    return float(np.max(np.abs(fx - fy)))


def noise_fidelity(real, generated, *, window: int = 3, band: tuple[float, float] = (0.0, 0.5)) -> dict:
    """Distances between two sets of noise patches (0 for identical sets).

    Parameters
    ----------
    real : array_like, shape (n, d, d)
        Reference noise patches (e.g. held-out real patches).
    generated : array_like, shape (m, d, d)
        Patches to score, same ``d`` (crop them first, e.g. with :func:`random_crops`), same units.
    window : int
        Largest lag (px) of the autocorrelation comparison.
    band : (float, float)
        Spatial-frequency band (cycles/px, ``0 <= low < high <= 0.5``) of the spectrum comparison; rings
        ``low < f <= high`` are used.

    Returns
    -------
    dict
        ``psd_log_ratio_db`` (dB), ``ks_statistic`` (0..1), ``wasserstein`` (patch units), ``acf_mad`` (0..2),
        all >= 0; ``pca_gap`` (0..1, NaN with fewer than 5 patches in a set) with
        ``pca_top_fraction_real`` and ``pca_top_fraction_generated``; plus ``wasserstein_rel``
        (``wasserstein`` over the real pixel standard deviation), ``variance_ratio`` (generated over real
        pixel variance), ``mean_real``, ``mean_generated``, ``std_real``, ``std_generated`` and the set
        sizes ``n_real``, ``n_generated``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(8, 32, 32))
    >>> noise_fidelity(x, x)["psd_log_ratio_db"]
    0.0
    """
    from scipy.stats import wasserstein_distance

    a = _patches(real, "real")
    b = _patches(generated, "generated")
    if a.shape[1:] != b.shape[1:]:
        raise InputError(
            f"real patches are {a.shape[1]} x {a.shape[2]} px but generated ones "
            f"{b.shape[1]} x {b.shape[2]}; "
            "crop both sets to the same size first (nt2c.noise.fidelity.random_crops)."
        )
    low, high = (float(v) for v in band)
    if not 0 <= low < high <= 0.5:
        raise InputError(f"band = {band!r} must satisfy 0 <= low < high <= 0.5 cycles/px.")
    freq, psd_a = radial_psd(a)
    _, psd_b = radial_psd(b)
    sel = (freq > low) & (freq <= high + 1e-12)
    if not sel.any():
        raise InputError(f"band = {band!r} holds no frequency ring of {a.shape[1]} px patches; widen it.")
    tiny = np.finfo(np.float64).tiny
    if (psd_a[sel] <= tiny).any() or (psd_b[sel] <= tiny).any():
        raise InputError(
            "one set has no power in part of the band (constant patches?); noise patches must vary."
        )
    psd_db = float(np.mean(np.abs(10.0 * np.log10(psd_b[sel] / psd_a[sel]))))
    xa, xb = a.ravel(), b.ravel()
    ks = _ks_statistic(xa, xb)
    wd = float(wasserstein_distance(xa, xb))
    acf_a = autocorrelation(a, window=window)
    acf_b = autocorrelation(b, window=window)
    mask = np.ones_like(acf_a, dtype=bool)
    mask[window, window] = False
    acf_mad = float(np.mean(np.abs(acf_a - acf_b)[mask])) if mask.any() else 0.0
    std_a, std_b = float(xa.std()), float(xb.std())
    m = min(a.shape[0], b.shape[0], 256)
    if m >= 5:
        top_a, top_b = top_component_fraction(a[:m]), top_component_fraction(b[:m])
    else:  # too few patches to compare principal components
        top_a = top_b = float("nan")
    return {
        "psd_log_ratio_db": psd_db,
        "ks_statistic": ks,
        "wasserstein": wd,
        "acf_mad": acf_mad,
        "wasserstein_rel": wd / std_a if std_a > 0 else float("inf"),
        "variance_ratio": (std_b / std_a) ** 2 if std_a > 0 else float("inf"),
        "pca_gap": abs(top_b - top_a),
        "pca_top_fraction_real": top_a,
        "pca_top_fraction_generated": top_b,
        "mean_real": float(xa.mean()),
        "mean_generated": float(xb.mean()),
        "std_real": std_a,
        "std_generated": std_b,
        "n_real": int(a.shape[0]),
        "n_generated": int(b.shape[0]),
    }


def top_component_fraction(patches, *, share: float = 0.2) -> float:
    """Share of a patch set's variance held by its leading principal components (a diversity check).

    Noise patches of ``d x d`` px are points in a ``d^2``-dimensional space. Independent noise patches spread
    their variance over as many directions as there are patches; patches that all come from a low-dimensional
    family (e.g. a generator driven by a short latent vector) concentrate it in a few. Power spectrum,
    histogram and autocorrelation cannot see this.

    Parameters
    ----------
    patches : array_like, shape (m, h, w)
        At least 5 patches; compare sets of the same size ``m`` only (the value depends on it).
    share : float
        Leading components counted, as a share of ``m`` (``k = max(1, round(share * m))``).

    Returns
    -------
    float
        Fraction (0..1) of the total variance (about the set's mean patch) in the ``k`` leading components;
        about ``k / (m - 1)`` plus a small excess for independent white noise, close to 1 for a low-rank set.
    """
    a = _patches(patches, "patches").reshape(len(np.asarray(patches)), -1)
    m = a.shape[0]
    if m < 5:
        raise InputError(f"the principal-component check needs at least 5 patches, got {m}.")
    a = a - a.mean(axis=0, keepdims=True)
    eig = np.clip(np.linalg.eigvalsh(a @ a.T), 0, None)[::-1]  # Gram matrix: (m, m), cheap for large d
    total = eig.sum()
    if total <= 0:
        raise InputError("the patches are all identical; noise patches must vary.")
    k = max(1, int(round(share * m)))
    return float(eig[:k].sum() / total)


def random_crops(patches, size: int, n: int, *, seed: int = 0) -> np.ndarray:
    """``n`` random ``size x size`` crops of a patch stack (patch chosen cyclically over a permutation).

    Parameters
    ----------
    patches : array_like, shape (m, h, w)
    size : int
        Crop side (px), at most ``min(h, w)``.
    n : int
        Number of crops.
    seed : int

    Returns
    -------
    numpy.ndarray, float32, shape (n, size, size)
    """
    a = np.asarray(patches, dtype=np.float32)
    if a.ndim != 3 or a.shape[0] == 0:
        raise InputError(f"patches must be a non-empty (m, h, w) stack, got shape {a.shape}.")
    m, h, w = a.shape
    if size > min(h, w):
        raise InputError(
            f"cannot crop {size} px patches from {h} x {w} px ones; lower the size or use larger patches."
        )
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(m) for _ in range(-(-n // m))])[:n]
    ys = rng.integers(0, h - size + 1, size=n)
    xs = rng.integers(0, w - size + 1, size=n)
    return np.stack([a[i, y : y + size, x : x + size] for i, y, x in zip(order, ys, xs)]).astype(np.float32)


def white_noise_like(real, n: int | None = None, *, seed: int = 0) -> np.ndarray:
    """White Gaussian noise with the pixel mean and variance of ``real`` (the simplest noise model).

    Parameters
    ----------
    real : array_like, shape (m, d, d)
    n : int, optional
        Number of patches (default ``m``).
    seed : int

    Returns
    -------
    numpy.ndarray, float32, shape (n, d, d)
    """
    a = _patches(real, "real")
    n = a.shape[0] if n is None else int(n)
    rng = np.random.default_rng(seed)
    return rng.normal(a.mean(), a.std(), size=(n, *a.shape[1:])).astype(np.float32)


def fidelity_table(
    real,
    candidates: Mapping[str, np.ndarray],
    *,
    window: int = 3,
    white_noise: bool = True,
    seed: int = 0,
) -> dict[str, dict]:
    """Score several noise models against the same real patches.

    Parameters
    ----------
    real : array_like, shape (n, d, d)
        Held-out real noise patches (not used to train any candidate).
    candidates : mapping of str to array_like, each (m, d, d)
        Name to patches, e.g. ``{"gan": generated, "simulator": noisy - clean, "real (train)": train_crops}``.
        ``None`` values are skipped.
    window : int
        Largest autocorrelation lag (px).
    white_noise : bool
        Add the baseline ``"white_gaussian"``: white Gaussian noise of the real patches' mean and variance,
        as many patches as the first candidate (or as ``real``).
    seed : int
        Seed of the white-noise baseline.

    Returns
    -------
    dict of str to dict
        Row name to :func:`noise_fidelity` result, in the order of ``candidates`` then ``white_gaussian``.
    """
    a = _patches(real, "real")
    rows: dict[str, dict] = {}
    sizes = []
    for name, patches in candidates.items():
        if patches is None:
            continue
        rows[name] = noise_fidelity(a, patches, window=window)
        sizes.append(rows[name]["n_generated"])
    if white_noise:
        rows["white_gaussian"] = noise_fidelity(
            a, white_noise_like(a, sizes[0] if sizes else None, seed=seed), window=window
        )
    return rows


def format_table(rows: Mapping[str, Mapping], metrics: tuple[str, ...] = (*METRICS, "variance_ratio")) -> str:
    """Format :func:`fidelity_table` rows (one line per model)."""
    name_w = max([len("model"), *(len(r) for r in rows)])
    head = "model".ljust(name_w) + "".join(f"{m:>18}" for m in metrics)
    lines = [head, "-" * len(head)]
    for name, row in rows.items():
        lines.append(name.ljust(name_w) + "".join(f"{row[m]:>18.4g}" for m in metrics))
    return "\n".join(lines)
