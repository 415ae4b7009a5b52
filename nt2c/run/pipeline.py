"""The whole NT2C method in one call: ``nt2c run`` / :func:`run_pipeline`.

Order: simulate -> train-coarse -> extract-noise -> train-gan -> reweight -> train-fine (each through
:func:`nt2c.run.stages.run_stage`, which skips complete stages and resumes from disk), then the user's
micrographs are denoised with the fine model into ``RUN/denoised/`` and a short report is written to
``RUN/report/``:
``report.md`` and ``report.json`` (parameters, seconds per stage from ``RUN/stamps/``, noise fidelity from
``RUN/report/noise_fidelity.json`` when the GAN stage wrote it, PSNR against the clean image for the simulated
stand-ins) and one before/after figure per micrograph.

A killed run is resumed by the same call: finished stages are skipped, a training stage continues from its
last checkpoint, micrographs already denoised with the current model are not denoised again, and the report is
rewritten only when something it shows changed. A second call on a finished run does no work.

Provenance: a stage whose inputs changed re-runs, and so does every stage after it (see
:mod:`nt2c.run.rundir`); each denoised micrograph records the sha256 of the model that made it
(``RUN/denoised/.nt2c/<name>.json``, :mod:`nt2c.run.batch`), so a new fine model re-denoises. The run
keeps its profile and the stage settings given explicitly (``RUN/run.json``): ``nt2c train-coarse --run R
--steps 6`` followed by ``nt2c run --out R`` keeps the 6 steps; another profile is refused unless
``change_profile``.

Bad micrographs: every micrograph is read once before the stages run; each unreadable one is reported in one
line and skipped (listed in ``RUN/run.json``, as a comment in ``RUN/micrographs.txt`` and in the report), the
run goes on with the readable ones, and a later call with the list fixed (or the file repaired) takes them in,
re-running extract-noise and everything after it. When none is readable the run stops with an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nt2c.config import PROFILES, ExperimentParams, defaulted_params, load_params, stage_config
from nt2c.errors import ConfigError, InputError
from nt2c.io import read_image, read_json, write_json
from nt2c.run import micrographs as mics
from nt2c.run.rundir import RunDir, file_sha256
from nt2c.run.stages import PIPELINE_STAGES

__all__ = [
    "PIPELINE_STAGES",
    "PipelineResult",
    "run_pipeline",
    "resolve_micrographs",
    "read_micrograph_list",
    "fine_variant",
    "stage_timings",
    "write_report",
]

log = logging.getLogger(__name__)


@dataclass
class PipelineResult:
    """What :func:`run_pipeline` did.

    Attributes
    ----------
    run : RunDir
    stages_run : list of str
        Stages executed by this call (the others were complete and skipped).
    seconds : dict of str to float
        Wall time of each stage in this call (0 for a skipped stage).
    micrographs : list of pathlib.Path
        The micrographs denoised (inputs).
    denoised : list of pathlib.Path
        Their denoised versions in ``RUN/denoised/``.
    newly_denoised : list of pathlib.Path
        Those written by this call.
    failed : dict of str to str
        Micrographs that could not be read or denoised, with the reason (those skipped up front included).
    skipped : dict of str to str
        Micrographs found unreadable before the stages ran (left out of the run), with the reason.
    defaulted : dict of str to object
        Parameter keys the ``params`` file did not give, with the defaults used.
    report : pathlib.Path
        ``RUN/report/report.md``.
    report_written : bool
        Whether this call (re)wrote the report.
    """

    run: RunDir
    stages_run: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    micrographs: list[Path] = field(default_factory=list)
    denoised: list[Path] = field(default_factory=list)
    newly_denoised: list[Path] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    defaulted: dict[str, Any] = field(default_factory=dict)
    report: Path | None = None
    report_written: bool = False

    @property
    def did_work(self) -> bool:
        """True when this call ran a stage, denoised a micrograph or wrote the report."""
        return bool(self.stages_run or self.newly_denoised or self.report_written)


# ------------------------------------------------------------------------------------------------------------
# micrographs
# ------------------------------------------------------------------------------------------------------------
def resolve_micrographs(micrographs: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Expand paths and glob patterns (``'DIR/*.mrc'``) into a sorted list of existing files.

    The same as :func:`nt2c.run.micrographs.expand_micrographs` (relative to the current directory).

    Raises
    ------
    InputError
        When a pattern matches nothing or a path does not exist.
    """
    return mics.expand_micrographs(micrographs)


def read_micrograph_list(run: RunDir) -> list[Path]:
    """Read ``RUN/micrographs.txt`` (absolute paths; relative lines are relative to the run)."""
    return mics.read_micrograph_list(run, check=False)


def _set_micrographs(
    run: RunDir,
    params: ExperimentParams,
    micrographs,
    *,
    profile: str,
    seed: int,
    device: str,
    echo: Callable[[str], None],
) -> tuple[list[Path], dict[str, str]]:
    """Check the run's micrographs: readable ones, unreadable ones (path -> reason); update the list."""
    info = run.read_info()
    listed = mics.read_micrograph_list(run, check=False)
    list_path = run.path / mics.LISTS["micrographs"]
    edited = list_path.is_file() and file_sha256(list_path) != info.get("micrographs_list_sha256")
    if micrographs is None:
        recorded = info.get("micrographs")
        # the list as the user left it when they edited it since the last call, else what they asked for
        requested = [Path(p) for p in recorded] if recorded and not edited else listed
        if not requested:
            from nt2c.simulation.standins import simulate_experimental

            echo("simulating the embedded default's 'experimental' micrographs (RUN/experimental/)")
            paths = simulate_experimental(run, params, profile=profile, seed=seed, device=device)
            mics.write_micrograph_list(run, paths)
            requested = mics.read_micrograph_list(run, check=False)
    else:
        requested = mics.expand_micrographs(micrographs)
    good, bad = _check_micrographs(run, requested)
    for path, why in bad.items():
        echo(f"skipping micrograph {path}: {why}")
    if not good:
        raise InputError(
            f"none of the {len(requested)} micrographs can be read (first: {next(iter(bad))}: "
            f"{next(iter(bad.values()))}); fix or replace them and run again."
        )
    if listed and listed != good:
        echo(
            f"the micrographs changed ({len(listed)} listed before, {len(good)} readable now): extract-noise "
            "and the stages after it run again"
        )
    if listed != good or bad or edited:
        mics.write_micrograph_list(run, good, skipped=bad)
    run.update_info(
        micrographs=[str(p) for p in requested],
        skipped_micrographs=bad,
        micrographs_list_sha256=file_sha256(list_path),
    )
    return good, bad


def _check_micrographs(run: RunDir, paths: list[Path]) -> tuple[list[Path], dict[str, str]]:
    """:func:`nt2c.run.micrographs.check_micrographs`, remembering readable files by size and mtime."""
    cache = dict(run.read_info().get("readable_micrographs") or {})
    states = {}
    for p in paths:
        try:
            st = Path(p).stat()
            states[str(p)] = [st.st_size, st.st_mtime_ns]
        except OSError:
            states[str(p)] = None
    unknown = [p for p in paths if states[str(p)] is None or cache.get(str(p)) != states[str(p)]]
    good_new, bad = mics.check_micrographs(unknown)
    good_set = {str(p) for p in good_new} | {str(p) for p in paths if p not in unknown}
    good = [p for p in paths if str(p) in good_set]
    readable = {str(p): states[str(p)] for p in good}
    if readable != cache:
        run.update_info(readable_micrographs=readable)
    return good, bad


# ------------------------------------------------------------------------------------------------------------
# the pipeline
# ------------------------------------------------------------------------------------------------------------
def _stamp_signature(run: RunDir, stage: str) -> tuple | None:
    path = run.stamp_path(stage)
    return (path.stat().st_mtime_ns, path.stat().st_size) if path.is_file() else None


def run_pipeline(
    params: ExperimentParams | dict | str | os.PathLike | None = None,
    *,
    out: str | os.PathLike,
    micrographs: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    profile: str | None = None,
    device: str = "auto",
    seed: int | None = None,
    compare_coarse: bool = True,
    stage_overrides: Mapping[str, Mapping[str, Any]] | None = None,
    change_profile: bool = False,
    echo: Callable[[str], None] | None = None,
) -> PipelineResult:
    """Run the whole NT2C method and denoise the micrographs (see the module docstring).

    Parameters
    ----------
    params : ExperimentParams, dict, path-like or None
        Acquisition parameters of the micrographs (a ``params.yaml``); None: those already in ``out``, else
        the embedded default. An empty file is refused; keys a file leaves out are filled in with the
        defaults, named in a warning and in the report.
    out : path-like
        The run directory (created; an existing one is resumed).
    micrographs : str, path-like or sequence, optional
        The user's micrographs: paths or glob patterns (``'DIR/*.mrc'``). None: those an earlier call was
        given (``RUN/run.json``, or ``RUN/micrographs.txt`` when the user edited it since), else the
        embedded default's simulated stand-ins (:func:`nt2c.simulation.standins.simulate_experimental`).
        Unreadable ones are reported and skipped.
    profile : {"smoke", "quick", "full"} or None
        Sizes and lengths of every stage; None: the run's (``"quick"`` for a new run). Another profile than
        the run's is refused unless ``change_profile``.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    seed : int, optional
        Seed of every stage (recorded like any explicit setting); None: the recorded one, else 0.
    compare_coarse : bool
        Also denoise the micrographs with the coarse model (into ``RUN/report/coarse/``) for the report's
        coarse-against-fine comparison.
    stage_overrides : mapping of str to mapping, optional
        Settings replacing a stage's profile defaults, e.g. ``{"reweight": {"method": "paper"}}``. They are
        recorded in ``RUN/run.json`` (and apply to later calls on the run) and in the stage's stamp, so
        changing them re-runs that stage and every stage after it.
    change_profile : bool
        Switch a run made with another profile to ``profile``.
    echo : callable, optional
        Called with one line per step (the CLI prints them); default: log at INFO level.

    Returns
    -------
    PipelineResult
    """
    if profile is not None and profile not in PROFILES:
        raise ConfigError(f"profile = {profile!r}: unknown profile; use one of {', '.join(PROFILES)}.")
    from nt2c.device import resolve_device

    resolve_device(device)
    echo = echo or log.info
    stage_overrides = dict(stage_overrides or {})
    unknown = set(stage_overrides) - set(PIPELINE_STAGES) - {"denoise"}
    if unknown:
        raise ConfigError(
            f"stage_overrides names unknown stage(s) {sorted(unknown)}; stages are "
            f"{', '.join(PIPELINE_STAGES)} and denoise."
        )
    defaulted: dict[str, Any] = {}
    if params is not None and not isinstance(params, (dict, ExperimentParams)):
        params = load_params(params)  # refuses an empty file; warns about the keys it fills in
        defaulted = defaulted_params(params)
    run = RunDir(out)
    params = run.init_params(params)
    profile = run.bind_profile(profile, change=change_profile)
    if defaulted:
        run.update_info(params_defaulted=defaulted)
    result = PipelineResult(run=run, defaulted=dict(run.read_info().get("params_defaulted") or {}))
    if seed is None:
        seed = int(run.read_info().get("seed", 0))
    else:
        run.update_info(seed=int(seed))
    result.micrographs, result.skipped = _set_micrographs(
        run, params, micrographs, profile=profile, seed=seed, device=device, echo=echo
    )
    result.failed.update(result.skipped)

    from nt2c.run.stages import run_stage

    for k, name in enumerate(PIPELINE_STAGES, 1):
        before = _stamp_signature(run, name)
        start = time.perf_counter()
        run_stage(name, run, profile=profile, seed=seed, device=device, **dict(stage_overrides.get(name, {})))
        seconds = time.perf_counter() - start
        ran = _stamp_signature(run, name) != before
        result.seconds[name] = round(seconds, 3) if ran else 0.0
        if ran:
            result.stages_run.append(name)
        echo(
            f"[{k}/{len(PIPELINE_STAGES)}] {name}: "
            + (f"done in {seconds:.1f} s" if ran else "complete, skipped")
        )

    explicit = {k: v for k, v in dict(stage_overrides.get("denoise", {})).items() if v is not None}
    if explicit:
        run.record_settings("denoise", explicit)
    settings = stage_config(
        "denoise", profile, **{**run.explicit_settings("denoise"), "seed": seed, "device": device}
    )
    denoised, new, failed = _denoise_all(
        result.micrographs, run.models / "fine.safetensors", run.denoised, settings, echo=echo
    )
    result.denoised, result.newly_denoised = denoised, new
    result.failed.update(failed)
    coarse_outputs: dict[Path, Path] = {}
    if compare_coarse:
        coarse_dir = run.report / "coarse"
        coarse_list, coarse_new, _ = _denoise_all(
            result.micrographs,
            run.models / "coarse.safetensors",
            coarse_dir,
            settings,
            echo=echo,
            label="coarse",
        )
        result.newly_denoised += coarse_new
        coarse_outputs = {Path(m): c for m, c in zip(_readable(result.micrographs, failed), coarse_list)}
    result.report, result.report_written = write_report(run, result, coarse=coarse_outputs, profile=profile)
    echo(f"report: {result.report}" + ("" if result.report_written else " (up to date)"))
    return result


def _readable(micrographs: list[Path], failed: dict[str, str]) -> list[Path]:
    return [m for m in micrographs if str(m) not in failed]


def _output_names(micrographs: list[Path]) -> list[str]:
    stems = [Path(m).name.rsplit(".", 1)[0] for m in micrographs]
    if len(set(stems)) == len(stems):
        return stems
    return [f"{k:04d}_{s}" for k, s in enumerate(stems)]


def _denoise_all(
    micrographs: list[Path],
    model_path: Path,
    out_dir: Path,
    settings,
    *,
    echo: Callable[[str], None],
    label: str = "fine",
) -> tuple[list[Path], list[Path], dict[str, str]]:
    """Denoise each micrograph with ``model_path`` into ``out_dir/<name>.mrc`` (:mod:`nt2c.run.batch`).

    Outputs made by the same model (sha256) with the same settings from the same input are kept; any other
    one (another model, a cut-short or wrong-shape file, no record) is denoised again.

    Returns
    -------
    outputs : list of pathlib.Path
        One per readable micrograph, in order.
    new : list of pathlib.Path
        Those written by this call.
    failed : dict of str to str
        Micrographs that could not be denoised, with the reason.
    """
    from nt2c import io
    from nt2c.denoiser.inference import load_model
    from nt2c.run.batch import denoise_batch, denoise_settings

    if hasattr(io, "remove_partial_files"):  # what a killed earlier call left (one process writes here)
        io.remove_partial_files(out_dir)
    batch = denoise_batch(
        lambda: load_model(model_path),
        micrographs,
        out_dir,
        model_path=model_path,
        names=_output_names(micrographs),
        echo=echo,
        label=label,
        **denoise_settings(settings),
    )
    outputs = [batch.outputs[Path(m)] for m in micrographs if Path(m) in batch.outputs]
    return outputs, batch.denoised, batch.failed


# ------------------------------------------------------------------------------------------------------------
# ablation: a fine model trained on pairs from another coefficient method
# ------------------------------------------------------------------------------------------------------------
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
    method : {"paper", "matched"}
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
    for stage in ("simulate", "train-coarse", "train-gan"):
        if not run.is_complete(stage):
            run_stage(stage, run, profile=profile, seed=seed, device=device)
    sub = RunDir(run.path / "ablation" / "-".join(wanted))
    sub.init_params(run.params())
    for which in mics.LISTS:  # the same micrographs: the linked extract-noise stamp recorded them
        listed = mics.read_micrograph_list(run, which, check=False)
        if listed and mics.read_micrograph_list(sub, which, check=False) != listed:
            mics.write_micrograph_list(sub, listed, which)
    for stage in ("simulate", "train-coarse", "extract-noise", "train-gan"):
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


# ------------------------------------------------------------------------------------------------------------
# the report
# ------------------------------------------------------------------------------------------------------------
def _fingerprint(run: RunDir, result: PipelineResult, coarse: dict[Path, Path]) -> str:
    h = hashlib.sha256()
    for name in PIPELINE_STAGES:
        path = run.stamp_path(name)
        h.update(path.read_bytes() if path.is_file() else b"-")
    for p in [*result.denoised, *coarse.values()]:
        st = Path(p).stat()
        h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode())
    h.update(json.dumps([result.failed, result.defaulted], sort_keys=True, default=str).encode())
    return h.hexdigest()


def _clean_images(run: RunDir) -> dict[str, dict]:
    """Stand-in micrograph path -> {"clean": path, "coords": path} from RUN/experimental/manifest.json."""
    path = run.path / "experimental" / "manifest.json"
    if not path.is_file():
        return {}
    manifest = read_json(path)
    return {str(Path(m["micrograph"]).resolve()): m for m in manifest.get("micrographs", [])}


def stage_timings(run: RunDir) -> dict[str, float | None]:
    """Seconds each pipeline stage took, from ``RUN/stamps/<stage>.json`` (None when not run)."""
    out = {}
    for name in PIPELINE_STAGES:
        stamp = run.read_stamp(name)
        out[name] = None if not stamp else stamp.get("seconds")
    return out


def write_report(
    run: RunDir, result: PipelineResult, *, coarse: dict[Path, Path] | None = None, profile: str = "quick"
) -> tuple[Path, bool]:
    """Write ``RUN/report/report.md``, ``report.json`` and the before/after figures, unless up to date.

    Returns
    -------
    path : pathlib.Path
        ``RUN/report/report.md``.
    written : bool
        False when the existing report already showed the current stamps and outputs.
    """
    coarse = coarse or {}
    profile = profile or run.profile() or "quick"
    report_dir = run.report
    md_path, json_path = report_dir / "report.md", report_dir / "report.json"
    fingerprint = _fingerprint(run, result, coarse)
    if md_path.is_file() and json_path.is_file():
        try:
            if read_json(json_path).get("fingerprint") == fingerprint:
                return md_path, False
        except InputError:
            pass

    from nt2c.evaluation.metrics import psnr

    params = run.params()
    timings = stage_timings(run)
    fidelity_path = report_dir / "noise_fidelity.json"
    fidelity = read_json(fidelity_path) if fidelity_path.is_file() else None
    pairs_summary_path = run.pairs / "summary.json"
    pairs_summary = read_json(pairs_summary_path) if pairs_summary_path.is_file() else None
    cleans = _clean_images(run)
    rows = []
    readable = _readable(result.micrographs, result.failed)
    for mic, fine_path in zip(readable, result.denoised):
        raw, _ = read_image(mic)
        fine, _ = read_image(fine_path)
        images = {"raw": raw}
        row: dict = {"micrograph": str(mic), "denoised": str(fine_path)}
        coarse_path = coarse.get(Path(mic))
        if coarse_path is not None:
            images["coarse"] = read_image(coarse_path)[0]
            row["coarse"] = str(coarse_path)
        images["fine (NT2C)"] = fine
        entry = cleans.get(str(Path(mic).resolve()))
        if entry is not None and Path(entry["clean"]).is_file():
            clean, _ = read_image(entry["clean"])
            images["clean (truth)"] = clean
            row["psnr_db"] = {k: round(psnr(v, clean), 3) for k, v in images.items() if k != "clean (truth)"}
        figure = report_dir / f"before_after_{fine_path.stem}.png"
        _before_after_figure(images, figure)
        row["figure"] = figure.name
        rows.append(row)

    summary = {
        "fingerprint": fingerprint,
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "profile": profile,
        "params": params.to_dict(),
        "seconds_per_stage": timings,
        "total_stage_seconds": round(sum(t for t in timings.values() if t), 3),
        "noise_fidelity": fidelity,
        "pairs": pairs_summary,
        "micrographs": rows,
        "failed": result.failed,
        "skipped_micrographs": result.skipped,
        "params_defaulted": result.defaulted,
        "stage_settings": run.read_info().get("settings") or {},
    }
    write_json(json_path, summary)
    from nt2c.io import atomic_path

    with atomic_path(md_path) as tmp:
        tmp.write_text(_markdown(summary))
    return md_path, True


def _before_after_figure(images: dict[str, np.ndarray], path: Path, *, crop_px: int = 384) -> None:
    """Plot whole micrographs (top) and a central zoom (bottom, at most ``crop_px``, half the side)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from nt2c.plots.common import display_range

    ny, nx = next(iter(images.values())).shape
    c = max(16, min(crop_px, ny // 2, nx // 2))  # the bottom row is always a zoom
    r0, c0 = (ny - c) // 2, (nx - c) // 2
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(3.0 * n, 6.0), squeeze=False)
    for j, (title, image) in enumerate(images.items()):
        for i, img in enumerate((image, image[r0 : r0 + c, c0 : c0 + c])):
            lo, hi = display_range(img)
            axes[i, j].imshow(img, cmap="gray", vmin=lo, vmax=hi)
            axes[i, j].set_axis_off()
        axes[0, j].set_title(title)
    fig.tight_layout()
    from nt2c.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)


def _markdown(summary: dict) -> str:
    lines = [
        "# NT2C run report",
        "",
        f"Profile `{summary['profile']}`, written {summary['written']}.",
        "",
        "## Parameters",
        "",
        "| key | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {json.dumps(v)} |" for k, v in summary["params"].items()]
    if summary.get("params_defaulted"):
        lines += [
            "",
            "Not given in the parameter file, filled in with the defaults: "
            + ", ".join(f"`{k}` = {json.dumps(v)}" for k, v in summary["params_defaulted"].items())
            + ". Check them against your acquisition.",
        ]
    if summary.get("stage_settings"):
        lines += ["", "Stage settings given explicitly (they replace the profile's):", ""]
        lines += [
            f"- {stage}: {json.dumps(v, sort_keys=True)}" for stage, v in summary["stage_settings"].items()
        ]
    lines += ["", "## Seconds per stage", "", "| stage | seconds |", "|---|---|"]
    lines += [
        f"| {k} | {'-' if v is None else f'{v:.1f}'} |" for k, v in summary["seconds_per_stage"].items()
    ]
    lines += [f"| **total** | {summary['total_stage_seconds']:.1f} |", ""]
    fidelity = summary.get("noise_fidelity")
    if fidelity:
        lines += ["## Noise fidelity (RUN/report/noise_fidelity.json)", ""]
        rows = fidelity.get("rows") if isinstance(fidelity, dict) else None
        if isinstance(rows, dict) and rows:
            keys = ("psd_log_ratio_db", "ks_statistic", "wasserstein", "acf_mad")
            lines += [
                f"Against {fidelity.get('reference', 'held-out real noise')} (lower is closer):",
                "",
                "| noise | " + " | ".join(keys) + " |",
                "|---|" + "---|" * len(keys),
            ]
            for name, row in rows.items():
                cells = [f"{row[k]:.3g}" if isinstance(row.get(k), (int, float)) else "-" for k in keys]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
            lines.append("")
        else:
            lines += ["```json", json.dumps(fidelity, indent=2), "```", ""]
    if summary.get("pairs"):
        p = summary["pairs"]
        lines += [
            "## Re-weighted pairs",
            "",
            f"method `{p['method']}`, noise from `{p.get('noise_source', 'gan')}`, {p['n_pairs']} pairs of "
            f"{p['patch_px']} px; median alpha {p['median']['alpha']:.3g}, beta {p['median']['beta']:.3g}, "
            f"gamma {p['median']['gamma']:.3g}.",
            "",
        ]
    lines += ["## Micrographs", ""]
    for row in summary["micrographs"]:
        lines.append(f"- `{row['micrograph']}` -> `{row['denoised']}` (figure `{row['figure']}`)")
        if "psnr_db" in row:
            lines.append(
                "  PSNR against the clean image (dB, scale and offset fitted): "
                + ", ".join(f"{k} {v:.2f}" for k, v in row["psnr_db"].items())
            )
        lines.append(f"  ![before/after]({row['figure']})")
    skipped = summary.get("skipped_micrographs") or {}
    for mic, why in summary.get("failed", {}).items():
        what = "unreadable, left out of the run" if mic in skipped else "not denoised"
        lines.append(f"- `{mic}`: {what} ({why})")
    return "\n".join(lines) + "\n"
