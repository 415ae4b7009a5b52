"""Shared fixtures: the optional development data folder, small run directories, quiet progress bars.

Torch runs every test on ``NT2C_TEST_THREADS`` intra-op threads (default 1), whatever the machine's core count
and whichever test files are collected: the thread count changes the order of float reductions, so a trained
model's numbers would otherwise depend on the machine and on the selection of tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("NT2C_PROGRESS", "0")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parent.parent


def _test_threads() -> int:
    threads = os.environ.get("NT2C_TEST_THREADS", "1")
    if not threads.isdigit() or int(threads) < 1:
        raise pytest.UsageError(f"NT2C_TEST_THREADS={threads!r}: give a positive number of threads, e.g. 1.")
    return int(threads)


def pytest_configure(config):
    import torch

    torch.set_num_threads(_test_threads())


@pytest.fixture(autouse=True)
def _pinned_torch_threads():
    """Start every test on the pinned thread count, whatever a test module or an earlier test set."""
    import torch

    threads = _test_threads()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


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
    """Make a fresh run directory with the default parameters."""
    from nt2c.run.rundir import RunDir

    run = RunDir(tmp_path / "run")
    run.init_params()
    return run


@pytest.fixture()
def model_path(tmp_path):
    """Save a tiny seeded U-Net as safetensors + JSON sidecar (for denoising tests)."""
    import torch

    from nt2c.denoiser.inference import save_model
    from nt2c.denoiser.network import UNet

    torch.manual_seed(0)
    weights, _ = save_model(UNet(width=4, depth=3), tmp_path / "model" / "coarse.safetensors")
    return weights
