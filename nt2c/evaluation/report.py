"""The evaluation's results: :class:`EvaluationResult`, its CSV and Markdown tables and its figures.

Every table and figure names the split it is on (:data:`nt2c.evaluation.datasets.SPLITS`): the CSV has a
``split`` column, ``evaluation.md`` lists each dataset's split and heads each section with it, and each
figure's title starts with ``dataset: split``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nt2c.evaluation.baselines import BASELINES

__all__ = ["COLUMNS", "EvaluationResult", "write_figures", "method_label"]

#: columns of evaluation.csv, in order
COLUMNS = (
    "dataset",
    "split",
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
    "ref_pearson",
    "ref_frc_0143",
    "ref_frc_05",
    "precision",
    "recall",
    "f1",
    "n_picked",
    "n_true",
    "seconds_per_micrograph",
)


def method_label(method: str) -> str:
    """Return the display name of a method (its :data:`BASELINES` label, else the key)."""
    return BASELINES[method].label if method in BASELINES else method


@dataclass
class EvaluationResult:
    """What :func:`nt2c.evaluation.compare.evaluate` measured.

    Attributes
    ----------
    rows : list of dict
        One row per (dataset, method) with the keys of :data:`COLUMNS` (NaN where not measured).
    per_micrograph : list of dict
        One row per (dataset, micrograph, method), with the micrograph's ``path`` and ``split``.
    skipped : dict of str to str
        Methods that could not run, with the reason.
    outputs : dict of str to dict of str to numpy.ndarray
        dataset -> method -> output on the dataset's first micrograph (for figures).
    picks : dict of str to dict of str to PickResult
        The same for the picking results.
    scores : dict of str to dict of str to dict
        The same for the picking scores (:func:`nt2c.evaluation.picking.score_picks`).
    frcs : dict of str to dict of str to FRCResult
        The same for the FRC curves against the clean image (when there is one).
    ref_frcs : dict of str to dict of str to FRCResult
        The same against the reference image (when there is one).
    regions : dict of str to Eq5Regions
        The Eq. 5 boxes on each dataset's first micrograph.
    first : dict of str to Micrograph
        Each dataset's first micrograph.
    truth : dict of str to numpy.ndarray
        The coordinates (x, y) scored on it (those on masked contamination left out).
    splits : dict of str to str
        Dataset -> the split it is on.
    particle_diameter_px : float
    """

    rows: list[dict]
    per_micrograph: list[dict]
    skipped: dict[str, str]
    outputs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    picks: dict[str, dict] = field(default_factory=dict)
    scores: dict[str, dict] = field(default_factory=dict)
    frcs: dict[str, dict] = field(default_factory=dict)
    ref_frcs: dict[str, dict] = field(default_factory=dict)
    regions: dict[str, object] = field(default_factory=dict)
    first: dict[str, object] = field(default_factory=dict)
    truth: dict[str, np.ndarray] = field(default_factory=dict)
    splits: dict[str, str] = field(default_factory=dict)
    particle_diameter_px: float = float("nan")

    @property
    def datasets(self) -> list[str]:
        """Dataset names, in table order."""
        return list(dict.fromkeys(r["dataset"] for r in self.rows))

    @property
    def methods(self) -> list[str]:
        """Method keys, in table order."""
        return list(dict.fromkeys(r["method"] for r in self.rows))

    def value(self, dataset: str, method: str, column: str) -> float:
        """Return one number of the table (NaN when absent)."""
        for r in self.rows:
            if r["dataset"] == dataset and r["method"] == method:
                return r.get(column, float("nan"))
        return float("nan")

    def title(self, dataset: str) -> str:
        """Return ``"dataset: split"``, the heading of the dataset's tables and figures."""
        split = self.splits.get(dataset)
        return f"{dataset}: {split}" if split else dataset

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
        """Render Table 1 (Eq. 5 SNR, methods x datasets), the per-dataset tables and the skipped methods."""
        datasets, methods = self.datasets, self.methods
        lines = ["## Estimated SNR (paper Eq. 5, dB, larger is better)", ""]
        lines += [f"- `{d}`: {self.splits.get(d) or 'split not given'}" for d in datasets]
        lines += ["", "| method | " + " | ".join(datasets) + " |", "|---|" + "---|" * len(datasets)]
        for m in methods:
            cells = [_fmt(self.value(d, m, "snr_eq5_dB"), 2) for d in datasets]
            lines.append(f"| {method_label(m)} | " + " | ".join(cells) + " |")
        for d in datasets:
            lines += ["", *self._dataset_table(d)]
        lines += ["", self._notes()]
        if self.skipped:
            lines += ["", "Skipped methods:", ""]
            lines += [f"- `{m}`: {reason}" for m, reason in self.skipped.items()]
        return "\n".join(lines) + "\n"

    def _dataset_table(self, dataset: str) -> list[str]:
        rows = [r for r in self.rows if r["dataset"] == dataset]
        n = rows[0]["n_micrographs"] if rows else 0
        unit = next((r["frc_unit"] for r in rows if r.get("frc_unit")), "")
        spec = [
            ("SNR Eq.5 (dB)", "snr_eq5_dB", 2),
            ("PSNR (dB)", "psnr_dB", 2),
            ("SSIM", "ssim", 3),
            ("Pearson", "pearson", 3),
            (f"FRC 0.143 ({unit})", "frc_0143", 1),
            (f"FRC 0.5 ({unit})", "frc_05", 1),
            ("r vs reference", "ref_pearson", 3),
            (f"FRC 0.143 vs ref. ({unit})", "ref_frc_0143", 1),
            (f"FRC 0.5 vs ref. ({unit})", "ref_frc_05", 1),
            ("precision", "precision", 2),
            ("recall", "recall", 2),
            ("F1", "f1", 2),
        ]
        # leave out the columns nothing was measured for (no clean image, no reference, no coordinates)
        spec = [s for s in spec if any(not _isnan(r.get(s[1])) for r in rows)]
        picked = any(not _isnan(r.get("f1")) for r in rows)
        head = ["method", *(s[0] for s in spec), *(["picked/true"] if picked else []), "s/micrograph"]
        lines = [
            f"## {self.title(dataset)} ({n} micrograph{'s' if n != 1 else ''}, "
            f"{rows[0]['n_regions'] if rows else 0} Eq. 5 region pairs)",
            "",
            "| " + " | ".join(head) + " |",
            "|---" * len(head) + "|",
        ]
        for r in rows:
            cells = [r["label"], *(_fmt(r[key], digits) for _, key, digits in spec)]
            if picked:
                cells.append(f"{r['n_picked']}/{r['n_true']}")
            cells.append(_fmt(r["seconds_per_micrograph"], 2))
            lines.append("| " + " | ".join(cells) + " |")
        return lines

    def _notes(self) -> str:
        notes = []
        if any(not _isnan(r.get("frc_0143")) for r in self.rows):
            notes.append(
                "FRC columns: the spacing (1/frequency) where the FRC against the clean image first drops "
                "below the threshold; Nyquist (2 px) when it never does."
            )
        if any(not _isnan(r.get("ref_pearson")) for r in self.rows):
            notes.append(
                "Reference columns: correlation coefficient with the higher-dose reference image of the same "
                "field (the same after any scale-and-offset fit) and the FRC crossings against it; the "
                "reference is itself noisy, so these rank methods rather than measure them absolutely."
            )
            if any("reference_share" in r for r in self.per_micrograph):
                notes.append(
                    "Each reference contained its micrograph (--reference-contains-micrograph): the "
                    "micrograph's own noise was removed from it first (nt2c.evaluation.metrics."
                    "decorrelated_reference)."
                )
        if any(not _isnan(r.get("f1")) for r in self.rows):
            notes.append(
                f"Picking: mean shift on the thresholded heat map, particle diameter "
                f"{self.particle_diameter_px:.1f} px, matched within a particle radius (Hungarian matching)."
            )
        notes.append("Times are wall-clock seconds per micrograph on this machine.")
        return " ".join(notes)


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


def write_figures(result: EvaluationResult, out_dir: str | os.PathLike) -> list[Path]:
    """Save each dataset's comparison, zoom, FRC and picking figures as PNG files in ``out_dir``.

    Files: ``evaluation_<dataset>_whole.png``, ``_regions.png`` (with Eq. 5 boxes), ``_frc.png`` (with a clean
    image), ``_frc_reference.png`` (with a reference image) and ``picking_<dataset>.png``; each titled
    ``dataset: split``.
    """
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
        title = result.title(dname)
        labels = {method_label(m): img for m, img in outputs.items()}
        regions = result.regions.get(dname)
        save(plot_comparison(labels, regions=regions, title=title), f"evaluation_{dname}_whole.png")
        if regions is not None and len(regions):
            save(plot_regions(labels, regions, title=title), f"evaluation_{dname}_regions.png")
        for curves, suffix, against in (
            (result.frcs.get(dname), "frc", "the clean image"),
            (result.ref_frcs.get(dname), "frc_reference", "the reference image"),
        ):
            if curves:
                fig = plot_frc({method_label(m): c for m, c in curves.items()}, title=title, against=against)
                save(fig, f"evaluation_{dname}_{suffix}.png")
        if result.picks.get(dname):
            panels = {
                method_label(m): (outputs[m], result.picks[dname][m], result.scores[dname][m])
                for m in result.picks[dname]
            }
            fig = plot_picking(
                panels,
                truth_xy=result.truth.get(dname),
                particle_diameter_px=result.particle_diameter_px,
                title=title,
            )
            save(fig, f"picking_{dname}.png")
    return written
