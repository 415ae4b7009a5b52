"""The NT2C pipeline: its stages, their order and dependencies, and resumable execution.

Each stage is a function ``fn(run, settings, params) -> list[Path]`` living in the module of its idea
(simulation, training, extraction, ...). :func:`run_stage` validates the settings for the run's profile,
runs the stages it depends on when they are missing, skips a stage whose outputs are complete, and stamps
what it wrote. Notebooks, the CLI and ``nt2c run`` all go through it, so each stage can run alone and a
killed run resumes from what is on disk.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nt2c.config import stage_config
from nt2c.errors import StageError
from nt2c.run import distributed
from nt2c.run.rundir import RunDir

__all__ = ["Stage", "STAGES", "run_stage", "stage_status"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    """One pipeline stage.

    Attributes
    ----------
    name : str
        CLI subcommand and key of :data:`~nt2c.config.STAGE_MODELS`.
    target : str
        ``"module:function"`` implementing it (imported on first use).
    requires : tuple of str
        Stages whose outputs it reads.
    """

    name: str
    target: str
    requires: tuple[str, ...] = field(default_factory=tuple)

    def load(self):
        module, _, func = self.target.partition(":")
        return getattr(importlib.import_module(module), func)


STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage("simulate", "nt2c.simulation.stage:simulate_stage"),
        Stage("train-coarse", "nt2c.denoiser.training:train_coarse_stage", ("simulate",)),
        Stage("extract-noise", "nt2c.extraction.patches:extract_noise_stage", ("train-coarse",)),
        Stage("train-gan", "nt2c.noise.gan:train_gan_stage", ("extract-noise",)),
        Stage("reweight", "nt2c.reweighting.fit:reweight_stage", ("simulate", "train-gan")),
        Stage("train-fine", "nt2c.denoiser.training:train_fine_stage", ("train-coarse", "reweight")),
    )
}


#: Stages that train on several processes when launched by ``torchrun``: the denoiser with
#: DistributedDataParallel (:mod:`nt2c.denoiser.training`), the GAN with explicitly averaged gradients
#: (:mod:`nt2c.noise.gan`); ``batch_size`` is the global batch and rank 0 writes the files.
DISTRIBUTED_STAGES = ("train-coarse", "train-gan", "train-fine")


def _resolve_run(run: RunDir | str | os.PathLike) -> RunDir:
    return run if isinstance(run, RunDir) else RunDir(run)


def stage_status(run: RunDir | str | os.PathLike, profile: str = "quick") -> dict[str, bool]:
    """Which stages of ``run`` are complete for ``profile``'s settings."""
    run = _resolve_run(run)
    return {name: run.is_complete(name, stage_config(name, profile).to_dict()) for name in STAGES}


def run_stage(
    name: str,
    run: RunDir | str | os.PathLike,
    *,
    profile: str = "quick",
    force: bool = False,
    with_requirements: bool = True,
    **overrides: Any,
) -> list[Path]:
    """Run one stage in ``run`` unless its outputs are already complete.

    Parameters
    ----------
    name : str
        Stage name (see :data:`STAGES`).
    run : RunDir or path-like
        Run directory; its ``params.yaml`` must exist (see :meth:`RunDir.init_params`).
    profile : {"smoke", "quick", "full"}
    force : bool
        Run even when the stage is complete.
    with_requirements : bool
        Run missing required stages first (with their profile defaults); otherwise a missing one is an error.
    **overrides
        Settings of this stage replacing the profile defaults (``seed``, ``device``, ``steps``, ...).

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
    settings = stage_config(name, profile, **overrides)
    shared = {k: overrides[k] for k in ("seed", "device") if overrides.get(k) is not None}
    for req in stage.requires:
        if not run.is_complete(req):
            if not with_requirements or distributed.is_distributed():
                raise StageError(
                    f"stage {name} needs stage {req} first: run `nt2c {req} --run {run.path}`"
                    + (" (without torchrun)." if distributed.is_distributed() else ".")
                )
            log.info("running required stage %s", req)
            run_stage(req, run, profile=profile, **shared)
    if not force and run.is_complete(name, settings.to_dict()):
        stamp = run.read_stamp(name) or {}
        log.info("stage %s is complete in %s; skipping", name, run.path)
        return [run.path / rel for rel in stamp.get("outputs", {})]
    start = time.perf_counter()
    outputs = stage.load()(run, settings, params)
    if distributed.is_main():  # under torchrun only rank 0 writes files
        run.write_stamp(name, outputs, settings.to_dict(), seconds=time.perf_counter() - start)
    distributed.barrier()
    return [Path(p) for p in outputs]
