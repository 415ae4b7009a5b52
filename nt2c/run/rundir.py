"""The run directory: where every stage reads its inputs and writes its artefacts.

Layout (created on demand)::

    RUN/params.yaml            experiment parameters (ExperimentParams)
    RUN/simulated/             simulated micrographs, clean targets, coordinates, training pairs
    RUN/models/                *.safetensors weights, each with a *.json sidecar of its model config
    RUN/checkpoints/           resumable training state
    RUN/noise/                 extracted noise patches and their table
    RUN/pairs/                 re-weighted training pairs
    RUN/denoised/              denoised micrographs
    RUN/report/                figures, tables, learning curves
    RUN/stamps/<stage>.json    what produced each stage's outputs (version, time, command, settings, files)

A stage is *complete* when its stamp exists, every file it lists is present with the recorded size and its
recorded settings equal the requested ones; a complete stage is skipped.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nt2c.config import ExperimentParams, load_params, save_params
from nt2c.errors import ConfigError, StageError
from nt2c.io import read_json, write_json

__all__ = ["RunDir"]

_SUBDIRS = ("simulated", "models", "checkpoints", "noise", "pairs", "denoised", "report", "stamps")


class RunDir:
    """A run directory (see the module docstring for its layout).

    Parameters
    ----------
    path : path-like
        The folder; created when missing.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(
                f"run directory {self.path} exists and is not a folder; choose another --run/--out."
            )
        self.path.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # -- folders ---------------------------------------------------------------------------------------
    def subdir(self, name: str) -> Path:
        """``RUN/name``, created on demand."""
        if name not in _SUBDIRS:
            raise ValueError(f"unknown run sub-folder {name!r}")
        folder = self.path / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    simulated = property(lambda self: self.subdir("simulated"))
    models = property(lambda self: self.subdir("models"))
    checkpoints = property(lambda self: self.subdir("checkpoints"))
    noise = property(lambda self: self.subdir("noise"))
    pairs = property(lambda self: self.subdir("pairs"))
    denoised = property(lambda self: self.subdir("denoised"))
    report = property(lambda self: self.subdir("report"))

    # -- parameters -------------------------------------------------------------------------------------
    @property
    def params_path(self) -> Path:
        return self.path / "params.yaml"

    def init_params(
        self, params: ExperimentParams | dict | str | os.PathLike | None = None
    ) -> ExperimentParams:
        """Write ``RUN/params.yaml`` (or check that the one there agrees) and return the parameters.

        Without ``params`` an existing ``params.yaml`` is used, else the defaults (the embedded example).
        A run directory keeps one parameter set: asking for different parameters in a run that already has
        some is an error, since its artefacts were made with the old ones.
        """
        if params is None:
            if self.params_path.is_file():
                return self.params()
            params = load_params()
        else:
            params = load_params(params)
        if self.params_path.is_file():
            existing = self.params()
            if existing != params:
                changed = sorted(k for k, v in params.to_dict().items() if existing.to_dict().get(k) != v)
                raise ConfigError(
                    f"{self.params_path} already holds other parameters (differing keys: {', '.join(changed)}); "
                    "use a new run directory, or edit params.yaml and delete the stages to redo."
                )
            return existing
        save_params(params, self.params_path)
        return params

    def params(self) -> ExperimentParams:
        """The parameters in ``RUN/params.yaml``."""
        if not self.params_path.is_file():
            raise StageError(
                f"{self.params_path} is missing; start the run with `nt2c simulate --params P.yaml --out {self.path}` "
                "or `nt2c run`, or copy a parameter file there."
            )
        return load_params(self.params_path)

    # -- stamps ------------------------------------------------------------------------------------------
    def stamp_path(self, stage: str) -> Path:
        return self.subdir("stamps") / f"{stage}.json"

    def read_stamp(self, stage: str) -> dict | None:
        path = self.stamp_path(stage)
        return read_json(path) if path.is_file() else None

    def write_stamp(
        self,
        stage: str,
        outputs: Iterable[str | os.PathLike],
        settings: dict[str, Any],
        *,
        seconds: float | None = None,
    ) -> Path:
        """Record that ``stage`` produced ``outputs`` with ``settings``."""
        from nt2c import __version__

        files = {}
        for out in outputs:
            out = Path(out)
            if not out.exists():
                raise StageError(
                    f"stage {stage} said it wrote {out}, which does not exist (a bug; please report)."
                )
            try:
                rel = out.resolve().relative_to(self.path.resolve())
            except ValueError:
                raise StageError(
                    f"stage {stage} wrote {out}, outside the run directory {self.path} (a bug)."
                ) from None
            files[str(rel)] = out.stat().st_size if out.is_file() else None
        stamp = {
            "stage": stage,
            "nt2c_version": __version__,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seconds": None if seconds is None else round(seconds, 3),
            "command": " ".join(sys.argv),
            "params": self.params().to_dict() if self.params_path.is_file() else None,
            "settings": settings,
            "outputs": files,
        }
        return write_json(self.stamp_path(stage), stamp)

    def is_complete(self, stage: str, settings: dict[str, Any] | None = None) -> bool:
        """Whether ``stage``'s stamp is there, its outputs are intact and (if given) its settings agree."""
        try:
            stamp = self.read_stamp(stage)
        except Exception:
            return False
        if not stamp:
            return False
        if settings is not None and _comparable(stamp.get("settings")) != _comparable(settings):
            return False
        if self.params_path.is_file() and stamp.get("params") not in (None, self.params().to_dict()):
            return False
        for rel, size in stamp.get("outputs", {}).items():
            path = self.path / rel
            if not path.exists() or (size is not None and path.stat().st_size != size):
                return False
        return True

    def invalidate(self, stage: str) -> None:
        """Forget that ``stage`` ran (its outputs stay until the stage runs again)."""
        path = self.stamp_path(stage)
        if path.exists():
            path.unlink()


def _comparable(settings):
    """Settings without the keys that do not change results (device placement)."""
    if not isinstance(settings, dict):
        return settings
    return {k: v for k, v in settings.items() if k != "device"}
