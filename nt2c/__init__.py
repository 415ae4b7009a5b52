"""nt2c: Noise-Transfer2Clean denoising of cryo-EM micrographs, as a tutorial package.

The pipeline (paper: Li et al. 2022, Bioinformatics 38:2022) and where each step lives:

=====================  ==========================================  =================================
step                   module                                      command
=====================  ==========================================  =================================
simulate               :mod:`nt2c.simulation`                      ``nt2c simulate``
coarse denoiser        :mod:`nt2c.models.unet`, :mod:`nt2c.training`  ``nt2c train-coarse``
noise extraction       :mod:`nt2c.extraction`                      ``nt2c extract-noise``
GAN noise synthesizer  :mod:`nt2c.models.gan`, :mod:`nt2c.noise_model`  ``nt2c train-gan``
re-weighting           :mod:`nt2c.reweighting`                     ``nt2c reweight``
fine denoiser          :mod:`nt2c.training`, :mod:`nt2c.inference`  ``nt2c train-fine``, ``nt2c denoise``
evaluation             :mod:`nt2c.metrics`, :mod:`nt2c.baselines`   ``nt2c evaluate``
=====================  ==========================================  =================================

Public names are imported lazily, so ``import nt2c`` stays fast (torch loads on first use).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "noise_fidelity": "nt2c.fidelity",
    "sample_noise": "nt2c.noise_model",
    "ExperimentParams": "nt2c.config",
    "load_params": "nt2c.config",
    "save_params": "nt2c.config",
    "stage_config": "nt2c.config",
    "RunDir": "nt2c.rundir",
    "run_stage": "nt2c.pipeline",
    "stage_status": "nt2c.pipeline",
    "read_image": "nt2c.io",
    "read_mrc": "nt2c.io",
    "write_mrc": "nt2c.io",
    "read_star": "nt2c.io",
    "write_star": "nt2c.io",
    "resolve_device": "nt2c.device",
    "seed_everything": "nt2c.device",
    "device_report": "nt2c.device",
    "set_progress": "nt2c.progress",
    "fetch": "nt2c.data",
    "load_manifest": "nt2c.data",
    "NT2CError": "nt2c.errors",
    "simulate_micrograph": "nt2c.simulation",
    "simulate_dataset": "nt2c.simulation",
    "cut_patch_pairs": "nt2c.simulation",
    "PatchPairs": "nt2c.simulation",
    "build_builtin_specimen": "nt2c.simulation",
    "read_structure": "nt2c.simulation",
    "load_specimen": "nt2c.simulation",
    "projected_potential": "nt2c.simulation",
    "ctf_2d": "nt2c.simulation",
    "electron_wavelength_A": "nt2c.simulation",
    "extract_noise_patches": "nt2c.extraction",
    "UNet": "nt2c.models.unet",
    "denoise_micrograph": "nt2c.inference",
    "load_model": "nt2c.inference",
    "snr_eq5": "nt2c.metrics",
    "eq5_regions": "nt2c.metrics",
    "fit_affine": "nt2c.metrics",
    "psnr": "nt2c.metrics",
    "ssim": "nt2c.metrics",
    "pearson": "nt2c.metrics",
    "frc": "nt2c.metrics",
    "denoise_with": "nt2c.baselines",
    "BASELINES": "nt2c.baselines",
    "pick_particles": "nt2c.picking",
    "score_picks": "nt2c.picking",
    "evaluate": "nt2c.evaluation",
    "evaluate_run": "nt2c.evaluation",
    "fit_coefficients": "nt2c.reweighting",
    "reweight_pairs": "nt2c.reweighting",
    "modulate": "nt2c.reweighting",
    "run_pipeline": "nt2c.workflow",
    "simulate_experimental": "nt2c.experimental",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nt2c' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
