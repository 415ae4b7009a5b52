"""The physical micrograph simulator (paper section 2.2.1), in PyTorch (CPU and CUDA).

Modules, in the order of image formation:

* :mod:`.specimen` -- atomic models (PDB/mmCIF via gemmi, PDB ids); :mod:`.builtin` -- the procedural complex;
* :mod:`.potential` -- projected Coulomb potential from Peng 1996 factors, pixel-averaged;
* :mod:`.ice` -- vitreous ice: mean inner potential, solvent exclusion, structural noise, carbon support;
* :mod:`.ctf` -- wavelength, interaction constant, CTF (CTFFIND/cisTEM convention), envelopes, zeros;
* :mod:`.detector` -- MTF/DQE presets, dose to counts, shot noise;
* :mod:`.micrograph` -- :func:`simulate_micrograph`: one field of particles imaged end to end;
* :mod:`.stage` -- datasets on disk, aligned training patches, the test set, the pipeline stage ``simulate``;
* :mod:`.standins` -- the embedded default's simulated "experimental" micrographs (learnt from and held out).
"""

from nt2c.simulation.builtin import build_builtin_specimen
from nt2c.simulation.ctf import ctf_1d, ctf_2d, ctf_zeros, electron_wavelength_A, interaction_constant
from nt2c.simulation.detector import DETECTOR_PRESETS, detect, detector_curves, dqe, mtf
from nt2c.simulation.ice import ice_mean_inner_potential_V, ice_noise_spectrum, structural_noise
from nt2c.simulation.micrograph import (
    Micrograph,
    place_particles,
    random_rotations,
    simulate_micrograph,
    specimen_from_params,
)
from nt2c.simulation.potential import K_V_A2, projected_potential, render_particles, scattering_factor
from nt2c.simulation.specimen import Specimen, fetch_structure, load_specimen, read_structure
from nt2c.simulation.stage import (
    PatchPairs,
    cut_patch_pairs,
    simulate_dataset,
    simulate_stage,
    write_micrograph,
)

__all__ = [
    "electron_wavelength_A",
    "interaction_constant",
    "ctf_1d",
    "ctf_2d",
    "ctf_zeros",
    "DETECTOR_PRESETS",
    "mtf",
    "dqe",
    "detect",
    "detector_curves",
    "ice_mean_inner_potential_V",
    "ice_noise_spectrum",
    "structural_noise",
    "K_V_A2",
    "scattering_factor",
    "projected_potential",
    "render_particles",
    "Specimen",
    "read_structure",
    "fetch_structure",
    "build_builtin_specimen",
    "load_specimen",
    "Micrograph",
    "random_rotations",
    "place_particles",
    "simulate_micrograph",
    "specimen_from_params",
    "simulate_dataset",
    "write_micrograph",
    "cut_patch_pairs",
    "PatchPairs",
    "simulate_stage",
]
