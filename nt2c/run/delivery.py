"""What ``nt2c run`` delivers: each model's outputs, the self-check between them, ``RUN/denoised``.

The fine and the coarse model each denoise the run's micrographs (and the held-out ones) into
``RUN/report/fine/`` and ``RUN/report/coarse/`` through the one batch loop (:mod:`nt2c.run.batch`), which
keeps outputs made by the same model and settings. :func:`choose_model` picks what ``RUN/denoised/``
holds: the fine model where two ground-truth-free tests, fed by the extracted noise alone
(:mod:`nt2c.evaluation.selfcheck`), find it better (the residual test prefers it and Stein's estimate does not
find it significantly worse), else the coarse one; or the user's choice
(``denoise.model``); or the coarse one when no noise could be learnt. :func:`deliver` links (or copies) the
chosen outputs, with their provenance records, into ``RUN/denoised/``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from nt2c.run.rundir import RunDir

__all__ = ["choose_model", "deliver", "denoise_all", "readable"]


#: At most this many micrographs (spread evenly over the run's list) are scored by the self-check.
SELFCHECK_MAX_MICROGRAPHS = 16
#: Probes of Stein's estimate per output (one denoising pass each): enough for its standard error.
STEIN_PROBES = 4


def choose_model(
    run: RunDir,
    outputs: dict[str, dict[Path, Path]],
    choice: str,
    *,
    no_noise: str | None,
    settings=None,
):
    """Pick the model whose output ``RUN/denoised`` holds: the self-checks decide under ``"auto"``.

    For up to :data:`SELFCHECK_MAX_MICROGRAPHS` micrographs, each model's output is scored by
    :func:`nt2c.evaluation.selfcheck.stein_check` (its estimated agreement with the clean signal, from the
    run's noise patches; :data:`STEIN_PROBES` more denoising passes per model and micrograph) and by the
    residual test (:func:`~nt2c.evaluation.selfcheck.residual_mismatch_dB`). A micrograph counts for the
    fine model when the residual test prefers it and Stein's estimate does not find it significantly worse
    (:func:`_better`), and the fine model is delivered when it wins on more micrographs than the coarse one.
    Scores are kept in ``RUN/report/selfcheck.json`` and reused while the outputs are unchanged.

    Parameters
    ----------
    run : RunDir
    outputs : dict
        Model name (``"fine"``, ``"coarse"``) to {micrograph: its denoised output}.
    choice : {"auto", "fine", "coarse"}
        ``denoise.model``.
    no_noise : str or None
        Why no noise could be learnt (then only the coarse model exists).
    settings : DenoiseConfig, optional
        How the outputs were denoised (the self-check denoises the probed micrograph alike).

    Returns
    -------
    delivered : str
        ``"fine"`` or ``"coarse"``.
    reason : str
    selfcheck : dict
        Per micrograph name: each model's Stein score, estimated correlation and residual mismatch, and the
        better model; ``"mean"``: the models' mean estimated correlations.
    """
    if no_noise:
        return "coarse", "no noise patches: the noise transfer could not run", {}
    if "coarse" not in outputs or choice == "fine":
        return "fine", "fine model chosen (denoise.model = fine)" if choice == "fine" else "fine model", {}
    checks = _self_checks(run, outputs, settings)
    if not checks:
        return ("coarse" if choice == "coarse" else "fine"), "no micrograph for the self-check", checks
    models = ("fine", "coarse")
    wins = {m: sum(c["better"] == m for c in checks.values()) for m in models}
    mean = {m: _finite_mean([c[m]["correlation"] for c in checks.values()]) for m in models}
    checks["mean"] = {m: {"correlation": round(mean[m], 4)} for m in models}
    better = "fine" if wins["fine"] > wins["coarse"] else "coarse"
    summary = (
        f"self-check (residual spectrum, Stein's estimate as a veto): fine better on {wins['fine']} of "
        f"{len(checks) - 1} micrographs; mean estimated correlation with the clean signal fine "
        f"{_r(mean['fine'])}, coarse {_r(mean['coarse'])}"
    )
    if choice == "coarse":
        return "coarse", f"coarse model chosen (denoise.model = coarse); {summary}", checks
    return better, summary, checks


def _better(fine: dict, coarse: dict) -> str:
    """Name the better model of one micrograph from its two self-check scores.

    The fine model is kept where the residual test prefers it and Stein's estimate does not find it worse by
    more than twice the standard error of the difference (from its probes); otherwise the coarse one. Each
    test fails somewhere the other does not (``benchmarks/RESULTS.md``): the residual test is blind to signal
    loss at very low dose, where Stein's estimate sees it clearly; at a high noise-to-signal ratio Stein's
    Monte-Carlo error exceeds the small differences between good models, where the residual test decides.
    """
    residual = fine["residual_dB"] <= coarse["residual_dB"]
    error = float(np.hypot(fine.get("score_se", 0.0) or 0.0, coarse.get("score_se", 0.0) or 0.0))
    stein_worse = coarse["score"] - fine["score"] > 2.0 * error
    return "fine" if residual and not stein_worse else "coarse"


def _finite_mean(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _r(value: float) -> str:
    return (
        "n/a (the micrographs' variance does not exceed the noise patches')"
        if np.isnan(value)
        else f"{value:.3f}"
    )


def _self_checks(run: RunDir, outputs: dict[str, dict[Path, Path]], settings) -> dict[str, dict]:
    """Score the fine and coarse outputs of (up to 16) micrographs; reuse ``RUN/report/selfcheck.json``."""
    from nt2c.denoiser.inference import denoise_micrograph, load_model
    from nt2c.evaluation.selfcheck import residual_mismatch_dB, stein_check
    from nt2c.io import read_image, read_json, read_mrc, write_json
    from nt2c.run.batch import denoise_settings
    from nt2c.run.micrographs import spread_evenly

    noise, _ = read_mrc(run.noise / "patches.mrcs")
    noise = noise[None] if noise.ndim == 2 else noise
    both = spread_evenly([m for m in outputs["fine"] if m in outputs["coarse"]], SELFCHECK_MAX_MICROGRAPHS)
    cache_path = run.report / "selfcheck.json"
    cache = read_json(cache_path) if cache_path.is_file() else {}
    kwargs = {} if settings is None else dict(denoise_settings(settings))
    models: dict[str, object] = {}
    checks: dict[str, dict] = {}
    computed = False
    for mic in both:
        paths = {m: outputs[m][mic] for m in ("fine", "coarse")}
        key = [str(mic), STEIN_PROBES] + [
            [str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in paths.values()
        ]
        cached = cache.get(mic.name, {})
        if cached.get("key") == key and {"fine", "coarse"} <= set(cached):
            checks[mic.name] = {**cached, "better": _better(cached["fine"], cached["coarse"])}
            continue
        raw, _ = read_image(mic)
        if min(raw.shape) < noise.shape[-1]:
            continue
        entry: dict = {"key": key}
        for name, path in paths.items():
            if name not in models:
                models[name] = load_model(run.models / f"{name}.safetensors")
            model = models[name]
            out = read_image(path)[0]

            def denoise(image, model=model):
                return denoise_micrograph(model, image, show_progress=False, **kwargs)

            stein = stein_check(denoise, raw, noise, denoised=out, n_probes=STEIN_PROBES)
            residual = residual_mismatch_dB(raw, out, noise)
            entry[name] = {
                "score": round(stein.signal_score, 6),
                "score_se": round(stein.score_standard_error, 6),
                "correlation": round(stein.correlation, 4),
                "residual_dB": round(residual.mismatch_dB, 3),
            }
        entry["better"] = _better(entry["fine"], entry["coarse"])
        checks[mic.name] = entry
        computed = True
    if computed or set(cache) != set(checks):
        write_json(cache_path, checks)
    return checks


def deliver(outputs: dict[Path, Path], dst_dir: Path) -> dict[Path, Path]:
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


def readable(micrographs: list[Path], failed: dict[str, str]) -> list[Path]:
    """Return the micrographs not listed in ``failed``."""
    return [m for m in micrographs if str(m) not in failed]


def _output_names(micrographs: list[Path]) -> list[str]:
    stems = [Path(m).name.rsplit(".", 1)[0] for m in micrographs]
    if len(set(stems)) == len(stems):
        return stems
    return [f"{k:04d}_{s}" for k, s in enumerate(stems)]


def denoise_all(
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
