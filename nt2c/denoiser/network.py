"""The U-Net denoiser of NT2C (paper section 2.1.2, Fig. 2).

Five convolution + 2x2 max-pooling blocks take the image down to 1/32 of its size, five nearest-neighbour
up-sampling blocks bring it back, and skip connections concatenate each encoder level (and, at full
resolution, the input itself) with the mirrored decoder level. Activations are LeakyReLU(0.1); there is no
normalisation layer, and the output layer is linear (the network predicts the clean image in the normalised
units of its input, see :mod:`nt2c.denoiser.training`).

Choice of the default (width 32, first kernel 3)
------------------------------------------------
The public NT2C code uses Topaz-Denoise's ``UDenoiseNet``: 48 channels, an 11x11 first convolution, decoder
blocks of ``2 * 48`` channels and a full-resolution block of 97 -> 64 -> 32 -> 1 channels, about 156 k
multiply-accumulates (MAC) per input pixel, most of it in the two finest decoder levels. This module keeps
Fig. 2's topology but gives every decoder block ``width`` output channels and the full-resolution block
``width // 2``: ``UNet().macs_per_pixel()`` is 19.6 k, 8x less.

Measured with ``benchmarks/bench_quality.py --variants --variant-steps 80 --no-main`` (4 training micrographs
of 1024^2 px simulated with the default parameters, 256 pairs of 256^2 px, 2 held-out micrographs, PSNR after
a scale-and-offset fit; raw 23.12 dB, best Gaussian filter 24.60 dB, BM3D 23.11 dB), each variant trained for
the same 80 steps of the quick profile's settings (a short budget: early-training differences, one seed):

=============  =========  =============  ======================  ===========================
variant        kMAC/px    PSNR (dB)      train CPU s (80 steps)  denoise CPU s, 1024^2 px
=============  =========  =============  ======================  ===========================
width 16       5.0        23.49          78                      --
width 32       19.6       24.06          85                      4.0-4.4
width 48       43.8       24.94          119                     6.7-6.9
32, 11x11      23.2       24.25          128                     --
32, depth 4    19.5       24.96          46                      --
=============  =========  =============  ======================  ===========================

(CPU times on a 2-core machine shared with other jobs, so +-30 %.) Width 16 loses; an 11x11 first kernel costs
more without a clear gain; width 48 learns faster per step but costs 1.4x the training and 1.6x the inference
time, which would take the quick profile's coarse training (300 steps, 25.62 dB at width 32) past ~4 minutes
on 2 cores, so width 32 is the default and the ``full`` (GPU) profile uses width 48. Depth 4 did as well as
width 48 in this short run; the default keeps the paper's five pooling levels (a larger context for large
particles), which a longer comparison should revisit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["UNet", "build_model", "model_config", "pad_to_multiple"]


def _conv(c_in: int, c_out: int, kernel: int, slope: float) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2), nn.LeakyReLU(slope, inplace=True)]


class UNet(nn.Module):
    """U-Net denoiser for single-channel images of any size.

    Parameters
    ----------
    width : int
        Channels of every encoder level and decoder block (Topaz's UDenoiseNet uses 48).
    first_kernel : int
        Side of the first (full-resolution) convolution kernel, odd (UDenoiseNet uses 11).
    depth : int
        Number of max-pooling (and up-sampling) blocks; the paper's network has 5.
    negative_slope : float
        Slope of the LeakyReLU activations.

    Notes
    -----
    ``forward`` takes ``(batch, 1, ny, nx)`` float tensors of any size: it reflect-pads the bottom and right
    edges up to a multiple of ``2**depth`` (edge replication when the image is smaller than the padding) and
    crops the output back, so the output always has the input's shape.

    Examples
    --------
    >>> net = UNet(width=8)
    >>> net(torch.zeros(2, 1, 45, 70)).shape
    torch.Size([2, 1, 45, 70])
    """

    def __init__(self, width: int = 32, first_kernel: int = 3, depth: int = 5, negative_slope: float = 0.1):
        super().__init__()
        if width < 2 or first_kernel < 1 or first_kernel % 2 == 0 or not 1 <= depth <= 8:
            raise ValueError(
                f"UNet(width={width}, first_kernel={first_kernel}, depth={depth}): need width >= 2, an odd "
                "first_kernel >= 1 and 1 <= depth <= 8."
            )
        self.width = int(width)
        self.first_kernel = int(first_kernel)
        self.depth = int(depth)
        self.negative_slope = float(negative_slope)
        w, s = self.width, self.negative_slope
        # encoder: level l (l = 0 .. depth-1) convolves at 1/2**l resolution, then max-pools
        self.encoders = nn.ModuleList(
            [
                nn.Sequential(*_conv(1 if level == 0 else w, w, first_kernel if level == 0 else 3, s))
                for level in range(depth)
            ]
        )
        self.bottleneck = nn.Sequential(*_conv(w, w, 3, s))
        # decoder: block k up-samples to level depth-1-k and merges that level's pooled features
        # (for the last block: the input image itself)
        self.decoders = nn.ModuleList()
        for k in range(depth):
            finest = k == depth - 1
            c_skip = 1 if finest else w
            c_out = max(w // 2, 4) if finest else w
            self.decoders.append(nn.Sequential(*_conv(w + c_skip, c_out, 3, s), *_conv(c_out, c_out, 3, s)))
        self.head = nn.Conv2d(max(w // 2, 4), 1, 1)  # linear output

    @property
    def multiple(self) -> int:
        """Input sides are padded internally to a multiple of this (``2**depth``)."""
        return 2**self.depth

    def config(self) -> dict:
        """Return the constructor arguments (what :func:`build_model` needs to rebuild the network)."""
        return {
            "arch": "nt2c.UNet",
            "width": self.width,
            "first_kernel": self.first_kernel,
            "depth": self.depth,
            "negative_slope": self.negative_slope,
        }

    def receptive_radius(self) -> int:
        """Upper bound (px) on how far an output pixel's value depends on input pixels.

        Sum over layers of the kernel half-width times the layer's stride, plus the pooling/up-sampling
        offsets. Tiles whose cropped margins exceed this give exactly the one-pass result (see
        :func:`nt2c.denoiser.inference.denoise_micrograph`).
        """
        r = self.first_kernel // 2
        for level in range(1, self.depth):
            r += 2**level  # 3x3 conv at level `level`
        r += 2**self.depth  # bottleneck
        for level in range(self.depth):
            r += 2 * 2**level  # two 3x3 convs per decoder block
        r += 2 * (2**self.depth - 1)  # pooling windows and nearest up-sampling
        return r

    def macs_per_pixel(self) -> float:
        """Multiply-accumulates per input pixel of one forward pass (convolutions only)."""
        w, d = self.width, self.depth
        total = self.first_kernel**2 * w
        total += sum(9 * w * w / 4**level for level in range(1, d))
        total += 9 * w * w / 4**d
        for k in range(d):
            level = d - 1 - k
            finest = k == d - 1
            c_skip = 1 if finest else w
            c_out = max(w // 2, 4) if finest else w
            total += 9 * ((w + c_skip) * c_out + c_out * c_out) / 4**level
        total += max(w // 2, 4)
        return float(total)

    def _pad(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        ny, nx = x.shape[-2:]
        return pad_to_multiple(x, self.multiple), ny, nx

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Denoise a batch.

        Parameters
        ----------
        x : torch.Tensor, shape (batch, 1, ny, nx)
            Normalised noisy images.

        Returns
        -------
        torch.Tensor, shape (batch, 1, ny, nx)
        """
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"UNet expects a (batch, 1, ny, nx) tensor, got shape {tuple(x.shape)}")
        x, ny, nx = self._pad(x)
        skips = [x]
        h = x
        for level, enc in enumerate(self.encoders):
            h = F.max_pool2d(enc(h), 2)
            if level < self.depth - 1:
                skips.append(h)
        h = self.bottleneck(h)
        for dec in self.decoders:
            skip = skips.pop()
            h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = dec(torch.cat([h, skip], dim=1))
        return self.head(h)[..., :ny, :nx]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad the bottom and right edges of ``x`` (shape (..., ny, nx)) up to a multiple of ``multiple``.

    Reflection (without repeating the edge pixel) when the image is larger than the padding, else edge
    replication. :class:`UNet` and tiled inference both pad with this function, so that they agree exactly.
    """
    ny, nx = x.shape[-2:]
    py, px = (-ny) % multiple, (-nx) % multiple
    if not (py or px):
        return x
    mode = "reflect" if (py < ny and px < nx) else "replicate"
    squeeze = x.ndim == 2
    if squeeze:
        x = x[None, None]
    x = F.pad(x, (0, px, 0, py), mode=mode)
    return x[0, 0] if squeeze else x


def build_model(config: dict) -> UNet:
    """Rebuild a network from :meth:`UNet.config` (the ``model`` entry of a JSON sidecar).

    Raises
    ------
    ValueError
        For an unknown architecture or bad arguments.
    """
    config = dict(config)
    arch = config.pop("arch", "nt2c.UNet")
    if arch != "nt2c.UNet":
        raise ValueError(f"unknown architecture {arch!r}; this nt2c version builds 'nt2c.UNet'.")
    allowed = {"width", "first_kernel", "depth", "negative_slope"}
    unknown = set(config) - allowed
    if unknown:
        raise ValueError(f"unknown UNet arguments {sorted(unknown)}; allowed: {sorted(allowed)}.")
    return UNet(**config)


def model_config(model: nn.Module) -> dict:
    """Return the rebuild configuration of ``model`` (a :class:`UNet`)."""
    if not isinstance(model, UNet):
        raise TypeError(f"expected an nt2c UNet, got {type(model).__name__}")
    return model.config()
