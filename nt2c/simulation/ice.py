"""Vitreous ice (and an optional carbon film): mean inner potential, thickness and structural noise.

* Mean inner potential of ice ``V_ice = K n (f_O(0) + 2 f_H(0))`` with ``n`` water molecules per A^3 (4.53 V
  at 0.93 g/cm^3). A particle displaces ice: :func:`~nt2c.simulation.potential.render_particles` subtracts
  ``V_ice`` times each atom's smooth volume (solvent exclusion). A constant projected potential is a global
  phase and is invisible; a slow thickness gradient (``ice_gradient_nm_per_um``) is not, through the
  amplitude-contrast term.
* Structural noise: the projected number of water molecules in a column fluctuates. Its power spectrum per
  unit area is ``P(q) = t n |K f_w(q)|^2 S(q)`` (``t`` thickness, ``f_w = f_O + 2 f_H`` the molecule's
  scattering factor, ``S(q)`` the structure factor of the liquid), with ``S`` in the two-Gaussian form used by
  Parakeet (``a1 exp(-(q - m1)^2 / 2 s1^2) + a2 exp(-(q - m2)^2 / 2 s2^2)``, ``m2 = 1 / 2.88 A^-1``: the O-O
  distance). It is drawn as a Gaussian random field and averaged over pixels like the specimen's potential.
* Carbon support: mean inner potential of amorphous carbon (2.0 g/cm^3) and its structural noise with ``S =
  1`` (uncorrelated atoms).
"""

from __future__ import annotations

import math

import numpy as np

from nt2c.simulation.potential import K_V_A2, PENG_A, scattering_factor

__all__ = [
    "WATER_DENSITY_G_CM3",
    "ice_mean_inner_potential_V",
    "carbon_mean_inner_potential_V",
    "water_number_density_A3",
    "ice_structure_factor",
    "ice_noise_spectrum",
    "structural_noise",
    "thickness_map_A",
]

WATER_DENSITY_G_CM3 = 0.93
_AVOGADRO = 6.02214076e23
# Parakeet's two-Gaussian parametrisation of the liquid's structure factor (q in 1/A)
_S_PARAMS = {"m1": 0.0, "m2": 1 / 2.88, "s1": 0.731, "s2": 0.081, "a1": 0.199, "a2": 0.801}


def water_number_density_A3(density_g_cm3: float = WATER_DENSITY_G_CM3) -> float:
    """Water molecules per A^3 at ``density_g_cm3``."""
    return density_g_cm3 * _AVOGADRO / 18.015 * 1e-24


def ice_mean_inner_potential_V(density_g_cm3: float = WATER_DENSITY_G_CM3) -> float:
    """Mean inner potential of amorphous ice (V): 4.53 V at 0.93 g/cm^3, 4.87 V at 1.0 g/cm^3."""
    f0 = PENG_A["O"].sum() + 2 * PENG_A["H"].sum()
    return K_V_A2 * water_number_density_A3(density_g_cm3) * f0


def carbon_mean_inner_potential_V(density_g_cm3: float = 2.0) -> float:
    """Mean inner potential of amorphous carbon (V) at ``density_g_cm3``."""
    n = density_g_cm3 * _AVOGADRO / 12.011 * 1e-24
    return K_V_A2 * n * PENG_A["C"].sum()


def ice_structure_factor(q):
    """Evaluate the liquid's structure factor ``S(q)`` in Parakeet's two-Gaussian form (``q`` in 1/A)."""
    p = _S_PARAMS
    lib = np if isinstance(q, (np.ndarray, float, int)) else __import__("torch")
    return p["a1"] * lib.exp(-((q - p["m1"]) ** 2) / (2 * p["s1"] ** 2)) + p["a2"] * lib.exp(
        -((q - p["m2"]) ** 2) / (2 * p["s2"] ** 2)
    )


def ice_noise_spectrum(q, *, thickness_A: float, density_g_cm3: float = WATER_DENSITY_G_CM3):
    """Power spectrum per unit area of the projected ice potential ((V A)^2 A^2).

    ``P(q) = t n |K f_w(q)|^2 S(q)`` with ``q`` in 1/A.
    """
    fw = scattering_factor("O", q) + 2 * scattering_factor("H", q)
    return thickness_A * water_number_density_A3(density_g_cm3) * (K_V_A2 * fw) ** 2 * ice_structure_factor(q)


def _carbon_spectrum(q, *, thickness_A: float, density_g_cm3: float = 2.0):
    n = density_g_cm3 * _AVOGADRO / 12.011 * 1e-24
    return thickness_A * n * (K_V_A2 * scattering_factor("C", q)) ** 2


def thickness_map_A(
    shape: tuple[int, int],
    pixel_size_A: float,
    *,
    thickness_nm: float,
    gradient_nm_per_um: float = 0.0,
    gradient_angle_deg: float = 0.0,
    device="cpu",
):
    """Ice thickness per pixel (A): ``thickness_nm`` at the centre plus a linear gradient.

    The gradient (``gradient_nm_per_um``) runs along ``gradient_angle_deg``.

    Returns
    -------
    torch.Tensor, float32, shape (ny, nx), clipped at 0
    """
    import torch

    ny, nx = shape
    t = torch.full(shape, thickness_nm * 10.0, dtype=torch.float32, device=device)
    if gradient_nm_per_um:
        y = (torch.arange(ny, device=device, dtype=torch.float32) - ny / 2)[:, None] * pixel_size_A
        x = (torch.arange(nx, device=device, dtype=torch.float32) - nx / 2)[None, :] * pixel_size_A
        a = math.radians(gradient_angle_deg)
        along_um = (x * math.cos(a) + y * math.sin(a)) * 1e-4
        t = t + gradient_nm_per_um * 10.0 * along_um
    return t.clamp_min(0.0)


def structural_noise(
    shape: tuple[int, int],
    pixel_size_A: float,
    *,
    thickness_A,
    carbon_thickness_A: float = 0.0,
    generator=None,
    device="cpu",
):
    """Draw the projected-potential fluctuations of the ice (and carbon): a Gaussian random field (V A).

    Parameters
    ----------
    shape : (ny, nx)
    pixel_size_A : float
    thickness_A : float or torch.Tensor of shape (ny, nx)
        Ice thickness (A); a map scales the local variance (``sqrt(t / t_mean)``).
    carbon_thickness_A : float
        Thickness of a continuous carbon film (A), 0 for none.
    generator : torch.Generator, optional
        Source of randomness (same generator state, same field).

    Returns
    -------
    torch.Tensor, float32, shape (ny, nx), zero mean
    """
    import torch

    ny, nx = shape
    t_map = torch.as_tensor(thickness_A, dtype=torch.float32, device=device)
    t_mean = float(t_map.mean())
    if t_mean <= 0 and carbon_thickness_A <= 0:
        return torch.zeros(shape, dtype=torch.float32, device=device)
    qy = torch.fft.fftfreq(ny, d=pixel_size_A, dtype=torch.float32, device=device)[:, None]
    qx = torch.fft.rfftfreq(nx, d=pixel_size_A, dtype=torch.float32, device=device)[None, :]
    q = torch.sqrt(qx * qx + qy * qy)
    psd = ice_noise_spectrum(q, thickness_A=max(t_mean, 0.0))
    if carbon_thickness_A > 0:
        psd = psd + _carbon_spectrum(q, thickness_A=carbon_thickness_A)
    box = torch.sinc(qx * pixel_size_A) * torch.sinc(qy * pixel_size_A)
    # white noise of unit variance per pixel has flat DFT power ny*nx; scale to P(q)/px^2 per mode
    amp = (torch.sqrt(psd) * box / pixel_size_A).to(torch.float32)
    amp[0, 0] = 0.0
    white = torch.randn(shape, generator=generator, dtype=torch.float32, device=device)
    field = torch.fft.irfft2(torch.fft.rfft2(white) * amp, s=shape)
    if t_map.ndim == 2 and carbon_thickness_A <= 0 and t_mean > 0:
        field = field * torch.sqrt(t_map / t_mean)
    return field
