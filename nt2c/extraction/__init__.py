"""Noise-patch extraction by the patch-similarity (SSIM) test (paper section 2.2.2; notebook ``03_noise_extraction``).

* :mod:`.patches` -- :func:`extract_noise_patches` and the stage ``extract-noise``.
"""

from nt2c.extraction.patches import NoisePatches, NoNoisePatchError, extract_noise_patches

__all__ = ["NoisePatches", "NoNoisePatchError", "extract_noise_patches"]
