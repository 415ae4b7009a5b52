"""The WGAN-GP noise synthesizer of NT2C (paper section 2.1.2, Fig. 3): generator and critic networks.

Both networks are DCGAN-style, six layers each, and work for square patches of side ``d`` in
``{64, 128, 256}`` pixels.

Normalisation contract
----------------------
The networks see *z-scored* noise: ``x = (patch - mean) / std`` with one scalar ``mean`` and ``std`` measured
on the training patches (their units are those of the extracted patches, counts per pixel for raw
micrographs). z-scored data are unbounded (noise histograms have long tails), so the generator ends in a
**linear** layer, not a ``Tanh``: the reference code squashes its output into [-1, 1] while feeding the critic
real data outside that range, which the critic can separate from fakes trivially. Sampling undoes the
z-score (:func:`nt2c.noise.generator.sample_noise`), so generated noise comes back in the patches' units.

Why the critic has no normalisation layers
------------------------------------------
* **Batch norm** couples the samples of a batch, so the critic's gradient with respect to one input depends
  on the others; the gradient penalty of WGAN-GP constrains the gradient *per sample* and is no longer the
  penalty it claims to be (Gulrajani et al. 2017, section 4).
* **Instance and layer norm** (the usual replacements, instance norm in the reference code) divide every
  sample's feature maps by their own standard deviation after a linear convolution. That makes the critic
  (nearly) blind to the overall amplitude and offset of a patch -- for a *noise* model the variance is the
  first statistic to get right. So the critic here uses no normalisation at all; the gradient penalty alone
  keeps it well conditioned (a plain convolutional critic is one of the architectures of Gulrajani et al.).
"""

from __future__ import annotations

import torch
from torch import nn

from nt2c.errors import ConfigError

__all__ = ["PATCH_SIZES", "Generator", "Critic", "gan_architecture", "check_patch_px"]

PATCH_SIZES: tuple[int, ...] = (64, 128, 256)


def check_patch_px(patch_px: int) -> int:
    """Return ``patch_px`` if the networks support it, else raise :class:`~nt2c.errors.ConfigError`."""
    if int(patch_px) not in PATCH_SIZES:
        raise ConfigError(
            f"patch_px = {patch_px!r}: the GAN makes square patches of side 64, 128 or 256 px only."
        )
    return int(patch_px)


class Generator(nn.Module):
    """Latent vector to noise patch: six transposed convolutions, batch norm and ReLU in between.

    Layers (``d`` the patch side, ``w`` the width)::

        z (B, latent_dim, 1, 1)
        1. ConvT k=d/16, s=1        -> (8w, d/16, d/16)     + BN + ReLU
        2. ConvT k=4, s=2, p=1      -> (8w, d/8,  d/8)      + BN + ReLU
        3. ConvT k=4, s=2, p=1      -> (4w, d/4,  d/4)      + BN + ReLU
        4. ConvT k=4, s=2, p=1      -> (2w, d/2,  d/2)      + BN + ReLU
        5. ConvT k=4, s=2, p=1      -> (w,  d,    d)        + BN + ReLU
        6. ConvT k=3, s=1, p=1      -> (1,  d,    d)        linear (z-scored noise is unbounded)

    The last layer is a stride-1 3 x 3 layer rather than a fifth upsampling: it smooths the checkerboard
    pattern of stride-2 transposed convolutions, which would otherwise show up as peaks in the noise power
    spectrum.

    With ``spatial_latent=True`` the latent vector is longer, ``latent_dim * (d/16)^2`` values laid out as a
    ``(latent_dim, d/16, d/16)`` grid, and layer 1 is a 3 x 3, stride-1 transposed convolution over that grid.
    Every region of the patch then has latent values of its own and all layers are translation-equivariant,
    so stationarity need not be learnt, and the patches are no longer confined to a ``latent_dim``-dimensional
    family. It is an option to experiment with, not a measured improvement: after the quick profile's 300
    iterations its fidelity table was no better than the default's. The default, ``False``, is the paper's
    generator.

    Parameters
    ----------
    patch_px : {64, 128, 256}
        Side ``d`` of the generated patches (px).
    latent_dim : int
        Length of the latent vector ``z`` (standard normal).
    width : int
        Channels ``w`` of the last hidden layer.
    spatial_latent : bool
        Lay the latent out on a ``(d/16) x (d/16)`` grid (see above).

    Attributes
    ----------
    latent_size : int
        Length of the latent vectors :meth:`forward` takes.
    """

    def __init__(
        self, *, patch_px: int = 64, latent_dim: int = 100, width: int = 64, spatial_latent: bool = False
    ):
        super().__init__()
        self.patch_px = check_patch_px(patch_px)
        self.latent_dim = int(latent_dim)
        self.width = int(width)
        self.spatial_latent = bool(spatial_latent)
        start = self.patch_px // 16
        self.grid = start if self.spatial_latent else 1
        self.latent_size = self.latent_dim * self.grid**2
        w = self.width
        ch = [8 * w, 8 * w, 4 * w, 2 * w, w]  # channels after layers 1..5
        first = (
            nn.ConvTranspose2d(self.latent_dim, ch[0], kernel_size=3, stride=1, padding=1, bias=False)
            if self.spatial_latent
            else nn.ConvTranspose2d(
                self.latent_dim, ch[0], kernel_size=start, stride=1, padding=0, bias=False
            )
        )
        layers: list[nn.Module] = [
            first,
            nn.BatchNorm2d(ch[0]),
            nn.ReLU(inplace=True),
        ]
        for c_in, c_out in zip(ch[:-1], ch[1:]):
            layers += [
                nn.ConvTranspose2d(c_in, c_out, kernel_size=4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
        layers.append(nn.ConvTranspose2d(ch[-1], 1, kernel_size=3, stride=1, padding=1, bias=True))
        self.net = nn.Sequential(*layers)
        self.apply(_init_weights)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Map latent vectors to z-scored noise patches.

        Parameters
        ----------
        z : torch.Tensor, shape (B, latent_size)
            Standard-normal latent vectors (``latent_size = latent_dim``, or ``latent_dim * (d/16)^2`` with a
            spatial latent).

        Returns
        -------
        torch.Tensor, shape (B, 1, d, d)
            Noise in z-score units of the training patches.
        """
        return self.net(z.reshape(z.shape[0], self.latent_dim, self.grid, self.grid))


class Critic(nn.Module):
    """Noise patch to a scalar score: six convolutions with LeakyReLU(0.2), no normalisation, linear output.

    Layers (``d`` the patch side, ``w`` the width)::

        x (B, 1, d, d)
        1. Conv k=4, s=2, p=1   -> (w,  d/2)    LeakyReLU
        2. Conv k=4, s=2, p=1   -> (2w, d/4)    LeakyReLU
        3. Conv k=4, s=2, p=1   -> (4w, d/8)    LeakyReLU
        4. Conv k=4, s=2, p=1   -> (8w, d/16)   LeakyReLU
        5. Conv k=4, s=2, p=1   -> (8w, d/32)   LeakyReLU
        6. Conv k=d/32, s=1     -> (1, 1, 1)    linear score (a Wasserstein critic is unbounded)

    No batch, instance or layer norm (see the module docstring: they break the per-sample gradient penalty
    or hide the patch's amplitude from the critic).

    Parameters
    ----------
    patch_px : {64, 128, 256}
        Side ``d`` of the patches (px).
    width : int
        Channels ``w`` of the first layer.
    """

    def __init__(self, *, patch_px: int = 64, width: int = 64):
        super().__init__()
        self.patch_px = check_patch_px(patch_px)
        self.width = int(width)
        ch = [1, self.width, self.width * 2, self.width * 4, self.width * 8, self.width * 8]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(ch[:-1], ch[1:]):
            layers += [
                nn.Conv2d(c_in, c_out, kernel_size=4, stride=2, padding=1),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        layers.append(nn.Conv2d(ch[-1], 1, kernel_size=self.patch_px // 32, stride=1, padding=0))
        self.net = nn.Sequential(*layers)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Score patches.

        Parameters
        ----------
        x : torch.Tensor, shape (B, 1, d, d)
            z-scored noise patches.

        Returns
        -------
        torch.Tensor, shape (B,)
            Critic scores (higher: more like the real noise).
        """
        if x.shape[-2:] != (self.patch_px, self.patch_px):
            raise ValueError(f"critic built for {self.patch_px} px patches got shape {tuple(x.shape)}")
        return self.net(x).reshape(x.shape[0])


def _init_weights(module: nn.Module) -> None:
    """DCGAN initialisation: N(0, 0.02) convolutions, N(1, 0.02) batch-norm scales."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def gan_architecture(*, patch_px: int, latent_dim: int, width: int, spatial_latent: bool = False) -> dict:
    """Describe a generator for ``gan.json`` (JSON-ready)."""
    return {
        "name": "nt2c.noise.networks.Generator",
        "patch_px": check_patch_px(patch_px),
        "latent_dim": int(latent_dim),
        "width": int(width),
        "spatial_latent": bool(spatial_latent),
        "layers": 6,
        "output": "linear (z-score units)",
    }
