"""Helpers for the tutorial notebooks: one call to set a notebook up, and small display utilities.

Notebooks stay thin: the logic they show lives in tested package functions; what is here only wires a
notebook's ``parameters`` cell to the package.
"""

from __future__ import annotations

import os
from pathlib import Path

from nt2c.config import PROFILES, ExperimentParams
from nt2c.device import resolve_device, seed_everything
from nt2c.errors import ConfigError
from nt2c.progress import set_progress
from nt2c.run.rundir import RunDir

__all__ = ["setup_notebook", "shared_data_dir"]


def setup_notebook(
    *,
    profile: str = "quick",
    run_dir: str | os.PathLike = "runs/tutorial",
    seed: int = 0,
    device: str = "auto",
    params: ExperimentParams | dict | str | os.PathLike | None = None,
    progress: bool = True,
) -> RunDir:
    """Validate a notebook's parameters, seed everything and open its run directory.

    Parameters
    ----------
    profile : {"smoke", "quick", "full"}
        Run profile (sizes and lengths of every stage).
    run_dir : path-like
        Run directory shared by the notebooks of the series.
    seed : int
        Random seed for Python, NumPy and torch.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda[:N]"``.
    params : ExperimentParams, dict, path-like or None
        Experiment parameters for a new run (default: those already in ``run_dir``, else the embedded
        example).
    progress : bool
        Show progress bars.

    Returns
    -------
    RunDir
    """
    if profile not in PROFILES:
        raise ConfigError(f"profile = {profile!r}: unknown profile; use one of {', '.join(PROFILES)}.")
    resolve_device(device)  # fails early on a bad device
    seed_everything(seed)
    set_progress(progress)
    run = RunDir(run_dir)
    run.init_params(params)
    run.bind_profile(profile)  # a notebook in another profile than the run's is refused here, not later
    try:  # a readable default look for every figure of the series
        import matplotlib.pyplot as plt

        plt.rcParams.update({"figure.dpi": 90, "image.cmap": "gray", "axes.titlesize": "medium"})
    except ImportError:  # pragma: no cover
        pass
    return run


def shared_data_dir() -> Path | None:
    """Return the development data folder (``../shared/data`` or ``$NT2C_SHARED_DATA``) if present, else None.

    Notebooks use it for optional real-data sections and skip them when it is absent.
    """
    candidates = [os.environ.get("NT2C_SHARED_DATA")]
    here = Path(__file__).resolve().parents[2]
    candidates += [
        str(here.parent / "shared" / "data"),
        str(Path.cwd().parent / "shared" / "data"),
        str(Path.cwd().parent.parent / "shared" / "data"),
    ]
    for cand in candidates:
        if cand and Path(cand).is_dir():
            return Path(cand)
    return None
