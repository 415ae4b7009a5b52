"""Figures of the denoiser notebooks: the U-Net's layout, learning curves, before/after, power spectra."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from nt2c.plots.common import display_range

__all__ = ["plot_unet", "plot_learning_curves", "plot_before_after", "plot_power_spectra", "unet_table"]


def unet_table(model, *, input_px: int = 512) -> str:
    """Tabulate the U-Net's blocks: resolution, channels in/out, parameters, cost per input pixel.

    Parameters
    ----------
    model : nt2c.UNet
    input_px : int
        Side of a square input used to print the feature-map sizes (px).
    """
    rows = [f"{'block':<12}{'size (px)':>12}{'ch in':>7}{'ch out':>8}{'params':>9}{'kMAC/px':>9}"]

    def block(name, module, level):
        convs = [m for m in module.modules() if hasattr(m, "kernel_size")]
        c_in, c_out = convs[0].in_channels, convs[-1].out_channels
        params = sum(p.numel() for p in module.parameters())
        macs = (
            sum(c.in_channels * c.out_channels * c.kernel_size[0] * c.kernel_size[1] for c in convs)
            / 4**level
        )
        side = input_px // 2**level
        rows.append(f"{name:<12}{f'{side}x{side}':>12}{c_in:>7}{c_out:>8}{params:>9}{macs / 1e3:>9.2f}")

    for level, enc in enumerate(model.encoders):
        block(f"down {level + 1}", enc, level)
    block("bottleneck", model.bottleneck, model.depth)
    for k, dec in enumerate(model.decoders):
        block(f"up {k + 1}", dec, model.depth - 1 - k)
    block("output", model.head, 0)
    total = sum(p.numel() for p in model.parameters())
    rows.append(
        f"total: {total} parameters, {model.macs_per_pixel() / 1e3:.1f} k multiply-adds per input pixel; "
        "max-pool after each 'down', nearest up-sampling + skip concatenation before each 'up'"
    )
    return "\n".join(rows)


def plot_unet(model, *, size: tuple[float, float] = (9.0, 4.0)):
    """Diagram of the U-Net: one box per block, height ~ resolution, label = channels; arrows = skips.

    Parameters
    ----------
    model : nt2c.UNet

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, Rectangle

    d = model.depth
    fig, ax = plt.subplots(figsize=size)
    ax.set_axis_off()
    n_cols = 2 * d + 1
    centers = {}

    def box(col, level, label, color):
        h = 0.9 * 0.6**level + 0.15
        y = -level * 1.0
        ax.add_patch(Rectangle((col - 0.35, y - h / 2), 0.7, h, color=color, alpha=0.85))
        ax.text(col, y - h / 2 - 0.12, label, ha="center", va="top", fontsize=7)
        centers[(col, level)] = (col, y)

    enc_ch = [
        m.out_channels
        for m in (next(c for c in e.modules() if hasattr(c, "kernel_size")) for e in model.encoders)
    ]
    for level in range(d):
        box(level, level, f"{enc_ch[level]}ch\n/{2**level}", "tab:blue")
    box(d, d, f"{model.width}ch\n/{2**d}", "tab:purple")
    for k, dec in enumerate(model.decoders):
        level = d - 1 - k
        out_ch = [c for c in dec.modules() if hasattr(c, "kernel_size")][-1].out_channels
        box(d + 1 + k, level, f"{out_ch}ch\n/{2**level}", "tab:orange")
    ax.text(-0.9, 0, "input", ha="right", va="center", fontsize=8)
    ax.text(n_cols - 0.1, 0, "output\n(1x1 conv,\nlinear)", ha="left", va="center", fontsize=8)
    for level in range(d):
        start = (level + 0.35, -level + 0.05)
        end = (2 * d - level - 0.35, -level + 0.05)
        ax.add_patch(
            FancyArrowPatch(
                start, end, arrowstyle="->", color="0.5", lw=0.8, linestyle="--", mutation_scale=8
            )
        )
    ax.set_xlim(-1.5, n_cols + 1)
    ax.set_ylim(-d - 0.8, 1.0)
    ax.set_title(
        f"U-Net: {d} max-pool down blocks (blue), {d} nearest up blocks (orange), skips (dashed); "
        f"first kernel {model.first_kernel}x{model.first_kernel}",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def plot_learning_curves(
    curves: Mapping, *, title: str = "training", smooth: int = 20, size: tuple[float, float] = (9.0, 3.4)
):
    """Training loss, validation loss and validation PSNR against the optimiser step.

    Parameters
    ----------
    curves : mapping
        ``RUN/report/coarse_curves.json`` (see :class:`nt2c.denoiser.training.TrainResult`).
    smooth : int
        Moving-average window (steps) of the training loss.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=size)
    train = curves.get("train", [])
    if train:
        steps = np.array([r["step"] for r in train])
        loss = np.array([r["loss"] for r in train])
        ax1.plot(steps, loss, color="0.8", lw=0.8, label="train (per step)")
        if len(loss) >= smooth > 1:
            avg = np.convolve(loss, np.ones(smooth) / smooth, mode="valid")
            ax1.plot(steps[smooth - 1 :], avg, color="tab:blue", label=f"train ({smooth}-step mean)")
    val = curves.get("val", [])
    if val:
        vs = [r["step"] for r in val]
        ax1.plot(vs, [r["loss"] for r in val], "o-", color="tab:orange", label="validation")
        ax2.plot(vs, [r["psnr_dB"] for r in val], "o-", color="tab:green", label="denoised")
    if curves.get("input_psnr_dB") is not None:
        ax2.axhline(curves["input_psnr_dB"], color="0.4", ls="--", label="noisy input (identity)")
    ax1.set(xlabel="step", ylabel="L2 loss (normalised units)", title=f"{title}: loss")
    ax1.set_yscale("log")
    ax2.set(xlabel="step", ylabel="PSNR (dB)", title=f"{title}: validation PSNR")
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_before_after(images: Mapping[str, np.ndarray], *, zoom: int | None = 256, size: float = 3.2):
    """Whole images (top row) and a zoomed centre crop (bottom row), each with a robust grey range.

    Parameters
    ----------
    images : mapping of str to numpy.ndarray, each (ny, nx)
        Title to image, e.g. ``{"noisy": ..., "denoised": ..., "clean": ...}``.
    zoom : int or None
        Side of the centre crop (px); None for no zoom row.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    n = len(images)
    rows = 2 if zoom else 1
    fig, axes = plt.subplots(rows, n, figsize=(size * n, size * rows), squeeze=False)
    for j, (title, img) in enumerate(images.items()):
        img = np.asarray(img, dtype=np.float32)
        lo, hi = display_range(img)
        axes[0, j].imshow(img, cmap="gray", vmin=lo, vmax=hi)
        axes[0, j].set_title(title)
        if zoom:
            ny, nx = img.shape
            s = min(zoom, ny, nx)
            y0, x0 = (ny - s) // 2, (nx - s) // 2
            crop = img[y0 : y0 + s, x0 : x0 + s]
            lo, hi = display_range(crop)
            axes[1, j].imshow(crop, cmap="gray", vmin=lo, vmax=hi)
            axes[1, j].set_title(f"centre {s}x{s} px")
    for ax in axes.flat:
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def plot_power_spectra(
    images: Mapping[str, np.ndarray],
    *,
    pixel_size_A: float | None = None,
    normalize: bool = True,
    size: tuple[float, float] = (6.0, 3.8),
):
    """Radially averaged power spectra (log scale) of several images of the same field.

    Parameters
    ----------
    images : mapping of str to numpy.ndarray, each (ny, nx)
    pixel_size_A : float, optional
        Label the frequency axis in 1/Angstrom instead of cycles per pixel.
    normalize : bool
        Divide each image by its standard deviation first, so spectra of different grey scales compare
        by shape (a denoiser removes power at the frequencies where noise dominates).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    from nt2c.noise.fidelity import radial_psd

    fig, ax = plt.subplots(figsize=size)
    for name, img in images.items():
        img = np.asarray(img, dtype=np.float64)
        if normalize:
            img = (img - img.mean()) / (img.std() or 1.0)
        freq, psd = radial_psd(img)
        if pixel_size_A:
            freq = freq / pixel_size_A
        ax.semilogy(freq, psd, lw=1.2, label=name)
    ax.set_xlabel("spatial frequency (1/A)" if pixel_size_A else "spatial frequency (cycles/px)")
    ax.set_ylabel("power" + (" (image / its std)" if normalize else ""))
    ax.set_title("radially averaged power spectrum")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
