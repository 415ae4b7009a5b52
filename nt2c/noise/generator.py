"""The trained generator on disk: saving, loading and sampling noise patches.

``RUN/models/gan.safetensors`` holds the generator's weights; its JSON sidecar ``gan.json`` holds the
architecture, the z-score of the training patches (``patch = std * G(z) + mean``) and the training settings,
so generated noise comes back in the units of the extracted patches.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from nt2c.errors import InputError
from nt2c.io import atomic_path, read_json, write_json

__all__ = ["save_generator", "load_generator", "generator_paths", "sample_noise"]


def save_generator(path: str | os.PathLike, trained, *, extra: dict | None = None) -> tuple[Path, Path]:
    """Write the generator to ``path`` (safetensors) and its sidecar ``path.with_suffix('.json')``.

    The sidecar holds the architecture, the normalisation (``mean``, ``std``: ``patch = std * G(z) + mean``)
    and the training settings, plus ``extra``.
    """
    from safetensors.torch import save_file

    from nt2c.noise.networks import gan_architecture

    path = Path(path)
    s = trained.settings
    tensors = {k: v.detach().cpu().contiguous() for k, v in trained.generator.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "model": "nt2c.noise.networks.Generator"})
    sidecar = {
        "model": "gan-generator",
        "architecture": gan_architecture(
            patch_px=s.patch_px, latent_dim=s.latent_dim, width=s.width, spatial_latent=s.spatial_latent
        ),
        "normalisation": {
            "kind": "z-score over the training patches",
            "mean": trained.mean,
            "std": trained.std,
            "inverse": "patch = std * G(z) + mean",
        },
        "latent": "standard normal",
        "settings": s.to_dict(),
        "iterations_done": len(trained.curves.get("iteration", [])),
        **(extra or {}),
    }
    json_path = write_json(path.with_suffix(".json"), sidecar)
    return path, json_path


def generator_paths(model_path) -> tuple[Path, Path]:
    """Return the generator file and its sidecar for a model path, its sidecar or a run directory."""
    path = Path(model_path)
    if path.is_dir():  # a run directory
        path = path / "models" / "gan.safetensors"
    if path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    sidecar = path.with_suffix(".json")
    if not path.is_file() or not sidecar.is_file():
        raise InputError(
            f"no trained GAN at {path} (with sidecar {sidecar.name}); "
            "train one with `nt2c train-gan --run RUN`."
        )
    return path, sidecar


def load_generator(model_path, *, device: str = "auto"):
    """Load a trained generator and its sidecar.

    Parameters
    ----------
    model_path : path-like
        ``gan.safetensors`` (or its ``.json`` sidecar, or a run directory).
    device : str

    Returns
    -------
    generator : nt2c.noise.networks.Generator
        In evaluation mode, on ``device``.
    meta : dict
        The sidecar (architecture, normalisation, settings).
    """
    from safetensors.torch import load_file

    from nt2c.device import resolve_device
    from nt2c.noise.networks import Generator

    path, sidecar = generator_paths(model_path)
    meta = read_json(sidecar)
    try:
        arch = meta["architecture"]
        norm = meta["normalisation"]
        gen = Generator(
            patch_px=arch["patch_px"],
            latent_dim=arch["latent_dim"],
            width=arch["width"],
            spatial_latent=bool(arch.get("spatial_latent", False)),
        )
        float(norm["mean"]), float(norm["std"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{sidecar} is not a GAN sidecar ({exc!r} missing); train the GAN again.") from exc
    try:
        state = load_file(str(path))
        gen.load_state_dict(state)
    except Exception as exc:
        raise InputError(
            f"{path} does not hold the generator described in {sidecar.name} ({exc}); train the GAN again."
        ) from exc
    dev = resolve_device(device)
    return gen.to(dev).eval(), meta


def sample_noise(
    model_path, n: int, *, seed: int = 0, device: str = "auto", batch_size: int = 256
) -> np.ndarray:
    """Generate noise patches with a trained GAN.

    Parameters
    ----------
    model_path : path-like
        ``RUN/models/gan.safetensors`` (or its sidecar, or the run directory).
    n : int
        Number of patches.
    seed : int
        Seed of the latent vectors; the same seed gives the same patches for any ``batch_size``.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda[:N]"``.
    batch_size : int
        Patches per forward pass (memory only).

    Returns
    -------
    numpy.ndarray, float32, shape (n, d, d)
        Noise in the units of the training patches (``std * G(z) + mean``).
    """
    import torch

    if int(n) < 1:
        raise InputError(f"n = {n}: ask for at least one noise patch.")
    if int(batch_size) < 1:
        raise InputError(f"batch_size = {batch_size} must be at least 1.")
    n, batch_size = int(n), int(batch_size)
    gen, meta = load_generator(model_path, device=device)
    dev = next(gen.parameters()).device
    mean, std = float(meta["normalisation"]["mean"]), float(meta["normalisation"]["std"])
    d = gen.patch_px
    out = np.empty((n, d, d), dtype=np.float32)
    rng = torch.Generator().manual_seed(int(seed))
    block = 4096  # latents are drawn in fixed blocks, so batch_size does not change them
    with torch.no_grad():
        for b0 in range(0, n, block):
            z_block = torch.randn(block, gen.latent_size, generator=rng)[: min(block, n - b0)]
            for s0 in range(0, z_block.shape[0], batch_size):
                z = z_block[s0 : s0 + batch_size].to(dev)
                x = gen(z)[:, 0].float().cpu().numpy()
                out[b0 + s0 : b0 + s0 + len(x)] = x * std + mean
    return out
