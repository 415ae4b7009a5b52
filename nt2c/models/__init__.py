"""Neural networks of NT2C: the U-Net denoiser (:mod:`nt2c.models.unet`) and the WGAN-GP noise synthesizer (:mod:`nt2c.models.gan`)."""
