"""Side-by-side evaluation of denoisers: the paper's Table 1, its comparison figures and the picking case.

:func:`evaluate` runs every requested method (:mod:`nt2c.evaluation.baselines`) on every micrograph of one or
more *datasets* (:mod:`nt2c.evaluation.datasets`: which micrographs, on which split of the run), times it, and
measures its output:

* the Eq. 5 SNR (:func:`nt2c.evaluation.eq5.snr_eq5`), from signal boxes on the particle coordinates and the
  nearest particle-free background boxes (:func:`nt2c.evaluation.eq5.eq5_regions`), the same boxes for every
  method; the pairs of all micrographs of a dataset are pooled into one Eq. 5 sum, as the paper does;
* where a clean image exists (simulations): PSNR and SSIM after the least-squares affine fit, Pearson
  correlation and the FRC 0.143 / 0.5 crossings against the clean image, averaged over micrographs;
* where a reference image exists (real data, ``--reference``): the correlation coefficient and the FRC
  crossings against it, averaged over micrographs;
* particle picking (:func:`nt2c.evaluation.picking.pick_particles`) scored against the coordinates: precision,
  recall and F1 from the true/false positives pooled over the dataset.

Methods that cannot run here (Topaz not installed, NT2C model not trained yet) are skipped with the reason.
:func:`evaluate_run` does this for a run directory, on the micrographs no model of the run trained on, and
writes ``RUN/report/evaluation.csv``, ``evaluation.md`` and the figures (:mod:`nt2c.evaluation.report`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from nt2c.errors import InputError, StageError
from nt2c.evaluation.baselines import BASELINES, MethodUnavailableError, denoise_with, method_status
from nt2c.evaluation.datasets import SPLITS, Micrograph, load_micrograph, read_coords, run_datasets
from nt2c.evaluation.report import EvaluationResult, write_figures
from nt2c.evaluation.scoring import Setup, aggregate, measure, prepare

__all__ = [
    "Micrograph",
    "EvaluationResult",
    "DEFAULT_METHODS",
    "read_coords",
    "load_micrograph",
    "run_datasets",
    "run_particle_diameter_px",
    "evaluate",
    "evaluate_run",
    "write_figures",
]

log = logging.getLogger(__name__)

DEFAULT_METHODS: tuple[str, ...] = ("raw", "lowpass", "gaussian", "bm3d", "topaz", "nt2c-coarse", "nt2c-fine")


def _as_datasets(datasets) -> dict[str, list[Micrograph]]:
    if isinstance(datasets, Micrograph):
        return {"micrograph": [datasets]}
    if isinstance(datasets, Mapping):
        out = {str(k): [v] if isinstance(v, Micrograph) else list(v) for k, v in datasets.items()}
    else:
        out = {"micrographs": list(datasets)}
    out = {k: v for k, v in out.items() if v}
    if not out:
        raise InputError(
            "no micrographs to evaluate; give at least one (see nt2c.evaluation.datasets.run_datasets)."
        )
    for name, mics in out.items():
        for m in mics:
            if not isinstance(m, Micrograph):
                raise InputError(
                    f"dataset {name!r} holds a {type(m).__name__}, not an "
                    "nt2c.evaluation.datasets.Micrograph; build them with load_micrograph(path)."
                )
    return out


def _dataset_split(name: str, mics: Sequence[Micrograph]) -> str:
    """Return the split a dataset is on: its micrographs' common ``split``, else its name's."""
    splits = list(dict.fromkeys(m.split for m in mics if m.split))
    if len(splits) == 1:
        return splits[0]
    if splits:
        return "mixed: " + "; ".join(splits)
    return SPLITS.get(name, "")


def _denoise(method: str, mic: Micrograph, setup: Setup, result: EvaluationResult):
    """Run one method on one micrograph: ``(output, seconds)``, or None when it turns out unavailable."""
    start = time.perf_counter()
    try:
        out = denoise_with(
            method,
            mic.image,
            pixel_size_A=mic.pixel_size_A,
            run=setup.run,
            device=setup.device,
            **setup.options,
        )
    except MethodUnavailableError as exc:
        result.skipped[method] = str(exc)
        log.warning("skipping %s: %s", method, exc)
        return None
    return out, time.perf_counter() - start


def _keep_for_figures(result: EvaluationResult, name: str, method: str, out: np.ndarray, extra: dict) -> None:
    """Keep a method's output on the dataset's first micrograph, its FRC curves and picks, for figures."""
    result.outputs.setdefault(name, {})[method] = out
    for key, store in (("frc", result.frcs), ("ref_frc", result.ref_frcs)):
        if key in extra:
            store.setdefault(name, {})[method] = extra[key]
    if "picks" in extra:
        result.picks.setdefault(name, {})[method] = extra["picks"]
        result.scores.setdefault(name, {})[method] = extra["score"]


def _evaluate_dataset(name: str, mics: Sequence[Micrograph], setup: Setup, result: EvaluationResult) -> None:
    """Run and score every active method on every micrograph of one dataset; append to ``result``."""
    from nt2c.progress import progress

    split = _dataset_split(name, mics)
    result.splits[name] = split
    per: dict[str, list[dict]] = {m: [] for m in setup.methods}
    n_regions = 0
    for k, mic in enumerate(progress(mics, desc=f"evaluate {name}")):
        prep = prepare(mic, setup)
        n_regions += len(prep.regions) if prep.regions is not None else 0
        if k == 0:
            result.first[name] = mic
            result.regions[name] = prep.regions
            if prep.truth is not None:
                result.truth[name] = prep.truth
        for m in [m for m in setup.methods if m not in result.skipped]:
            done = _denoise(m, mic, setup, result)
            if done is None:
                continue
            out, seconds = done
            measured, extra = measure(out, prep, setup)
            row = {"dataset": name, "split": split, "micrograph": mic.name, "path": mic.path, "method": m}
            row.update(measured, seconds=seconds)
            per[m].append(row)
            result.per_micrograph.append(row)
            if k == 0:
                _keep_for_figures(result, name, m, out, extra)
    for m in setup.methods:
        if per[m]:
            result.rows.append(aggregate(name, split, m, per[m], n_regions))


def evaluate(
    datasets: Mapping[str, Sequence[Micrograph]] | Sequence[Micrograph] | Micrograph,
    *,
    particle_diameter_px: float,
    methods: Sequence[str] | None = None,
    run=None,
    device: str = "auto",
    picking: bool = True,
    mask_contamination: bool = False,
    polarity: str = "dark",
    eq5_box_px: int | None = None,
    pick_threshold: float = 2.5,
    method_options: Mapping | None = None,
    seed: int = 0,
) -> EvaluationResult:
    """Run denoisers on micrographs and measure them side by side (see the module docstring).

    Parameters
    ----------
    datasets : mapping of str to sequence of Micrograph, or a sequence of Micrograph, or one Micrograph
        The table's columns: dataset name to its micrographs. A dataset's split is its micrographs' ``split``,
        else the one :data:`nt2c.evaluation.datasets.SPLITS` gives for its name.
    particle_diameter_px : float
        Particle diameter (px): sets the Eq. 5 boxes, the picking scale, and twice the match radius.
    methods : sequence of str, optional
        Keys of :data:`nt2c.evaluation.baselines.BASELINES` (default :data:`DEFAULT_METHODS`; unavailable ones
        skipped).
    run : RunDir or path-like, optional
        Run directory holding the NT2C models.
    device : str
        For the torch-based methods.
    picking : bool
        Run and score the mean-shift picking.
    mask_contamination : bool
        Find large dark objects (:func:`nt2c.evaluation.picking.contamination_mask`, on the raw micrograph)
        and leave them out: no Eq. 5 box touches them, nothing is picked there, and coordinates on them are
        not scored.
    polarity : {"dark", "bright"}
        Particle contrast for picking and the contamination mask.
    eq5_box_px : int, optional
        Side of the Eq. 5 boxes (default ``particle_diameter_px / sqrt(2)``, the square inscribed in the
        particle; background boxes stay a particle radius away from every coordinate).
    pick_threshold : float
        Heat threshold of the picking (robust sigmas).
    method_options : mapping, optional
        Extra options passed to :func:`nt2c.evaluation.baselines.denoise_with` (``sigma_px``, ``stages``,
        ...).
    seed : int
        Seed of the picking's point subsampling.

    Returns
    -------
    EvaluationResult
    """
    data = _as_datasets(datasets)
    d = float(particle_diameter_px)
    if not d > 0:
        raise InputError(f"particle_diameter_px={particle_diameter_px} must be positive.")
    names = list(DEFAULT_METHODS if methods is None else methods)
    if not names:
        raise InputError("no methods to evaluate; give at least one of " + ", ".join(BASELINES) + ".")
    options = dict(method_options or {})
    skipped = {m: reason for m, reason in method_status(names, run=run, **options).items() if reason}
    for m, reason in skipped.items():
        log.info("skipping %s: %s", m, reason)
    setup = Setup(
        diameter_px=d,
        # the square inscribed in the particle's disc (every signal pixel is on the particle); background
        # boxes keep clear of each particle's whole disc (half-side = radius)
        box_px=int(round(eq5_box_px if eq5_box_px is not None else d / np.sqrt(2))),
        exclusion_px=int(round(d / 2)),
        methods=[m for m in names if m not in skipped],
        options=options,
        run=run,
        device=device,
        picking=picking,
        mask_contamination=mask_contamination,
        polarity=polarity,
        pick_threshold=pick_threshold,
        seed=seed,
    )
    result = EvaluationResult([], [], skipped, particle_diameter_px=d)
    for name, mics in data.items():
        _evaluate_dataset(name, mics, setup, result)
    return result


def run_particle_diameter_px(run, *, pixel_size_A: float | None = None) -> float:
    """Return the run's particle diameter in pixels, from ``RUN/params.yaml``.

    The diameter is ``specimen_diameter_A`` for the built-in specimen and twice the largest distance of an
    atom from the centre for an atomic model (``specimen`` a file or PDB id; ``specimen_diameter_A`` is then
    unused by the simulation and only the fallback when the model cannot be read).

    Parameters
    ----------
    run : RunDir or path-like
    pixel_size_A : float, optional
        Pixel size of the micrographs (A/px; default: the run's ``pixel_size_A``, which describes its
        micrographs; MRC headers often say 1 A/px when the voxel size was never set).
    """
    from nt2c.config import load_params
    from nt2c.errors import NT2CError

    params_path = Path(getattr(run, "path", run)) / "params.yaml"
    if not params_path.is_file():
        raise InputError(
            f"{params_path} is missing, so the particle size is unknown; pass particle_diameter_px "
            "(--particle-diameter-px)."
        )
    params = load_params(params_path)
    diameter_A = params.specimen_diameter_A
    if str(params.specimen) != "builtin":
        from nt2c.simulation.specimen import load_specimen

        try:
            diameter_A = 2.0 * load_specimen(params.specimen).centred().radius_A
        except (NT2CError, OSError) as exc:
            log.warning(
                "could not read the specimen %s (%s): particle diameter from specimen_diameter_A",
                params.specimen,
                exc,
            )
    return float(diameter_A / (pixel_size_A or params.pixel_size_A))


def evaluate_run(
    run,
    *,
    micrographs: Sequence[str | os.PathLike] | None = None,
    coords: Sequence[str | os.PathLike] | str | os.PathLike | None = None,
    reference: Sequence[str | os.PathLike] | str | os.PathLike | None = None,
    include_training: bool = False,
    reference_contains_micrograph: bool = False,
    methods: Sequence[str] | None = None,
    particle_diameter_px: float | None = None,
    max_micrographs: int | None = None,
    device: str = "auto",
    picking: bool = True,
    mask_contamination: bool = False,
    figures: bool = True,
    method_options: Mapping | None = None,
    out_dir: str | os.PathLike | None = None,
    seed: int = 0,
) -> tuple[EvaluationResult, list[Path]]:
    """Evaluate the methods on the micrographs no model of a run trained on, and write the report.

    Parameters
    ----------
    run : RunDir or path-like
        Run directory: the simulated test set ``RUN/test``, ``RUN/micrographs.txt`` and ``RUN/heldout.txt``
        (see :func:`nt2c.evaluation.datasets.run_datasets`), NT2C models from ``RUN/models``.
    micrographs, coords, reference, include_training, reference_contains_micrograph, max_micrographs
        See :func:`nt2c.evaluation.datasets.run_datasets`.
    methods, device, picking, mask_contamination, method_options, seed
        See :func:`evaluate`.
    particle_diameter_px : float, optional
        Default: :func:`run_particle_diameter_px` (the specimen's diameter over the run's ``pixel_size_A``).
    figures : bool
        Also write the comparison figures.
    out_dir : path-like, optional
        Where to write (default ``RUN/report``).

    Returns
    -------
    result : EvaluationResult
    written : list of pathlib.Path
        ``evaluation.csv``, ``evaluation.md`` and the figures.
    """
    from nt2c.io import atomic_path
    from nt2c.run.rundir import RunDir

    run = run if isinstance(run, RunDir) else RunDir(run)
    data = run_datasets(
        run,
        micrographs=micrographs,
        coords=coords,
        reference=reference,
        include_training=include_training,
        reference_contains_micrograph=reference_contains_micrograph,
        max_micrographs=max_micrographs,
    )
    if not data:
        raise StageError(
            f"{run.path} has no micrographs to evaluate that its models did not train on: run the simulate "
            f"stage (it writes the test set RUN/test), list micrographs in micrographs.txt/heldout.txt, pass "
            "--micrographs, or --include-training to score the training micrographs (in-sample)."
        )
    d = particle_diameter_px if particle_diameter_px is not None else run_particle_diameter_px(run)
    result = evaluate(
        data,
        particle_diameter_px=d,
        methods=methods,
        run=run,
        device=device,
        picking=picking,
        mask_contamination=mask_contamination,
        method_options=method_options,
        seed=seed,
    )
    out = Path(out_dir) if out_dir is not None else run.report
    out.mkdir(parents=True, exist_ok=True)
    written = [result.to_csv(out / "evaluation.csv")]
    md = out / "evaluation.md"
    with atomic_path(md) as tmp:
        tmp.write_text("# Denoising evaluation\n\n" + result.to_markdown())
    written.append(md)
    if figures:
        written += write_figures(result, out)
    return result, written
