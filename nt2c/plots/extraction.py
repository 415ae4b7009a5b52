"""Figures of the noise-extraction stage (paper section 2.2.2); every function returns a matplotlib Figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from nt2c.plots.common import display_range

__all__ = ["plot_boxes", "plot_local_ssim", "plot_score_map", "plot_noise_statistics"]


def plot_boxes(
    image,
    result,
    *,
    particles_xy=None,
    particle_radius_px: float | None = None,
    title: str = "",
    show_rejected: bool = False,
    ax=None,
    size: float = 6.0,
):
    """Draw the selected noise patches as boxes on a micrograph.

    Parameters
    ----------
    image : array_like, shape (ny, nx)
        The micrograph to show (raw or enhanced).
    result : NoisePatches
        From :func:`nt2c.extraction.patches.extract_noise_patches` (selected boxes in green).
    particles_xy : array_like, shape (k, 2), optional
        True particle centres (x = column, y = row) in px, drawn as red circles of ``particle_radius_px``.
    show_rejected : bool or sequence of str
        Also draw, dashed, the candidates dropped by these guards (True: ``("outlier", "excluded")``; the
        names of :data:`nt2c.extraction.patches.STATUS_NAMES`, e.g. ``"overlap"``).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, Rectangle

    from nt2c.extraction.patches import STATUS_NAMES

    image = np.asarray(image)
    if ax is None:
        fig, ax = plt.subplots(figsize=(size, size * image.shape[0] / image.shape[1]))
    else:
        fig = ax.figure
    lo, hi = display_range(image)
    ax.imshow(image, cmap="gray", vmin=lo, vmax=hi)
    d = result.patch_size
    if show_rejected:
        names = ("outlier", "excluded") if show_rejected is True else tuple(show_rejected)
        colours = {
            "criterion": "tab:red",
            "outlier": "tab:orange",
            "excluded": "tab:purple",
            "overlap": "0.6",
        }
        for name in names:
            colour = colours[name]
            code = STATUS_NAMES.index(name)
            for r, c in result.candidates[result.status == code]:
                ax.add_patch(Rectangle((c - 0.5, r - 0.5), d, d, fill=False, lw=0.6, ls="--", ec=colour))
    for r, c in result.boxes:
        ax.add_patch(Rectangle((c - 0.5, r - 0.5), d, d, fill=False, lw=1.2, ec="lime"))
    if particles_xy is not None and len(particles_xy):
        radius = particle_radius_px or 0.05 * min(image.shape)
        for x, y in np.asarray(particles_xy)[:, :2]:
            ax.add_patch(Circle((x, y), radius, fill=False, lw=1.0, ec="red"))
    rule = {
        "ssim": f"min SSIM > {result.threshold:g}",
        "std": f"local std <= {result.threshold:g}",
        "meanvar": "GCBD mean/var",
    }[result.criterion]
    ax.set_title(
        title
        or f"{len(result)} noise patches of {result.candidates.shape[0]} candidates "
        f"(d={d}, s={result.step}, N={result.n_sub}, {rule})"
    )
    ax.set_axis_off()
    fig.tight_layout()
    return fig


def plot_local_ssim(
    enhanced_unit,
    boxes,
    *,
    patch_size: int,
    n_sub: int = 4,
    threshold: float = 0.7,
    labels: Sequence[str] | None = None,
    size: float = 2.6,
):
    """Show the SSIM test on a few patches: each patch with its local-patch grid and its SSIM matrix.

    Parameters
    ----------
    enhanced_unit : array_like, shape (ny, nx)
        The enhanced micrograph normalised to [0, 1] (:func:`nt2c.extraction.ssim.normalize_unit`).
    boxes : array_like, shape (k, 2)
        Top-left (row, col) of the patches to show (px).
    patch_size, n_sub, threshold : as in :func:`~nt2c.extraction.patches.extract_noise_patches`.
    labels : sequence of str, optional
        A caption per patch.

    Returns
    -------
    matplotlib.figure.Figure
        Two rows: the patches (local patches outlined), then their SSIM matrices with the verdict in the
        title.
    """
    import matplotlib.pyplot as plt

    from nt2c.extraction.ssim import local_patch_ssim

    x = np.asarray(enhanced_unit, dtype=np.float64)
    boxes = np.asarray(boxes, dtype=int).reshape(-1, 2)
    k = len(boxes)
    g = int(round(np.sqrt(n_sub)))
    fig, axes = plt.subplots(2, k, figsize=(size * k, 2 * size + 0.4), squeeze=False)
    for j, (r, c) in enumerate(boxes):
        patch = x[r : r + patch_size, c : c + patch_size]
        m = local_patch_ssim(patch, n_sub=n_sub)
        worst = float(m[~np.eye(n_sub, dtype=bool)].min())
        ax = axes[0, j]
        ax.imshow(patch, cmap="gray", vmin=0, vmax=1)
        for t in range(1, g):
            ax.axhline(t * patch_size / g - 0.5, color="yellow", lw=0.8)
            ax.axvline(t * patch_size / g - 0.5, color="yellow", lw=0.8)
        ax.set_title(labels[j] if labels is not None else f"patch at ({r}, {c})")
        ax.set_axis_off()
        ax = axes[1, j]
        im = ax.imshow(m, vmin=min(0.0, worst), vmax=1.0, cmap="viridis")
        ax.set_xticks(range(n_sub))
        ax.set_yticks(range(n_sub))
        verdict = "background" if worst > threshold else "signal"
        ax.set_title(f"min SSIM {worst:.3f}\n{verdict}")
    fig.colorbar(im, ax=axes[1, :].tolist(), shrink=0.8, label="SSIM (Eq. 3)")
    return fig


def plot_score_map(result, *, ax=None, size: float = 4.5):
    """Map the criterion's statistic of every candidate on the grid, marking the guards' rejections.

    Parameters
    ----------
    result : NoisePatches

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    from nt2c.extraction.patches import STATUS_NAMES

    nr, nc = result.grid_shape
    scores = result.candidate_scores.reshape(nr, nc)
    if ax is None:
        fig, ax = plt.subplots(figsize=(size * 1.25, size * nr / max(nc, 1)))
    else:
        fig = ax.figure
    r0, c0 = result.candidates[0]
    s, d = result.step, result.patch_size
    extent = (
        c0 + d / 2 - s / 2,
        c0 + d / 2 + (nc - 0.5) * s,
        r0 + d / 2 + (nr - 0.5) * s,
        r0 + d / 2 - s / 2,
    )
    label = {
        "ssim": "min pairwise SSIM",
        "std": "max local std (grey levels)",
        "meanvar": "max deviation / tolerance",
    }
    im = ax.imshow(scores, extent=extent, cmap="viridis" if result.criterion == "ssim" else "viridis_r")
    fig.colorbar(im, ax=ax, label=label[result.criterion])
    status = result.status.reshape(nr, nc)
    centres_r = result.candidates[:, 0].reshape(nr, nc) + d / 2
    centres_c = result.candidates[:, 1].reshape(nr, nc) + d / 2
    markers = {
        "selected": ("o", "lime"),
        "outlier": ("x", "tab:orange"),
        "excluded": ("+", "tab:purple"),
        "overlap": (".", "white"),
    }
    for name, (marker, colour) in markers.items():
        hit = status == STATUS_NAMES.index(name)
        if hit.any():
            ax.scatter(centres_c[hit], centres_r[hit], marker=marker, s=12, c=colour, label=name)
    ax.legend(loc="upper right", fontsize="small", framealpha=0.6)
    ax.set_xlabel("patch centre x (px)")
    ax.set_ylabel("patch centre y (px)")
    ax.set_title(f"background test per candidate ({result.criterion})")
    fig.tight_layout()
    return fig


def plot_noise_statistics(
    sets: Mapping[str, np.ndarray],
    *,
    pixel_size_A: float | None = None,
    bins: int = 80,
    standardise: bool = False,
    size: float = 4.0,
):
    """Histogram and radially averaged power spectrum of sets of noise patches, side by side.

    Parameters
    ----------
    sets : mapping of str to array_like, each (n, d, d)
        Label to patches (e.g. the extracted patches and the simulator's true noise ``noisy - clean``).
    pixel_size_A : float, optional
        Label the frequency axis in 1/A instead of cycles/px.
    standardise : bool
        Subtract each set's mean and divide by its standard deviation first (compare shapes, not levels).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    from nt2c.noise.fidelity import radial_psd

    fig, (ax_h, ax_p) = plt.subplots(1, 2, figsize=(2.2 * size, size))
    for label, patches in sets.items():
        a = np.asarray(patches, dtype=np.float64)
        if a.ndim == 2:
            a = a[None]
        values = a - a.mean(axis=(1, 2), keepdims=True)  # per-patch mean removed (ice thickness, gain)
        if standardise:
            values = values / values.std()
        ax_h.hist(
            values.ravel(),
            bins=bins,
            density=True,
            histtype="step",
            lw=1.4,
            label=f"{label} (n={a.shape[0]}, sd={values.std():.3g})",
        )
        freq, psd = radial_psd(values)
        if pixel_size_A:
            freq = freq / pixel_size_A
        ax_p.semilogy(freq, psd, lw=1.4, label=label)
    ax_h.set_xlabel("pixel value - patch mean" + (" (standardised)" if standardise else ""))
    ax_h.set_ylabel("density")
    ax_h.set_title("histogram")
    ax_h.legend(fontsize="small")
    ax_p.set_xlabel("spatial frequency (1/A)" if pixel_size_A else "spatial frequency (cycles/px)")
    ax_p.set_ylabel("power")
    ax_p.set_title("radially averaged power spectrum")
    ax_p.legend(fontsize="small")
    fig.tight_layout()
    return fig
