"""The noise model: what the extracted real noise becomes before it is transferred.

Notebook ``04_gan_noise_model`` walks through it; the stage ``train-gan`` is :mod:`.stage`.

* :mod:`.networks` -- the WGAN-GP generator and critic (paper section 2.1.2, Fig. 3);
* :mod:`.gan` -- WGAN-GP training (Eq. 2): :func:`critic_step`, :func:`generator_step`, :func:`train_gan`;
* :mod:`.batches` -- the training data: validated patches, seeded augmented batches;
* :mod:`.cross_rank` -- the same training on several processes (``torchrun``);
* :mod:`.generator` -- the trained generator on disk, and :func:`sample_noise`;
* :mod:`.fields` -- noise fields for the re-weighting: resampled real patches (the default) or GAN samples;
* :mod:`.fidelity` -- how closely one set of noise patches matches another, statistic by statistic;
* :mod:`.stage` -- the stage ``train-gan`` and its fidelity report.
"""

from nt2c.noise.fidelity import noise_fidelity
from nt2c.noise.fields import blend_noise_patches, resample_patches, sample_noise_fields, tiles_per_axis
from nt2c.noise.gan import TrainedGan, critic_step, generator_step, gradient_penalty, train_gan
from nt2c.noise.generator import load_generator, sample_noise, save_generator
from nt2c.noise.stage import fidelity_sets, noise_fidelity_report, split_patches, train_gan_stage

__all__ = [
    "noise_fidelity",
    "blend_noise_patches",
    "resample_patches",
    "sample_noise_fields",
    "tiles_per_axis",
    "TrainedGan",
    "critic_step",
    "generator_step",
    "gradient_penalty",
    "train_gan",
    "load_generator",
    "sample_noise",
    "save_generator",
    "fidelity_sets",
    "noise_fidelity_report",
    "split_patches",
    "train_gan_stage",
]
