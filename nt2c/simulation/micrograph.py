"""One simulated micrograph: particles in ice, imaged through the CTF, recorded by a detector.

Image formation (all in :func:`simulate_micrograph`):

1. *Field*: ``n_particles`` copies of the specimen at uniformly random 3-D orientations and non-overlapping
   random positions (or given ones); their pixel-averaged projected potential ``V_z`` (V A) with the displaced
   ice subtracted.
2. *Ice*: the mean inner potential over the local thickness (a slow gradient shows through the
   amplitude-contrast term) and, for the noisy image only, structural noise (a Gaussian random field, see
   :mod:`.ice`).
3. *Optics* (on a reflectively padded field, so that the periodic FFT does not wrap the CTF's fringes): the
   phase ``phi = sigma_e V_z`` (its mean, a global phase, removed); weak-phase ``I = 1 + 2 F^-1[CTF F(phi)]``
   or the full phase grating ``psi = exp((i cos w - sin w) phi)`` (``sin w = A``) propagated with ``exp(i
   chi)`` and the envelopes, ``I = |psi|^2`` (both agree to first order).
4. *Detector*: expected electrons ``dose * px^2 * I``; the clean target is that through the MTF; the noisy
   image adds shot noise shaped by the DQE (:func:`.detector.detect`).

The clean image is what a perfect denoiser returns: with ``structural_noise: false`` and ``detector: ideal``,
``noisy - clean`` is pure Poisson noise (mean 0, variance = the expected counts).

One module because image formation is one seeded sequence of steps on one device; most of its length is
:func:`simulate_micrograph` itself: the checks of its parameters and the calls into :mod:`.potential`,
:mod:`.ice`, :mod:`.ctf` and :mod:`.detector`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from nt2c.config import ExperimentParams, load_params
from nt2c.errors import ConfigError, InputError
from nt2c.simulation.ctf import ctf_phase_2d, electron_wavelength_A, interaction_constant
from nt2c.simulation.detector import detect, expected_counts
from nt2c.simulation.ice import (
    carbon_mean_inner_potential_V,
    ice_mean_inner_potential_V,
    structural_noise,
    thickness_map_A,
)
from nt2c.simulation.potential import _good_size, render_particles
from nt2c.simulation.specimen import Specimen, load_specimen

log = logging.getLogger(__name__)

__all__ = ["Micrograph", "random_rotations", "place_particles", "simulate_micrograph", "specimen_from_params"]


@dataclass
class Micrograph:
    """A simulated micrograph.

    Attributes
    ----------
    noisy, clean : numpy.ndarray, float32, shape (ny, nx)
        Counts per pixel: the recorded image and the noise-free target.
    coordinates_px : numpy.ndarray, float64, shape (n, 2)
        Particle centres (x, y) in pixels (x = column).
    rotations : numpy.ndarray, float64, shape (n, 3, 3) defocus_u_A, defocus_v_A, astigmatism_angle_deg :
    float pixel_size_A : float potential : numpy.ndarray or None, shape (ny, nx)
        Projected potential of the particles (V A), when asked for.
    meta : dict
        Everything needed to reproduce it (JSON-ready).
    """

    noisy: np.ndarray
    clean: np.ndarray
    coordinates_px: np.ndarray
    rotations: np.ndarray
    defocus_u_A: float
    defocus_v_A: float
    astigmatism_angle_deg: float
    pixel_size_A: float
    potential: np.ndarray | None = None
    meta: dict = field(default_factory=dict)


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rotation matrices drawn uniformly from SO(3) (Haar measure), shape (n, 3, 3)."""
    from scipy.spatial.transform import Rotation

    if n == 0:
        return np.zeros((0, 3, 3))
    # uniform random unit quaternions (Shoemake 1992)
    u1, u2, u3 = rng.random((3, n))
    q = np.stack(
        [
            np.sqrt(1 - u1) * np.sin(2 * np.pi * u2),
            np.sqrt(1 - u1) * np.cos(2 * np.pi * u2),
            np.sqrt(u1) * np.sin(2 * np.pi * u3),
            np.sqrt(u1) * np.cos(2 * np.pi * u3),
        ],
        axis=1,
    )
    return Rotation.from_quat(q).as_matrix()


def place_particles(
    n: int,
    radius_px: float,
    shape: tuple[int, int],
    rng: np.random.Generator,
    *,
    min_gap_px: float = 2.0,
    max_tries: int = 100,
    allow_fewer: bool = False,
) -> np.ndarray:
    """Random non-overlapping centres (x, y) of ``n`` discs of ``radius_px`` fully inside ``shape`` (ny, nx).

    Random sequential addition: candidates are drawn uniformly and kept when at least ``2 radius + gap`` from
    every kept centre. Raises :class:`~nt2c.errors.ConfigError` when ``n`` do not fit.

    Returns
    -------
    numpy.ndarray, float64, shape (n, 2)
    """
    ny, nx = shape
    if 2 * radius_px >= min(ny, nx):
        raise InputError(
            f"the particle (diameter {2 * radius_px:.0f} px) is larger than the image ({ny} x {nx} px); "
            "use a larger image_size_px, a larger pixel_size_A or a smaller specimen."
        )
    if n == 0:
        return np.zeros((0, 2))
    lo = radius_px
    hi_x, hi_y = nx - 1 - radius_px, ny - 1 - radius_px
    dmin2 = (2 * radius_px + min_gap_px) ** 2
    kept = np.zeros((0, 2))
    batch = 256
    tries = 0
    while len(kept) < n:
        cand = np.column_stack([rng.uniform(lo, hi_x, batch), rng.uniform(lo, hi_y, batch)])
        if len(kept):  # drop candidates too close to the particles already placed (vectorised)
            d2 = ((cand[:, None, :] - kept[None, :, :]) ** 2).sum(-1).min(1)
            cand = cand[d2 >= dmin2]
        for c in cand:  # then add them one by one (they may still collide with each other)
            if len(kept) == 0 or ((kept - c) ** 2).sum(1).min() >= dmin2:
                kept = np.vstack([kept, c])
                if len(kept) == n:
                    break
        tries += 1
        if tries > max_tries:
            if allow_fewer:
                log.info("only %d of %d particles fit without overlap in %d x %d px", len(kept), n, ny, nx)
                return kept
            raise ConfigError(
                f"n_particles = {n}: only {len(kept)} particles of diameter {2 * radius_px:.0f} px fit "
                f"without overlap in {ny} x {nx} px; lower n_particles or enlarge image_size_px."
            )
    return kept


def specimen_from_params(params: ExperimentParams) -> Specimen:
    """Load the specimen named by ``params`` (built-in, file or PDB id)."""
    return load_specimen(
        params.specimen,
        diameter_A=params.specimen_diameter_A,
        symmetry=params.specimen_symmetry,
        seed=params.specimen_seed,
    )


def _delocalisation_pad(shape, params: ExperimentParams, defocus_A: float) -> tuple[int, int, int, int]:
    """Reflective padding (top, bottom, left, right) covering the CTF's delocalisation.

    The lens moves the information at frequency ``k`` by ``lambda df k - Cs lambda^3 k^3``; padding the phase
    image by that much (up to Nyquist) keeps the periodic FFT from wrapping fringes and a thickness ramp's
    edge jump across the image.
    """
    ny, nx = shape
    px = params.pixel_size_A
    lam = electron_wavelength_A(params.voltage_kV)
    k_max = 0.5 / px
    shift_A = lam * defocus_A * k_max + params.cs_mm * 1e7 * lam**3 * k_max**3
    pad = int(math.ceil(shift_A / px)) + 8
    out = []
    for n in (ny, nx):
        p0 = min(pad, n - 1)
        total = _good_size(n + 2 * p0)
        p1 = total - n - p0
        if p1 > n - 1:
            p1 = p0
        out += [p0, p1]
    return tuple(out)


def _image_formation(phi, phi_noise, *, params: ExperimentParams, shape, dfu, dfv, angle, device):
    """Relative intensity I/I0 of the clean and the noisy exit wave, shape ``shape``."""
    import torch
    import torch.nn.functional as F

    top, bottom, left, right = _delocalisation_pad(shape, params, max(dfu, dfv))
    ny, nx = shape
    big = (ny + top + bottom, nx + left + right)

    def pad(x):
        return F.pad(x[None, None], (left, right, top, bottom), mode="reflect")[0, 0]

    def crop(x):
        return x[top : top + ny, left : left + nx]

    common = dict(
        defocus_u_A=dfu,
        defocus_v_A=dfv,
        astigmatism_angle_deg=angle,
        voltage_kV=params.voltage_kV,
        cs_mm=params.cs_mm,
        phase_shift_deg=params.phase_shift_deg,
        b_factor_A2=params.b_factor_A2,
        envelopes=True,
        device=device,
    )
    if params.phase_model == "weak":
        gamma, env = ctf_phase_2d(
            big, params.pixel_size_A, amplitude_contrast=params.amplitude_contrast, rfft=True, **common
        )
        ctf = (-torch.sin(gamma) * env).to(torch.float32)
        clean = 1.0 + 2.0 * crop(torch.fft.irfft2(torch.fft.rfft2(pad(phi)) * ctf, s=big))
        if phi_noise is None:
            return clean, clean
        noisy = clean + 2.0 * crop(torch.fft.irfft2(torch.fft.rfft2(pad(phi_noise)) * ctf, s=big))
        return clean, noisy
    chi, env = ctf_phase_2d(big, params.pixel_size_A, amplitude_contrast=0.0, rfft=False, **common)
    transfer = (torch.polar(env, chi)).to(torch.complex64)
    w = math.asin(params.amplitude_contrast)
    factor = complex(-math.sin(w), math.cos(w))

    def image(ph):
        psi = torch.exp(factor * pad(ph).to(torch.complex64))
        return crop(torch.fft.ifft2(torch.fft.fft2(psi) * transfer).abs() ** 2)

    clean = image(phi)
    noisy = clean if phi_noise is None else image(phi + phi_noise)
    return clean, noisy


def simulate_micrograph(
    params: ExperimentParams | dict | str | None = None,
    *,
    specimen: Specimen | None = None,
    seed: int = 0,
    defocus_um: float | None = None,
    astigmatism_angle_deg: float | None = None,
    coordinates_px=None,
    rotations=None,
    n_particles: int | None = None,
    image_size_px: tuple[int, int] | int | None = None,
    structural_noise_on: bool | None = None,
    return_potential: bool = False,
    allow_fewer: bool = False,
    device="auto",
) -> Micrograph:
    """Simulate one micrograph (see the module docstring for the physics).

    Parameters
    ----------
    params : ExperimentParams, dict, path or None
        Acquisition parameters (defaults: the embedded example).
    specimen : Specimen, optional
        Overrides ``params.specimen`` (saves re-reading a model for every micrograph).
    seed : int
        Same seed (and device), same images.
    defocus_um : float, optional
        Mean underfocus (um); default drawn uniformly from ``params.defocus_um``.
    astigmatism_angle_deg : float, optional
        Default drawn uniformly in [0, 180).
    coordinates_px : array_like, shape (n, 2), optional
        Particle centres (x, y) in pixels instead of random ones.
    rotations : array_like, shape (n, 3, 3), optional
        Particle orientations instead of random ones.
    n_particles, image_size_px : optional
        Override ``params``.
    structural_noise_on : bool, optional
        Override ``params.structural_noise``.
    allow_fewer : bool
        Place as many particles as fit when ``n_particles`` do not (else an error).
    return_potential : bool
        Also return the particles' projected potential (V A).
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda[:N]"``.

    Returns
    -------
    Micrograph
    """
    import torch

    from nt2c.device import resolve_device

    params = load_params(params) if not isinstance(params, ExperimentParams) else params
    dev = resolve_device(device)
    px = params.pixel_size_A
    if not px > 0:
        raise ConfigError(f"pixel_size_A = {px!r}: must be positive.")
    if not params.dose_e_per_A2 > 0:
        raise ConfigError(f"dose_e_per_A2 = {params.dose_e_per_A2!r}: must be positive.")
    size = params.image_size_px if image_size_px is None else image_size_px
    shape = (int(size), int(size)) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    spec = specimen if specimen is not None else specimen_from_params(params)
    rng = np.random.default_rng(seed)
    gen = torch.Generator(device=dev)
    gen.manual_seed(int(seed))

    radius_px = spec.radius_A / px
    if coordinates_px is None:
        n = params.n_particles if n_particles is None else int(n_particles)
        coords = place_particles(n, radius_px, shape, rng, allow_fewer=allow_fewer)
    else:
        coords = np.asarray(coordinates_px, dtype=np.float64).reshape(-1, 2)
        if 2 * radius_px >= min(shape):
            raise InputError(
                f"the particle (diameter {2 * radius_px:.0f} px) is larger than the image {shape}."
            )
        if len(coords) and (
            (coords < 0).any() or (coords[:, 0] > shape[1] - 1).any() or (coords[:, 1] > shape[0] - 1).any()
        ):
            raise InputError(
                f"coordinates_px must lie inside the image (0..{shape[1] - 1}, 0..{shape[0] - 1})."
            )
    n = len(coords)
    if rotations is None:
        rots = random_rotations(n, rng)
    else:
        rots = np.asarray(rotations, dtype=np.float64).reshape(-1, 3, 3)
        if len(rots) != n:
            raise InputError(f"{len(rots)} rotations for {n} particles; give one rotation per particle.")
    df_lo, df_hi = params.defocus_um
    df_um = float(rng.uniform(df_lo, df_hi)) if defocus_um is None else float(defocus_um)
    if not df_um > 0:
        raise ConfigError(f"defocus_um = {df_um!r}: must be positive (underfocus, micrometres).")
    angle = float(rng.uniform(0, 180)) if astigmatism_angle_deg is None else float(astigmatism_angle_deg)
    dfu = df_um * 1e4 + params.astigmatism_um * 1e4 / 2
    dfv = df_um * 1e4 - params.astigmatism_um * 1e4 / 2

    # 1-2. potential of the particles and the ice
    v_ice = ice_mean_inner_potential_V() if params.ice_thickness_nm > 0 else 0.0
    potential = render_particles(
        spec,
        rots,
        coords,
        shape=shape,
        pixel_size_A=px,
        hydrogens=params.hydrogens,
        solvent_potential_V=v_ice,
        device=dev,
    )
    thickness = thickness_map_A(
        shape,
        px,
        thickness_nm=params.ice_thickness_nm,
        gradient_nm_per_um=params.ice_gradient_nm_per_um,
        gradient_angle_deg=float(rng.uniform(0, 360)),
        device=dev,
    )
    total = potential + v_ice * thickness
    if params.carbon_thickness_nm > 0:
        total = total + carbon_mean_inner_potential_V() * params.carbon_thickness_nm * 10.0
    sigma = interaction_constant(params.voltage_kV)
    phi = sigma * (total - total.mean())
    use_noise = params.structural_noise if structural_noise_on is None else structural_noise_on
    phi_noise = None
    if use_noise and (params.ice_thickness_nm > 0 or params.carbon_thickness_nm > 0):
        phi_noise = sigma * structural_noise(
            shape,
            px,
            thickness_A=thickness,
            carbon_thickness_A=params.carbon_thickness_nm * 10.0,
            generator=gen,
            device=dev,
        )
    # 3. optics
    i_clean, i_noisy = _image_formation(
        phi, phi_noise, params=params, shape=shape, dfu=dfu, dfv=dfv, angle=angle, device=dev
    )
    # 4. detector
    lam_clean = expected_counts(i_clean, dose_e_per_A2=params.dose_e_per_A2, pixel_size_A=px)
    lam_noisy = (
        lam_clean
        if phi_noise is None
        else expected_counts(i_noisy, dose_e_per_A2=params.dose_e_per_A2, pixel_size_A=px)
    )
    noisy, clean = detect(lam_noisy, detector=params.detector, generator=gen, clean_expected=lam_clean)
    meta = {
        "seed": int(seed),
        "defocus_um": df_um,
        "defocus_u_A": dfu,
        "defocus_v_A": dfv,
        "astigmatism_angle_deg": angle,
        "n_particles": n,
        "specimen": spec.name,
        "specimen_atoms": spec.n_atoms,
        "specimen_mass_kDa": round(spec.mass_kDa, 2),
        "specimen_radius_A": round(spec.radius_A, 2),
        "ice_mean_inner_potential_V": v_ice,
        "interaction_constant_rad_per_V_A": sigma,
        "mean_expected_counts": float(lam_clean.mean()),
        "image_size_px": list(shape),
        "params": params.to_dict(),
    }
    return Micrograph(
        noisy=noisy.detach().cpu().numpy().astype(np.float32),
        clean=clean.detach().cpu().numpy().astype(np.float32),
        coordinates_px=coords,
        rotations=rots,
        defocus_u_A=dfu,
        defocus_v_A=dfv,
        astigmatism_angle_deg=angle,
        pixel_size_A=px,
        potential=potential.cpu().numpy() if return_potential else None,
        meta=meta,
    )
