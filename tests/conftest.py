"""Shared fixtures: the optional development data folder, small run directories, quiet progress bars."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("NT2C_PROGRESS", "0")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parent.parent


def _shared_data() -> Path | None:
    for cand in (os.environ.get("NT2C_SHARED_DATA"), REPO.parent / "shared" / "data"):
        if cand and Path(cand).is_dir():
            return Path(cand)
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real PDB models, a real micrograph); tests using it skip when it is absent."""
    path = _shared_data()
    if path is None:
        pytest.skip("../shared/data is absent (set NT2C_SHARED_DATA to run the real-data tests)")
    return path


@pytest.fixture()
def run_dir(tmp_path):
    """A fresh run directory with the default parameters."""
    from nt2c.run.rundir import RunDir

    run = RunDir(tmp_path / "run")
    run.init_params()
    return run


@pytest.fixture()
def model_path(tmp_path):
    """A tiny seeded U-Net saved as safetensors + JSON sidecar (for denoising tests)."""
    import torch

    from nt2c.denoiser.inference import save_model
    from nt2c.denoiser.network import UNet

    torch.manual_seed(0)
    weights, _ = save_model(UNet(width=4, depth=3), tmp_path / "model" / "coarse.safetensors")
    return weights
