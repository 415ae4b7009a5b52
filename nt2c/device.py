"""Device selection and seeding for reproducible torch code on CPU and CUDA."""

from __future__ import annotations

import os
import random

import numpy as np

from nt2c.errors import ConfigError

__all__ = ["resolve_device", "seed_everything", "device_report"]


def resolve_device(device: str = "auto"):
    """Return the :class:`torch.device` meant by ``device``.

    Parameters
    ----------
    device : str
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Returns
    -------
    torch.device
    """
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(
            f"device={device!r} is not a torch device; use 'auto', 'cpu' or 'cuda[:N]'."
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device={device!r} was asked for but CUDA is not available here; use device='auto' or 'cpu'."
        )
    return dev


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and torch, and return a fresh NumPy generator seeded with ``seed``."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    return np.random.default_rng(seed)


def device_report() -> dict:
    """Versions and devices of this environment, for notebook 00 and run stamps."""
    import platform

    import torch

    from nt2c import __version__

    info = {
        "nt2c": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cpu_threads": torch.get_num_threads(),
        "device_auto": str(resolve_device("auto")),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = props.name
        info["gpu_memory_GiB"] = round(props.total_memory / 2**30, 1)
        info["gpu_count"] = torch.cuda.device_count()
    return info
