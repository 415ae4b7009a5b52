"""What ``nt2c run`` delivers: each model's outputs, the residual self-check between them, ``RUN/denoised``.

The fine and the coarse model each denoise the run's micrographs (and the held-out ones) into
``RUN/report/fine/`` and ``RUN/report/coarse/`` through the one batch loop (:mod:`nt2c.run.batch`), which
keeps outputs made by the same model and settings. :func:`choose_model` picks what ``RUN/denoised/``
holds: the model whose residual is spectrally closest to the extracted noise
(:mod:`nt2c.evaluation.selfcheck`), or the user's choice (``denoise.model``), or the coarse one when no noise
could be learnt. :func:`deliver` links (or copies) the chosen outputs, with their provenance records, into
``RUN/denoised/``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from nt2c.run.rundir import RunDir

__all__ = ["choose_model", "deliver", "denoise_all", "readable"]


def choose_model(run: RunDir, outputs: dict[str, dict[Path, Path]], choice: str, *, no_noise: str | None):
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
