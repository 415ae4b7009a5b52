"""The whole NT2C method in one call: ``nt2c run`` / :func:`run_pipeline`.

Order: simulate -> train-coarse -> extract-noise -> train-gan -> reweight -> train-fine (each through
:func:`nt2c.run.stages.run_stage`, which skips complete stages and resumes from disk), then the user's micrographs
are denoised with the fine model into ``RUN/denoised/`` and a short report is written to ``RUN/report/``:
``report.md`` and ``report.json`` (parameters, seconds per stage from ``RUN/stamps/``, noise fidelity from
``RUN/report/noise_fidelity.json`` when the GAN stage wrote it, PSNR against the clean image for the simulated
stand-ins) and one before/after figure per micrograph.

A killed run is resumed by the same call: finished stages are skipped, a training stage continues from its
last checkpoint, micrographs already denoised with the current model are not denoised again, and the report is
rewritten only when something it shows changed. A second call on a finished run does no work.
"""

from __future__ import annotations

import glob
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

from nt2c.config import PROFILES, ExperimentParams, stage_config
from nt2c.errors import ConfigError, InputError, NT2CError
from nt2c.io import read_image, read_json, write_json, write_mrc
from nt2c.run.rundir import RunDir

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

PIPELINE_STAGES: tuple[str, ...] = (
    "simulate",
    "train-coarse",
    "extract-noise",
    "train-gan",
    "reweight",
    "train-fine",
)


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
        Micrographs that could not be read, with the reason.
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
    report: Path | None = None
    report_written: bool = False

    @property
    def did_work(self) -> bool:
        """True when this call ran a stage, denoised a micrograph or wrote the report."""
        return bool(self.stages_run or self.newly_denoised or self.report_written)


# -------------------------------------------------------------------------------------------------------------
# micrographs
# -------------------------------------------------------------------------------------------------------------
def resolve_micrographs(micrographs: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Expand paths and glob patterns (``'DIR/*.mrc'``) into a sorted list of existing files.

    Raises
    ------
    InputError
        When a pattern matches nothing or a path does not exist.
    """
    items = [micrographs] if isinstance(micrographs, (str, os.PathLike)) else list(micrographs)
    if not items:
        raise InputError(
            "no micrographs given; pass --micrographs 'DIR/*.mrc' or leave it out for the embedded default."
        )
    found: list[Path] = []
    for item in items:
        text = os.path.expanduser(os.fspath(item))
        if glob.has_magic(text):
            matches = sorted(glob.glob(text))
            if not matches:
                raise InputError(
                    f"--micrographs {text!r} matches no file; check the folder and the pattern "
                    "(quote it so the shell does not expand it)."
                )
            found += [Path(m) for m in matches]
        else:
            path = Path(text)
            if not path.is_file():
                raise InputError(f"micrograph {path} does not exist; check the path.")
            found.append(path)
    unique = sorted({p.resolve() for p in found})
    return unique


def read_micrograph_list(run: RunDir) -> list[Path]:
    """The micrographs listed in ``RUN/micrographs.txt`` (empty when the file is absent)."""
    path = run.path / "micrographs.txt"
    if not path.is_file():
        return []
    return [
        Path(line.strip())
        for line in path.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def _write_micrograph_list(run: RunDir, paths: list[Path]) -> None:
    from nt2c.io import atomic_path

    with atomic_path(run.path / "micrographs.txt") as tmp:
        tmp.write_text("".join(f"{p}\n" for p in paths))


def _set_micrographs(
    run: RunDir,
    params: ExperimentParams,
    micrographs,
    *,
    profile: str,
    seed: int,
    device: str,
    echo: Callable[[str], None],
) -> list[Path]:
    listed = read_micrograph_list(run)
    if micrographs is None:
        if listed:
            return listed
        from nt2c.simulation.standins import simulate_experimental

        echo("simulating the embedded default's 'experimental' micrographs (RUN/experimental/)")
        paths = simulate_experimental(run, params, profile=profile, seed=seed, device=device)
        _write_micrograph_list(run, paths)
        return paths
    paths = resolve_micrographs(micrographs)
    if listed and [Path(p).resolve() for p in listed] != paths:
        raise ConfigError(
            f"{run.path / 'micrographs.txt'} lists other micrographs than --micrographs; the noise model of this run "
            "was learnt from those. Use a new --out for new micrographs, or `nt2c denoise --model "
            f"{run.path / 'models' / 'fine.safetensors'}` to denoise more micrographs with this run's model."
        )
    if not listed:
        _write_micrograph_list(run, paths)
    return paths


# -------------------------------------------------------------------------------------------------------------
# the pipeline
# -------------------------------------------------------------------------------------------------------------
def _stamp_signature(run: RunDir, stage: str) -> tuple | None:
    path = run.stamp_path(stage)
    return (path.stat().st_mtime_ns, path.stat().st_size) if path.is_file() else None


def run_pipeline(
    params: ExperimentParams | dict | str | os.PathLike | None = None,
    *,
    out: str | os.PathLike,
    micrographs: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    profile: str = "quick",
    device: str = "auto",
    seed: int = 0,
    compare_coarse: bool = True,
    stage_overrides: Mapping[str, Mapping[str, Any]] | None = None,
    echo: Callable[[str], None] | None = None,
) -> PipelineResult:
    """Run the whole NT2C method and denoise the micrographs (see the module docstring).

    Parameters
    ----------
    params : ExperimentParams, dict, path-like or None
        Acquisition parameters of the micrographs (a ``params.yaml``); None: those already in ``out``, else the
        embedded default.
    out : path-like
        The run directory (created; an existing one is resumed).
    micrographs : str, path-like or sequence, optional
        The user's micrographs: paths or glob patterns (``'DIR/*.mrc'``). None: those listed in
        ``RUN/micrographs.txt`` by an earlier call, else the embedded default's simulated stand-ins
        (:func:`nt2c.simulation.standins.simulate_experimental`).
    profile : {"smoke", "quick", "full"}
        Sizes and lengths of every stage.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    seed : int
        Seed of every stage.
    compare_coarse : bool
        Also denoise the micrographs with the coarse model (into ``RUN/report/coarse/``) for the report's
        coarse-against-fine comparison.
    stage_overrides : mapping of str to mapping, optional
        Settings replacing a stage's profile defaults, e.g. ``{"reweight": {"method": "paper"}}`` (they are
        recorded in the stage's stamp, so changing them re-runs that stage).
    echo : callable, optional
        Called with one line per step (the CLI prints them); default: log at INFO level.

    Returns
    -------
    PipelineResult
    """
    if profile not in PROFILES:
        raise ConfigError(f"profile = {profile!r}: unknown profile; use one of {', '.join(PROFILES)}.")
    from nt2c.device import resolve_device

    resolve_device(device)
    echo = echo or log.info
    run = RunDir(out)
    params = run.init_params(params)
    result = PipelineResult(run=run)
    result.micrographs = _set_micrographs(
        run, params, micrographs, profile=profile, seed=seed, device=device, echo=echo
    )

    from nt2c.run.stages import run_stage

    stage_overrides = dict(stage_overrides or {})
    unknown = set(stage_overrides) - set(PIPELINE_STAGES) - {"denoise"}
    if unknown:
        raise ConfigError(
            f"stage_overrides names unknown stage(s) {sorted(unknown)}; stages are "
            f"{', '.join(PIPELINE_STAGES)} and denoise."
        )
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

    settings = stage_config(
        "denoise", profile, seed=seed, device=device, **dict(stage_overrides.get("denoise", {}))
    )
    fine_path = run.models / "fine.safetensors"
    denoised, new, failed = _denoise_all(result.micrographs, fine_path, run.denoised, settings, echo=echo)
    result.denoised, result.newly_denoised, result.failed = denoised, new, failed
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
    """Denoise each micrograph with ``model_path`` into ``out_dir/<name>.mrc``, skipping up-to-date outputs."""
    from nt2c.denoiser.inference import denoise_micrograph, load_model

    out_dir.mkdir(parents=True, exist_ok=True)
    model = None
    outputs, new, failed = [], [], {}
    model_mtime = model_path.stat().st_mtime_ns
    for mic, name in zip(micrographs, _output_names(micrographs)):
        target = out_dir / f"{name}.mrc"
        if target.is_file() and target.stat().st_mtime_ns >= model_mtime:
            outputs.append(target)
            continue
        try:
            image, pixel_size = read_image(mic)
        except NT2CError as exc:
            failed[str(mic)] = str(exc)
            echo(f"skipping {mic}: {exc}")
            continue
        if model is None:
            model = load_model(model_path)
        start = time.perf_counter()
        result = denoise_micrograph(
            model,
            image,
            device=settings.device,
            tile=settings.tile,
            overlap=settings.overlap,
            batch_size=settings.batch_size,
            normalization=settings.normalization,
        )
        write_mrc(target, np.asarray(result, dtype=np.float32), pixel_size_A=pixel_size, overwrite=True)
        echo(f"denoised ({label}) {mic} -> {target} in {time.perf_counter() - start:.1f} s")
        outputs.append(target)
        new.append(target)
    return outputs, new, failed


# -------------------------------------------------------------------------------------------------------------
# ablation: a fine model trained on pairs from another coefficient method
# -------------------------------------------------------------------------------------------------------------
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
    profile: str = "quick",
    seed: int = 0,
    device: str = "auto",
) -> Path:
    """The fine model trained on pairs re-weighted with ``method`` and ``noise_source`` (the ablation).

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
    summary = run.path / "pairs" / "summary.json"
    own = read_json(summary) if summary.is_file() else {}
    default = stage_config("reweight", profile)
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


# -------------------------------------------------------------------------------------------------------------
# the report
# -------------------------------------------------------------------------------------------------------------
def _fingerprint(run: RunDir, result: PipelineResult, coarse: dict[Path, Path]) -> str:
    h = hashlib.sha256()
    for name in PIPELINE_STAGES:
        path = run.stamp_path(name)
        h.update(path.read_bytes() if path.is_file() else b"-")
    for p in [*result.denoised, *coarse.values()]:
        st = Path(p).stat()
        h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode())
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
    }
    write_json(json_path, summary)
    from nt2c.io import atomic_path

    with atomic_path(md_path) as tmp:
        tmp.write_text(_markdown(summary))
    return md_path, True


def _before_after_figure(images: dict[str, np.ndarray], path: Path, *, crop_px: int = 384) -> None:
    """Whole micrographs (top) and a central zoom (bottom, at most ``crop_px`` and half the side) of each image."""
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
    for mic, why in summary.get("failed", {}).items():
        lines.append(f"- `{mic}`: not denoised ({why})")
    return "\n".join(lines) + "\n"
