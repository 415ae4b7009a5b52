"""Projected Coulomb potential of atoms from the Peng 1996 five-Gaussian electron scattering factors.

For an atom with B-factor ``B`` the scattering factor is ``f(q) = sum_i a_i exp(-(b_i + B) q^2 / 4)`` (``q``
in 1/A, ``a_i`` in A), and the 2-D Fourier transform of its projected potential is ``K f(q)`` with ``K = h^2 /
(2 pi m0 e) = 47.8776 V A^2``: the plane integral of one atom's projected potential is ``K f(0)`` (``V A^3``).

How the images are computed (exact pixel integration, fast): for each particle and each *channel* (one element
and one B-factor bin) the rotated atoms' (x, y) are spread onto a grid ``oversample`` times finer than the
pixels with a cubic B-spline; one FFT per channel; multiplication by ``K f(q)`` (plus implicit hydrogens), by
the transfer function of the pixel box (``sinc(q_x p) sinc(q_y p)``: the pixel average) and division by the
B-spline's transfer function; the channels are summed, transformed back, and the fine grid is sampled at the
pixel centres. The result is the *pixel-averaged* projected potential (V A) to within the B-spline's aliasing
(about 1 % at Nyquist with the default 2x oversampling); the sum of an image times the pixel area equals ``K
f(0)`` per atom exactly. The solvent excluded by the particle enters as a negative, smooth (Gaussian, sigma
1.4 A) volume per atom times the solvent's mean inner potential.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nt2c.errors import ConfigError, InputError

__all__ = [
    "K_V_A2",
    "PENG_A",
    "PENG_B",
    "ATOMIC_MASS_DA",
    "IMPLICIT_HYDROGENS",
    "scattering_factor",
    "projected_potential",
    "render_particles",
    "particle_box_px",
]

#: h^2 / (2 pi m0 e) in V A^2
K_V_A2 = 47.8776

# Peng, Ren, Dudarev & Whelan (1996) Acta Cryst A52:257, elastic factors, 0 < s < 2 1/A: a_i (A), b_i (A^2).
_PENG = {
    "H": ([0.0349, 0.1201, 0.1970, 0.0573, 0.1195], [0.5347, 3.5867, 12.3471, 18.9525, 38.6269]),
    "C": ([0.0893, 0.2563, 0.7570, 1.0487, 0.3575], [0.2465, 1.7100, 6.4094, 18.6113, 50.2523]),
    "N": ([0.1022, 0.3219, 0.7982, 0.8197, 0.1715], [0.2451, 1.7481, 6.1925, 17.3894, 48.1431]),
    "O": ([0.0974, 0.2921, 0.6910, 0.6990, 0.2039], [0.2067, 1.3815, 4.6943, 12.7105, 32.4726]),
    "F": ([0.1083, 0.3175, 0.6487, 0.5846, 0.1421], [0.2057, 1.3439, 4.2788, 11.3932, 28.7881]),
    "NA": ([0.2142, 0.6853, 0.7692, 1.6589, 1.4482], [0.3334, 2.3446, 10.0830, 48.3037, 138.2700]),
    "MG": ([0.2314, 0.6866, 0.9677, 2.1882, 1.1339], [0.3278, 2.2720, 10.9241, 39.2898, 101.9748]),
    "P": ([0.2548, 0.6106, 1.4541, 2.3204, 0.8477], [0.2908, 1.8740, 8.5176, 24.3434, 63.2996]),
    "S": ([0.2497, 0.5628, 1.3899, 2.1865, 0.7715], [0.2681, 1.6711, 7.0267, 19.5377, 50.3888]),
    "CL": ([0.2443, 0.5397, 1.3919, 2.0197, 0.6621], [0.2468, 1.5242, 6.1537, 16.6687, 42.3086]),
    "CA": ([0.4054, 1.3880, 2.1602, 3.7532, 2.2063], [0.3499, 3.0991, 11.9608, 53.9353, 142.3892]),
    "MN": ([0.3796, 1.2094, 1.7815, 2.5420, 1.5937], [0.2699, 2.0455, 7.4726, 31.0604, 91.5622]),
    "FE": ([0.3946, 1.2725, 1.7031, 2.3140, 1.4795], [0.2717, 2.0443, 7.6007, 29.9714, 86.2265]),
    "NI": ([0.3860, 1.1765, 1.5451, 2.0730, 1.3814], [0.2478, 1.7660, 6.3107, 25.2204, 74.3146]),
    "CU": ([0.4314, 1.3208, 1.5236, 1.4671, 0.8562], [0.2694, 1.9223, 7.3474, 28.9892, 90.6246]),
    "ZN": ([0.4288, 1.2646, 1.4472, 1.8294, 1.0934], [0.2593, 1.7998, 6.7500, 25.5860, 73.5284]),
}
PENG_A: dict[str, np.ndarray] = {k: np.array(v[0]) for k, v in _PENG.items()}
PENG_B: dict[str, np.ndarray] = {k: np.array(v[1]) for k, v in _PENG.items()}

ATOMIC_MASS_DA: dict[str, float] = {
    "H": 1.008,
    "C": 12.011,
    "N": 14.007,
    "O": 15.999,
    "F": 18.998,
    "NA": 22.990,
    "MG": 24.305,
    "P": 30.974,
    "S": 32.06,
    "CL": 35.45,
    "CA": 40.078,
    "MN": 54.938,
    "FE": 55.845,
    "NI": 58.693,
    "CU": 63.546,
    "ZN": 65.38,
}

#: Average number of hydrogens bound to a heavy atom of a protein (the 20 amino acids at natural abundance:
#: ~7.8 H per residue, on C ~1.23, N ~1.10, O ~0.10 (Ser/Thr/Tyr OH), S ~0.36 (Cys SH)); 0 for other elements.
IMPLICIT_HYDROGENS: dict[str, float] = {"C": 1.23, "N": 1.10, "O": 0.10, "S": 0.36}

_SOLVENT_SIGMA_A = 1.4  # width of each atom's Gaussian excluded-solvent volume
_DENSITY_DA_PER_A3 = 1.35 * 0.602214076


def scattering_factor(element: str, q, *, b_factor_A2: float = 0.0):
    """Peng 1996 elastic scattering factor ``f(q)`` (A) at ``q = 2 s`` (1/A), with a B-factor.

    Works on NumPy arrays and torch tensors.
    """
    el = element.upper()
    if el not in PENG_A:
        raise InputError(
            f"unknown element {element!r}: nt2c has Peng 1996 factors for {', '.join(sorted(PENG_A))}."
        )
    lib = np if isinstance(q, (np.ndarray, float, int)) else __import__("torch")
    q2 = q * q
    out = 0.0
    for a, b in zip(
        PENG_A[el].tolist(), PENG_B[el].tolist()
    ):  # Python floats: numpy scalars would convert tensors
        out = out + a * lib.exp(q2 * (-(b + float(b_factor_A2)) / 4.0))
    return out


@dataclass
class _Channels:
    """Atoms grouped by (element, B-bin): the per-atom channel index and each channel's parameters."""

    channel: np.ndarray  # (n,) int
    weight: np.ndarray  # (n,) occupancy
    elements: list[str]
    b_A2: np.ndarray  # (C,)
    n_hydrogens: np.ndarray  # (C,) implicit H per atom
    volume_A3: np.ndarray  # (C,) excluded solvent volume per atom


def _channels(specimen, *, hydrogens: bool, n_b_bins: int) -> _Channels:
    chan = np.zeros(specimen.n_atoms, dtype=np.int64)
    elements, bs, nh, vols = [], [], [], []
    implicit = hydrogens and not specimen.explicit_hydrogens
    for el in sorted(set(specimen.elements)):
        idx = np.flatnonzero(specimen.elements == el)
        b = specimen.b_factors_A2[idx]
        if n_b_bins > 1 and np.ptp(b) > 1.0:
            edges = np.quantile(b, np.linspace(0, 1, n_b_bins + 1)[1:-1])
            which = np.searchsorted(edges, b, side="right")
        else:
            which = np.zeros(len(idx), dtype=int)
        for w in np.unique(which):
            sel = idx[which == w]
            chan[sel] = len(elements)
            elements.append(el)
            bs.append(float(np.average(specimen.b_factors_A2[sel], weights=specimen.occupancies[sel])))
            n_h = IMPLICIT_HYDROGENS.get(el, 0.0) if implicit else 0.0
            nh.append(n_h)
            mass = ATOMIC_MASS_DA[el] + n_h * ATOMIC_MASS_DA["H"]
            vols.append(mass / _DENSITY_DA_PER_A3)
    return _Channels(chan, specimen.occupancies.copy(), elements, np.array(bs), np.array(nh), np.array(vols))


def _good_size(n: int) -> int:
    """Smallest even integer >= n whose prime factors are 2, 3 and 5 (fast FFT sizes)."""
    n = max(int(n), 8)
    while True:
        if n % 2 == 0:
            m = n
            for p in (2, 3, 5):
                while m % p == 0:
                    m //= p
            if m == 1:
                return n
        n += 1


def particle_box_px(specimen, pixel_size_A: float) -> int:
    """Side (px) of a square box holding ``specimen`` in any orientation, with margins for atom tails."""
    margin_A = 10.0
    return _good_size(2 * math.ceil((specimen.radius_A + margin_A) / pixel_size_A) + 4)


def _channel_spectra(
    ch: _Channels,
    box_px: int,
    pixel_size_A: float,
    oversample: int,
    solvent_potential_V: float,
    device,
    dtype,
):
    """Per-channel multipliers, shape (C, F, F//2+1).

    ``K f(q) [+ n_H K f_H(q)] - V_solv v exp(-2 pi^2 sigma^2 q^2)``, times the pixel box / the spline's TF.
    """
    import torch

    fine = box_px * oversample
    pf = pixel_size_A / oversample
    qy = torch.fft.fftfreq(fine, d=pf, dtype=torch.float32, device=device)[:, None]
    qx = torch.fft.rfftfreq(fine, d=pf, dtype=torch.float32, device=device)[None, :]
    q2 = qx * qx + qy * qy
    q = torch.sqrt(q2)
    box = torch.sinc(qx * pixel_size_A) * torch.sinc(qy * pixel_size_A)
    spline = (torch.sinc(qx * pf) * torch.sinc(qy * pf)) ** 4
    common = box / spline / pf**2
    out = []
    solv_b = 8 * math.pi**2 * _SOLVENT_SIGMA_A**2
    for el, b, nh, vol in zip(ch.elements, ch.b_A2, ch.n_hydrogens, ch.volume_A3):
        f = K_V_A2 * scattering_factor(el, q, b_factor_A2=float(b))
        if nh:
            f = f + nh * K_V_A2 * scattering_factor("H", q, b_factor_A2=float(b))
        if solvent_potential_V:
            f = f - solvent_potential_V * vol * torch.exp(-solv_b * q2 / 4.0)
        out.append(f * common)
    return torch.stack(out).to(dtype)


def render_particles(
    specimen,
    rotations,
    centers_px,
    *,
    shape: tuple[int, int],
    pixel_size_A: float,
    hydrogens: bool = True,
    solvent_potential_V: float = 0.0,
    oversample: int = 2,
    n_b_bins: int = 4,
    device="cpu",
    chunk_atoms: int = 4_000_000,
):
    """Projected potential (V A, pixel-averaged) of copies of ``specimen`` placed in a field.

    Parameters
    ----------
    specimen : Specimen
    rotations : array_like, shape (P, 3, 3)
        Rotation of each copy (applied to the model's coordinates; the projection is along z).
    centers_px : array_like, shape (P, 2)
        (x, y) of each copy's centre in pixels (pixel centres at integer coordinates; x = column).
    shape : (ny, nx)
        Field shape (px).
    pixel_size_A : float
    hydrogens : bool
        Add the implicit hydrogens of models that do not list them (see :data:`IMPLICIT_HYDROGENS`).
    solvent_potential_V : float
        Mean inner potential of the solvent the particle displaces (V); 0 for a particle in vacuum.
    oversample : int
        Fine-grid factor of the B-spline spreading (2 is accurate to ~1 % at Nyquist).
    n_b_bins : int
        B-factor bins per element (atoms of a bin share its mean B).
    device : str or torch.device
    chunk_atoms : int
        Atom-copies spread per batch (memory bound).

    Returns
    -------
    torch.Tensor, float32, shape (ny, nx)
    """
    import torch

    if not pixel_size_A > 0:
        raise ConfigError(f"pixel_size_A = {pixel_size_A!r}: must be positive.")
    if oversample < 1:
        raise ConfigError(f"oversample = {oversample!r}: must be >= 1.")
    device = torch.device(device)
    ny, nx = shape
    field = torch.zeros((ny, nx), dtype=torch.float32, device=device)
    rotations = np.asarray(rotations, dtype=np.float64).reshape(-1, 3, 3)
    centers = np.asarray(centers_px, dtype=np.float64).reshape(-1, 2)
    n_part = len(rotations)
    if n_part == 0:
        return field
    nb = particle_box_px(specimen, pixel_size_A)
    fine = nb * oversample
    # the channel spectra depend only on the specimen and the sampling: cache them on the specimen
    key = (hydrogens, n_b_bins, nb, float(pixel_size_A), oversample, float(solvent_potential_V), str(device))
    cache = specimen.__dict__.setdefault("_render_cache", {})
    if key not in cache:
        ch = _channels(specimen, hydrogens=hydrogens, n_b_bins=n_b_bins)
        cache.clear()
        cache[key] = (
            ch,
            _channel_spectra(ch, nb, pixel_size_A, oversample, solvent_potential_V, device, torch.complex64),
        )
    ch, spectra = cache[key]
    n_ch = len(ch.elements)
    coords = torch.as_tensor(specimen.coords_A, dtype=torch.float32, device=device)
    chan = torch.as_tensor(ch.channel, device=device)
    weight = torch.as_tensor(ch.weight, dtype=torch.float32, device=device)
    n_atoms = specimen.n_atoms
    per_chunk = max(
        1, min(n_part, chunk_atoms // max(n_atoms, 1), max(1, 24_000_000 // (n_ch * fine * fine)))
    )
    offs = torch.arange(-1, 3, device=device)
    origin = np.round(centers).astype(np.int64) - nb // 2  # (P, 2) integer (x0, y0) of each box
    for start in range(0, n_part, per_chunk):
        stop = min(n_part, start + per_chunk)
        p = stop - start
        rot = torch.as_tensor(rotations[start:stop], dtype=torch.float32, device=device)
        xy = torch.einsum("pij,nj->pni", rot[:, :2, :], coords)  # (p, n, 2) in A
        local = torch.as_tensor(centers[start:stop] - origin[start:stop], dtype=torch.float32, device=device)
        u = (xy / pixel_size_A + local[:, None, :]) * oversample  # fine-grid coordinates (x, y)
        base = torch.floor(u)
        t = u - base
        base = base.to(torch.int64)
        # cubic B-spline weights at offsets -1, 0, 1, 2
        w = torch.stack(
            [
                (1 - t) ** 3 / 6,
                (3 * t**3 - 6 * t**2 + 4) / 6,
                (-3 * t**3 + 3 * t**2 + 3 * t + 1) / 6,
                t**3 / 6,
            ],
            dim=-1,
        )  # (p, n, 2, 4)
        idx = base[..., None] + offs  # (p, n, 2, 4)
        if bool((idx < 0).any()) or bool((idx >= fine).any()):
            raise InputError(
                "an atom fell outside its particle box (a bug; please report with the model file)."
            )
        ix, iy = idx[:, :, 0, :], idx[:, :, 1, :]
        wx, wy = w[:, :, 0, :], w[:, :, 1, :]
        lin = ((torch.arange(p, device=device)[:, None] * n_ch + chan[None, :]) * fine)[:, :, None, None]
        flat = ((lin + iy[:, :, :, None]) * fine + ix[:, :, None, :]).reshape(-1)
        vals = (wy[:, :, :, None] * wx[:, :, None, :] * weight[None, :, None, None]).reshape(-1)
        grid = torch.zeros(p * n_ch * fine * fine, dtype=torch.float32, device=device)
        grid.index_add_(0, flat, vals)
        spec = torch.fft.rfft2(grid.view(p, n_ch, fine, fine))
        spec = (spec * spectra[None]).sum(1)
        img = torch.fft.irfft2(spec, s=(fine, fine))[:, ::oversample, ::oversample]  # (p, nb, nb)
        for k in range(p):
            x0, y0 = origin[start + k]
            ys, xs = max(0, y0), max(0, x0)
            ye, xe = min(ny, y0 + nb), min(nx, x0 + nb)
            if ye > ys and xe > xs:
                field[ys:ye, xs:xe] += img[k, ys - y0 : ye - y0, xs - x0 : xe - x0]
    return field


def projected_potential(
    specimen,
    *,
    pixel_size_A: float,
    shape: tuple[int, int] | None = None,
    rotation=None,
    center_px=None,
    hydrogens: bool = True,
    solvent_potential_V: float = 0.0,
    oversample: int = 2,
    n_b_bins: int = 4,
    device="cpu",
) -> np.ndarray:
    """Projected potential of one copy of ``specimen`` (V A per pixel, pixel-averaged).

    Parameters
    ----------
    specimen : Specimen
    pixel_size_A : float
    shape : (ny, nx), optional
        Image shape; default the particle box (:func:`particle_box_px`).
    rotation : array_like, shape (3, 3), optional
        Orientation (identity by default: the projection along the model's z axis).
    center_px : (x, y), optional
        Where the centre goes (default the image centre ``(nx // 2, ny // 2)``).

    Returns
    -------
    numpy.ndarray, float32, shape (ny, nx)
    """
    if shape is None:
        side = particle_box_px(specimen, pixel_size_A)
        shape = (side, side)
    ny, nx = shape
    rot = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
    centre = (nx // 2, ny // 2) if center_px is None else center_px
    out = render_particles(
        specimen,
        rot[None],
        np.asarray(centre, dtype=np.float64)[None],
        shape=shape,
        pixel_size_A=pixel_size_A,
        hydrogens=hydrogens,
        solvent_potential_V=solvent_potential_V,
        oversample=oversample,
        n_b_bins=n_b_bins,
        device=device,
    )
    return out.cpu().numpy()
