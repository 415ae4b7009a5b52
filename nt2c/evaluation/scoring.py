"""The steps of :func:`nt2c.evaluation.compare.evaluate`: prepare a micrograph, measure one output, aggregate.

* :func:`prepare` -- what does not depend on the method: the contamination mask, the coordinates scored (those
  on it left out) and the Eq. 5 boxes;
* :func:`measure` -- one method's output on one micrograph: Eq. 5 terms, the metrics against the clean image
  and against the reference image, picking counts;
* :func:`aggregate` -- a method's per-micrograph measures on a dataset into one row of the table.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from nt2c.errors import InputError
from nt2c.evaluation.datasets import Micrograph
from nt2c.evaluation.report import COLUMNS, method_label

__all__ = ["Setup", "Prepared", "prepare", "measure", "aggregate"]

log = logging.getLogger(__name__)

_MEAN_COLUMNS = (
    "psnr_dB",
    "ssim",
    "pearson",
    "frc_0143",
    "frc_05",
    "ref_pearson",
    "ref_frc_0143",
    "ref_frc_05",
)


@dataclass
class Setup:
    """The settings shared by every micrograph and method of one :func:`evaluate` call."""

    diameter_px: float
    box_px: int
    exclusion_px: int
    methods: list[str]
    options: dict
    run: object
    device: str
    picking: bool
    mask_contamination: bool
    polarity: str
    pick_threshold: float
    seed: int


@dataclass
class Prepared:
    """One micrograph ready to score: the coordinates to score against, its contamination mask, its boxes."""

    mic: Micrograph
    truth: np.ndarray | None
    mask: np.ndarray | None
    regions: object | None


def prepare(mic: Micrograph, setup: Setup) -> Prepared:
    """Mask contamination, drop the coordinates on it, and place the Eq. 5 boxes (method-independent)."""
    from nt2c.evaluation.eq5 import eq5_regions
    from nt2c.evaluation.picking import contamination_mask

    mask = None
    if setup.mask_contamination:
        mask = contamination_mask(mic.image, particle_diameter_px=setup.diameter_px, polarity=setup.polarity)
    truth = mic.coords_xy
    if truth is not None and mask is not None and len(truth):
        rr = np.clip(np.round(truth[:, 1]).astype(int), 0, mic.image.shape[0] - 1)
        cc = np.clip(np.round(truth[:, 0]).astype(int), 0, mic.image.shape[1] - 1)
        truth = truth[~mask[rr, cc]]
    regions = None
    if truth is not None and len(truth):
        try:
            regions = eq5_regions(
                mic.image.shape,
                truth,
                box_px=setup.box_px,
                exclusion_px=setup.exclusion_px,
                exclude_mask=mask,
            )
        except InputError as exc:
            log.warning("%s: no Eq. 5 regions (%s)", mic.name, exc)
    return Prepared(mic, truth, mask, regions)


def measure(out: np.ndarray, prep: Prepared, setup: Setup) -> tuple[dict, dict]:
    """Score one output: returns the per-micrograph measures and the objects kept for figures.

    The measures hold ``eq5_terms`` (list, pooled over the dataset), the full-reference values, ``frc_unit``
    and the picking counts ``tp, fp, fn, n_picked, n_true, f1``, each only when it could be measured.
    """
    from nt2c.evaluation.eq5 import snr_eq5_terms
    from nt2c.evaluation.frc import frc
    from nt2c.evaluation.metrics import pearson, psnr, ssim
    from nt2c.evaluation.picking import pick_particles, score_picks

    mic = prep.mic
    row: dict = {}
    extra: dict = {}
    if prep.regions is not None:
        try:
            terms = snr_eq5_terms(*prep.regions.cut(out))
        except InputError as exc:  # e.g. an output that is constant in a region
            log.warning("%s: Eq. 5 undefined (%s)", mic.name, exc)
        else:
            row["eq5_terms"] = list(terms)
            row["snr_eq5_dB"] = float(np.mean(terms))
    unit = "A" if mic.pixel_size_A else "px"
    if mic.clean is not None:
        curve = frc(out, mic.clean, pixel_size_A=mic.pixel_size_A)
        row.update(
            psnr_dB=psnr(out, mic.clean),
            ssim=ssim(out, mic.clean),
            pearson=pearson(out, mic.clean),
            frc_0143=curve.resolution(0.143),
            frc_05=curve.resolution(0.5),
            frc_unit=unit,
        )
        extra["frc"] = curve
    if mic.reference is not None:
        curve = frc(out, mic.reference, pixel_size_A=mic.pixel_size_A)
        row.update(
            ref_pearson=pearson(out, mic.reference),
            ref_frc_0143=curve.resolution(0.143),
            ref_frc_05=curve.resolution(0.5),
            frc_unit=unit,
        )
        extra["ref_frc"] = curve
        if mic.reference_share is not None:
            row["reference_share"] = mic.reference_share
    if setup.picking and prep.truth is not None:
        picks = pick_particles(
            out,
            particle_diameter_px=setup.diameter_px,
            threshold=setup.pick_threshold,
            polarity=setup.polarity,
            exclude_mask=prep.mask,
            seed=setup.seed,
        )
        score = score_picks(picks.coords_xy, prep.truth, radius_px=setup.diameter_px / 2)
        row.update({key: score[key] for key in ("tp", "fp", "fn", "n_picked", "n_true", "f1")})
        extra.update(picks=picks, score=score)
    return row, extra


def aggregate(dataset: str, split: str, method: str, rows: list[dict], n_regions: int) -> dict:
    """One row of the table from a method's per-micrograph rows on a dataset (the keys of COLUMNS)."""
    agg = {c: float("nan") for c in COLUMNS}
    agg.update(
        dataset=dataset,
        split=split,
        method=method,
        label=method_label(method),
        n_micrographs=len(rows),
        n_regions=n_regions,
        frc_unit=next((r["frc_unit"] for r in rows if "frc_unit" in r), ""),
        seconds_per_micrograph=float(np.mean([r["seconds"] for r in rows])),
        n_picked=0,
        n_true=0,
    )
    terms = [t for r in rows for t in r.get("eq5_terms", [])]
    if terms:  # Eq. 5 pools the region pairs of all micrographs into one mean, as the paper does
        agg["snr_eq5_dB"] = float(np.mean(terms))
    for c in _MEAN_COLUMNS:
        vals = [r[c] for r in rows if c in r]
        if vals:
            agg[c] = float(np.mean(vals))
    picked = [r for r in rows if "tp" in r]
    if picked:  # precision and recall from the true/false positives pooled over the dataset
        tp, fp, fn = (sum(r[key] for r in picked) for key in ("tp", "fp", "fn"))
        p = tp / (tp + fp) if tp + fp else 0.0
        r_ = tp / (tp + fn) if tp + fn else 0.0
        agg.update(precision=p, recall=r_, f1=2 * p * r_ / (p + r_) if p + r_ > 0 else 0.0)
        agg["n_picked"], agg["n_true"] = tp + fp, tp + fn
    return agg
