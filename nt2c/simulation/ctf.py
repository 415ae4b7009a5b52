"""Electron optics: wavelength, interaction constant and the contrast transfer function (CTF).

Convention (CTFFIND4 / cisTEM): underfocus is positive, ``CTF = -sin(gamma)`` with

    gamma(k, theta) = pi lambda df(theta) k^2 - (pi / 2) Cs lambda^3 k^4 + phi + w, df(theta) = 0.5 [dfU + dfV
    + (dfU - dfV) cos 2 (theta - theta_ast)],  w = arctan(A / sqrt(1 - A^2)),

so ``CTF(0) = -A`` and, under the weak-phase approximation, ``I / I0 = 1 + 2 F^-1[CTF F(sigma_e V_z)]``:
protein (positive potential) appears dark in underfocus. ``theta = atan2(ky, kx)`` with array rows along y.
Envelopes: B-factor ``exp(-B k^2 / 4)``, temporal coherence ``exp[-(pi lambda k^2 Cc dE / V)^2 / (16 ln 2)]``
(``dE`` the FWHM energy spread) and spatial coherence ``exp[-pi^2 alpha^2 (Cs lambda^2 k^3 - df k)^2 / ln
2]``.

One module, about a third of it docstrings with formulas and units, because its functions are one formula: the
1-D, 2-D and phase-only CTFs evaluate the same phase ``gamma`` (:func:`ctf_gamma`) and envelopes
(:func:`ctf_envelope`) under the same optics checks, :func:`ctf_zeros` solves that phase for its zeros, and
:func:`radial_power_spectrum` is what the tests and the notebook 01 figures hold the zeros against.
"""

from __future__ import annotations

import math

import numpy as np

from nt2c.errors import ConfigError

__all__ = [
    "electron_wavelength_A",
    "interaction_constant",
    "frequency_grid",
    "ctf_gamma",
    "ctf_1d",
    "ctf_2d",
    "ctf_phase_2d",
    "ctf_envelope",
    "ctf_zeros",
    "radial_power_spectrum",
]

# CODATA 2018
_H = 6.62607015e-34  # J s
_M0 = 9.1093837015e-31  # kg
_E = 1.602176634e-19  # C
_C = 299792458.0  # m/s


def electron_wavelength_A(voltage_kV: float) -> float:
    """Relativistic electron wavelength ``lambda = h / sqrt(2 m0 e V (1 + e V / (2 m0 c^2)))``.

    Parameters
    ----------
    voltage_kV : float
        Acceleration voltage (kV), > 0.

    Returns
    -------
    float
        Wavelength in Angstrom (0.019687 A at 300 kV).
    """
    if not voltage_kV > 0:
        raise ConfigError(f"voltage_kV = {voltage_kV!r}: must be positive (e.g. 300).")
    volts = voltage_kV * 1e3
    p = math.sqrt(2 * _M0 * _E * volts * (1 + _E * volts / (2 * _M0 * _C**2)))
    return _H / p * 1e10


def interaction_constant(voltage_kV: float) -> float:
    """Interaction constant ``sigma_e = 2 pi m e lambda / h^2`` (relativistic mass ``m``).

    Returns
    -------
    float
        rad / (V A): 6.5262e-4 at 300 kV.
    """
    lam_m = electron_wavelength_A(voltage_kV) * 1e-10
    volts = voltage_kV * 1e3
    mass = _M0 + _E * volts / _C**2
    return 2 * math.pi * mass * _E * lam_m / _H**2 * 1e-10  # per (V m) -> per (V A)


def frequency_grid(
    shape: tuple[int, int], pixel_size_A: float, *, rfft: bool = True, device=None, dtype=None
):
    """Spatial frequencies of a DFT grid.

    Parameters
    ----------
    shape : (ny, nx)
    pixel_size_A : float
    rfft : bool
        Half grid ``(ny, nx // 2 + 1)`` as used by ``torch.fft.rfft2`` (else the full ``(ny, nx)`` grid).
    device : torch.device, optional

    Returns
    -------
    kx, ky : torch.Tensor (float32 unless ``dtype``), broadcastable to the grid, in 1/A
    """
    import torch

    dtype = dtype or torch.float32
    ny, nx = shape
    fy = torch.fft.fftfreq(ny, d=pixel_size_A, dtype=dtype, device=device)[:, None]
    if rfft:
        fx = torch.fft.rfftfreq(nx, d=pixel_size_A, dtype=dtype, device=device)[None, :]
    else:
        fx = torch.fft.fftfreq(nx, d=pixel_size_A, dtype=dtype, device=device)[None, :]
    return fx, fy


def _check_optics(voltage_kV, cs_mm, amplitude_contrast):
    if not voltage_kV > 0:
        raise ConfigError(f"voltage_kV = {voltage_kV!r}: must be positive (e.g. 300).")
    if cs_mm < 0:
        raise ConfigError(f"cs_mm = {cs_mm!r}: must be >= 0 (e.g. 2.7).")
    if not 0 <= amplitude_contrast < 1:
        raise ConfigError(f"amplitude_contrast = {amplitude_contrast!r}: must be in [0, 1) (e.g. 0.07).")


def ctf_gamma(
    k,
    defocus_A,
    *,
    voltage_kV: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
    phase_shift_deg: float = 0.0,
):
    """Phase ``gamma`` of the CTF (radians) at spatial frequency ``k`` for the local defocus ``defocus_A``.

    Works on NumPy arrays and torch tensors alike (``k`` and ``defocus_A`` broadcast).
    """
    _check_optics(voltage_kV, cs_mm, amplitude_contrast)
    lam = electron_wavelength_A(voltage_kV)
    cs_A = cs_mm * 1e7
    w = math.atan2(amplitude_contrast, math.sqrt(1 - amplitude_contrast**2))
    k2 = k * k
    return (
        math.pi * lam * defocus_A * k2
        - 0.5 * math.pi * cs_A * lam**3 * k2 * k2
        + math.radians(phase_shift_deg)
        + w
    )


def ctf_envelope(
    k,
    defocus_A,
    *,
    voltage_kV: float = 300.0,
    cs_mm: float = 2.7,
    b_factor_A2: float = 0.0,
    cc_mm: float | None = 2.7,
    energy_spread_eV: float = 0.7,
    illumination_aperture_mrad: float | None = 0.03,
):
    """Product of the B-factor, temporal and spatial coherence envelopes at frequency ``k`` (1/A).

    Parameters
    ----------
    k, defocus_A : array or tensor
        Spatial frequency (1/A) and local underfocus (A).
    b_factor_A2 : float
        ``exp(-B k^2 / 4)``; 0 switches it off.
    cc_mm, energy_spread_eV : float
        Chromatic aberration (mm) and FWHM energy spread (eV) of the temporal envelope; ``cc_mm=None`` or 0
        switches it off (InSilicoTEM defaults 2.7 mm, 0.7 eV).
    illumination_aperture_mrad : float or None
        Illumination semi-angle ``alpha`` (mrad) of the spatial envelope; None or 0 switches it off.
    """
    lam = electron_wavelength_A(voltage_kV)
    cs_A = cs_mm * 1e7
    lib = _lib(k)
    env = lib.exp(-b_factor_A2 * k * k / 4.0)
    if cc_mm:
        delta = cc_mm * 1e7 * energy_spread_eV / (voltage_kV * 1e3)
        env = env * lib.exp(-((math.pi * lam * k * k * delta) ** 2) / (16 * math.log(2)))
    if illumination_aperture_mrad:
        alpha = illumination_aperture_mrad * 1e-3
        env = env * lib.exp(
            -(math.pi**2) * alpha**2 * (cs_A * lam**2 * k**3 - defocus_A * k) ** 2 / math.log(2)
        )
    return env


def _lib(x):
    import torch

    return torch if isinstance(x, torch.Tensor) else np


def ctf_1d(
    k,
    *,
    defocus_um: float,
    voltage_kV: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
    phase_shift_deg: float = 0.0,
    b_factor_A2: float = 0.0,
    envelopes: bool = False,
    cc_mm: float = 2.7,
    energy_spread_eV: float = 0.7,
    illumination_aperture_mrad: float = 0.03,
) -> np.ndarray:
    """Radial CTF profile (no astigmatism).

    Parameters
    ----------
    k : array_like, shape (n,)
        Spatial frequency (1/A).
    defocus_um : float
        Underfocus (micrometres, positive).
    envelopes : bool
        Apply the temporal and spatial coherence envelopes (the B-factor envelope applies whenever
        ``b_factor_A2`` is non-zero).

    Returns
    -------
    numpy.ndarray, shape (n,)
        ``-sin(gamma)`` times the envelopes.
    """
    k = np.asarray(k, dtype=np.float64)
    df = defocus_um * 1e4
    ctf = -np.sin(
        ctf_gamma(
            k,
            df,
            voltage_kV=voltage_kV,
            cs_mm=cs_mm,
            amplitude_contrast=amplitude_contrast,
            phase_shift_deg=phase_shift_deg,
        )
    )
    env = ctf_envelope(
        k,
        df,
        voltage_kV=voltage_kV,
        cs_mm=cs_mm,
        b_factor_A2=b_factor_A2,
        cc_mm=cc_mm if envelopes else None,
        energy_spread_eV=energy_spread_eV,
        illumination_aperture_mrad=illumination_aperture_mrad if envelopes else None,
    )
    return ctf * env


def ctf_2d(
    shape: tuple[int, int],
    pixel_size_A: float,
    *,
    defocus_u_A: float,
    defocus_v_A: float | None = None,
    astigmatism_angle_deg: float = 0.0,
    voltage_kV: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
    phase_shift_deg: float = 0.0,
    b_factor_A2: float = 0.0,
    envelopes: bool = True,
    cc_mm: float = 2.7,
    energy_spread_eV: float = 0.7,
    illumination_aperture_mrad: float = 0.03,
    rfft: bool = True,
    device=None,
    dtype=None,
):
    """Compute the 2-D CTF on a DFT grid (origin at index [0, 0]).

    Parameters
    ----------
    shape : (ny, nx)
        Image shape (px).
    pixel_size_A : float
    defocus_u_A, defocus_v_A : float
        Underfocus along the major and minor axes (A); ``defocus_v_A`` defaults to ``defocus_u_A``.
    astigmatism_angle_deg : float
        Angle of the major axis from x (degrees, counter-clockwise with rows = y).
    envelopes : bool
        Apply the temporal and spatial coherence envelopes.
    rfft : bool
        Return the half grid ``(ny, nx // 2 + 1)`` matching ``torch.fft.rfft2``.

    Returns
    -------
    torch.Tensor, float32 (or ``dtype``), shape (ny, nx // 2 + 1) or (ny, nx)
    """
    import torch

    gamma, env = ctf_phase_2d(
        shape,
        pixel_size_A,
        defocus_u_A=defocus_u_A,
        defocus_v_A=defocus_v_A,
        astigmatism_angle_deg=astigmatism_angle_deg,
        voltage_kV=voltage_kV,
        cs_mm=cs_mm,
        amplitude_contrast=amplitude_contrast,
        phase_shift_deg=phase_shift_deg,
        b_factor_A2=b_factor_A2,
        envelopes=envelopes,
        cc_mm=cc_mm,
        energy_spread_eV=energy_spread_eV,
        illumination_aperture_mrad=illumination_aperture_mrad,
        rfft=rfft,
        device=device,
    )
    return (-torch.sin(gamma) * env).to(dtype or torch.float32)


def ctf_phase_2d(
    shape: tuple[int, int],
    pixel_size_A: float,
    *,
    defocus_u_A: float,
    defocus_v_A: float | None = None,
    astigmatism_angle_deg: float = 0.0,
    voltage_kV: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
    phase_shift_deg: float = 0.0,
    b_factor_A2: float = 0.0,
    envelopes: bool = True,
    cc_mm: float = 2.7,
    energy_spread_eV: float = 0.7,
    illumination_aperture_mrad: float = 0.03,
    rfft: bool = True,
    device=None,
):
    """Compute the phase ``gamma`` (rad) and the envelope of the CTF on a DFT grid; see :func:`ctf_2d`.

    float32 is enough: the phase (< ~10^3 rad on usual grids) keeps an absolute error below 10^-4 rad.

    With ``amplitude_contrast=0`` the phase is the wave aberration ``chi`` used by the full phase-grating
    model.
    """
    import torch

    if not pixel_size_A > 0:
        raise ConfigError(f"pixel_size_A = {pixel_size_A!r}: must be positive.")
    dfv = defocus_u_A if defocus_v_A is None else defocus_v_A
    kx, ky = frequency_grid(shape, pixel_size_A, rfft=rfft, device=device)
    k = torch.sqrt(kx * kx + ky * ky)
    theta = torch.atan2(ky, kx)
    df = 0.5 * (
        defocus_u_A + dfv + (defocus_u_A - dfv) * torch.cos(2 * (theta - math.radians(astigmatism_angle_deg)))
    )
    gamma = ctf_gamma(
        k,
        df,
        voltage_kV=voltage_kV,
        cs_mm=cs_mm,
        amplitude_contrast=amplitude_contrast,
        phase_shift_deg=phase_shift_deg,
    )
    env = ctf_envelope(
        k,
        df,
        voltage_kV=voltage_kV,
        cs_mm=cs_mm,
        b_factor_A2=b_factor_A2,
        cc_mm=cc_mm if envelopes else None,
        energy_spread_eV=energy_spread_eV,
        illumination_aperture_mrad=illumination_aperture_mrad if envelopes else None,
    )
    return gamma, env


def ctf_zeros(
    *,
    defocus_um: float,
    voltage_kV: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
    phase_shift_deg: float = 0.0,
    n: int = 5,
    k_max: float | None = None,
) -> np.ndarray:
    """Spatial frequencies (1/A) of the first zeros of the CTF, in increasing order.

    The zeros are the solutions of ``gamma(k) = m pi`` (integer ``m``); with ``u = k^2`` each is a root of the
    quadratic ``-(pi/2) Cs lambda^3 u^2 + pi lambda df u + (phi + w - m pi) = 0``.

    Parameters
    ----------
    defocus_um : float
        Underfocus (um).
    n : int
        Number of zeros to return (fewer when ``k_max`` cuts them).
    k_max : float, optional
        Largest frequency considered (1/A); default: where the Cs term reverses the phase, or 2 1/A.

    Returns
    -------
    numpy.ndarray, shape (<= n,)
    """
    _check_optics(voltage_kV, cs_mm, amplitude_contrast)
    lam = electron_wavelength_A(voltage_kV)
    cs_A = cs_mm * 1e7
    df = defocus_um * 1e4
    w = math.atan2(amplitude_contrast, math.sqrt(1 - amplitude_contrast**2))
    c0 = math.radians(phase_shift_deg) + w
    a = -0.5 * math.pi * cs_A * lam**3
    b = math.pi * lam * df
    k_max = 2.0 if k_max is None else k_max
    u_max = k_max**2
    # gamma(u) ranges over [c0 + min, c0 + max] on [0, u_max]; enumerate the multiples of pi it crosses.
    us = np.linspace(0, u_max, 20001)
    g = a * us**2 + b * us + c0
    m_lo, m_hi = int(math.ceil(g.min() / math.pi)), int(math.floor(g.max() / math.pi))
    roots = []
    for m in range(m_lo, m_hi + 1):
        cm = c0 - m * math.pi
        if a == 0:
            cand = [-cm / b] if b != 0 else []
        else:
            disc = b * b - 4 * a * cm
            if disc < 0:
                continue
            sq = math.sqrt(disc)
            cand = [(-b + sq) / (2 * a), (-b - sq) / (2 * a)]
        roots += [u for u in cand if 0 < u <= u_max]
    k = np.sqrt(np.unique(np.round(roots, 14)))
    return np.sort(k)[:n]


def radial_power_spectrum(
    image, pixel_size_A: float, *, n_bins: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Rotationally averaged power spectrum of an image (mean removed), e.g. to see Thon rings.

    Parameters
    ----------
    image : array_like, shape (ny, nx)
    pixel_size_A : float
    n_bins : int, optional
        Radial bins from 0 to Nyquist (default ``min(ny, nx) // 2``).

    Returns
    -------
    k : numpy.ndarray, shape (n_bins,)
        Bin centres (1/A).
    power : numpy.ndarray, shape (n_bins,)
        Mean ``|F|^2`` per bin (NaN for an empty bin).
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ConfigError(f"image must be 2-D, got shape {img.shape}.")
    ny, nx = img.shape
    n_bins = n_bins or min(ny, nx) // 2
    ps = np.abs(np.fft.rfft2(img - img.mean())) ** 2 / img.size
    fy = np.fft.fftfreq(ny, d=pixel_size_A)[:, None]
    fx = np.fft.rfftfreq(nx, d=pixel_size_A)[None, :]
    k = np.sqrt(fx**2 + fy**2)
    nyq = 0.5 / pixel_size_A
    edges = np.linspace(0, nyq, n_bins + 1)
    which = np.digitize(k.ravel(), edges) - 1
    ok = (which >= 0) & (which < n_bins)
    sums = np.bincount(which[ok], weights=ps.ravel()[ok], minlength=n_bins)
    counts = np.bincount(which[ok], minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        power = sums / counts
    return 0.5 * (edges[1:] + edges[:-1]), power
