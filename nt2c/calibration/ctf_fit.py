"""Per-micrograph CTF: read CTFFIND4 and RELION estimates, or fit defocus and astigmatism to the micrograph.

The simulation draws defocus from the user's ``[min, max]`` range; a real micrograph has one defocus, which
its Thon rings show. :func:`fit_ctf` measures it the way CTFFIND4 does in outline:

1. the micrograph's power spectrum, averaged over overlapping Hann-windowed tiles (:func:`power_spectrum`);
2. its square root with the slowly varying background removed (a wide radial smoothing of the rotational
   average) and divided by the local ring amplitude (:func:`normalise_rings`), inside a resolution band
   (default 30-5 A) where the rings carry the defocus: strong low-resolution rings and faint high-resolution
   ones then count alike, per Fourier pixel;
3. a 1-D search: the defocus whose ``CTF^2`` rotational profile correlates best with the normalised
   rotational average, each ring weighted by its number of Fourier pixels (so the 1-D score is the 2-D one
   averaged over angle), over a grid (``defocus_step_A``) and refined;
4. a 2-D refinement of ``(defocus_u, defocus_v, angle)`` maximising the same correlation on the 2-D spectrum
   (Nelder-Mead from a few starting angles).

Conventions are those of :mod:`nt2c.simulation.ctf` and CTFFIND4: underfocus positive, ``defocus_u_A >=
defocus_v_A``, the angle of the ``u`` axis from x (columns) towards y (rows), in degrees, modulo 180.
:func:`read_ctffind4` and :func:`read_relion_ctf` read the estimates other programs made.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nt2c.errors import InputError
from nt2c.simulation.ctf import ctf_gamma

__all__ = [
    "DEFOCUS_RANGE_UM",
    "CtfEstimate",
    "power_spectrum",
    "fit_ctf",
    "fit_defocus_1d",
    "normalise_rings",
    "read_ctffind4",
    "read_relion_ctf",
]


#: Default underfocus search range of :func:`fit_ctf` (um).
DEFOCUS_RANGE_UM = (0.3, 6.0)


@dataclass(frozen=True)
class CtfEstimate:
    """A CTF estimate of one micrograph.

    Attributes
    ----------
    defocus_u_A, defocus_v_A : float
        Underfocus along the major and minor axes (A), ``defocus_u_A >= defocus_v_A``.
    astigmatism_angle_deg : float
        Angle of the major axis from x, in [0, 180).
    score : float
        Correlation of the fitted ``CTF^2`` with the background-subtracted spectrum (NaN when read from a file
        that gives none).
    source : str
        ``"fit"``, ``"ctffind4"`` or ``"relion"``.
    """

    defocus_u_A: float
    defocus_v_A: float
    astigmatism_angle_deg: float
    score: float = float("nan")
    source: str = "fit"

    @property
    def defocus_um(self) -> float:
        """Mean underfocus (um)."""
        return 0.5 * (self.defocus_u_A + self.defocus_v_A) * 1e-4

    @property
    def astigmatism_um(self) -> float:
        """``defocus_u - defocus_v`` (um)."""
        return (self.defocus_u_A - self.defocus_v_A) * 1e-4


def _ordered(du: float, dv: float, angle_deg: float, score: float, source: str) -> CtfEstimate:
    if dv > du:  # swap the axes: the major one turns by 90 degrees
        du, dv, angle_deg = dv, du, angle_deg + 90.0
    return CtfEstimate(float(du), float(dv), float(angle_deg % 180.0), float(score), source)


def power_spectrum(image, *, box_px: int = 512) -> np.ndarray:
    """Average power spectrum of overlapping, Hann-windowed ``box_px`` tiles of a micrograph.

    Parameters
    ----------
    image : array_like, shape (ny, nx)
        The micrograph (any units), at least ``box_px`` on each side.
    box_px : int
        Tile side (px); tiles overlap by half.

    Returns
    -------
    numpy.ndarray, float64, shape (box_px, box_px)
        ``mean |FFT(w * (tile - mean))|^2`` with the zero frequency at index [0, 0].
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2 or not np.isfinite(img).all():
        raise InputError(f"the micrograph must be a finite 2-D image, got shape {img.shape}.")
    ny, nx = img.shape
    if min(ny, nx) < box_px:
        raise InputError(f"the micrograph ({ny} x {nx} px) is smaller than the spectrum box ({box_px} px).")
    window = np.outer(np.hanning(box_px), np.hanning(box_px))
    step = box_px // 2
    total = np.zeros((box_px, box_px))
    n = 0
    for r in range(0, ny - box_px + 1, step):
        for c in range(0, nx - box_px + 1, step):
            tile = img[r : r + box_px, c : c + box_px]
            total += np.abs(np.fft.fft2(window * (tile - tile.mean()))) ** 2
            n += 1
    return total / n


def _grid(box_px: int, pixel_size_A: float):
    f = np.fft.fftfreq(box_px, d=pixel_size_A)
    ky, kx = np.meshgrid(f, f, indexing="ij")
    return np.hypot(kx, ky), np.arctan2(ky, kx)


def _smooth_radial(k: np.ndarray, values: np.ndarray, bins: np.ndarray, width_bins: float) -> np.ndarray:
    """Rotational average of ``values`` in ``bins``, Gaussian-smoothed over ``width_bins`` bins."""
    from scipy import ndimage

    which = np.clip(np.digitize(k.ravel(), bins) - 1, 0, len(bins) - 2)
    sums = np.bincount(which, weights=values.ravel(), minlength=len(bins) - 1)
    counts = np.bincount(which, minlength=len(bins) - 1)
    profile = sums / np.maximum(counts, 1)
    return ndimage.gaussian_filter1d(profile, width_bins, mode="nearest"), which.reshape(k.shape)


def normalise_rings(profile, *, width_bins: float = 8.0) -> np.ndarray:
    """Remove a rotational profile's slow background and divide by its local ring amplitude.

    Parameters
    ----------
    profile : array_like, shape (n,)
        A rotational average of a power or amplitude spectrum, on evenly spaced frequencies.
    width_bins : float
        Width (bins, Gaussian sigma) of the running mean and running RMS; a few Thon-ring periods.

    Returns
    -------
    numpy.ndarray, shape (n,)
        ``(profile - mean) / rms``, both local: every band of rings has unit amplitude.
    """
    from scipy import ndimage

    y = np.asarray(profile, dtype=np.float64)
    flat = y - ndimage.gaussian_filter1d(y, width_bins, mode="nearest")
    rms = np.sqrt(ndimage.gaussian_filter1d(flat * flat, width_bins, mode="nearest"))
    return flat / np.maximum(rms, np.finfo(float).tiny)


def _prepared(spectrum: np.ndarray, pixel_size_A: float, band_A: tuple[float, float]):
    """Background-subtracted amplitude spectrum at unit local ring amplitude, and the mask of the band."""
    box = spectrum.shape[0]
    k, theta = _grid(box, pixel_size_A)
    amplitude = np.sqrt(np.maximum(spectrum, 0.0))
    bins = np.linspace(0.0, k.max() + 1e-9, box // 2 + 2)
    background, which = _smooth_radial(k, amplitude, bins, width_bins=box / 64)
    flat = amplitude - background[which]
    power, _ = _smooth_radial(k, flat * flat, bins, width_bins=box / 64)
    flat = flat / np.sqrt(np.maximum(power[which], np.finfo(float).tiny))
    low, high = 1.0 / band_A[0], 1.0 / band_A[1]
    mask = (k >= low) & (k <= min(high, 0.5 / pixel_size_A))
    return k, theta, flat, mask


def _corr(a: np.ndarray, b: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Pearson correlation of ``a`` and ``b``, optionally weighted."""
    w = np.ones_like(a) if weights is None else weights
    a = a - np.average(a, weights=w)
    b = b - np.average(b, weights=w)
    denom = math.sqrt(float((w * a * a).sum() * (w * b * b).sum()))
    return float((w * a * b).sum() / denom) if denom > 0 else 0.0


def fit_defocus_1d(
    k_A,
    profile,
    *,
    voltage_kV: float,
    cs_mm: float,
    amplitude_contrast: float,
    defocus_range_A: tuple[float, float] = (3000.0, 60000.0),
    defocus_step_A: float = 50.0,
    weights=None,
) -> tuple[float, float]:
    """Fit one defocus to a background-subtracted rotational average of a power spectrum.

    Parameters
    ----------
    k_A : array_like, shape (n,)
        Spatial frequencies (1/A) of ``profile``, already limited to the fitting band.
    profile : array_like, shape (n,)
        Background-subtracted spectrum (power or amplitude; the rings' phase is what is fitted).
    voltage_kV, cs_mm, amplitude_contrast : float
    defocus_range_A : (float, float)
        Underfocus search range (A).
    defocus_step_A : float
        Grid step before the refinement (A).
    weights : array_like, shape (n,), optional
        Weight of each point in the correlation, e.g. the number of Fourier pixels on each ring (``~k``),
        which makes the 1-D score the 2-D one averaged over angle. Default: equal weights.

    Returns
    -------
    defocus_A : float
    score : float
        (Weighted) correlation of ``CTF^2`` with ``profile`` at the fit.
    """
    from scipy.optimize import minimize_scalar

    k = np.asarray(k_A, dtype=np.float64)
    y = np.asarray(profile, dtype=np.float64)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    if k.shape != y.shape or k.size < 8 or (w is not None and w.shape != k.shape):
        raise InputError(
            "fit_defocus_1d needs matching frequency, profile (and weights) arrays of at least 8 points."
        )
    if w is not None and not ((w >= 0).all() and w.sum() > 0):
        raise InputError("fit_defocus_1d: the weights must be non-negative and not all zero.")
    optics = {"voltage_kV": voltage_kV, "cs_mm": cs_mm, "amplitude_contrast": amplitude_contrast}

    def score(df: float) -> float:
        return _corr(np.sin(ctf_gamma(k, df, **optics)) ** 2, y, w)

    grid = np.arange(defocus_range_A[0], defocus_range_A[1] + defocus_step_A, defocus_step_A)
    scores = np.array([score(df) for df in grid])
    best = float(grid[int(np.argmax(scores))])
    lo, hi = max(defocus_range_A[0], best - defocus_step_A), min(defocus_range_A[1], best + defocus_step_A)
    refined = minimize_scalar(lambda df: -score(df), bounds=(lo, hi), method="bounded")
    return float(refined.x), float(-refined.fun)


def fit_ctf(
    image,
    *,
    pixel_size_A: float,
    voltage_kV: float,
    cs_mm: float,
    amplitude_contrast: float,
    defocus_range_um: tuple[float, float] = DEFOCUS_RANGE_UM,
    band_A: tuple[float, float] = (30.0, 5.0),
    box_px: int = 512,
    spectrum: np.ndarray | None = None,
) -> CtfEstimate:
    """Fit defocus and astigmatism to a micrograph's Thon rings (see the module docstring).

    Parameters
    ----------
    image : array_like, shape (ny, nx), or None
        The micrograph (any units). Ignored when ``spectrum`` is given.
    pixel_size_A, voltage_kV, cs_mm, amplitude_contrast : float
        The acquisition (Angstrom per px, kV, mm).
    defocus_range_um : (float, float)
        Underfocus search range (um).
    band_A : (float, float)
        Lowest and highest resolution (A) of the fit; the highest is capped at Nyquist.
    box_px : int
        Side of the spectrum tiles (px).
    spectrum : numpy.ndarray, shape (box_px, box_px), optional
        A power spectrum from :func:`power_spectrum` (zero frequency at [0, 0]) instead of the image.

    Returns
    -------
    CtfEstimate
    """
    from scipy.optimize import minimize

    if not pixel_size_A > 0:
        raise InputError(f"pixel_size_A = {pixel_size_A!r}: must be positive.")
    if not 0 < defocus_range_um[0] < defocus_range_um[1]:
        raise InputError(f"defocus_range_um = {defocus_range_um}: must be (min, max) with 0 < min < max.")
    ps = power_spectrum(image, box_px=box_px) if spectrum is None else np.asarray(spectrum, np.float64)
    k, theta, flat, mask = _prepared(ps, pixel_size_A, band_A)
    if mask.sum() < 64:
        raise InputError(f"the band {band_A} A holds too few frequencies at {pixel_size_A} A/px; widen it.")
    optics = {"voltage_kV": voltage_kV, "cs_mm": cs_mm, "amplitude_contrast": amplitude_contrast}
    # 1-D: the rotational average of the band
    n_rings = ps.shape[0] // 2
    ring = np.rint(k * pixel_size_A * ps.shape[0]).astype(int)
    sums = np.bincount(ring[mask], weights=flat[mask], minlength=n_rings + 1)
    counts = np.bincount(ring[mask], minlength=n_rings + 1)
    used = counts > 0
    radial_k = np.arange(n_rings + 1)[used] / (pixel_size_A * ps.shape[0])
    df0, _ = fit_defocus_1d(
        radial_k,
        sums[used] / counts[used],
        **optics,
        defocus_range_A=(defocus_range_um[0] * 1e4, defocus_range_um[1] * 1e4),
        weights=counts[used],
    )
    # 2-D: astigmatism around the 1-D defocus
    kk, th, data = k[mask], theta[mask], flat[mask]

    def negative(x: np.ndarray) -> float:
        du, dv, angle = x
        df = 0.5 * (du + dv + (du - dv) * np.cos(2 * (th - math.radians(angle))))
        return -_corr(np.sin(ctf_gamma(kk, df, **optics)) ** 2, data)

    lo_A, hi_A = defocus_range_um[0] * 1e4, defocus_range_um[1] * 1e4
    best = None
    for angle in (0.0, 45.0, 90.0, 135.0):
        start = np.clip(
            np.array([df0 + 200.0, df0 - 200.0, angle]), [lo_A, lo_A, -np.inf], [hi_A, hi_A, np.inf]
        )
        simplex = np.array([start, start + [300.0, 0, 0], start + [0, -300.0, 0], start + [0, 0, 30.0]])
        res = minimize(
            negative,
            start,
            method="Nelder-Mead",
            bounds=[(lo_A, hi_A), (lo_A, hi_A), (None, None)],
            options={"initial_simplex": simplex, "xatol": 1.0, "fatol": 1e-6},
        )
        if best is None or res.fun < best.fun:
            best = res
    du, dv, angle = best.x
    return _ordered(du, dv, angle, -best.fun, "fit")


def read_ctffind4(path: str | os.PathLike) -> list[CtfEstimate]:
    """Read a CTFFIND4 output text file (``*_output.txt`` / ``*.txt``): one estimate per micrograph line.

    Columns: micrograph number, defocus 1 (A), defocus 2 (A), azimuth of astigmatism (deg), phase shift (rad),
    cross-correlation, fit resolution (A).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist; give CTFFIND4's output text file.")
    out = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split()
        try:
            values = [float(v) for v in fields[:7]]
        except ValueError:
            raise InputError(f"{path}, line {number}: not a CTFFIND4 result line: {line!r}") from None
        if len(values) < 6:
            raise InputError(f"{path}, line {number}: expected at least 6 columns, got {len(values)}.")
        out.append(_ordered(values[1], values[2], values[3], values[5], "ctffind4"))
    if not out:
        raise InputError(f"{path} holds no CTFFIND4 result line.")
    return out


def read_relion_ctf(path: str | os.PathLike) -> dict[str, CtfEstimate]:
    """Read RELION's ``micrographs_ctf.star``: micrograph file name -> estimate."""
    from nt2c.io import read_star

    table = read_star(path, block="micrographs") if _has_block(path, "micrographs") else read_star(path)
    needed = ("rlnMicrographName", "rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle")
    missing = [c for c in needed if c not in table]
    if missing:
        raise InputError(
            f"{path} lacks the columns {', '.join(missing)}; give RELION's micrographs_ctf.star."
        )
    scores = table.get("rlnCtfFigureOfMerit", np.full(len(table["rlnDefocusU"]), np.nan))
    return {
        Path(str(name)).name: _ordered(float(u), float(v), float(a), float(s), "relion")
        for name, u, v, a, s in zip(
            table["rlnMicrographName"],
            table["rlnDefocusU"],
            table["rlnDefocusV"],
            table["rlnDefocusAngle"],
            scores,
        )
    }


def _has_block(path: str | os.PathLike, name: str) -> bool:
    return re.search(rf"^data_{name}\s*$", Path(path).read_text(), flags=re.MULTILINE) is not None
