"""Figure helpers used by several stages."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["show_images", "display_range", "image_grid"]


def display_range(image: np.ndarray, percentile: float = 1.0) -> tuple[float, float]:
    """Grey-level limits clipping ``percentile`` % at each end (robust to hot pixels)."""
    lo, hi = np.percentile(image, [percentile, 100 - percentile])
    if hi <= lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def image_grid(n: int, *, ncols: int | None = None, size: float = 3.2):
    """Make a figure with ``n`` square panels (at most 4 per row by default), axes switched off.

    Returns
    -------
    fig : matplotlib.figure.Figure
    axes : numpy.ndarray of Axes, shape (nrows, ncols)
    """
    import matplotlib.pyplot as plt

    ncols = ncols or min(n, 4)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    return fig, axes


def show_images(
    images: Mapping[str, np.ndarray],
    *,
    ncols: int | None = None,
    size: float = 3.2,
    percentile: float = 1.0,
    cmap: str = "gray",
):
    """Show 2-D images side by side, each with its own robust grey-level range.

    Parameters
    ----------
    images : mapping of str to numpy.ndarray, each (ny, nx)
        Title to image.
    ncols : int, optional
        Columns of the grid (default: all in one row, at most 4).
    size : float
        Panel side in inches.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, axes = image_grid(len(images), ncols=ncols, size=size)
    for ax, (title, image) in zip(axes.flat, images.items()):
        lo, hi = display_range(np.asarray(image), percentile)
        ax.imshow(image, cmap=cmap, vmin=lo, vmax=hi)
        ax.set_title(title)
    fig.tight_layout()
    return fig
