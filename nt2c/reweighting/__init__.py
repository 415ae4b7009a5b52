"""Contrast-guided re-weighting of real noise onto simulated signal (paper section 2.2.3, Eq. 4; notebook ``05_reweighting``).

* :mod:`.fit` -- the coefficients (alpha, beta, gamma), the modulation and the stage ``reweight``.
"""

from nt2c.reweighting.fit import fit_coefficients, modulate, reweight_pairs

__all__ = ["fit_coefficients", "modulate", "reweight_pairs"]
