"""The noise model: what the extracted real noise becomes before it is transferred (notebook ``04_gan_noise_model``).

* :mod:`.networks` -- the WGAN-GP generator and critic (paper section 2.1.2, Fig. 3);
* :mod:`.gan` -- WGAN-GP training, sampling and the stage ``train-gan``;
* :mod:`.fidelity` -- how closely generated noise matches real noise, statistic by statistic.
"""

from nt2c.noise.fidelity import noise_fidelity
from nt2c.noise.gan import sample_noise, train_gan

__all__ = ["noise_fidelity", "sample_noise", "train_gan"]
