"""Figures of the evaluation: method comparisons (paper Figs 7-8), Eq. 5 regions, FRC, picking (Fig. 9)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from nt2c.plots.common import display_range, image_grid

__all__ = [
    "robust_range",
    "plot_comparison",
    "plot_regions",
    "plot_eq5_regions",
    "plot_frc",
    "plot_picking",
    "zoom_windows",
    "plot_threshold_sweep",
]


def zoom_windows(regions, *, pair: int = 0, zoom: float = 2.5) -> dict[str, tuple[int, int, int]]:
    """Square windows around one Eq. 5 pair: {"signal": (row, col, side), "background": (...)} in px.

    The windows are ``zoom`` times the box side, centred on the pair's signal and background boxes and
    shifted to stay inside the micrograph.
    """
    ny, nx = regions.shape
    side = int(min(round(regions.box_px * zoom), ny, nx))
    out = {}
    for name, corners in (("signal", regions.signal_corners), ("background", regions.background_corners)):
        r, c = corners[pair]
        cr, cc = r + regions.box_px / 2, c + regions.box_px / 2
        r0 = int(np.clip(round(cr - side / 2), 0, ny - side))
        c0 = int(np.clip(round(cc - side / 2), 0, nx - side))
        out[name] = (r0, c0, side)
    return out


def robust_range(image: np.ndarray, k: float = 3.5) -> tuple[float, float]:
    """Grey-level limits ``median -/+ k`` robust sigmas (1.4826 MAD).

    Unlike percentiles, the ice background fills the grey scale even when a large contaminant or carbon area
    covers more than a few percent of the micrograph.
    """
    x = np.asarray(image, dtype=np.float64)
    med = float(np.median(x))
    sigma = 1.4826 * float(np.median(np.abs(x - med)))
    if sigma <= 0:
        return display_range(x)
    return med - k * sigma, med + k * sigma


def _finish(fig, title: str | None) -> None:
    """Lay the figure out, with ``title`` above every panel when given."""
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()


def _show(ax, image, title=None):
    lo, hi = robust_range(image)
    ax.imshow(image, cmap="gray", vmin=lo, vmax=hi)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)


def plot_comparison(
    images: Mapping[str, np.ndarray],
    *,
    regions=None,
    ncols: int | None = None,
    size: float = 3.2,
    title: str | None = None,
):
    """Whole micrographs side by side (paper Fig. 7 / Supplementary Fig. S1), each with its own grey range.

    Parameters
    ----------
    images : mapping of str to numpy.ndarray, each (ny, nx)
        Method label to output.
    regions : Eq5Regions, optional
        When given, the zoom windows of :func:`plot_regions` are outlined (signal yellow, background cyan).
    ncols : int, optional
        Panels per row (default: up to 4).
    size : float
        Panel side (inches).
    title : str, optional
        Figure title (e.g. ``"heldout: new micrographs of the same acquisition"``: which split it shows).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.patches import Rectangle

    fig, axes = image_grid(len(images), ncols=ncols, size=size)
    windows = zoom_windows(regions) if regions is not None and len(regions) else {}
    for ax, (label, image) in zip(axes.flat, images.items()):
        _show(ax, image, label)
        for name, (r0, c0, side) in windows.items():
            ax.add_patch(
                Rectangle(
                    (c0 - 0.5, r0 - 0.5),
                    side,
                    side,
                    fill=False,
                    lw=1.2,
                    ec="yellow" if name == "signal" else "cyan",
                )
            )
    _finish(fig, title)
    return fig


def plot_regions(
    images: Mapping[str, np.ndarray],
    regions,
    *,
    pair: int = 0,
    zoom: float = 2.5,
    size: float = 2.4,
    title: str | None = None,
):
    """Zoomed regions per method (paper Fig. 8): top row around a particle, bottom row nearby empty ice.

    Parameters
    ----------
    images : mapping of str to numpy.ndarray, each (ny, nx)
    regions : Eq5Regions
        The windows are centred on pair ``pair``'s signal and background boxes.
    pair : int
    zoom : float
        Window side in box sides.
    size : float
        Panel side (inches).
    title : str, optional
        Figure title (which split it shows).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    windows = zoom_windows(regions, pair=pair, zoom=zoom)
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(size * n, size * 2 + 0.4), squeeze=False)
    for j, (label, image) in enumerate(images.items()):
        for i, name in enumerate(("signal", "background")):
            r0, c0, side = windows[name]
            crop = np.asarray(image)[r0 : r0 + side, c0 : c0 + side]
            _show(axes[i, j], crop, label if i == 0 else None)
        axes[0, 0].set_ylabel("particle region")
        axes[1, 0].set_ylabel("background region")
    _finish(fig, title)
    return fig


def plot_eq5_regions(image: np.ndarray, regions, *, title: str = "Eq. 5 regions", size: float = 5.0):
    """Show a micrograph with the Eq. 5 signal boxes (yellow) joined to their background boxes (cyan).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    fig, ax = plt.subplots(figsize=(size, size))
    _show(ax, image, title)
    b = regions.box_px
    for (rs, cs), (rb, cb) in zip(regions.signal_corners, regions.background_corners):
        ax.add_patch(Rectangle((cs - 0.5, rs - 0.5), b, b, fill=False, ec="yellow", lw=1))
        ax.add_patch(Rectangle((cb - 0.5, rb - 0.5), b, b, fill=False, ec="cyan", lw=1))
        ax.plot([cs + b / 2, cb + b / 2], [rs + b / 2, rb + b / 2], color="white", lw=0.6, alpha=0.7)
    fig.tight_layout()
    return fig


def plot_frc(
    curves: Mapping[str, object],
    *,
    size: tuple[float, float] = (6.0, 3.8),
    title: str | None = None,
    against: str = "the clean image",
):
    """Plot FRC curves against a clean or reference image, with the 0.5 and 0.143 thresholds.

    Parameters
    ----------
    curves : mapping of str to FRCResult
    size : (float, float)
        Figure size (inches).
    title : str, optional
        Figure title (which split it shows).
    against : str
        What the curves correlate with, for the y label (``"the reference image"`` for ``--reference``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size)
    unit = "1/px"
    for label, c in curves.items():
        ax.plot(c.frequency, c.correlation, label=label, lw=1.3)
        unit = c.unit
    for thr in (0.5, 0.143):
        ax.axhline(thr, color="grey", ls="--", lw=0.8)
        ax.text(ax.get_xlim()[1], thr, f" {thr}", va="center", fontsize=8, color="grey")
    ax.set_xlabel(f"spatial frequency ({unit})")
    ax.set_ylabel(f"FRC with {against}")
    ax.set_ylim(-0.1, 1.05)
    ax.legend(fontsize=8)
    _finish(fig, title)
    return fig


def plot_picking(
    panels: Mapping[str, tuple],
    *,
    truth_xy: np.ndarray | None = None,
    particle_diameter_px: float,
    size: float = 2.8,
    title: str | None = None,
):
    """Show the picking per method (paper Fig. 9): image, heat map, mean-shift clusters, picks.

    Parameters
    ----------
    panels : mapping of str to (image, PickResult, score dict or None)
        Method label to its output, :func:`nt2c.evaluation.picking.pick_particles` result and
        :func:`nt2c.evaluation.picking.score_picks` score.
    truth_xy : numpy.ndarray, shape (n, 2), optional
        True or reference coordinates (x, y), px; missed ones are drawn as yellow crosses.
    particle_diameter_px : float
        Radius of the pick circles is half of it.
    size : float
        Panel side (inches).
    title : str, optional
        Figure title (which split it shows).

    Returns
    -------
    matplotlib.figure.Figure
        One row per method; picks green when matched, red when false.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle

    n = len(panels)
    fig, axes = plt.subplots(n, 4, figsize=(4 * size, n * size + 0.3), squeeze=False)
    r = particle_diameter_px / 2
    for i, (label, (image, picks, score)) in enumerate(panels.items()):
        ax = axes[i]
        _show(ax[0], image, f"{label}" if i else f"{label}\nmicrograph")
        ax[1].imshow(picks.heat, cmap="magma", vmin=0, vmax=max(3 * picks.threshold, 1e-6))
        ax[1].set_title("heat map (sigmas)" if i == 0 else None)
        ax[2].imshow(picks.heat > picks.threshold, cmap="gray")
        if len(picks.points_xy):
            ax[2].scatter(
                picks.points_xy[:, 0],
                picks.points_xy[:, 1],
                c=picks.labels % 20,
                cmap="tab20",
                s=4,
                linewidths=0,
            )
        ax[2].set_title("mean-shift clusters" if i == 0 else None)
        _show(ax[3], image)
        matched = {p for p, _ in score["matches"]} if score else set()
        for k, (x, y) in enumerate(picks.coords_xy):
            ax[3].add_patch(Circle((x, y), r, fill=False, lw=1.1, ec="lime" if k in matched else "red"))
        if truth_xy is not None and len(truth_xy):
            hit = {t for _, t in score["matches"]} if score else set()
            miss = np.array([t for k, t in enumerate(np.asarray(truth_xy)) if k not in hit]).reshape(-1, 2)
            if len(miss):
                ax[3].plot(miss[:, 0], miss[:, 1], "x", color="yellow", ms=5)
        ax[3].set_title(f"picks: F1 {score['f1']:.2f}" if score else "picks")
        for a in ax:
            a.set_xticks([])
            a.set_yticks([])
    _finish(fig, title)
    return fig


def plot_threshold_sweep(
    sweeps: Mapping[str, dict], *, default_threshold: float = 2.5, size: tuple[float, float] = (6.0, 3.8)
):
    """Plot picking F1 against the heat threshold, one curve per method.

    The sweeps come from :func:`nt2c.evaluation.picking.threshold_sweep`.

    Parameters
    ----------
    sweeps : mapping of str to dict
        Method label to the sweep's ``threshold`` and ``f1`` arrays (and ``precision``, ``recall``).
    default_threshold : float
        Marked with a vertical line (the threshold of the evaluation table).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size)
    for label, sweep in sweeps.items():
        ax.plot(sweep["threshold"], sweep["f1"], marker="o", ms=3, lw=1.3, label=label)
    ax.axvline(default_threshold, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("heat threshold (robust sigmas)")
    ax.set_ylabel("picking F1")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
