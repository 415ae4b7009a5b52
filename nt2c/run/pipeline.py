"""The whole NT2C method in one call: ``nt2c run`` / :func:`run_pipeline`.

Order: simulate -> train-coarse -> extract-noise -> (train-gan, when the noise source is the GAN) -> reweight
-> train-fine (each through :func:`nt2c.run.stages.run_stage`, which skips complete stages and resumes from
disk). Then the user's micrographs, and the held-out ones of ``RUN/heldout.txt``, are denoised with the fine
model (``RUN/report/fine/``) and the coarse one (``RUN/report/coarse/``), and ``RUN/denoised/`` gets the
output of the model that the self-check (two tests, both needed for the fine model) finds better here
(:mod:`nt2c.evaluation.selfcheck`; ``denoise.model`` = ``auto``, the default, or ``fine``/``coarse`` to
decide yourself). When no noise patch can be found even with the extraction's fallbacks, the stages after
it cannot run: the run says so and ``RUN/denoised/`` holds the coarse model's output. The report
(:mod:`nt2c.run.report`) says which model was delivered and why.

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

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nt2c.config import PROFILES, ExperimentParams, defaulted_params, load_params, stage_config
from nt2c.errors import ConfigError, InputError
from nt2c.run import micrographs as mics
from nt2c.run.delivery import choose_model, deliver, denoise_all, readable
from nt2c.run.report import write_report
from nt2c.run.rundir import RunDir, file_sha256
from nt2c.run.stages import PIPELINE_STAGES
from nt2c.run.variants import fine_variant  # re-exported: the ablation lives in its own module

__all__ = [
    "PIPELINE_STAGES",
    "PipelineResult",
    "run_pipeline",
    "resolve_micrographs",
    "read_micrograph_list",
    "fine_variant",
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
    heldout, heldout_denoised : list of pathlib.Path
        Micrographs of ``RUN/heldout.txt`` (denoised, never learnt from) and their outputs in
        ``RUN/denoised``.
    delivered : {"fine", "coarse"}
        The model whose output ``RUN/denoised`` holds.
    delivered_reason : str
        Why (the self-check's verdict, the user's choice, or no noise to transfer).
    selfcheck : dict
        The self-check per micrograph (:func:`nt2c.run.delivery.choose_model`).
    no_noise : str or None
        Why no noise patch could be extracted, when none could.
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
    heldout: list[Path] = field(default_factory=list)
    heldout_denoised: list[Path] = field(default_factory=list)
    delivered: str = "fine"
    delivered_reason: str = ""
    selfcheck: dict[str, dict] = field(default_factory=dict)
    no_noise: str | None = None

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
    good, bad = mics.check_run_micrographs(run, requested)
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

    from nt2c.extraction.patches import NoNoisePatchError
    from nt2c.run.stages import run_stage

    needed = _needed_stages(run, profile, stage_overrides)
    for k, name in enumerate(PIPELINE_STAGES, 1):
        if name not in needed:
            echo(f"[{k}/{len(PIPELINE_STAGES)}] {name}: not needed with these settings, skipped")
            continue
        before = _stamp_signature(run, name)
        start = time.perf_counter()
        try:
            run_stage(
                name, run, profile=profile, seed=seed, device=device, **dict(stage_overrides.get(name, {}))
            )
        except NoNoisePatchError as exc:  # nothing to learn the noise from: deliver the coarse model's output
            result.no_noise = " ".join(str(exc).split())
            echo(
                f"[{k}/{len(PIPELINE_STAGES)}] {name}: no noise patch could be found, even with the "
                "fallbacks; the stages after it need them, so RUN/denoised will hold the COARSE model's "
                "output"
            )
            break
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
    result.heldout = [p for p in mics.read_micrograph_list(run, "heldout", check=False) if p.is_file()]
    targets = result.micrographs + [p for p in result.heldout if p not in result.micrographs]
    outputs: dict[str, dict[Path, Path]] = {}
    models = ["coarse"] if result.no_noise else ["fine", "coarse"] if compare_coarse else ["fine"]
    if settings.model == "coarse" and "coarse" not in models:
        models.append("coarse")
    for name in models:
        listing, new, failed = denoise_all(
            targets, run.models / f"{name}.safetensors", run.report / name, settings, echo=echo, label=name
        )
        outputs[name] = {Path(m): out for m, out in zip(readable(targets, failed), listing)}
        result.newly_denoised += new
        result.failed.update(failed)
    result.delivered, result.delivered_reason, result.selfcheck = choose_model(
        run, outputs, settings.model, no_noise=result.no_noise, settings=settings
    )
    delivered = deliver(outputs[result.delivered], run.denoised)
    result.denoised = [delivered[Path(m)] for m in result.micrographs if Path(m) in delivered]
    result.heldout_denoised = [delivered[Path(m)] for m in result.heldout if Path(m) in delivered]
    echo(f"RUN/denoised: the {result.delivered} model's output ({result.delivered_reason})")
    run.update_info(delivered_model=result.delivered, delivered_reason=result.delivered_reason)
    result.report, result.report_written = write_report(run, result, outputs=outputs, profile=profile)
    echo(f"report: {result.report}" + ("" if result.report_written else " (up to date)"))
    return result


def _needed_stages(run: RunDir, profile: str, overrides: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """Return the stages the fine model needs with these settings (the GAN only for ``noise_source=gan``).

    Stages marked ``always_run`` (``calibrate``) and what they need are included too.
    """
    from nt2c.run.stages import STAGES

    needed: set[str] = set()
    todo = [PIPELINE_STAGES[-1], *(name for name, stage in STAGES.items() if stage.always_run)]
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed.add(name)
        explicit = {**run.explicit_settings(name), **dict(overrides.get(name, {}))}
        todo += STAGES[name].needs(stage_config(name, profile, **explicit))
    return needed
