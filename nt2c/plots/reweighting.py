"""Figures of the re-weighting step (paper section 2.2.3) and of the fine denoiser's ablation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from nt2c.plots.common import display_range

__all__ = ["plot_coefficients", "plot_fit_example", "plot_pairs", "plot_ablation"]

_NAMES = ("alpha", "beta", "gamma")


def plot_coefficients(coefficients: Mapping[str, np.ndarray] | np.ndarray, *, bins: int = 40):
    """Histograms of alpha, beta and gamma, one colour per fitting method.

    Parameters
    ----------
    coefficients : mapping of str to numpy.ndarray of shape (n, 3), or one such array
        Label (e.g. the method) to the per-patch (alpha, beta, gamma) of :func:`nt2c.fit_coefficients`.
    bins : int

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    if not isinstance(coefficients, Mapping):
        coefficients = {"coefficients": coefficients}
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for label, coef in coefficients.items():
        coef = np.asarray(coef, dtype=float).reshape(-1, 3)
        for k, ax in enumerate(axes):
            values = coef[:, k][np.isfinite(coef[:, k])]
            ax.hist(values, bins=bins, alpha=0.55, label=f"{label} (median {np.median(values):.3g})")
    for name, ax in zip(_NAMES, axes):
        ax.set_title(name)
        ax.set_ylabel("patches")
        ax.legend(fontsize="small")
    axes[1].axvline(0, color="k", lw=0.8, ls=":")
    fig.tight_layout()
    return fig


def _panel(ax, image, title):
    lo, hi = display_range(np.asarray(image))
    ax.imshow(image, cmap="gray", vmin=lo, vmax=hi)
    ax.set_title(title, fontsize="small")
    ax.set_axis_off()


def plot_fit_example(
    S: np.ndarray,
    V: np.ndarray,
    X: np.ndarray,
    noisy: np.ndarray,
    clean: np.ndarray,
    coefficients: np.ndarray,
):
    """One patch through the re-weighting: inputs S, V, X and outputs Y, T and the transferred noise Y - T.

    Parameters
    ----------
    S, V, X : numpy.ndarray, shape (d, d)
        Clean simulated patch, GAN noise patch, simulated noisy patch.
    noisy, clean : numpy.ndarray, shape (d, d)
        The synthesized pair ``Y`` and ``T`` (:func:`nt2c.reweight_pairs`).
    coefficients : array_like, shape (3,)
        (alpha, beta, gamma) used.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    a, b, g = np.asarray(coefficients, dtype=float)
    fig, axes = plt.subplots(1, 6, figsize=(15, 2.9))
    panels = [
        (S, "S (simulated clean)"),
        (V, "V (GAN noise)"),
        (X, "X (simulated noisy)"),
        (noisy, f"Y = F({a:.2g} S + {b:.2g} V + {g:.3g})"),
        (clean, "T (target)"),
        (np.asarray(noisy) - np.asarray(clean), "Y - T (transferred noise)"),
    ]
    for ax, (img, title) in zip(axes, panels):
        _panel(ax, img, title)
    fig.tight_layout()
    return fig


def plot_pairs(
    noisy: np.ndarray,
    clean: np.ndarray,
    real: np.ndarray | None = None,
    *,
    n: int = 4,
    real_title: str = "real micrograph patch",
):
    """Synthesized pairs (noisy above, target below) next to real micrograph patches of the same size.

    Parameters
    ----------
    noisy, clean : numpy.ndarray, shape (m, d, d)
        Synthesized pairs.
    real : numpy.ndarray, shape (k, d, d), optional
        Patches cut from the real (or "experimental") micrographs, shown in a third row.
    n : int
        Columns (pairs shown).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    n = int(min(n, len(noisy)))
    rows = 3 if real is not None and len(real) else 2
    fig, axes = plt.subplots(rows, n, figsize=(2.4 * n, 2.5 * rows), squeeze=False)
    for j in range(n):
        _panel(axes[0, j], noisy[j], f"synthesized Y #{j}")
        _panel(axes[1, j], clean[j], f"target T #{j}")
        if rows == 3:
            if j < len(real):
                _panel(axes[2, j], real[j], real_title)
            else:
                axes[2, j].set_axis_off()
    fig.tight_layout()
    return fig


def plot_ablation(
    results: Mapping[str, float | Sequence[float]],
    *,
    ylabel: str = "PSNR (dB)",
    title: str = "coarse vs fine denoiser",
):
    """Bar chart of a score per variant (mean, with the individual values as dots when several).

    Parameters
    ----------
    results : mapping of str to float or sequence of float
        Variant name (``"coarse"``, ``"fine (paper fit)"``, ``"fine (matched)"``, ...) to its score(s).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(results), 3.4))
    for k, (name, values) in enumerate(results.items()):
        values = np.atleast_1d(np.asarray(values, dtype=float))
        ax.bar(k, values.mean(), color=f"C{k}", alpha=0.8)
        ax.text(k, values.mean(), f"{values.mean():.2f}", ha="center", va="bottom", fontsize="small")
        if len(values) > 1:
            ax.plot(np.full(len(values), k), values, "k.", ms=4)
    ax.set_xticks(range(len(results)), list(results), rotation=15)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    lows = [np.min(v) for v in results.values()]
    highs = [np.max(v) for v in results.values()]
    if lows:
        span = max(highs) - min(lows)
        ax.set_ylim(min(lows) - 0.5 * span - 0.5, max(highs) + 0.3 * span + 0.5)
    fig.tight_layout()
    return fig
