"""Ablation: the fine model trained on pairs from another coefficient fit or noise source (notebook 06).

:func:`fine_variant` trains it in a sub-run ``RUN/ablation/<method>-<noise_source>/`` that shares the run's
simulation, coarse model, noise patches and GAN, so that only the re-weighting differs.
"""

from __future__ import annotations

import os
from pathlib import Path

from nt2c.config import stage_config
from nt2c.errors import ConfigError
from nt2c.io import read_json
from nt2c.run import micrographs as mics
from nt2c.run.rundir import RunDir

__all__ = ["fine_variant"]


def _link_stage(src: RunDir, dst: RunDir, stage: str) -> None:
    """Make ``stage`` complete in ``dst`` by hard-linking (or copying) its stamp and outputs from ``src``."""
    import shutil

    stamp = src.read_stamp(stage)
    if not stamp:
        raise ConfigError(
            f"stage {stage} has not run in {src.path}; run it first (`nt2c {stage} --run {src.path}`)."
        )
    for rel in [*stamp.get("outputs", {}), str(src.stamp_path(stage).relative_to(src.path))]:
        a, b = src.path / rel, dst.path / rel
        if b.exists() or not a.exists():
            continue
        b.parent.mkdir(parents=True, exist_ok=True)
        if a.is_dir():
            shutil.copytree(a, b)
            continue
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)


def fine_variant(
    run: RunDir | str | os.PathLike,
    method: str,
    *,
    noise_source: str | None = None,
    profile: str | None = None,
    seed: int = 0,
    device: str = "auto",
) -> Path:
    """Train (or find) the fine model on pairs re-weighted with ``method`` and ``noise_source`` (ablation).

    When ``run``'s own pairs were made that way this is ``RUN/models/fine.safetensors`` (trained if needed).
    Otherwise a sub-run ``RUN/ablation/<method>-<noise_source>/`` shares the run's simulation, coarse model,
    noise patches and GAN (hard links) and re-runs only ``reweight`` and ``train-fine``, with the settings the
    run's own stages used (from their stamps), so that only the coefficient fit or the noise source differs.

    Parameters
    ----------
    run : RunDir or path-like
    method : {"paper", "matched", "calibrated"}
        Coefficient fit (:func:`nt2c.reweighting.fit.fit_coefficients`).
    noise_source : {"patches", "gan"} or None
        Where the transferred noise comes from; None: the run's own.
    profile, seed, device
        As for :func:`nt2c.run.stages.run_stage`.

    Returns
    -------
    pathlib.Path
        The fine model's ``.safetensors`` file.
    """
    from nt2c.reweighting.fit import METHODS, NOISE_SOURCES
    from nt2c.run.stages import run_stage

    if method not in METHODS:
        raise ConfigError(f"method={method!r}: use one of {', '.join(METHODS)}.")
    if noise_source is not None and noise_source not in NOISE_SOURCES:
        raise ConfigError(f"noise_source={noise_source!r}: use one of {', '.join(NOISE_SOURCES)}.")
    run = run if isinstance(run, RunDir) else RunDir(run)
    profile = run.bind_profile(profile)  # the sub-run uses the run's profile
    summary = run.path / "pairs" / "summary.json"
    own = read_json(summary) if summary.is_file() else {}
    default = stage_config(
        "reweight", profile or run.profile() or "quick", **run.explicit_settings("reweight")
    )
    used = (own.get("method", default.method), own.get("noise_source", default.noise_source))
    wanted = (method, noise_source or used[1])
    if wanted == used:
        if not run.is_complete("train-fine"):  # a finished one is kept, whatever settings made it
            run_stage("train-fine", run, profile=profile, seed=seed, device=device)
        return run.models / "fine.safetensors"
    gan = ("train-gan",) if wanted[1] == "gan" else ()  # the GAN only when the variant's noise comes from it
    for stage in ("simulate", "train-coarse", *gan):
        if not run.is_complete(stage):
            run_stage(stage, run, profile=profile, seed=seed, device=device)
    sub = RunDir(run.path / "ablation" / "-".join(wanted))
    sub.init_params(run.params())
    for which in mics.LISTS:  # the same micrographs: the linked extract-noise stamp recorded them
        listed = mics.read_micrograph_list(run, which, check=False)
        if listed and mics.read_micrograph_list(sub, which, check=False) != listed:
            mics.write_micrograph_list(sub, listed, which)
    for stage in ("simulate", "train-coarse", "extract-noise", *gan):
        _link_stage(run, sub, stage)
    # the same settings as the run's own reweight and train-fine stages, except the method / noise source
    same = {}
    for stage in ("reweight", "train-fine"):
        stamp = run.read_stamp(stage) or {}
        same[stage] = {k: v for k, v in (stamp.get("settings") or {}).items() if k != "device"}
        same[stage].setdefault("seed", seed)
    same["reweight"]["method"], same["reweight"]["noise_source"] = wanted
    run_stage("reweight", sub, profile=profile, device=device, **same["reweight"])
    run_stage("train-fine", sub, profile=profile, device=device, **same["train-fine"])
    return sub.models / "fine.safetensors"
