"""The whole NT2C method in one call: ``nt2c run`` / :func:`run_pipeline`.

Order: simulate -> train-coarse -> extract-noise -> (train-gan, when the noise source is the GAN) -> reweight
-> train-fine (each through :func:`nt2c.run.stages.run_stage`, which skips complete stages and resumes from
disk). Then the user's micrographs, and the held-out ones of ``RUN/heldout.txt``, are denoised with the fine
model (``RUN/report/fine/``) and the coarse one (``RUN/report/coarse/``), and ``RUN/denoised/`` gets the
output of the model the residual self-check finds better on these micrographs (:mod:`nt2c.evaluation
.selfcheck`; ``denoise.model`` = ``auto``, the default, or ``fine``/``coarse`` to decide yourself). When no
noise patch can be found even with the extraction's fallbacks, the stages after it cannot run: the run says
so and ``RUN/denoised/`` holds the coarse model's output. The report (:mod:`nt2c.run.report`) says which
model was delivered and why.

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

import numpy as np

from nt2c.config import PROFILES, ExperimentParams, defaulted_params, load_params, stage_config
from nt2c.errors import ConfigError, InputError
from nt2c.io import read_json
from nt2c.run import micrographs as mics
from nt2c.run.report import write_report
from nt2c.run.rundir import RunDir, file_sha256
from nt2c.run.stages import PIPELINE_STAGES

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
        The residual self-check per micrograph (:func:`nt2c.evaluation.selfcheck.compare_models`).
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
        listing, new, failed = _denoise_all(
            targets, run.models / f"{name}.safetensors", run.report / name, settings, echo=echo, label=name
        )
        outputs[name] = {Path(m): out for m, out in zip(_readable(targets, failed), listing)}
        result.newly_denoised += new
        result.failed.update(failed)
    result.delivered, result.delivered_reason, result.selfcheck = _choose_model(
        run, outputs, settings.model, no_noise=result.no_noise
    )
    delivered = _deliver(outputs[result.delivered], run.denoised)
    result.denoised = [delivered[Path(m)] for m in result.micrographs if Path(m) in delivered]
    result.heldout_denoised = [delivered[Path(m)] for m in result.heldout if Path(m) in delivered]
    echo(f"RUN/denoised: the {result.delivered} model's output ({result.delivered_reason})")
    run.update_info(delivered_model=result.delivered, delivered_reason=result.delivered_reason)
    result.report, result.report_written = write_report(run, result, outputs=outputs, profile=profile)
    echo(f"report: {result.report}" + ("" if result.report_written else " (up to date)"))
    return result


def _needed_stages(run: RunDir, profile: str, overrides: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """Return the stages the fine model needs with these settings (the GAN only for ``noise_source=gan``)."""
    from nt2c.run.stages import STAGES

    needed: set[str] = set()
    todo = [PIPELINE_STAGES[-1]]
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed.add(name)
        explicit = {**run.explicit_settings(name), **dict(overrides.get(name, {}))}
        todo += STAGES[name].needs(stage_config(name, profile, **explicit))
    return needed


def _choose_model(run: RunDir, outputs: dict[str, dict[Path, Path]], choice: str, *, no_noise: str | None):
    """Pick the model whose output ``RUN/denoised`` holds: the residual self-check decides under ``"auto"``.

    Returns
    -------
    delivered : str
        ``"fine"`` or ``"coarse"``.
    reason : str
    selfcheck : dict
        Per micrograph name: each model's residual mismatch (dB) and the better one; ``"mean"``: the means.
    """
    if no_noise:
        return "coarse", "no noise patches: the noise transfer could not run", {}
    if "coarse" not in outputs or choice == "fine":
        return "fine", "fine model chosen (denoise.model = fine)" if choice == "fine" else "fine model", {}
    from nt2c.evaluation.selfcheck import compare_models
    from nt2c.io import read_image, read_mrc

    noise, _ = read_mrc(run.noise / "patches.mrcs")
    noise = noise[None] if noise.ndim == 2 else noise
    checks: dict[str, dict] = {}
    for mic, fine_path in outputs["fine"].items():
        coarse_path = outputs["coarse"].get(mic)
        if coarse_path is None:
            continue
        raw, _ = read_image(mic)
        images = {"fine": read_image(fine_path)[0], "coarse": read_image(coarse_path)[0]}
        if min(raw.shape) < noise.shape[-1]:
            continue
        verdict = compare_models(raw, images, noise)
        checks[mic.name] = {k: round(c.mismatch_dB, 3) for k, c in verdict["checks"].items()}
        checks[mic.name]["better"] = verdict["best"]
    if not checks:
        return ("coarse" if choice == "coarse" else "fine"), "no micrograph for the self-check", checks
    mean = {m: float(np.mean([c[m] for c in checks.values()])) for m in ("fine", "coarse")}
    checks["mean"] = {k: round(v, 3) for k, v in mean.items()}
    better = "fine" if mean["fine"] <= mean["coarse"] else "coarse"
    summary = (
        f"residual self-check: mean mismatch fine {mean['fine']:.2f} dB, coarse {mean['coarse']:.2f} dB, "
        f"fine better on {sum(c.get('better') == 'fine' for c in checks.values())} of "
        f"{len(checks) - 1} micrographs"
    )
    if choice == "coarse":
        return "coarse", f"coarse model chosen (denoise.model = coarse); {summary}", checks
    return better, summary, checks


def _deliver(outputs: dict[Path, Path], dst_dir: Path) -> dict[Path, Path]:
    """Hard-link (or copy) the chosen outputs and their provenance records into ``RUN/denoised``."""
    import shutil

    from nt2c.run.batch import RECORD_DIR

    (dst_dir / RECORD_DIR).mkdir(parents=True, exist_ok=True)
    delivered = {}
    for mic, src in outputs.items():
        record = src.parent / RECORD_DIR / f"{src.stem}.json"
        for a, b in ((src, dst_dir / src.name), (record, dst_dir / RECORD_DIR / record.name)):
            if not a.is_file() or (b.is_file() and os.path.samefile(a, b)):
                continue
            tmp = b.with_name(f".{b.name}.link.part")
            tmp.unlink(missing_ok=True)
            try:
                os.link(a, tmp)
            except OSError:  # another file system: copy
                shutil.copyfile(a, tmp)
            os.replace(tmp, b)
        delivered[mic] = dst_dir / src.name
    return delivered


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
