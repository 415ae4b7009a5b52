"""The run's report: ``RUN/report/report.md`` and ``report.json``, and one before/after figure per micrograph.

It shows the parameters (and which were filled in with defaults), the seconds per stage, the noise-patch
extraction and its fallbacks, the calibration (defocus, units, noise-to-signal ratio), the noise fidelity of
the GAN, the re-weighted pairs, the self-check that chose the delivered model, and, per micrograph, the raw,
coarse and fine images (with the PSNR against the clean image for the simulated stand-ins). It is rewritten
only when something it shows changed.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from nt2c.errors import InputError
from nt2c.io import read_image, read_json, write_json
from nt2c.run.rundir import RunDir
from nt2c.run.stages import PIPELINE_STAGES

__all__ = ["write_report", "stage_timings"]


def stage_timings(run: RunDir) -> dict[str, float | None]:
    """Return the seconds each pipeline stage took, from ``RUN/stamps/<stage>.json`` (None when not run)."""
    out = {}
    for name in PIPELINE_STAGES:
        stamp = run.read_stamp(name)
        out[name] = None if not stamp else stamp.get("seconds")
    return out


def _clean_images(run: RunDir) -> dict[str, dict]:
    """Map each stand-in micrograph to its manifest entry (``clean``, ``coords``, ``split``)."""
    path = run.path / "experimental" / "manifest.json"
    if not path.is_file():
        return {}
    manifest = read_json(path)
    return {str(Path(m["micrograph"]).resolve()): m for m in manifest.get("micrographs", [])}


def _save_before_after(images: dict, path: Path) -> None:
    """Write :func:`nt2c.plots.denoising.plot_before_after` of ``images`` to ``path``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from nt2c.io import atomic_path
    from nt2c.plots.denoising import plot_before_after

    ny, nx = next(iter(images.values())).shape
    fig = plot_before_after(images, zoom=max(16, min(384, ny // 2, nx // 2)), size=3.0)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=80)
    finally:
        plt.close(fig)


def _fingerprint(run: RunDir, result, outputs: dict[str, dict[Path, Path]]) -> str:
    h = hashlib.sha256()
    for name in PIPELINE_STAGES:
        path = run.stamp_path(name)
        h.update(path.read_bytes() if path.is_file() else b"-")
    for p in [*result.denoised, *(p for per in outputs.values() for p in per.values())]:
        st = Path(p).stat()
        h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode())
    facts = [result.failed, result.defaulted, result.delivered, result.delivered_reason, result.no_noise]
    h.update(json.dumps(facts, sort_keys=True, default=str).encode())
    return h.hexdigest()


def write_report(
    run: RunDir, result, *, outputs: dict[str, dict[Path, Path]] | None = None, profile: str = "quick"
) -> tuple[Path, bool]:
    """Write ``RUN/report/report.md``, ``report.json`` and the before/after figures, unless up to date.

    Parameters
    ----------
    run : RunDir
    result : nt2c.run.pipeline.PipelineResult
    outputs : dict of str to dict, optional
        Model name (``"fine"``, ``"coarse"``) to {micrograph: its denoised file}.
    profile : str

    Returns
    -------
    path : pathlib.Path
        ``RUN/report/report.md``.
    written : bool
        False when the existing report already showed the current stamps and outputs.
    """
    outputs = outputs or {}
    profile = profile or run.profile() or "quick"
    report_dir = run.report
    md_path, json_path = report_dir / "report.md", report_dir / "report.json"
    fingerprint = _fingerprint(run, result, outputs)
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
    heldout = {Path(p) for p in result.heldout}
    for mic in [*result.micrographs, *result.heldout]:
        mic = Path(mic)
        per_model = {name: per[mic] for name, per in outputs.items() if mic in per}
        if not per_model:
            continue
        images = {"raw": read_image(mic)[0]}
        row: dict = {
            "micrograph": str(mic),
            "split": "held out (never learnt from)" if mic in heldout else "learnt from",
            "outputs": {k: str(v) for k, v in per_model.items()},
        }
        for name in ("coarse", "fine"):
            if name in per_model:
                images[f"{name}{' (NT2C)' if name == 'fine' else ''}"] = read_image(per_model[name])[0]
        entry = cleans.get(str(mic.resolve()))
        if entry is not None and Path(entry["clean"]).is_file():
            clean, _ = read_image(entry["clean"])
            images["clean (truth)"] = clean
            row["psnr_db"] = {k: round(psnr(v, clean), 3) for k, v in images.items() if k != "clean (truth)"}
        figure = report_dir / f"before_after_{next(iter(per_model.values())).stem}.png"
        _save_before_after(images, figure)
        row["figure"] = figure.name
        rows.append(row)
    extraction_path = run.noise / "extraction.json"
    extraction = read_json(extraction_path) if extraction_path.is_file() else None
    calibration_path = run.path / "calibration" / "calibration.json"
    calibration = read_json(calibration_path) if calibration_path.is_file() else None

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
        "extraction": extraction,
        "calibration": calibration,
        "delivered": {
            "model": result.delivered,
            "reason": result.delivered_reason,
            "no_noise": result.no_noise,
        },
        "selfcheck": result.selfcheck,
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
    if summary.get("calibration"):
        from nt2c.calibration.measure import describe_calibration

        lines += [
            "## Calibration (RUN/calibration/)",
            "",
            "```text",
            describe_calibration(summary["calibration"]),
            "```",
            "",
        ]
        lines += [
            "Per micrograph: `calibration/calibration.csv`; the power spectra, data against simulation:",
            "",
            "![spectra](../calibration/spectra.png)",
            "",
        ]
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
    delivered = summary.get("delivered") or {}
    if delivered:
        lines += [
            "## What RUN/denoised holds",
            "",
            f"The **{delivered['model']}** model's output: {delivered['reason']}.",
            "",
        ]
        if delivered.get("no_noise"):
            lines += [f"No noise could be learnt: {delivered['no_noise']}", ""]
    checks = summary.get("selfcheck") or {}
    if checks:
        lines += [
            "Self-check (no ground truth needed; `nt2c.evaluation.selfcheck`): the residual mismatch, "
            "how far `raw - denoised` is from the noise spectrum (0 dB = like the noise), and Stein's "
            "estimate of each output's correlation with the clean signal, from the extracted noise patches. "
            "Fine is the better model where its residual mismatch is lower and its Stein score is not lower "
            "by more than twice the score's standard error (`nt2c.run.delivery`).",
            "",
            "| micrograph | fine: est. r | coarse: est. r | fine: residual (dB) | coarse: residual (dB) "
            "| better |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for name, c in checks.items():
            if name == "mean":
                continue
            lines.append(
                f"| {name} | {c['fine']['correlation']:.3f} | {c['coarse']['correlation']:.3f} | "
                f"{c['fine']['residual_dB']:.2f} | {c['coarse']['residual_dB']:.2f} | {c['better']} |"
            )
        lines.append("")
    extraction = summary.get("extraction")
    if extraction:
        used = next((f for f in extraction["fallbacks"] if f.get("used")), extraction["fallbacks"][-1])
        lines += [
            "## Noise patches",
            "",
            f"{used['patches']} patches ({used['fallback']}); per micrograph: "
            + ", ".join(f"{k} {v}" for k, v in extraction["patches_per_micrograph"].items())
            + ".",
        ]
        if len(extraction["fallbacks"]) > 1:
            lines += [
                "",
                f"Fewer than {extraction['min_patches']} patches with the configured settings; "
                "fallbacks tried: "
                + "; ".join(f"{f['fallback']}: {f['patches']}" for f in extraction["fallbacks"])
                + ".",
            ]
        lines.append("")
    lines += ["## Micrographs", ""]
    for row in summary["micrographs"]:
        made = ", ".join(f"{k} `{v}`" for k, v in row["outputs"].items())
        lines.append(f"- `{row['micrograph']}` ({row['split']}): {made} (figure `{row['figure']}`)")
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
