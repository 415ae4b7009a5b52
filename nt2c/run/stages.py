"""The NT2C pipeline: its stages, their order and dependencies, and resumable execution.

:data:`STAGES` is the one registry of the pipeline: each :class:`Stage` names its function, its settings
model, its command-line module, the stages it reads from and the run folders it writes. The pipeline order
(``nt2c run``), :data:`nt2c.config.STAGE_MODELS` and the stage subcommands
(:data:`nt2c.commands.COMMANDS`) are derived from it.

Each stage is a function ``fn(run, settings, params) -> list[Path]`` living in the module of its idea
(simulation, training, extraction, ...). :func:`run_stage` validates the settings for the run's profile,
runs the stages it depends on when they are missing or out of date, skips a stage whose outputs are complete
and whose inputs did not change, and stamps what it wrote and what it read (see :mod:`nt2c.run.rundir`).
Notebooks, the CLI and ``nt2c run`` all go through it, so each stage can run alone and a killed run resumes
from what is on disk.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nt2c.config import (
    CalibrateConfig,
    CoarseTrainConfig,
    ExtractConfig,
    FineTrainConfig,
    GanConfig,
    ReweightConfig,
    SimulateConfig,
    stage_config,
)
from nt2c.errors import StageError
from nt2c.run import distributed
from nt2c.run.rundir import RunDir, canonical_digest

__all__ = ["Stage", "STAGES", "PIPELINE_STAGES", "run_stage", "stage_status", "stage_inputs", "run_inputs"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    """One pipeline stage.

    Attributes
    ----------
    name : str
        Stage name, CLI subcommand and key of :data:`~nt2c.config.STAGE_MODELS`.
    target : str
        ``"module:function"`` implementing it (imported on first use).
    config : type
        Its settings model (:mod:`nt2c.config`).
    requires : tuple of str
        Stages whose outputs it always reads.
    requires_when : tuple of (str, str, object)
        ``(stage, setting, value)``: also reads ``stage`` when ``settings.<setting> == value``.
    folders : tuple of str
        Run sub-folders it writes (its interrupted temporary files there are removed when it starts).
    command : str
        Module of :mod:`nt2c.commands` implementing its subcommand.
    prepare : str
        Optional ``"module:function"`` called as ``fn(run, settings)`` before the stage's inputs are read and
        stamped, to make an input the stage reads from outside the pipeline (``simulate``: the fitted defoci).
    always_run : bool
        ``nt2c run`` runs it even though no later stage reads its outputs (``calibrate``: what the report and
        the user read).
    """

    name: str
    target: str
    config: type
    requires: tuple[str, ...] = field(default_factory=tuple)
    requires_when: tuple[tuple[str, str, Any], ...] = field(default_factory=tuple)
    folders: tuple[str, ...] = field(default_factory=tuple)
    command: str = ""
    prepare: str = ""
    always_run: bool = False

    def load(self):
        """Import and return the stage function."""
        module, _, func = self.target.partition(":")
        return getattr(importlib.import_module(module), func)

    def load_prepare(self):
        """Import and return the ``prepare`` function (``fn(run, settings)``), or None."""
        if not self.prepare:
            return None
        module, _, func = self.prepare.partition(":")
        return getattr(importlib.import_module(module), func)

    def needs(self, settings: Any = None) -> tuple[str, ...]:
        """Return the stages it reads from with ``settings`` (a settings model or a stamp's settings)."""
        extra = []
        for stage, key, value in self.requires_when:
            current = settings.get(key) if isinstance(settings, dict) else getattr(settings, key, None)
            if current is None:  # unknown (a stamp written by hand): the profile default decides
                current = getattr(self.config(), key, None)
            if current == value:
                extra.append(stage)
        return (*self.requires, *extra)


STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage(
            "simulate",
            "nt2c.simulation:simulate_stage",
            SimulateConfig,
            folders=("simulated",),
            command="simulate",
            prepare="nt2c.simulation.stage:prepare_simulate",
        ),
        Stage(
            "train-coarse",
            "nt2c.denoiser.stages:train_coarse_stage",
            CoarseTrainConfig,
            ("simulate",),
            folders=("models", "checkpoints", "report"),
            command="train_coarse",
        ),
        Stage(
            "extract-noise",
            "nt2c.extraction.stage:extract_noise_stage",
            ExtractConfig,
            ("train-coarse",),
            folders=("noise",),
            command="extract_noise",
        ),
        Stage(
            "calibrate",
            "nt2c.calibration.measure:calibrate_stage",
            CalibrateConfig,
            ("extract-noise",),
            folders=("calibration",),
            command="calibrate",
            always_run=True,
        ),
        Stage(
            "train-gan",
            "nt2c.noise:train_gan_stage",
            GanConfig,
            ("extract-noise",),
            folders=("models", "checkpoints", "report"),
            command="train_gan",
        ),
        Stage(
            "reweight",
            "nt2c.reweighting.stage:reweight_stage",
            ReweightConfig,
            ("simulate", "extract-noise"),
            requires_when=(("train-gan", "noise_source", "gan"),),
            folders=("pairs",),
            command="reweight",
        ),
        Stage(
            "train-fine",
            "nt2c.denoiser.stages:train_fine_stage",
            FineTrainConfig,
            ("train-coarse", "reweight"),
            folders=("models", "checkpoints", "report"),
            command="train_fine",
        ),
    )
}

#: The stages in pipeline order (``nt2c run``).
PIPELINE_STAGES: tuple[str, ...] = tuple(STAGES)

#: Stages that train on several processes when launched by ``torchrun``: the denoiser with
#: DistributedDataParallel (:mod:`nt2c.denoiser.training`), the GAN with explicitly averaged gradients
#: (:mod:`nt2c.noise.gan`); ``batch_size`` is the global batch and rank 0 writes the files.
DISTRIBUTED_STAGES = ("train-coarse", "train-gan", "train-fine")


def _resolve_run(run: RunDir | str | os.PathLike) -> RunDir:
    return run if isinstance(run, RunDir) else RunDir(run)


def _file_state(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _external_inputs(run: RunDir, name: str, settings: Any) -> dict[str, Any]:
    """Files outside the stages that ``name`` reads: path -> [size, mtime_ns] (None when missing)."""
    files: list[Path] = []
    if name == "extract-noise":
        from nt2c.run.micrographs import expand_micrographs, read_micrograph_list

        patterns = settings.get("micrographs") if isinstance(settings, dict) else settings.micrographs
        if patterns:  # relative to the working directory, else to the run (as the stage reads them)
            for base in (None, run.path):
                try:
                    files = expand_micrographs(list(patterns), base=base)
                    break
                except Exception:  # the stage itself reports a bad pattern
                    files = []
        else:
            files = read_micrograph_list(run, check=False)
    elif name == "calibrate":
        for key in ("ctffind", "relion"):
            value = settings.get(key) if isinstance(settings, dict) else getattr(settings, key)
            if value:
                files.append(Path(value).expanduser())
    elif name == "simulate":
        spec = run.params().specimen if run.params_path.is_file() else "builtin"
        if spec != "builtin" and len(spec) != 4:
            files = [Path(spec).expanduser()]
        source = settings.get("defocus_source") if isinstance(settings, dict) else settings.defocus_source
        if source == "calibration":  # new fitted defoci: simulate again
            from nt2c.calibration.measure import DEFOCUS_TABLE

            files.append(run.path / "calibration" / DEFOCUS_TABLE)
    return {str(p): _file_state(Path(p)) for p in files}


def stage_inputs(run: RunDir, name: str, settings: Any) -> dict[str, Any]:
    """Return what stage ``name`` consumes with ``settings``, as digests (recorded in its stamp).

    ``{"params": digest of the parameters, "stage:<upstream>": digest of that stage's stamp, ...,
    "files": {path: [size, mtime_ns]}}`` (files: the user's micrographs for ``extract-noise``, a specimen
    file for ``simulate``).
    """
    stage = STAGES[name]
    inputs: dict[str, Any] = {
        "params": canonical_digest(run.params().to_dict()) if run.params_path.is_file() else None
    }
    for req in stage.needs(settings):
        inputs[f"stage:{req}"] = run.stamp_digest(req)
    files = _external_inputs(run, name, settings)
    if files:
        inputs["files"] = files
    return inputs


def run_inputs(
    run: RunDir, *, stages: tuple[str, ...] = PIPELINE_STAGES, files: tuple[str | os.PathLike, ...] = ()
) -> dict[str, Any]:
    """Return digests of what a step outside the stages reads (``nt2c evaluate``), to record and compare.

    Parameters
    ----------
    run : RunDir
    stages : tuple of str
        Stages whose outputs it reads (their stamps' digests; None for a stage that has not run).
    files : tuple of path-like
        Other files it reads (the user's micrographs): path -> [size, mtime_ns].

    Returns
    -------
    dict
        ``{"params": ..., "stage:<name>": ..., "files": {...}}``, the form of a stamp's ``inputs``.
    """
    inputs: dict[str, Any] = {
        "params": canonical_digest(run.params().to_dict()) if run.params_path.is_file() else None
    }
    for name in stages:
        inputs[f"stage:{name}"] = run.stamp_digest(name)
    if files:
        inputs["files"] = {str(Path(p)): _file_state(Path(p)) for p in files}
    return inputs


def _up_to_date(run: RunDir, name: str, _seen: dict[str, bool] | None = None) -> bool:
    """Whether ``name`` is complete (with whatever settings it ran) and so is everything it read from."""
    seen = {} if _seen is None else _seen
    if name in seen:
        return seen[name]
    stamp = None
    try:
        stamp = run.read_stamp(name)
    except Exception:
        pass
    ok = bool(stamp)
    if ok and stamp.get("inputs") is None:  # written by hand or before provenance: taken on trust
        ok = run.is_complete(name)
    elif ok:
        settings = stamp.get("settings") or {}
        ok = all(_up_to_date(run, req, seen) for req in STAGES[name].needs(settings))
        ok = ok and run.is_complete(name, inputs=stage_inputs(run, name, settings))
    seen[name] = ok
    return ok


def _effective_profile(run: RunDir, profile: str | None) -> str:
    return profile if profile is not None else (run.profile() or "quick")


def stage_status(run: RunDir | str | os.PathLike, profile: str | None = None) -> dict[str, bool]:
    """Which stages of ``run`` are complete and up to date for ``profile``'s settings (default: the run's)."""
    run = _resolve_run(run)
    profile = _effective_profile(run, profile)
    out = {}
    for name in STAGES:
        settings = stage_config(name, profile, **run.explicit_settings(name))
        out[name] = _up_to_date(run, name) and run.is_complete(
            name, settings.to_dict(), inputs=stage_inputs(run, name, settings)
        )
    return out


def _remove_partials(run: RunDir, stage: Stage) -> None:
    """Delete the temporary files an interrupted earlier attempt of ``stage`` left in its folders."""
    from nt2c import io

    remove = getattr(io, "remove_partial_files", None)
    if remove is None or not distributed.is_main():
        return
    for folder in stage.folders:
        for path in remove(run.path / folder):
            log.info("removed %s (left by an interrupted run)", path)


def run_stage(
    name: str,
    run: RunDir | str | os.PathLike,
    *,
    profile: str | None = None,
    force: bool = False,
    with_requirements: bool = True,
    change_profile: bool = False,
    **overrides: Any,
) -> list[Path]:
    """Run one stage in ``run`` unless its outputs are complete and its inputs unchanged.

    Parameters
    ----------
    name : str
        Stage name (see :data:`STAGES`).
    run : RunDir or path-like
        Run directory; its ``params.yaml`` must exist (see :meth:`RunDir.init_params`).
    profile : {"smoke", "quick", "full"} or None
        None: the run's (recorded in ``RUN/run.json``), ``"quick"`` for a new run. Another profile than the
        run's is refused unless ``change_profile``.
    force : bool
        Run even when the stage is complete.
    with_requirements : bool
        Run missing or out-of-date required stages first; otherwise a missing one is an error.
    change_profile : bool
        Switch the run to ``profile``.
    **overrides
        Settings of this stage replacing the profile defaults (``seed``, ``device``, ``steps``, ...); None
        values are ignored. Once the stage has run with them they are recorded in ``RUN/run.json`` and apply
        to later calls on the run too (a call that fails, e.g. on a mistyped path, records nothing).

    Returns
    -------
    list of pathlib.Path
        The files the stage wrote (or had written before).
    """
    if name not in STAGES:
        raise StageError(f"unknown stage {name!r}; stages are {', '.join(STAGES)}.")
    run = _resolve_run(run)
    if distributed.is_distributed() and name not in DISTRIBUTED_STAGES:
        raise StageError(
            f"stage {name} runs in one process; start it without torchrun (only "
            f"{', '.join(DISTRIBUTED_STAGES)} use several GPUs)."
        )
    stage = STAGES[name]
    params = run.params()
    profile = run.bind_profile(profile, change=change_profile)
    explicit = {k: v for k, v in overrides.items() if v is not None and k != "device"}
    settings = stage_config(
        name, profile, **{**run.explicit_settings(name), **explicit, "device": overrides.get("device")}
    )
    shared = {k: overrides[k] for k in ("seed", "device") if overrides.get(k) is not None}
    for req in stage.needs(settings):
        if not _up_to_date(run, req):
            if not with_requirements or distributed.is_distributed():
                raise StageError(
                    f"stage {name} needs stage {req} first: run `nt2c {req} --run {run.path}`"
                    + (" (without torchrun)." if distributed.is_distributed() else ".")
                )
            log.info("running required stage %s", req)
            run_stage(req, run, profile=profile, **shared)
    prepare = stage.load_prepare()
    if prepare is not None and distributed.is_main():  # what the stage reads from outside, made if needed
        prepare(run, settings)
    inputs = stage_inputs(run, name, settings)
    if not force and run.is_complete(name, settings.to_dict(), inputs=inputs):
        stamp = run.read_stamp(name) or {}
        log.info("stage %s is complete in %s; skipping", name, run.path)
        if explicit:
            run.record_settings(name, explicit)
        return [run.path / rel for rel in stamp.get("outputs", {})]
    if run.read_stamp(name) is not None and distributed.is_main():
        run.invalidate(name)  # a kill while the stage re-runs must not leave the old stamp on new files
    _remove_partials(run, stage)
    start = time.perf_counter()
    outputs = stage.load()(run, settings, params)
    if explicit and distributed.is_main():  # the stage ran with them: keep them for later calls on the run
        run.record_settings(name, explicit)
    if distributed.is_main():  # under torchrun only rank 0 writes files
        run.write_stamp(name, outputs, settings.to_dict(), seconds=time.perf_counter() - start, inputs=inputs)
    distributed.barrier()
    return [Path(p) for p in outputs]
