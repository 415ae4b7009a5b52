"""The GAN's training data: validated noise patches and seeded batches of augmented crops.

Each batch holds ``batch_size`` distinct patches (one shuffle of the patches is used up before the next
begins), each randomly cropped to the GAN's size, turned by a random multiple of 90 degrees and flipped
(``augment``). A CPU ``torch.Generator`` draws everything, so a CPU and a CUDA run see the same batches.
"""

from __future__ import annotations

import logging

import numpy as np

from nt2c.config import GanConfig
from nt2c.errors import InputError
from nt2c.io import validate_image

__all__ = ["check_patches", "PatchBatches"]

log = logging.getLogger(__name__)


def check_patches(patches, settings: GanConfig, n_ranks: int = 1) -> tuple[np.ndarray, int]:
    """Validate the patches; return them as (n, h, w) and the batch size to use (at most ``n``)."""
    arr = validate_image(patches, name="noise patches", ndim=(2, 3))
    if arr.ndim == 2:
        arr = arr[None]
    n, h, w = arr.shape
    if min(h, w) < settings.patch_px:
        raise InputError(
            f"noise patches are {h} x {w} px, smaller than the GAN's patch_px = {settings.patch_px}; "
            f"extract larger patches (extract-noise patch_size >= {settings.patch_px}) "
            "or train a smaller GAN (patch_px=64)."
        )
    if float(arr.std()) == 0.0:
        raise InputError("noise patches are constant; noise patches must vary (check the extraction).")
    batch = settings.batch_size
    if n < batch:
        batch = n - n % n_ranks
        if batch < max(2, n_ranks):
            raise InputError(
                f"{n} noise patches are too few to train the GAN (a batch needs at least {max(2, n_ranks)}); "
                "extract more (more micrographs, a lower extract-noise threshold) or use "
                "reweight.noise_source=patches, which needs no GAN."
            )
        log.warning(
            "only %d noise patches for batch_size = %d: training the GAN with batches of %d "
            "(extract more patches for a better noise model)",
            n,
            settings.batch_size,
            batch,
        )
    return arr, batch


class PatchBatches:
    """Random augmented crops of z-scored patches, drawn with a CPU torch.Generator.

    Every call draws the whole (global) batch of ``batch_size``; ``rows`` selects the rows returned (under
    torchrun ``slice(rank, None, world_size)``), so the random stream does not depend on the rank. ``order``
    (the rest of the current shuffle of the patches) is part of the state a checkpoint keeps.
    """

    def __init__(self, data, patch_px: int, batch_size: int, augment: bool, generator, rows=slice(None)):
        self.data = data  # (n, h, w) float32 tensor on the training device
        self.d = patch_px
        self.b = batch_size
        self.augment = augment
        self.g = generator
        self.rows = rows
        self.order: list[int] = []

    def __call__(self):
        """Draw the next global batch; return its ``rows``: (m, 1, patch_px, patch_px) float32 crops."""
        import torch

        n, h, w = self.data.shape
        if len(self.order) < self.b:
            self.order += torch.randperm(n, generator=self.g).tolist()
        idx, self.order = self.order[: self.b], self.order[self.b :]
        ys = torch.randint(0, h - self.d + 1, (self.b,), generator=self.g).tolist()
        xs = torch.randint(0, w - self.d + 1, (self.b,), generator=self.g).tolist()
        rots = torch.randint(0, 4, (self.b,), generator=self.g).tolist()
        flips = torch.randint(0, 2, (self.b,), generator=self.g).tolist()
        crops = []
        r = self.rows
        for i, y, x, k, f in zip(idx[r], ys[r], xs[r], rots[r], flips[r]):
            c = self.data[i, y : y + self.d, x : x + self.d]
            if self.augment:
                c = torch.rot90(c, k, dims=(0, 1))
                if f:
                    c = torch.flip(c, dims=(1,))
            crops.append(c)
        return torch.stack(crops)[:, None].contiguous()
