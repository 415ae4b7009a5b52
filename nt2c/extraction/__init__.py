"""Noise-patch extraction by the patch-similarity (SSIM) test (paper section 2.2.2; notebook 03).

* :mod:`.ssim` -- the test on one patch: SSIM of Eq. 3 between its local patches;
* :mod:`.statistics` -- the same statistics for every candidate of a micrograph at once (box sums);
* :mod:`.guards` -- known particles, outliers of the raw statistics, overlap;
* :mod:`.patches` -- :func:`extract_noise_patches`: the test, the guards, the patches cut from the raw image;
* :mod:`.stage` -- the stage ``extract-noise``.
"""

from nt2c.extraction.patches import (
    CRITERIA,
    STATUS_NAMES,
    NoisePatches,
    NoNoisePatchError,
    extract_noise_patches,
)
from nt2c.extraction.ssim import local_patch_ssim, normalize_unit, ssim_eq3
from nt2c.extraction.stage import box_particle_distance, extract_noise_stage, list_micrographs
from nt2c.extraction.statistics import candidate_grid

__all__ = [
    "CRITERIA",
    "STATUS_NAMES",
    "NoisePatches",
    "NoNoisePatchError",
    "extract_noise_patches",
    "local_patch_ssim",
    "normalize_unit",
    "ssim_eq3",
    "box_particle_distance",
    "extract_noise_stage",
    "list_micrographs",
    "candidate_grid",
]
