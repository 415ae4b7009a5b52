"""Contrast-guided re-weighting of real noise onto simulated signal (paper section 2.2.3, Eq. 4; notebook 05).

* :mod:`.fit` -- the coefficients (alpha, beta, gamma) of Eq. 4 and the contrast modulation;
* :mod:`.stage` -- the re-weighted pairs and the stage ``reweight`` (the noise comes from
  :mod:`nt2c.noise.fields`).
"""

from nt2c.reweighting.fit import (
    METHODS,
    MODULATIONS,
    NOISE_SOURCES,
    fit_coefficients,
    modulate,
    modulation_map,
)
from nt2c.reweighting.stage import (
    ReweightedPairs,
    crop_pairs,
    read_coefficients,
    reweight_pairs,
    reweight_stage,
)

__all__ = [
    "METHODS",
    "MODULATIONS",
    "NOISE_SOURCES",
    "fit_coefficients",
    "modulate",
    "modulation_map",
    "ReweightedPairs",
    "crop_pairs",
    "read_coefficients",
    "reweight_pairs",
    "reweight_stage",
]
