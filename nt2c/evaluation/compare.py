"""Side-by-side evaluation of denoisers: the paper's Table 1, its comparison figures and the picking case.

:func:`evaluate` runs every requested method (:mod:`nt2c.evaluation.baselines`) on every micrograph of one or more
*datasets*, times it, and measures its output:

* the Eq. 5 SNR (:func:`nt2c.evaluation.metrics.snr_eq5`), from signal boxes on the particle coordinates and the nearest
  particle-free background boxes (:func:`nt2c.evaluation.metrics.eq5_regions`), the same boxes for every method; the
  pairs of all micrographs of a dataset are pooled into one Eq. 5 sum, as the paper does;
* where a clean image exists (simulations): PSNR and SSIM after the least-squares affine fit, Pearson
  correlation and the FRC 0.143 / 0.5 crossings against the clean image, averaged over micrographs;
* particle picking (:func:`nt2c.evaluation.picking.pick_particles`) scored against the coordinates: precision, recall and
  F1 from the true/false positives pooled over the dataset.

Methods that cannot run here (Topaz not installed, NT2C model not trained yet) are skipped with the reason.
:func:`evaluate_run` does this for a run directory and writes ``RUN/report/evaluation.csv``,
``evaluation.md`` and the figures.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nt2c.errors import InputError, StageError
from nt2c.evaluation.baselines import BASELINES, MethodUnavailableError, denoise_with, method_status

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
]

log = logging.getLogger(__name__)

DEFAULT_METHODS: tuple[str, ...] = ("raw", "lowpass", "gaussian", "bm3d", "topaz", "nt2c-coarse", "nt2c-fine")

#: columns of evaluation.csv, in order
COLUMNS = (
    "dataset",
    "method",
    "label",
    "n_micrographs",
    "snr_eq5_dB",
    "n_regions",
    "psnr_dB",
    "ssim",
    "pearson",
    "frc_0143",
    "frc_05",
    "frc_unit",
    "precision",
    "recall",
    "f1",
    "n_picked",
    "n_true",
    "seconds_per_micrograph",
)


@dataclass
class Micrograph:
    """One micrograph to evaluate on.

    Attributes
    ----------
    name : str
    image : numpy.ndarray, float32, shape (ny, nx)
    pixel_size_A : float or None
    clean : numpy.ndarray or None
        Noise-free image of the same shape (simulations).
    coords_xy : numpy.ndarray, shape (n, 2), or None
        Particle centres (x, y) in px: true positions (simulations) or reference picks (real data).
    path : pathlib.Path or None
    """

    name: str
    image: np.ndarray
    pixel_size_A: float | None = None
    clean: np.ndarray | None = None
    coords_xy: np.ndarray | None = None
    path: Path | None = None


def read_coords(path: str | os.PathLike) -> np.ndarray:
    """Particle coordinates (x, y) in px from a RELION STAR file (``rlnCoordinateX``/``rlnCoordinateY``).

    Returns
    -------
    numpy.ndarray, float, shape (n, 2)
    """
    from nt2c.io import read_star

    table = read_star(path)
    if "rlnCoordinateX" not in table or "rlnCoordinateY" not in table:
        raise InputError(
            f"{path} has no rlnCoordinateX/rlnCoordinateY columns (found {', '.join(table) or 'none'}); "
            "give a particle coordinate STAR file."
        )
    return np.column_stack([table["rlnCoordinateX"], table["rlnCoordinateY"]]).astype(float)


def _sibling(path: Path, suffixes: Sequence[str]) -> Path | None:
    for suffix in suffixes:
        cand = path.with_name(path.stem + suffix)
        if cand.is_file():
            return cand
    return None


def load_micrograph(
    path: str | os.PathLike,
    *,
    clean: str | os.PathLike | None = None,
    coords: str | os.PathLike | None = None,
    name: str | None = None,
) -> Micrograph:
    """Read a micrograph and, when present, its clean image and particle coordinates.

    Without ``clean``/``coords`` the files beside it are used: ``<stem>_clean.mrc`` and ``<stem>_coords.star``
    (the simulator's names) or ``<stem>_autopick.star`` (RELION autopicking).
    """
    from nt2c.io import read_image

    path = Path(path)
    image, pixel_size = read_image(path)
    clean_path = Path(clean) if clean is not None else _sibling(path, ("_clean.mrc",))
    coords_path = Path(coords) if coords is not None else _sibling(path, ("_coords.star", "_autopick.star"))
    clean_img = None
    if clean_path is not None:
        clean_img, _ = read_image(clean_path)
        if clean_img.shape != image.shape:
            raise InputError(
                f"clean image {clean_path} has shape {clean_img.shape}, the micrograph {path} "
                f"{image.shape}; they must match."
            )
    xy = read_coords(coords_path) if coords_path is not None else None
    return Micrograph(name or path.stem, image, pixel_size, clean_img, xy, path)


def run_datasets(
    run,
    *,
    micrographs: Sequence[str | os.PathLike] | None = None,
    coords: Sequence[str | os.PathLike] | str | os.PathLike | None = None,
    max_micrographs: int | None = None,
) -> dict[str, list[Micrograph]]:
    """The micrographs to evaluate in a run directory, grouped into datasets.

    Parameters
    ----------
    run : RunDir or path-like
    micrographs : sequence of path-like, optional
        Evaluate these (dataset ``"micrographs"``) instead of the run's.
    coords : path-like or sequence of path-like, optional
        STAR file(s) of particle coordinates, one per micrograph of ``micrographs`` (default: beside each).
    max_micrographs : int, optional
        At most this many micrographs per dataset (the first in name order).

    Returns
    -------
    dict of str to list of Micrograph
        ``"simulated"`` (``RUN/simulated/mic_NNNN.mrc`` with ``_clean.mrc`` and ``_coords.star``) and
        ``"experimental"`` (``RUN/micrographs.txt``), or, for explicit ones, ``"micrographs"`` (the file's stem when
        there is one); empty datasets are left out.
    """
    root = Path(getattr(run, "path", run))
    limit = None if max_micrographs is None else int(max_micrographs)
    if micrographs:
        paths = [Path(p) for p in micrographs]
        if coords is None:
            coord_list: list = [None] * len(paths)
        else:
            coord_list = [coords] if isinstance(coords, (str, os.PathLike)) else list(coords)
            if len(coord_list) != len(paths):
                raise InputError(
                    f"--coords gives {len(coord_list)} STAR file(s) for {len(paths)} micrograph(s); "
                    "give one per micrograph, in the same order."
                )
        name = paths[0].stem if len(paths) == 1 else "micrographs"
        return {name: [load_micrograph(p, coords=c) for p, c in list(zip(paths, coord_list))[:limit]]}
    out: dict[str, list[Micrograph]] = {}
    sim = sorted((root / "simulated").glob("mic_[0-9][0-9][0-9][0-9].mrc"))
    if sim:
        out["simulated"] = [load_micrograph(p) for p in sim[:limit]]
    listing = root / "micrographs.txt"
    if listing.is_file():
        paths = []
        for line in listing.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                p = Path(line)
                paths.append(p if p.is_absolute() else root / p)
        if paths:
            out["experimental"] = [load_micrograph(p) for p in paths[:limit]]
    return out


# ---------------------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------------------
@dataclass
class EvaluationResult:
    """What :func:`evaluate` measured.

    Attributes
    ----------
    rows : list of dict
        One row per (dataset, method) with the keys of :data:`COLUMNS` (NaN where not measured).
    per_micrograph : list of dict
        One row per (dataset, micrograph, method).
    skipped : dict of str to str
        Methods that could not run, with the reason.
    outputs : dict of str to dict of str to numpy.ndarray
        dataset -> method -> output on the dataset's first micrograph (for figures).
    picks : dict of str to dict of str to PickResult
        The same for the picking results.
    scores : dict of str to dict of str to dict
        The same for the picking scores (:func:`nt2c.evaluation.picking.score_picks`).
    frcs : dict of str to dict of str to FRCResult
        The same for the FRC curves (when there is a clean image).
    regions : dict of str to Eq5Regions
        The Eq. 5 boxes on each dataset's first micrograph.
    first : dict of str to Micrograph
        Each dataset's first micrograph.
    truth : dict of str to numpy.ndarray
        The coordinates (x, y) scored on it (those on masked contamination left out).
    particle_diameter_px : float
    """

    rows: list[dict]
    per_micrograph: list[dict]
    skipped: dict[str, str]
    outputs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    picks: dict[str, dict] = field(default_factory=dict)
    scores: dict[str, dict] = field(default_factory=dict)
    frcs: dict[str, dict] = field(default_factory=dict)
    regions: dict[str, object] = field(default_factory=dict)
    first: dict[str, Micrograph] = field(default_factory=dict)
    truth: dict[str, np.ndarray] = field(default_factory=dict)
    particle_diameter_px: float = float("nan")

    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(r["dataset"] for r in self.rows))

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(r["method"] for r in self.rows))

    def value(self, dataset: str, method: str, column: str) -> float:
        """One number of the table (NaN when absent)."""
        for r in self.rows:
            if r["dataset"] == dataset and r["method"] == method:
                return r.get(column, float("nan"))
        return float("nan")

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write :attr:`rows` as CSV (atomically)."""
        import csv
        import io as _io

        from nt2c.io import atomic_path

        buf = _io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), extrasaction="ignore")
        writer.writeheader()
        for r in self.rows:
            writer.writerow({k: _fmt_csv(r.get(k)) for k in COLUMNS})
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_text(buf.getvalue())
        return path

    def to_markdown(self) -> str:
        """Table 1 (Eq. 5 SNR, methods x datasets), the per-dataset tables and the skipped methods."""
        lines = ["## Estimated SNR (paper Eq. 5, dB, larger is better)", ""]
        datasets, methods = self.datasets, self.methods
        lines.append("| method | " + " | ".join(datasets) + " |")
        lines.append("|---|" + "---|" * len(datasets))
        for m in methods:
            lines.append(
                f"| {_label(m)} | "
                + " | ".join(_fmt(self.value(d, m, "snr_eq5_dB"), 2) for d in datasets)
                + " |"
            )
        for d in datasets:
            rows = [r for r in self.rows if r["dataset"] == d]
            n = rows[0]["n_micrographs"] if rows else 0
            unit = next((r["frc_unit"] for r in rows if r.get("frc_unit")), "")
            lines += [
                "",
                f"## {d} ({n} micrograph{'s' if n != 1 else ''}, {rows[0]['n_regions'] if rows else 0} "
                "Eq. 5 region pairs)",
                "",
            ]
            spec = [
                ("SNR Eq.5 (dB)", "snr_eq5_dB", 2),
                ("PSNR (dB)", "psnr_dB", 2),
                ("SSIM", "ssim", 3),
                ("Pearson", "pearson", 3),
                (f"FRC 0.143 ({unit})", "frc_0143", 1),
                (f"FRC 0.5 ({unit})", "frc_05", 1),
                ("precision", "precision", 2),
                ("recall", "recall", 2),
                ("F1", "f1", 2),
            ]
            # leave out the columns nothing was measured for (no clean image, no coordinates)
            spec = [s for s in spec if any(not _isnan(r.get(s[1])) for r in rows)]
            picked = any(not _isnan(r.get("f1")) for r in rows)
            head = ["method", *(s[0] for s in spec), *(["picked/true"] if picked else []), "s/micrograph"]
            lines.append("| " + " | ".join(head) + " |")
            lines.append("|---" * len(head) + "|")
            for r in rows:
                cells = [r["label"], *(_fmt(r[key], digits) for _, key, digits in spec)]
                if picked:
                    cells.append(f"{r['n_picked']}/{r['n_true']}")
                cells.append(_fmt(r["seconds_per_micrograph"], 2))
                lines.append("| " + " | ".join(cells) + " |")
        notes = []
        if any(not _isnan(r.get("frc_0143")) for r in self.rows):
            notes.append(
                "FRC columns: the spacing (1/frequency) where the FRC against the clean image first drops "
                "below the threshold; Nyquist (2 px) when it never does."
            )
        if any(not _isnan(r.get("f1")) for r in self.rows):
            notes.append(
                f"Picking: mean shift on the thresholded heat map, particle diameter "
                f"{self.particle_diameter_px:.1f} px, matched within a particle radius (Hungarian matching)."
            )
        notes.append("Times are wall-clock seconds per micrograph on this machine.")
        lines += ["", " ".join(notes)]
        if self.skipped:
            lines += ["", "Skipped methods:", ""]
            lines += [f"- `{m}`: {reason}" for m, reason in self.skipped.items()]
        return "\n".join(lines) + "\n"


def _label(method: str) -> str:
    return BASELINES[method].label if method in BASELINES else method


def _isnan(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fmt(value, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}"


def _fmt_csv(value):
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return value


# ---------------------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------------------
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
            "no micrographs to evaluate; give at least one (see nt2c.evaluation.compare.run_datasets)."
        )
    for name, mics in out.items():
        for m in mics:
            if not isinstance(m, Micrograph):
                raise InputError(
                    f"dataset {name!r} holds a {type(m).__name__}, not an nt2c.evaluation.compare.Micrograph; "
                    "build them with load_micrograph(path)."
                )
    return out


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
        The table's columns: dataset name to its micrographs.
    particle_diameter_px : float
        Particle diameter (px): sets the Eq. 5 boxes, the picking scale, and twice the match radius.
    methods : sequence of str, optional
        Keys of :data:`nt2c.evaluation.baselines.BASELINES` (default :data:`DEFAULT_METHODS`; unavailable ones skipped).
    run : RunDir or path-like, optional
        Run directory holding the NT2C models.
    device : str
        For the torch-based methods.
    picking : bool
        Run and score the mean-shift picking.
    mask_contamination : bool
        Find large dark objects (:func:`nt2c.evaluation.picking.contamination_mask`, on the raw micrograph) and leave them out:
        no Eq. 5 box touches them, nothing is picked there, and coordinates on them are not scored.
    polarity : {"dark", "bright"}
        Particle contrast for picking and the contamination mask.
    eq5_box_px : int, optional
        Side of the Eq. 5 boxes (default ``particle_diameter_px / sqrt(2)``, the square inscribed in the particle;
        background boxes stay a particle radius away from every coordinate).
    pick_threshold : float
        Heat threshold of the picking (robust sigmas).
    method_options : mapping, optional
        Extra options passed to :func:`nt2c.evaluation.baselines.denoise_with` (``sigma_px``, ``stages``, ...).
    seed : int
        Seed of the picking's point subsampling.

    Returns
    -------
    EvaluationResult
    """
    from nt2c.evaluation.metrics import eq5_regions, frc, pearson, psnr, snr_eq5_terms, ssim
    from nt2c.evaluation.picking import contamination_mask, pick_particles, score_picks
    from nt2c.progress import progress

    data = _as_datasets(datasets)
    d = float(particle_diameter_px)
    if not d > 0:
        raise InputError(f"particle_diameter_px={particle_diameter_px} must be positive.")
    # default Eq. 5 box: the square inscribed in the particle's disc (every signal pixel is on the particle);
    # background boxes keep clear of each particle's whole disc (half-side = radius)
    box = int(round(eq5_box_px if eq5_box_px is not None else d / np.sqrt(2)))
    exclusion = int(round(d / 2))
    names = list(DEFAULT_METHODS if methods is None else methods)
    if not names:
        raise InputError("no methods to evaluate; give at least one of " + ", ".join(BASELINES) + ".")
    options = dict(method_options or {})
    status = method_status(names, run=run, **options)
    skipped = {m: reason for m, reason in status.items() if reason}
    for m, reason in skipped.items():
        log.info("skipping %s: %s", m, reason)
    active = [m for m in names if m not in skipped]

    result = EvaluationResult([], [], skipped, particle_diameter_px=d)
    for dname, mics in data.items():
        terms: dict[str, list[float]] = {m: [] for m in active}
        per: dict[str, list[dict]] = {m: [] for m in active}
        n_regions = 0
        for k, mic in enumerate(progress(mics, desc=f"evaluate {dname}")):
            mask = None
            if mask_contamination:
                mask = contamination_mask(mic.image, particle_diameter_px=d, polarity=polarity)
            truth = mic.coords_xy
            if truth is not None and mask is not None and len(truth):
                rr = np.clip(np.round(truth[:, 1]).astype(int), 0, mic.image.shape[0] - 1)
                cc = np.clip(np.round(truth[:, 0]).astype(int), 0, mic.image.shape[1] - 1)
                truth = truth[~mask[rr, cc]]
            regions = None
            if truth is not None and len(truth):
                try:
                    regions = eq5_regions(
                        mic.image.shape, truth, box_px=box, exclusion_px=exclusion, exclude_mask=mask
                    )
                    n_regions += len(regions)
                except InputError as exc:
                    log.warning("%s: no Eq. 5 regions (%s)", mic.name, exc)
            if k == 0:
                result.first[dname] = mic
                result.regions[dname] = regions
                if truth is not None:
                    result.truth[dname] = truth
            for m in active:
                start = time.perf_counter()
                try:
                    out = denoise_with(
                        m, mic.image, pixel_size_A=mic.pixel_size_A, run=run, device=device, **options
                    )
                except MethodUnavailableError as exc:
                    skipped[m] = str(exc)
                    log.warning("skipping %s: %s", m, exc)
                    continue
                seconds = time.perf_counter() - start
                row = {"dataset": dname, "micrograph": mic.name, "method": m, "seconds": seconds}
                if regions is not None:
                    try:
                        t = snr_eq5_terms(*regions.cut(out))
                    except InputError as exc:  # e.g. an output that is constant in a region
                        log.warning("%s, %s: Eq. 5 undefined (%s)", mic.name, m, exc)
                    else:
                        terms[m] += list(t)
                        row["snr_eq5_dB"] = float(np.mean(t))
                if mic.clean is not None:
                    curve = frc(out, mic.clean, pixel_size_A=mic.pixel_size_A)
                    row.update(
                        psnr_dB=psnr(out, mic.clean),
                        ssim=ssim(out, mic.clean),
                        pearson=pearson(out, mic.clean),
                        frc_0143=curve.resolution(0.143),
                        frc_05=curve.resolution(0.5),
                        frc_unit="A" if mic.pixel_size_A else "px",
                    )
                    if k == 0:
                        result.frcs.setdefault(dname, {})[m] = curve
                if picking and truth is not None:
                    picks = pick_particles(
                        out,
                        particle_diameter_px=d,
                        threshold=pick_threshold,
                        polarity=polarity,
                        exclude_mask=mask,
                        seed=seed,
                    )
                    score = score_picks(picks.coords_xy, truth, radius_px=d / 2)
                    row.update({key: score[key] for key in ("tp", "fp", "fn", "n_picked", "n_true", "f1")})
                    if k == 0:
                        result.picks.setdefault(dname, {})[m] = picks
                        result.scores.setdefault(dname, {})[m] = score
                if k == 0:
                    result.outputs.setdefault(dname, {})[m] = out
                per[m].append(row)
                result.per_micrograph.append(row)
        for m in active:
            rows = per[m]
            if not rows:
                continue
            agg = {c: float("nan") for c in COLUMNS}
            agg.update(
                dataset=dname,
                method=m,
                label=_label(m),
                n_micrographs=len(rows),
                n_regions=n_regions,
                frc_unit=next((r["frc_unit"] for r in rows if "frc_unit" in r), ""),
                seconds_per_micrograph=float(np.mean([r["seconds"] for r in rows])),
                n_picked=0,
                n_true=0,
            )
            if terms[m]:
                agg["snr_eq5_dB"] = float(np.mean(terms[m]))
            for c in ("psnr_dB", "ssim", "pearson", "frc_0143", "frc_05"):
                vals = [r[c] for r in rows if c in r]
                if vals:
                    agg[c] = float(np.mean(vals))
            picked = [r for r in rows if "tp" in r]
            if picked:
                tp, fp, fn = (sum(r[key] for r in picked) for key in ("tp", "fp", "fn"))
                agg["precision"] = tp / (tp + fp) if tp + fp else 0.0
                agg["recall"] = tp / (tp + fn) if tp + fn else 0.0
                p, r_ = agg["precision"], agg["recall"]
                agg["f1"] = 2 * p * r_ / (p + r_) if p + r_ > 0 else 0.0
                agg["n_picked"], agg["n_true"] = tp + fp, tp + fn
            result.rows.append(agg)
    return result


def run_particle_diameter_px(run, *, pixel_size_A: float | None = None) -> float:
    """The run's particle diameter in pixels, from ``RUN/params.yaml``.

    The diameter is ``specimen_diameter_A`` for the built-in specimen and twice the largest distance of an atom
    from the centre for an atomic model (``specimen`` a file or PDB id; ``specimen_diameter_A`` is then unused by
    the simulation and only the fallback when the model cannot be read).

    Parameters
    ----------
    run : RunDir or path-like
    pixel_size_A : float, optional
        Pixel size of the micrographs (A/px; default: the run's ``pixel_size_A``, which describes its micrographs;
        MRC headers often say 1 A/px when the voxel size was never set).
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
    """Evaluate the methods on a run's micrographs and write the report.

    Parameters
    ----------
    run : RunDir or path-like
        Run directory: micrographs from ``RUN/simulated`` and ``RUN/micrographs.txt`` (see :func:`run_datasets`),
        NT2C models from ``RUN/models``.
    micrographs, coords, max_micrographs
        See :func:`run_datasets`.
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
    from nt2c.run.rundir import RunDir

    run = run if isinstance(run, RunDir) else RunDir(run)
    data = run_datasets(run, micrographs=micrographs, coords=coords, max_micrographs=max_micrographs)
    if not data:
        raise StageError(
            f"{run.path} has no micrographs to evaluate: simulate some first (`nt2c simulate --run "
            f"{run.path}`), list yours in micrographs.txt, or pass --micrographs."
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
    from nt2c.io import atomic_path

    with atomic_path(md) as tmp:
        tmp.write_text("# Denoising evaluation\n\n" + result.to_markdown())
    written.append(md)
    if figures:
        written += write_figures(result, out)
    return result, written


def write_figures(result: EvaluationResult, out_dir: str | os.PathLike) -> list[Path]:
    """Save the comparison, zoom, FRC and picking figures of each dataset as PNG files in ``out_dir``."""
    import matplotlib.pyplot as plt

    from nt2c.plots.evaluation import plot_comparison, plot_frc, plot_picking, plot_regions

    out_dir = Path(out_dir)
    written = []

    def save(fig, name):
        path = out_dir / name
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(path)

    for dname, outputs in result.outputs.items():
        if not outputs:
            continue
        labels = {_label(m): img for m, img in outputs.items()}
        regions = result.regions.get(dname)
        save(plot_comparison(labels, regions=regions), f"evaluation_{dname}_whole.png")
        if regions is not None and len(regions):
            save(plot_regions(labels, regions), f"evaluation_{dname}_regions.png")
        if result.frcs.get(dname):
            save(
                plot_frc({_label(m): c for m, c in result.frcs[dname].items()}), f"evaluation_{dname}_frc.png"
            )
        if result.picks.get(dname):
            panels = {
                _label(m): (outputs[m], result.picks[dname][m], result.scores[dname][m])
                for m in result.picks[dname]
            }
            save(
                plot_picking(
                    panels, truth_xy=result.truth.get(dname), particle_diameter_px=result.particle_diameter_px
                ),
                f"picking_{dname}.png",
            )
    return written
