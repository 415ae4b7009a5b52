"""Calibration of the simulation to the user's micrographs.

* :mod:`.signal_noise` -- how strong the signal is against the noise in the micrographs' own units, from their
  extracted noise patches; the re-weighting method ``"calibrated"`` builds the fine pairs at that ratio;
* :mod:`.ctf_fit` -- read CTFFIND4 and RELION CTF estimates, or fit defocus and astigmatism to a
  micrograph's Thon rings (``simulate.defocus_source = "calibration"`` simulates at them).
"""

from nt2c.calibration.ctf_fit import (
    CtfEstimate,
    fit_ctf,
    fit_defocus_1d,
    normalise_rings,
    power_spectrum,
    read_ctffind4,
    read_relion_ctf,
)
from nt2c.calibration.signal_noise import SignalNoise, measure_signal_noise, tile_variances

__all__ = [
    "CtfEstimate",
    "fit_ctf",
    "fit_defocus_1d",
    "normalise_rings",
    "power_spectrum",
    "read_ctffind4",
    "read_relion_ctf",
    "SignalNoise",
    "measure_signal_noise",
    "tile_variances",
]
