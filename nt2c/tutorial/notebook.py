"""Helpers for the tutorial notebooks: one call to set a notebook up, and small display utilities.

Notebooks stay thin: the logic they show lives in tested package functions; what is here only wires a
notebook's ``parameters`` cell to the package.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from nt2c.config import PROFILES, ExperimentParams
from nt2c.device import resolve_device, seed_everything
from nt2c.errors import ConfigError
from nt2c.progress import set_progress
from nt2c.run.rundir import RunDir

__all__ = ["setup_notebook", "shared_data_dir", "real_micrograph", "RealMicrograph"]


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


@dataclass(frozen=True)
class RealMicrograph:
    """A real micrograph for a notebook's real-data section.

    Attributes
    ----------
    path : pathlib.Path
    pixel_size_A : float
        Pixel size (Angstrom).
    source : str
        Where it comes from, for the notebook to print.
    """

    path: Path
    pixel_size_A: float
    source: str


#: The real micrograph of the development data (EMPIAR-10025, with a contaminant and RELION picks beside it).
DEVELOPMENT_MICROGRAPH = ("real", "Ucsf_stack_1142_DW.mrc")
#: Dataset of data_manifests/ whose first file stands in where the development data is absent.
TUTORIAL_DATASET = "EMPIAR-10146"


def real_micrograph(*, fetch: bool = True) -> RealMicrograph | None:
    """Find a real micrograph: the development data's, else the tutorial dataset's first file.

    1. ``shared/data/real/Ucsf_stack_1142_DW.mrc`` (EMPIAR-10025) when :func:`shared_data_dir` finds it;
    2. else the first micrograph of ``data_manifests/EMPIAR-10146.yaml`` (an apoferritin average), from the
       cache (:func:`nt2c.data.cache_dir`) or, with ``fetch``, downloaded through :func:`nt2c.data.fetch`.

    Parameters
    ----------
    fetch : bool
        Allow a download (the notebooks pass ``profile != "smoke"``: tests and CI never download).

    Returns
    -------
    RealMicrograph or None
        None when neither is available; the reason is printed (offline: what to download, and where).
    """
    from nt2c.data import cache_dir, load_manifest
    from nt2c.data import fetch as fetch_dataset
    from nt2c.errors import DataError

    shared = shared_data_dir()
    if shared is not None and (shared.joinpath(*DEVELOPMENT_MICROGRAPH)).is_file():
        path = shared.joinpath(*DEVELOPMENT_MICROGRAPH)
        from nt2c.io import read_image

        return RealMicrograph(path, float(read_image(path)[1]), "EMPIAR-10025 (nt2c's development data)")
    manifest = load_manifest(TUTORIAL_DATASET)
    cached = cache_dir() / manifest.name / manifest.files[0].name
    source = f"{manifest.name} ({manifest.title})"
    if not cached.is_file():
        if not fetch:
            print(
                f"no real micrograph here: the development data is absent and downloads are off (smoke "
                f"profile); `nt2c fetch {manifest.name} --max-files 1` gets one."
            )
            return None
        try:
            cached = fetch_dataset(manifest.name, max_files=1)[0]
        except DataError as exc:
            print(f"no real micrograph here: {exc}")
            return None
    return RealMicrograph(cached, float(manifest.experiment.pixel_size_A), source)
