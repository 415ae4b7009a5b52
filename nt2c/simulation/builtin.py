"""The built-in specimen: a procedurally built, protein-like complex, so that nothing has to be downloaded.

Residues of the 20 amino acids at their natural abundance are packed at protein density 1.35 g/cm^3 along
confined random-walk chains in one asymmetric unit, which the point group (``symmetry``) then replicates. The
result is reproducible from its seed and cached per (diameter, mass, symmetry, seed).
"""

from __future__ import annotations

import functools

import numpy as np

from nt2c.errors import ConfigError
from nt2c.simulation.specimen import PROTEIN_DENSITY_DA_PER_A3, Specimen

__all__ = ["build_builtin_specimen"]

# Residue formulas in a chain (C, H, N, O, S) and natural abundance (%, UniProtKB/Swiss-Prot).
_RESIDUES = {
    "A": ((3, 5, 1, 1, 0), 8.25),
    "R": ((6, 12, 4, 1, 0), 5.53),
    "N": ((4, 6, 2, 2, 0), 4.06),
    "D": ((4, 5, 1, 3, 0), 5.45),
    "C": ((3, 5, 1, 1, 1), 1.37),
    "Q": ((5, 8, 2, 2, 0), 3.93),
    "E": ((5, 7, 1, 3, 0), 6.75),
    "G": ((2, 3, 1, 1, 0), 7.07),
    "H": ((6, 7, 3, 1, 0), 2.27),
    "I": ((6, 11, 1, 1, 0), 5.96),
    "L": ((6, 11, 1, 1, 0), 9.66),
    "K": ((6, 12, 2, 1, 0), 5.84),
    "M": ((5, 9, 1, 1, 1), 2.42),
    "F": ((9, 9, 1, 1, 0), 3.86),
    "P": ((5, 7, 1, 1, 0), 4.70),
    "S": ((3, 5, 1, 2, 0), 6.56),
    "T": ((4, 7, 1, 2, 0), 5.34),
    "W": ((11, 10, 2, 1, 0), 1.08),
    "Y": ((9, 9, 1, 2, 0), 2.92),
    "V": ((5, 9, 1, 1, 0), 6.87),
}
_MEAN_RESIDUE_DA = float(
    sum(
        f * (12.011 * c + 1.008 * h + 14.007 * n + 15.999 * o + 32.06 * s)
        for (c, h, n, o, s), f in _RESIDUES.values()
    )
    / sum(f for _, f in _RESIDUES.values())
)


def _symmetry_ops(symmetry: str) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    sym = symmetry.strip().upper()
    if sym in ("C1", "1"):
        return np.eye(3)[None]
    try:
        if sym[0] in "CD" and sym[1:].isdigit():
            return Rotation.create_group(sym).as_matrix()
        if sym in ("T", "O", "I"):
            return Rotation.create_group(sym).as_matrix()
    except Exception:
        pass
    raise ConfigError(
        f"symmetry = {symmetry!r}: use a point group C<n>, D<n>, T, O or I (e.g. 'C1', 'D7', 'O')."
    )


@functools.lru_cache(maxsize=8)
def _builtin_cached(diameter_A: float, mass_kDa: float | None, symmetry: str, seed: int) -> Specimen:
    rng = np.random.default_rng(seed)
    ops = _symmetry_ops(symmetry)
    n_ops = len(ops)
    radius = diameter_A / 2
    # asymmetric unit: the Voronoi cell of a generic direction u under the group, minus a 1 A gap
    u = rng.normal(size=3)
    u /= np.linalg.norm(u)
    images = np.array([g @ u for g in ops])
    normals = u[None] - images[1:]
    norms = np.linalg.norm(normals, axis=1)
    keep = norms > 1e-6
    normals = normals[keep] / norms[keep, None]

    def in_cell(p):
        p = np.atleast_2d(p)
        ok = (p**2).sum(1) <= (radius - 5.0) ** 2
        if len(normals):
            ok &= (p @ normals.T >= 1.0).all(1)
        return ok

    # domains: a few random ellipsoids inside the cell
    n_dom = int(rng.integers(3, 6))
    dom_scale = radius * min(0.55, max(0.2, 0.95 * n_ops ** (-1 / 3)))
    centres, axes, rots = [], [], []
    from scipy.spatial.transform import Rotation

    while len(centres) < n_dom:
        c = rng.uniform(-radius, radius, 3)
        if n_ops > 1:
            c = c + 0.55 * radius * u
        if in_cell(c)[0] and np.linalg.norm(c) < 0.75 * radius:
            centres.append(c)
            axes.append(dom_scale * rng.uniform(0.55, 1.0, 3))
            rots.append(Rotation.random(random_state=int(rng.integers(2**31))).as_matrix())
    centres, axes, rots = np.array(centres), np.array(axes), np.array(rots)

    def in_region(p):
        p = np.atleast_2d(p)
        local = np.einsum("dij,ndj->ndi", rots.transpose(0, 2, 1), p[:, None, :] - centres[None])
        inside = ((local / axes[None]) ** 2).sum(-1) <= 1.0
        return inside.any(1) & in_cell(p)

    # occupancy grid with one residue per voxel (protein density)
    voxel = (_MEAN_RESIDUE_DA / PROTEIN_DENSITY_DA_PER_A3) ** (1 / 3)
    n_vox = int(np.ceil(2 * radius / voxel)) + 1
    grid_c = (np.arange(n_vox) - (n_vox - 1) / 2) * voxel
    gx, gy, gz = np.meshgrid(grid_c, grid_c, grid_c, indexing="ij")
    centres_v = np.stack([gx, gy, gz], -1).reshape(-1, 3)
    allowed = in_region(centres_v).reshape(n_vox, n_vox, n_vox)
    n_target = int(allowed.sum())
    if n_target < 1:
        raise ConfigError(
            f"the built-in specimen of diameter {diameter_A:.0f} A with symmetry {symmetry} is too small; "
            "use a larger specimen_diameter_A or a lower symmetry."
        )
    occupied = np.zeros_like(allowed)

    def vox(p):
        return np.clip(np.round(p / voxel + (n_vox - 1) / 2).astype(int), 0, n_vox - 1)

    free = np.argwhere(allowed)
    ca, new_chain = [], True
    pos = direction = None
    n_dirs = 24
    while len(ca) < n_target:
        if new_chain:
            cand_idx = free[~occupied[free[:, 0], free[:, 1], free[:, 2]]]
            if len(cand_idx) == 0:
                break
            v = cand_idx[rng.integers(len(cand_idx))]
            pos = (v - (n_vox - 1) / 2) * voxel + rng.uniform(-0.3, 0.3, 3) * voxel
            direction = rng.normal(size=3)
            direction /= np.linalg.norm(direction)
            new_chain = False
        else:
            d = direction[None] + 0.9 * rng.normal(size=(n_dirs, 3))
            d /= np.linalg.norm(d, axis=1, keepdims=True)
            cand = pos[None] + 3.8 * d
            vi = vox(cand)
            ok = (
                allowed[vi[:, 0], vi[:, 1], vi[:, 2]]
                & ~occupied[vi[:, 0], vi[:, 1], vi[:, 2]]
                & in_cell(cand)
            )
            if not ok.any():
                new_chain = True
                continue
            j = int(np.argmax(ok))
            direction, pos = d[j], cand[j]
        v = vox(pos)
        occupied[v[0], v[1], v[2]] = True
        ca.append(pos.copy())
    ca = np.array(ca)

    # residues -> heavy atoms around each C-alpha
    names = list(_RESIDUES)
    freq = np.array([_RESIDUES[n][1] for n in names])
    kinds = rng.choice(len(names), size=len(ca), p=freq / freq.sum())
    elements, coords = [], []
    for i, (p, kind) in enumerate(zip(ca, kinds)):
        c, _, n, o, s = _RESIDUES[names[kind]][0]
        fwd = ca[i + 1] - p if i + 1 < len(ca) and np.linalg.norm(ca[i + 1] - p) < 4.0 else rng.normal(size=3)
        fwd /= np.linalg.norm(fwd)
        side = rng.normal(size=3)
        side -= side.dot(fwd) * fwd
        side /= np.linalg.norm(side)
        backbone = {"N": p - 1.46 * fwd + 0.5 * side, "CA": p, "C": p + 1.52 * fwd - 0.3 * side}
        backbone["O"] = backbone["C"] + 1.23 * (-side + 0.3 * rng.normal(size=3))
        elements += ["N", "C", "C", "O"]
        coords += [backbone["N"], backbone["CA"], backbone["C"], backbone["O"]]
        rest = ["C"] * (c - 2) + ["N"] * (n - 1) + ["O"] * (o - 1) + ["S"] * s
        branch = [
            p
        ]  # a branched side chain: each atom 1.5 A from an earlier one, pointing away from the backbone
        for el in rng.permutation(rest):
            step = side + 0.7 * rng.normal(size=3)
            atom = branch[
                int(rng.integers(max(0, len(branch) - 2), len(branch)))
            ] + 1.5 * step / np.linalg.norm(step)
            branch.append(atom)
            elements.append(str(el))
            coords.append(atom)
    coords = np.array(coords)
    elements = np.array(elements)
    r2 = (coords**2).sum(1) / radius**2
    bfac = 15.0 + 35.0 * r2 + rng.gamma(4.0, 1.5, len(coords))
    # symmetry copies
    all_coords = np.concatenate([coords @ g.T for g in ops])
    spec = Specimen(
        np.tile(elements, n_ops),
        all_coords,
        np.tile(bfac, n_ops),
        np.ones(len(all_coords)),
        name=f"builtin-{symmetry}-{diameter_A:.0f}A-seed{seed}",
        explicit_hydrogens=False,
        symmetry=symmetry.upper(),
        meta={"seed": seed, "diameter_A": diameter_A, "residues": len(ca) * n_ops},
    )
    return spec.centred()


def build_builtin_specimen(
    *, diameter_A: float = 120.0, mass_kDa: float | None = None, symmetry: str = "C1", seed: int = 0
) -> Specimen:
    """Build the procedural, protein-like complex used as the default specimen.

    Residues of the 20 amino acids (natural abundance, exact element formulas) are threaded along confined
    random walks (3.8 A C-alpha steps) that fill, at one residue per 135 A^3 (protein density 1.35 g/cm^3), a
    union of 3-5 random ellipsoidal domains inside the asymmetric unit of the point group; the unit is then
    replicated by the group's rotations. B-factors grow from ~20 A^2 in the core to ~55 A^2 at the surface.

    Parameters
    ----------
    diameter_A : float
        Diameter of the complex's bounding sphere (A).
    mass_kDa : float, optional
        Target mass instead of a diameter (the diameter is scaled until the mass is within 3 %).
    symmetry : str
        Point group: ``"C1"``, ``"C<n>"``, ``"D<n>"``, ``"T"``, ``"O"`` or ``"I"``.
    seed : int
        The same seed gives the same atoms.

    Returns
    -------
    Specimen
    """
    if mass_kDa is None and not 10 < diameter_A <= 2000:
        raise ConfigError(f"diameter_A = {diameter_A!r}: must be in (10, 2000] Angstrom.")
    if mass_kDa is not None and not 5 <= mass_kDa <= 1e5:
        raise ConfigError(f"mass_kDa = {mass_kDa!r}: must be between 5 and 100000 kDa.")
    _symmetry_ops(symmetry)
    if mass_kDa is None:
        spec = _builtin_cached(float(diameter_A), None, symmetry.upper(), int(seed))
    else:
        # the same seed draws the same shape at any size, so the mass grows ~ diameter^3: a few secant steps
        volume = mass_kDa * 1e3 / PROTEIN_DENSITY_DA_PER_A3
        diameter = 2 * (3 * volume / (4 * np.pi * 0.25)) ** (1 / 3)
        for _ in range(6):
            spec = _builtin_cached(round(float(diameter), 1), None, symmetry.upper(), int(seed))
            ratio = mass_kDa / spec.mass_kDa
            if abs(ratio - 1) < 0.03:
                break
            diameter = min(2000.0, diameter * ratio ** (1 / 3))
    return Specimen(
        spec.elements.copy(),
        spec.coords_A.copy(),
        spec.b_factors_A2.copy(),
        spec.occupancies.copy(),
        spec.name,
        spec.explicit_hydrogens,
        spec.symmetry,
        dict(spec.meta),
    )
