"""Figures of the GAN noise synthesizer: real against generated patches, noise statistics, training curves."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from nt2c.plots.common import display_range

__all__ = ["show_real_vs_generated", "plot_noise_statistics", "plot_fidelity_table", "plot_gan_curves"]

_METRIC_LABELS = {
    "psd_log_ratio_db": "power spectrum\n|log ratio| (dB)",
    "ks_statistic": "pixel values\nKS statistic",
    "wasserstein_rel": "pixel values\nWasserstein / std",
    "acf_mad": "autocorrelation\nmean |difference|",
    "pca_gap": "diversity\nPCA top-share gap",
}


def show_real_vs_generated(
    real: np.ndarray, generated: np.ndarray, *, n: int = 4, size: float = 2.4, percentile: float = 1.0
):
    """Real noise patches (top row) above generated ones (bottom row), on one common grey scale.

    Parameters
    ----------
    real, generated : numpy.ndarray, shape (m, d, d)
        Patches in the same units; the first ``n`` of each are shown.
    n : int
        Patches per row.
    size : float
        Panel side (inches).
    percentile : float
        Percent of pixels clipped at each end of the common grey range (computed over the real patches, so a
        generator with the wrong amplitude looks washed out or saturated).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    real = np.asarray(real)
    generated = np.asarray(generated)
    n = max(1, min(n, len(real), len(generated)))
    lo, hi = display_range(real[:n], percentile)
    fig, axes = plt.subplots(2, n, figsize=(size * n, size * 2), squeeze=False)
    for row, (label, stack) in enumerate((("real", real), ("generated", generated))):
        for j in range(n):
            ax = axes[row, j]
            ax.imshow(stack[j], cmap="gray", vmin=lo, vmax=hi)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(label)
    fig.suptitle(f"noise patches, common grey range [{lo:.3g}, {hi:.3g}]")
    fig.tight_layout()
    return fig


def plot_noise_statistics(
    sets: Mapping[str, np.ndarray], *, reference: str | None = None, window: int = 6, bins: int = 80
):
    """Radial power spectrum, pixel histogram and autocorrelation of several noise sets on shared axes.

    Parameters
    ----------
    sets : mapping of str to numpy.ndarray, each (m, d, d)
        Name to patches, all of the same ``d`` and units (e.g. :func:`nt2c.noise.stage.fidelity_sets`).
    reference : str, optional
        The set drawn in black, thick (default: the first).
    window : int
        Largest lag (px) of the autocorrelation profile.
    bins : int
        Histogram bins (over the reference's 0.1 - 99.9 percentile range).

    Returns
    -------
    matplotlib.figure.Figure
        Three panels: radially averaged power spectrum (log scale) against spatial frequency (cycles/px);
        pixel-value densities; the autocorrelation along x at lags 0..window (mean of the +x and -x sides).
    """
    import matplotlib.pyplot as plt

    from nt2c.noise.fidelity import autocorrelation, radial_psd

    if not sets:
        raise ValueError("no noise sets to plot")
    reference = reference or next(iter(sets))
    ref = np.asarray(sets[reference])
    lo, hi = np.percentile(ref, [0.1, 99.9])
    edges = np.linspace(lo, hi, bins + 1)
    fig, (a_psd, a_hist, a_acf) = plt.subplots(1, 3, figsize=(14, 3.8))
    for name, patches in sets.items():
        style = {"color": "k", "lw": 2.2, "zorder": 5} if name == reference else {"lw": 1.3, "alpha": 0.9}
        freq, psd = radial_psd(patches)
        a_psd.semilogy(freq, psd, label=name, **style)
        a_hist.hist(
            np.asarray(patches).ravel(),
            bins=edges,
            density=True,
            histtype="step",
            label=name,
            **({"color": "k", "lw": 2.2} if name == reference else {"lw": 1.3}),
        )
        acf = autocorrelation(patches, window=window)
        profile = 0.5 * (acf[window, window:] + acf[window, window::-1])
        a_acf.plot(np.arange(window + 1), profile, marker="o", ms=3, label=name, **style)
    a_psd.set(
        xlabel="spatial frequency (cycles/px)", ylabel="power (units$^2$)", title="radial power spectrum"
    )
    a_hist.set(xlabel="pixel value", ylabel="density", title="pixel-value distribution")
    a_acf.set(xlabel="lag along x (px)", ylabel="autocorrelation", title="autocorrelation")
    a_acf.axhline(0, color="0.6", lw=0.8)
    a_psd.legend(fontsize="small")
    fig.tight_layout()
    return fig


def plot_fidelity_table(
    rows: Mapping[str, Mapping[str, float]],
    metrics: tuple[str, ...] = ("psd_log_ratio_db", "ks_statistic", "wasserstein_rel", "acf_mad", "pca_gap"),
):
    """Bar charts of the fidelity distances of each noise model (lower is closer to the real noise).

    Parameters
    ----------
    rows : mapping of str to mapping
        Model name to :func:`nt2c.noise_fidelity` result (e.g. ``noise_fidelity.json``'s ``rows``).
    metrics : tuple of str
        Which distances to show, one panel each.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    names = list(rows)
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.4 * len(metrics), 3.4), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, metric in zip(axes[0], metrics):
        values = [float(rows[n][metric]) for n in names]
        ax.bar(range(len(names)), values, color=[colors[i % len(colors)] for i in range(len(names))])
        ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize="small")
        ax.set_title(_METRIC_LABELS.get(metric, metric))
        for i, v in enumerate(values):
            ax.annotate(f"{v:.3g}", (i, v), ha="center", va="bottom", fontsize="x-small")
    fig.suptitle("distance to held-out real noise (lower is better)")
    fig.tight_layout()
    return fig


def plot_gan_curves(curves: Mapping[str, list]):
    """WGAN-GP training curves: the critic's Wasserstein estimate, the losses and the gradient penalty.

    Parameters
    ----------
    curves : mapping
        ``RUN/report/gan_curves.json`` (:attr:`nt2c.noise.gan.TrainedGan.curves`).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    it = np.asarray(curves["iteration"])
    fig, (a_w, a_l, a_gp) = plt.subplots(1, 3, figsize=(14, 3.4))
    a_w.plot(it, curves["wasserstein_estimate"], lw=1)
    a_w.set(
        xlabel="generator iteration", ylabel="E[D(real)] - E[D(fake)]", title="critic's Wasserstein estimate"
    )
    a_l.plot(it, curves["critic_loss"], lw=1, label="critic (Eq. 2)")
    a_l.plot(it, curves["generator_loss"], lw=1, label="generator")
    a_l.set(xlabel="generator iteration", ylabel="loss", title="losses")
    a_l.legend(fontsize="small")
    a_gp.plot(it, curves["gradient_penalty"], lw=1, label="penalty")
    a_gp.plot(it, curves["grad_norm"], lw=1, label="mean ||grad D||")
    a_gp.axhline(1.0, color="0.6", lw=0.8)
    a_gp.set(xlabel="generator iteration", title="gradient penalty and gradient norm")
    a_gp.legend(fontsize="small")
    fig.tight_layout()
    return fig
