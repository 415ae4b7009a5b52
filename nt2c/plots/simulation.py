"""Figures of notebook 01: specimen, potential, CTF, Thon rings, clean vs noisy, detectors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from nt2c.plots.common import display_range

__all__ = [
    "plot_specimen",
    "plot_potential",
    "plot_ctf",
    "plot_thon_rings",
    "plot_clean_noisy",
    "plot_detectors",
]

_ELEMENT_COLOURS = {"C": "0.35", "N": "tab:blue", "O": "tab:red", "S": "gold", "P": "tab:orange", "H": "0.85"}


def plot_specimen(specimen, *, max_atoms: int = 20000, seed: int = 0):
    """Three orthogonal views of a specimen's atoms, coloured by element.

    Parameters
    ----------
    specimen : nt2c.simulation.Specimen
    max_atoms : int
        Random subset drawn for speed.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    idx = np.arange(specimen.n_atoms)
    if len(idx) > max_atoms:
        idx = rng.choice(idx, max_atoms, replace=False)
    xyz, el = specimen.coords_A[idx], specimen.elements[idx]
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.6))
    for ax, (i, j, name) in zip(axes, [(0, 1, "x-y"), (0, 2, "x-z"), (1, 2, "y-z")]):
        for element in sorted(set(el), key=lambda e: e != "C"):
            sel = el == element
            ax.scatter(
                xyz[sel, i],
                xyz[sel, j],
                s=1.0,
                c=_ELEMENT_COLOURS.get(element, "tab:green"),
                label=element,
                rasterized=True,
            )
        ax.set_aspect("equal")
        ax.set_title(f"{name} view")
        ax.set_xlabel("A")
    axes[0].legend(markerscale=8, fontsize="small", loc="upper right")
    fig.suptitle(
        f"{specimen.name}: {specimen.n_atoms} atoms, {specimen.mass_kDa:.0f} kDa, "
        f"diameter {2 * specimen.radius_A:.0f} A"
    )
    fig.tight_layout()
    return fig


def plot_potential(potential: np.ndarray, *, pixel_size_A: float, title: str = "projected potential"):
    """Show a projected potential (V A) with a colour bar and axes in Angstrom.

    Parameters
    ----------
    potential : numpy.ndarray, shape (ny, nx)
    pixel_size_A : float
    """
    import matplotlib.pyplot as plt

    ny, nx = potential.shape
    fig, ax = plt.subplots(figsize=(4.6, 4))
    im = ax.imshow(potential, cmap="viridis", extent=(0, nx * pixel_size_A, ny * pixel_size_A, 0))
    fig.colorbar(im, ax=ax, label="V A per pixel")
    ax.set_xlabel("x (A)")
    ax.set_ylabel("y (A)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_ctf(
    *,
    defocus_um: float,
    pixel_size_A: float = 1.0,
    size_px: int = 512,
    voltage_kV: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
    astigmatism_um: float = 0.0,
    b_factor_A2: float = 0.0,
    n_zeros: int = 6,
):
    """Plot the 2-D CTF and its 1-D profile (with and without envelopes) with the zeros marked.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    from nt2c.simulation.ctf import ctf_1d, ctf_2d, ctf_zeros

    df = defocus_um * 1e4
    ctf = ctf_2d(
        (size_px, size_px),
        pixel_size_A,
        defocus_u_A=df + astigmatism_um * 5e3,
        defocus_v_A=df - astigmatism_um * 5e3,
        astigmatism_angle_deg=30.0,
        voltage_kV=voltage_kV,
        cs_mm=cs_mm,
        amplitude_contrast=amplitude_contrast,
        b_factor_A2=b_factor_A2,
        rfft=False,
    ).numpy()
    k = np.linspace(0, 0.5 / pixel_size_A, 1000)
    kw = dict(
        defocus_um=defocus_um, voltage_kV=voltage_kV, cs_mm=cs_mm, amplitude_contrast=amplitude_contrast
    )
    zeros = ctf_zeros(n=n_zeros, k_max=0.5 / pixel_size_A, **kw)
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [1, 1.6]})
    nyq = 0.5 / pixel_size_A
    a0.imshow(np.fft.fftshift(ctf), cmap="RdBu_r", vmin=-1, vmax=1, extent=(-nyq, nyq, nyq, -nyq))
    a0.set_title(f"2-D CTF, {defocus_um:g} um underfocus")
    a0.set_xlabel("kx (1/A)")
    a0.set_ylabel("ky (1/A)")
    a1.plot(k, ctf_1d(k, **kw), lw=0.8, color="0.6", label="CTF (no envelope)")
    a1.plot(k, ctf_1d(k, b_factor_A2=b_factor_A2, envelopes=True, **kw), lw=1.2, label="with envelopes")
    a1.plot(zeros, np.zeros_like(zeros), "kx", label="zeros")
    for z in zeros:
        a1.annotate(f"{z:.4f}", (z, 0), textcoords="offset points", xytext=(0, 8), ha="center", fontsize=7)
    a1.axhline(0, color="k", lw=0.5)
    a1.set_xlabel("spatial frequency k (1/A)")
    a1.set_ylabel("CTF")
    a1.set_title(f"1-D profile: CTF(0) = -A = {-amplitude_contrast:g}")
    a1.legend(fontsize="small")
    fig.tight_layout()
    return fig


def plot_thon_rings(
    image: np.ndarray,
    *,
    pixel_size_A: float,
    defocus_um: float | None = None,
    voltage_kV: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
):
    """Plot the power spectrum of a micrograph (log) and its rotational average, with the CTF zeros.

    Parameters
    ----------
    image : numpy.ndarray, shape (ny, nx)
    pixel_size_A : float
    defocus_um : float, optional
        Mark the expected zeros of this (mean) defocus.
    """
    import matplotlib.pyplot as plt

    from nt2c.simulation.ctf import ctf_zeros, radial_power_spectrum

    img = np.asarray(image, dtype=np.float64)
    ps = np.fft.fftshift(np.abs(np.fft.fft2(img - img.mean())) ** 2)
    from scipy.ndimage import gaussian_filter

    logps = gaussian_filter(np.log1p(ps / np.median(ps)), 1.0)  # light smoothing makes the rings readable
    k, power = radial_power_spectrum(img, pixel_size_A)
    nyq = 0.5 / pixel_size_A
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [1, 1.6]})
    lo, hi = display_range(logps, 0.5)
    a0.imshow(logps, cmap="gray", vmin=lo, vmax=hi, extent=(-nyq, nyq, nyq, -nyq))
    a0.set_title("power spectrum (log): Thon rings")
    a0.set_xlabel("kx (1/A)")
    a1.semilogy(k[1:], power[1:], lw=1)
    if defocus_um is not None:
        zeros = ctf_zeros(
            defocus_um=defocus_um,
            voltage_kV=voltage_kV,
            cs_mm=cs_mm,
            amplitude_contrast=amplitude_contrast,
            n=12,
            k_max=nyq,
        )
        for z in zeros:
            a1.axvline(z, color="tab:red", lw=0.6, ls="--")
        a1.set_title(f"rotational average; dashed: CTF zeros at {defocus_um:.2f} um")
    else:
        a1.set_title("rotational average")
    a1.set_xlabel("spatial frequency k (1/A)")
    a1.set_ylabel("power")
    fig.tight_layout()
    return fig


def plot_clean_noisy(panels: Mapping[str, tuple[np.ndarray, np.ndarray]], *, size: float = 2.8):
    """Rows of (clean, noisy) pairs, one row per condition (e.g. dose or defocus).

    Parameters
    ----------
    panels : mapping of str to (clean, noisy)
        Row title to a pair of (ny, nx) images in counts per pixel.
    """
    import matplotlib.pyplot as plt

    n = len(panels)
    fig, axes = plt.subplots(n, 2, figsize=(2 * size + 0.4, size * n), squeeze=False)
    for row, (title, (clean, noisy)) in enumerate(panels.items()):
        for col, (name, img) in enumerate((("clean", clean), ("noisy", noisy))):
            ax = axes[row, col]
            lo, hi = display_range(np.asarray(img), 1.0)
            ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
            ax.set_title(f"{title}: {name}", fontsize="small")
            ax.set_axis_off()
    fig.tight_layout()
    return fig


def plot_detectors(detectors: Sequence[str] = ("ideal", "counting", "k2", "k3", "falcon3", "falcon4")):
    """MTF and DQE of detector presets from 0 to Nyquist."""
    import matplotlib.pyplot as plt

    from nt2c.simulation.detector import detector_curves

    fig, (a0, a1) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name in detectors:
        c = detector_curves(name)
        a0.plot(c["w"], c["mtf"], label=name)
        a1.plot(c["w"], c["dqe"], label=name)
    for ax, what in ((a0, "MTF"), (a1, "DQE")):
        ax.set_xlabel("spatial frequency (fraction of Nyquist)")
        ax.set_ylabel(what)
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
    a0.legend(fontsize="small")
    fig.tight_layout()
    return fig
