"""nt2c: Noise-Transfer2Clean denoising of cryo-EM micrographs, as a tutorial package.

The pipeline (paper: Li et al. 2022, Bioinformatics 38:2022): one subpackage per stage, named by its notebook.

=================  =======================  =========================================  ===================
step               subpackage               command                                    notebook
=================  =======================  =========================================  ===================
simulate           :mod:`nt2c.simulation`   ``nt2c simulate``                          01_simulation
coarse denoiser    :mod:`nt2c.denoiser`     ``nt2c train-coarse``                      02_coarse_denoiser
noise extraction   :mod:`nt2c.extraction`   ``nt2c extract-noise``                     03_noise_extraction
noise model (GAN)  :mod:`nt2c.noise`        ``nt2c train-gan``, ``nt2c sample-noise``  04_gan_noise_model
re-weighting       :mod:`nt2c.reweighting`  ``nt2c reweight``                          05_reweighting
fine denoiser      :mod:`nt2c.denoiser`     ``nt2c train-fine``, ``nt2c denoise``      06_fine_denoiser
evaluation         :mod:`nt2c.evaluation`   ``nt2c evaluate``                          07, 08
=================  =======================  =========================================  ===================

The frame around the stages: :mod:`nt2c.config` (typed settings), :mod:`nt2c.run` (run directory, stage
registry, ``nt2c run``), :mod:`nt2c.io` (files), :mod:`nt2c.cli` and :mod:`nt2c.commands` (command line),
:mod:`nt2c.tutorial` (notebook helpers), :mod:`nt2c.plots` (one figure module per stage).

Public names are imported lazily, so ``import nt2c`` stays fast (torch loads on first use).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "noise_fidelity": "nt2c.noise.fidelity",
    "sample_noise": "nt2c.noise.generator",
    "ExperimentParams": "nt2c.config",
    "load_params": "nt2c.config",
    "save_params": "nt2c.config",
    "stage_config": "nt2c.config",
    "RunDir": "nt2c.run.rundir",
    "run_stage": "nt2c.run.stages",
    "stage_status": "nt2c.run.stages",
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
    "extract_noise_patches": "nt2c.extraction.patches",
    "UNet": "nt2c.denoiser.network",
    "denoise_micrograph": "nt2c.denoiser.inference",
    "load_model": "nt2c.denoiser.inference",
    "snr_eq5": "nt2c.evaluation.metrics",
    "eq5_regions": "nt2c.evaluation.metrics",
    "fit_affine": "nt2c.evaluation.metrics",
    "psnr": "nt2c.evaluation.metrics",
    "ssim": "nt2c.evaluation.metrics",
    "pearson": "nt2c.evaluation.metrics",
    "frc": "nt2c.evaluation.metrics",
    "denoise_with": "nt2c.evaluation.baselines",
    "BASELINES": "nt2c.evaluation.baselines",
    "pick_particles": "nt2c.evaluation.picking",
    "score_picks": "nt2c.evaluation.picking",
    "evaluate": "nt2c.evaluation.compare",
    "evaluate_run": "nt2c.evaluation.compare",
    "fit_coefficients": "nt2c.reweighting.fit",
    "reweight_pairs": "nt2c.reweighting.stage",
    "modulate": "nt2c.reweighting.fit",
    "run_pipeline": "nt2c.run.pipeline",
    "simulate_experimental": "nt2c.simulation.standins",
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
