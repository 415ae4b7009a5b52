"""Specimens: atomic models read from PDB/mmCIF files, fetched by PDB id, or built procedurally.

A :class:`Specimen` is a list of atoms (element, position in Angstrom, B-factor, occupancy) centred on its
centre of mass. Three sources:

* :func:`read_structure` -- a ``.pdb``/``.cif`` file (optionally gzipped) through gemmi; all models of a
  multi-model file when they form an assembly (a 24-mer written as 24 MODELs is one particle);
* :func:`fetch_structure` -- a 4-character PDB id, downloaded once into the nt2c data cache;
* :func:`nt2c.simulation.builtin.build_builtin_specimen` -- a procedurally built, protein-like complex
  (residues of the 20 amino acids at their natural abundance, packed at protein density 1.35 g/cm^3 along
  confined random-walk chains, optional point-group symmetry), reproducible from its seed, so nothing has to
  be downloaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nt2c.errors import ConfigError, DataError, InputError
from nt2c.simulation.potential import ATOMIC_MASS_DA, IMPLICIT_HYDROGENS, PENG_A

__all__ = [
    "Specimen",
    "read_structure",
    "fetch_structure",
    "load_specimen",
    "PROTEIN_DENSITY_DA_PER_A3",
]

#: protein density 1.35 g/cm^3 in Dalton per cubic Angstrom
PROTEIN_DENSITY_DA_PER_A3 = 1.35 * 0.602214076
_WATER_NAMES = {"HOH", "WAT", "DOD", "H2O", "SOL", "TIP", "TIP3"}


@dataclass(eq=False)
class Specimen:
    """Atoms of one particle, centred on their centre of mass.

    Attributes
    ----------
    elements : numpy.ndarray of str, shape (n,)
        Upper-case element symbols (``"C"``, ``"FE"``), each with Peng 1996 factors.
    coords_A : numpy.ndarray, float64, shape (n, 3)
        Positions (x, y, z) in Angstrom.
    b_factors_A2 : numpy.ndarray, float64, shape (n,)
        Atomic displacement (B) factors (A^2).
    occupancies : numpy.ndarray, float64, shape (n,)
    name : str
    explicit_hydrogens : bool
        Whether the model lists its hydrogens (else they can be added implicitly to the heavy atoms).
    symmetry : str
        Point group the specimen was built with (``"C1"`` for files).
    """

    elements: np.ndarray
    coords_A: np.ndarray
    b_factors_A2: np.ndarray
    occupancies: np.ndarray
    name: str = "specimen"
    explicit_hydrogens: bool = False
    symmetry: str = "C1"
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.elements = np.asarray(self.elements).astype(str)
        self.coords_A = np.asarray(self.coords_A, dtype=np.float64).reshape(-1, 3)
        self.b_factors_A2 = np.asarray(self.b_factors_A2, dtype=np.float64)
        self.occupancies = np.asarray(self.occupancies, dtype=np.float64)
        n = len(self.elements)
        if n == 0:
            raise InputError(f"specimen {self.name!r} has no atoms; check the model file.")
        if not (len(self.coords_A) == len(self.b_factors_A2) == len(self.occupancies) == n):
            raise InputError(
                f"specimen {self.name!r}: elements, coordinates, B-factors and occupancies differ in length."
            )
        if not np.isfinite(self.coords_A).all():
            raise InputError(f"specimen {self.name!r} has non-finite coordinates; fix the model file.")
        unknown = sorted(set(self.elements) - set(PENG_A))
        if unknown:
            raise InputError(
                f"specimen {self.name!r} contains element(s) {', '.join(unknown)} without scattering "
                f"factors here (known: {', '.join(sorted(PENG_A))}); remove those atoms (e.g. ligands/ions) "
                "from the model."
            )

    @property
    def n_atoms(self) -> int:
        """Number of atoms."""
        return len(self.elements)

    @property
    def mass_kDa(self) -> float:
        """Mass (kDa), hydrogens included (implicit ones estimated when the model has none)."""
        masses = np.array([ATOMIC_MASS_DA[e] for e in self.elements])
        if not self.explicit_hydrogens:
            masses = (
                masses
                + np.array([IMPLICIT_HYDROGENS.get(e, 0.0) for e in self.elements]) * ATOMIC_MASS_DA["H"]
            )
        return float((masses * self.occupancies).sum() / 1000.0)

    @property
    def radius_A(self) -> float:
        """Largest distance of an atom from the centre (A)."""
        return float(np.sqrt((self.coords_A**2).sum(1)).max())

    def composition(self) -> dict[str, int]:
        """Atom count per element."""
        values, counts = np.unique(self.elements, return_counts=True)
        return {str(v): int(c) for v, c in zip(values, counts)}

    def centred(self) -> Specimen:
        """Return a copy centred on the mass-weighted centroid."""
        masses = np.array([ATOMIC_MASS_DA[e] for e in self.elements]) * self.occupancies
        centre = (self.coords_A * masses[:, None]).sum(0) / masses.sum()
        return Specimen(
            self.elements,
            self.coords_A - centre,
            self.b_factors_A2,
            self.occupancies,
            self.name,
            self.explicit_hydrogens,
            self.symmetry,
            dict(self.meta),
        )

    def __repr__(self) -> str:
        return (
            f"Specimen({self.name!r}, {self.n_atoms} atoms, {self.mass_kDa:.1f} kDa, "
            f"radius {self.radius_A:.1f} A, {self.symmetry})"
        )


# ---------------------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------------------
def read_structure(
    path: str | os.PathLike, *, models: str = "auto", keep_waters: bool = False, keep_hydrogens: bool = True
) -> Specimen:
    """Read a PDB or mmCIF model (``.pdb``, ``.ent``, ``.cif``, ``.mmcif``, each optionally ``.gz``).

    Parameters
    ----------
    path : path-like
    models : {"auto", "first", "all"}
        Which MODELs make the particle: ``"first"``, ``"all"`` (an assembly written model by model), or
        ``"auto"``: all when the models' centroids differ by more than 5 A (an assembly), else the first (an
        NMR ensemble of the same molecule).
    keep_waters : bool
        Keep ordered waters (off by default: the solvent is modelled as ice).
    keep_hydrogens : bool
        Keep hydrogens listed in the file.

    Returns
    -------
    Specimen
        Centred on its centre of mass.
    """
    import gemmi

    path = Path(path).expanduser()
    if models not in ("auto", "first", "all"):
        raise ConfigError(f"models = {models!r}: use 'auto', 'first' or 'all'.")
    if not path.is_file():
        raise InputError(f"model file {path} does not exist; check the path (or use specimen: builtin).")
    try:
        st = gemmi.read_structure(str(path))
    except Exception as exc:  # gemmi raises RuntimeError / ValueError on bad files
        raise InputError(
            f"{path} is not a readable PDB/mmCIF file ({exc}); download it again or use another."
        ) from None
    if len(st) == 0:
        raise InputError(f"{path} holds no models; is it a PDB/mmCIF coordinate file?")
    per_model = []
    for model in st:
        el, xyz, b, occ = [], [], [], []
        for chain in model:
            for res in chain:
                if not keep_waters and res.name.upper() in _WATER_NAMES:
                    continue
                for atom in res:
                    name = atom.element.name.upper()
                    if name in ("H", "D"):
                        if not keep_hydrogens:
                            continue
                        name = "H"
                    el.append(name)
                    xyz.append((atom.pos.x, atom.pos.y, atom.pos.z))
                    b.append(atom.b_iso)
                    occ.append(atom.occ)
        if el:
            per_model.append((el, np.array(xyz, dtype=np.float64), b, occ))
    if not per_model:
        raise InputError(f"{path} contains no atoms (after removing waters); check the file.")
    use_all = models == "all"
    if models == "auto" and len(per_model) > 1:
        centroids = np.array([m[1].mean(0) for m in per_model])
        use_all = float(np.ptp(centroids, axis=0).max()) > 5.0
    chosen = per_model if use_all else per_model[:1]
    elements = np.concatenate([np.array(m[0]) for m in chosen])
    coords = np.concatenate([m[1] for m in chosen])
    bfac = np.concatenate([np.asarray(m[2], dtype=np.float64) for m in chosen])
    occ = np.concatenate([np.asarray(m[3], dtype=np.float64) for m in chosen])
    occ = np.where(occ > 0, occ, 1.0)  # occupancy 0 in some EM models means "unset"
    bad = sorted(set(elements) - set(PENG_A))
    if bad:
        raise InputError(
            f"{path}: unknown element(s) {', '.join(bad)} (no Peng 1996 scattering factors in nt2c; known: "
            f"{', '.join(sorted(PENG_A))}). Remove those atoms from the file or fix their element column."
        )
    spec = Specimen(
        elements,
        coords,
        bfac,
        occ,
        name=path.name.split(".")[0],
        explicit_hydrogens=bool((elements == "H").sum() > 0.2 * len(elements)),
        meta={"source": str(path), "models_used": len(chosen), "models_in_file": len(per_model)},
    )
    return spec.centred()


def fetch_structure(pdb_id: str, **kwargs) -> Specimen:
    """Download (once, into the nt2c data cache) and read the model ``pdb_id`` (e.g. ``"3j9i"``).

    Other keyword arguments go to :func:`read_structure`. Raises :class:`~nt2c.errors.DataError` offline.
    """
    try:
        from nt2c.data import fetch_pdb
    except ImportError as exc:  # pragma: no cover - the data layer is part of the package
        raise DataError(f"the data layer is unavailable ({exc}); give a local model file instead.") from exc
    try:
        path = fetch_pdb(pdb_id)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(
            f"could not download PDB entry {pdb_id!r} ({exc}). Without a network, download the model "
            "elsewhere and set specimen: /path/to/model.cif, or use specimen: builtin."
        ) from None
    return read_structure(path, **kwargs)


def load_specimen(
    specimen: str | os.PathLike | Specimen,
    *,
    diameter_A: float = 120.0,
    symmetry: str = "C1",
    seed: int = 0,
    models: str = "auto",
) -> Specimen:
    """Resolve ``specimen``: ``"builtin"``, a model file path, a 4-character PDB id, or a Specimen."""
    if isinstance(specimen, Specimen):
        return specimen
    text = str(specimen).strip()
    if text == "builtin":
        from nt2c.simulation.builtin import build_builtin_specimen

        return build_builtin_specimen(diameter_A=diameter_A, symmetry=symmetry, seed=seed)
    path = Path(text).expanduser()
    if path.exists() or any(text.lower().endswith(s) for s in (".pdb", ".cif", ".ent", ".mmcif", ".gz")):
        return read_structure(path, models=models)
    if len(text) == 4 and text.isalnum():
        return fetch_structure(text.lower(), models=models)
    raise ConfigError(f"specimen = {text!r}: use 'builtin', a .pdb/.cif(.gz) path or a 4-character PDB id.")
