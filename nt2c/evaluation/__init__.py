"""Evaluation: metrics, baseline denoisers, particle picking and the comparison tables (notebooks 07 and 08).

* :mod:`.metrics` -- PSNR, SSIM, Pearson (and which PSNR is which), re-exporting :mod:`.eq5` (the paper's SNR,
  Eq. 5, and its region pairs) and :mod:`.frc` (Fourier ring correlation);
* :mod:`.baselines` -- the denoisers to compare (Gaussian, BM3D, Topaz-Denoise, Noise2Void, the NT2C models);
* :mod:`.picking` -- a mean-shift particle picker and its scoring against known positions;
* :mod:`.datasets` -- what to score: the run's splits (test set, same micrographs, new micrographs), with
  coordinates and reference images matched to the micrographs by name (:mod:`.matching`);
* :mod:`.compare` -- :func:`evaluate` / ``nt2c evaluate``: every method on every micrograph (steps in
  :mod:`.scoring`); :mod:`.report` -- the tables and figures, each saying which split it is on.
"""

from nt2c.evaluation.compare import evaluate, evaluate_run
from nt2c.evaluation.datasets import Micrograph, load_micrograph, read_coords, run_datasets
from nt2c.evaluation.metrics import eq5_regions, fit_affine, frc, pearson, psnr, snr_eq5, ssim
from nt2c.evaluation.picking import pick_particles, score_picks
from nt2c.evaluation.report import EvaluationResult

__all__ = [
    "evaluate",
    "evaluate_run",
    "EvaluationResult",
    "Micrograph",
    "load_micrograph",
    "read_coords",
    "run_datasets",
    "eq5_regions",
    "fit_affine",
    "frc",
    "pearson",
    "psnr",
    "snr_eq5",
    "ssim",
    "pick_particles",
    "score_picks",
]
