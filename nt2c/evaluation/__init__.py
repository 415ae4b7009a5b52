"""Evaluation: metrics, baseline denoisers, particle picking and the comparison tables (notebooks 07 and 08).

* :mod:`.metrics` -- the paper's SNR (Eq. 5), PSNR, SSIM, Pearson, FRC;
* :mod:`.baselines` -- the denoisers to compare (Gaussian, BM3D, Topaz-Denoise, the NT2C models);
* :mod:`.picking` -- a mean-shift particle picker and its scoring against known positions;
* :mod:`.compare` -- :func:`evaluate` / ``nt2c evaluate``: every method on every micrograph, tables and figures.
"""

from nt2c.evaluation.compare import evaluate, evaluate_run
from nt2c.evaluation.metrics import frc, pearson, psnr, snr_eq5, ssim
from nt2c.evaluation.picking import pick_particles, score_picks

__all__ = [
    "evaluate",
    "evaluate_run",
    "frc",
    "pearson",
    "psnr",
    "snr_eq5",
    "ssim",
    "pick_particles",
    "score_picks",
]
