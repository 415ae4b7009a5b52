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
    RUN/stamps/<stage>.json    what produced each stage's outputs (version, time, command, settings,
                               inputs, files with their size and sha256, and the stamp's own digest)
    RUN/run.json               the run's profile, the stage settings given explicitly, the micrographs
                               asked for and those skipped as unreadable, the parameter keys defaulted

A stage is *complete* when its stamp exists, every file it lists is present with the recorded size (and, when
its modification time changed, the recorded sha256), its recorded settings and parameters equal the requested
ones and the inputs it consumed are still the same: the digests of the stamps of the stages it read from
(a stamp's digest covers its settings, parameters, inputs and the sha256 of its files), the parameters and
the external files it read (size and modification time of the user's micrographs). So a stage that re-runs and
writes different files makes every stage after it incomplete, and they re-run too; a stage re-run that writes
the same bytes (a resumed, deterministic training) leaves them complete.

The run keeps one profile: a call with another profile on a run that has one is refused unless it asks
for the change explicitly (``change_profile=True``, ``--change-profile``). Stage settings given explicitly
(options of a stage command, ``nt2c run --set``, keyword arguments of :func:`nt2c.run_stage`) are recorded in
``run.json`` and apply to every later call on the run until they are given again with another value.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nt2c.config import PROFILES, ExperimentParams, load_params, save_params
from nt2c.errors import ConfigError, StageError
from nt2c.io import read_json, write_json

__all__ = ["RunDir", "file_sha256", "canonical_digest"]

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
        """``RUN/params.yaml``."""
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
                    f"{self.params_path} already holds other parameters (differing keys: "
                    f"{', '.join(changed)}); "
                    "use a new run directory, or edit params.yaml and delete the stages to redo."
                )
            return existing
        save_params(params, self.params_path)
        return params

    def params(self) -> ExperimentParams:
        """Read the parameters in ``RUN/params.yaml``."""
        if not self.params_path.is_file():
            raise StageError(
                f"{self.params_path} is missing; start the run with "
                f"`nt2c simulate --params P.yaml --out {self.path}` "
                "or `nt2c run`, or copy a parameter file there."
            )
        return load_params(self.params_path)

    # -- the run's record: profile, explicit settings, micrographs ------------------------------------------
    @property
    def info_path(self) -> Path:
        """``RUN/run.json``."""
        return self.path / "run.json"

    def read_info(self) -> dict[str, Any]:
        """``RUN/run.json`` (empty when absent)."""
        if not self.info_path.is_file():
            return {}
        info = read_json(self.info_path)
        return info if isinstance(info, dict) else {}

    def update_info(self, **changes: Any) -> dict[str, Any]:
        """Set keys of ``RUN/run.json`` (written only when something changed, and only by rank 0)."""
        from nt2c.run import distributed

        info = self.read_info()
        new = {**info, **changes}
        if new != info and distributed.is_main():
            write_json(self.info_path, new)
        return new

    def profile(self) -> str | None:
        """Return the profile the run was made with (None for a run that has not recorded one)."""
        return self.read_info().get("profile")

    def bind_profile(self, profile: str | None = None, *, change: bool = False) -> str:
        """Return the profile to use in this run; record it in ``RUN/run.json`` the first time.

        Parameters
        ----------
        profile : str or None
            The profile asked for; None: the run's (``"quick"`` for a new run).
        change : bool
            Switch a run made with another profile to ``profile`` (its stages whose settings change re-run).

        Raises
        ------
        ConfigError
            ``profile`` differs from the run's and ``change`` is False.
        """
        recorded = self.profile()
        if recorded is None:  # a run made before run.json: the profile its stamps' settings show
            recorded = self._profile_from_stamps()
        if profile is None:
            profile = recorded or "quick"
        if profile not in PROFILES:
            raise ConfigError(f"profile = {profile!r}: unknown profile; use one of {', '.join(PROFILES)}.")
        if recorded is not None and recorded != profile and not change:
            raise ConfigError(
                f"run {self.path} was made with profile {recorded!r}, not {profile!r}: running it with "
                f"{profile!r} would re-run its stages and overwrite its models. Use profile {recorded!r} "
                f"(--profile {recorded}), another run folder, or switch the run to {profile!r} with "
                "--change-profile (change_profile=True)."
            )
        if recorded != profile:
            self.update_info(profile=profile)
        return profile

    def _profile_from_stamps(self) -> str | None:
        """Guess the profile of a run without ``run.json`` from its stamps (None when none tells)."""
        from nt2c.config import stage_config

        folder = self.path / "stamps"
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                stamp = read_json(path)
                recorded = {
                    k: v for k, v in (stamp.get("settings") or {}).items() if k not in ("device", "seed")
                }
                matches = []
                for profile in PROFILES:
                    defaults = stage_config(stamp.get("stage", path.stem), profile).to_dict()
                    if recorded and all(defaults.get(k) == v for k, v in recorded.items()):
                        matches.append(profile)
            except Exception:
                continue
            if len(matches) == 1:
                return matches[0]
        return None

    def explicit_settings(self, stage: str) -> dict[str, Any]:
        """Return the settings of ``stage`` given explicitly in earlier calls (from ``RUN/run.json``)."""
        return dict((self.read_info().get("settings") or {}).get(stage) or {})

    def record_settings(self, stage: str, values: dict[str, Any]) -> dict[str, Any]:
        """Add explicitly given settings of ``stage`` to ``RUN/run.json``; returns all the recorded ones."""
        values = {k: v for k, v in values.items() if v is not None and k != "device"}
        info = self.read_info()
        every = dict(info.get("settings") or {})
        merged = {**(every.get(stage) or {}), **_jsonable(values)}
        if merged != (every.get(stage) or {}):
            every[stage] = merged
            self.update_info(settings=every)
        return merged

    # -- stamps ------------------------------------------------------------------------------------------
    def stamp_path(self, stage: str) -> Path:
        """``RUN/stamps/<stage>.json``."""
        return self.subdir("stamps") / f"{stage}.json"

    def read_stamp(self, stage: str) -> dict | None:
        """Read ``stage``'s stamp (None when it has none)."""
        path = self.stamp_path(stage)
        return read_json(path) if path.is_file() else None

    def write_stamp(
        self,
        stage: str,
        outputs: Iterable[str | os.PathLike],
        settings: dict[str, Any],
        *,
        seconds: float | None = None,
        inputs: dict[str, Any] | None = None,
    ) -> Path:
        """Record that ``stage`` produced ``outputs`` with ``settings`` from ``inputs``.

        ``inputs`` maps each input the stage consumed to its digest (see the module docstring); None records
        no inputs (a stamp written by hand, which later checks take on trust).
        """
        from nt2c import __version__

        files, hashes, mtimes = {}, {}, {}
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
            if out.is_file():
                hashes[str(rel)] = file_sha256(out)
                mtimes[str(rel)] = out.stat().st_mtime_ns
        params = self.params().to_dict() if self.params_path.is_file() else None
        stamp = {
            "stage": stage,
            "nt2c_version": __version__,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seconds": None if seconds is None else round(seconds, 3),
            "command": " ".join(sys.argv),
            "params": params,
            "settings": settings,
            "inputs": inputs,
            "input_sha256": _input_hashes(inputs),
            "outputs": files,
            "sha256": hashes,
            "mtime_ns": mtimes,
        }
        stamp["digest"] = _stamp_digest(stamp)
        return write_json(self.stamp_path(stage), stamp)

    def stamp_digest(self, stage: str) -> str | None:
        """Return the digest of ``stage``'s stamp (what later stages record as input); None without one."""
        try:
            stamp = self.read_stamp(stage)
        except Exception:
            return None
        if not stamp:
            return None
        return stamp.get("digest") or _stamp_digest(stamp)

    def is_complete(
        self, stage: str, settings: dict[str, Any] | None = None, *, inputs: dict[str, Any] | None = None
    ) -> bool:
        """Tell whether ``stage``'s stamp is there, its outputs intact, its settings and inputs as given.

        A stamp that recorded no inputs (written by hand, or by an nt2c without provenance) is not compared
        against ``inputs``.
        """
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
        if inputs is not None and stamp.get("inputs") is not None and not _same_inputs(stamp, inputs):
            return False
        hashes, mtimes = stamp.get("sha256") or {}, stamp.get("mtime_ns") or {}
        for rel, size in stamp.get("outputs", {}).items():
            path = self.path / rel
            if not path.exists() or (size is not None and path.stat().st_size != size):
                return False
            if rel in hashes and rel in mtimes and path.stat().st_mtime_ns != mtimes[rel]:
                if file_sha256(path) != hashes[rel]:  # replaced by a file of the same size
                    return False
        return True

    def invalidate(self, stage: str) -> None:
        """Forget that ``stage`` ran (its outputs stay until the stage runs again)."""
        path = self.stamp_path(stage)
        if path.exists():
            path.unlink()


def file_sha256(path: str | os.PathLike, *, chunk_bytes: int = 1 << 22) -> str:
    """Return the sha256 hex digest of a file's bytes (read in chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_bytes):
            h.update(block)
    return h.hexdigest()


def canonical_digest(obj: Any) -> str:
    """Return the sha256 of ``obj`` as canonical JSON (sorted keys), the digest of a record."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _stamp_digest(stamp: dict) -> str:
    """Digest what a stamp says about its outputs: settings, parameters, inputs, files' sha256."""
    return canonical_digest(
        {
            "stage": stamp.get("stage"),
            "settings": _comparable(stamp.get("settings")),
            "params": stamp.get("params"),
            "inputs": stamp.get("inputs"),
            "sha256": stamp.get("sha256") or stamp.get("outputs"),
        }
    )


def _comparable(settings):
    """Drop the settings that do not change results (device placement)."""
    if not isinstance(settings, dict):
        return settings
    return {k: v for k, v in settings.items() if k != "device"}


def _input_hashes(inputs: dict[str, Any] | None) -> dict[str, str]:
    """SHA-256 of the input files a stamp records (``inputs["files"]``), to recognise them when moved."""
    out = {}
    for path, state in ((inputs or {}).get("files") or {}).items():
        if state is not None and Path(path).is_file():
            out[path] = file_sha256(Path(path))
    return out


def _same_inputs(stamp: dict[str, Any], inputs: dict[str, Any]) -> bool:
    """Whether ``inputs`` are those ``stamp`` recorded.

    An input file whose size is the same but whose time changed (copied, restored from a backup, the data
    folder provisioned again) is the same input when its content still has the SHA-256 the stamp recorded.
    """
    recorded = stamp["inputs"]
    if recorded == inputs:
        return True
    if {k: v for k, v in recorded.items() if k != "files"} != {
        k: v for k, v in inputs.items() if k != "files"
    }:
        return False
    old, new = recorded.get("files") or {}, inputs.get("files") or {}
    if set(old) != set(new):
        return False
    hashes = stamp.get("input_sha256") or {}
    for path, state in new.items():
        if state == old[path]:
            continue
        if state is None or old[path] is None or state[0] != old[path][0] or path not in hashes:
            return False
        if file_sha256(Path(path)) != hashes[path]:
            return False
    return True
