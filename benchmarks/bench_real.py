"""Real labelled benchmark on EMPIAR-10146 (issue 13): NT2C and the baselines, settings chosen on DEV only.

Usage::

    python benchmarks/bench_real.py --make-run --run RUN     # runs `nt2c run` on the 10 micrographs first
    python benchmarks/bench_real.py --run RUN [--out DIR] [--methods raw,gaussian,...] [--topaz-cmd CMD]

Data: ``../shared/data/real/empiar10146/``: 10 frame averages of horse-spleen apoferritin (1.5 A/px, 300 kV,
50 frames x 2 e/A^2) with hand-labelled particles (``NAME_coords.csv``: x, y, radius in px), 5 of them with a
single movie frame of the same field (``NAME_frame.mrc``). MRC mode 6, grey levels rescaled (not counts).

Split (fixed, here and in ``benchmarks/RESULTS.md``): the 10 names sorted; **DEV** = even positions
(May08_03.05.02, 04.32.27, 05.31.00 with frames; 05.57.01, 07.10.35), **HELD-OUT** = odd positions
(May08_03.15.02, 04.36.57 with frames; 05.53.51, 06.30.43, 07.30.46). The one setting this script chooses,
the picker threshold of each method, is chosen on DEV and applied unchanged to HELD-OUT; every table names
its split.

NT2C models: ``nt2c run --params benchmarks/real_empiar10146.yaml --micrographs '<the 10 averages>'
--profile quick``, as a user would run it (NT2C learns the noise of the micrographs it then denoises: that is
the method, so the run sees all 10; no NT2C setting is chosen here). Noise2Void likewise trains on the 10
averages (and, for the frames, on the 5 frames) with its defaults; Gaussian (1 px), BM3D and Topaz ``unet``
run with their defaults.

What it measures, per method
----------------------------
(a) **Eq. 5 SNR** (:func:`nt2c.evaluation.metrics.eq5_regions`): signal boxes of the particle diameter
    (twice the median label radius, 61.7 px, rounded down to even: 60 px) centred on the labelled particles;
    background boxes by this rule: no pixel within ``radius`` (the median label radius, rounded up;
    Chebyshev) of any label, so a box centre is at least radius + box/2 from every label in x or y;
    no pixel in the 5 % border (the labels are incomplete near edges) nor on a contaminant
    (:func:`nt2c.evaluation.picking.contamination_mask` of the 4x binned raw average, grown by a radius).
    The same boxes for every method.
(b) **Picking** with nt2c's picker (:func:`nt2c.evaluation.picking.pick_particles`, dark particles, diameter
    twice the median label radius, a ``PICK_MAX_POINTS`` mean-shift subset for speed); picks and labels in
    the border or on contaminants left out; a pick matches a label within half a diameter. Each method's
    threshold (of ``THRESHOLDS``) is the one with the best F1 pooled over DEV; HELD-OUT is picked once, at it.
(c) **Frames** (about 2 e/A^2): each method denoises the single frame; the output is compared with the
    *49-frame reference* ``average - k * frame`` (:func:`reference_without_frame`; the average contains the
    frame, whose shared noise otherwise dominates a whole-image correlation): Pearson r (= the correlation
    after a scale-and-offset fit) and the FRC 0.5 / 0.143 crossings, 16 px border cropped; r with the plain
    average is listed too. The coarse/fine models are the run's, trained for the average's dose.
(d) **Seconds per micrograph** of denoising (Noise2Void: its training time shared over the images it
    trained on, plus inference), wall time on whatever machine runs it.

Writes ``DIR/micrographs.csv`` (per micrograph and method), ``DIR/frames.csv``, ``DIR/thresholds.csv``,
``DIR/summary.csv``, ``DIR/summary.md`` and ``DIR/meta.json`` (default ``benchmarks/results/real/``);
denoised images are cached in ``--cache`` (default ``RUN/bench_real_cache``, outside the repository), so a
rerun only scores.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "real" / "empiar10146"
PARAMS = REPO / "benchmarks" / "real_empiar10146.yaml"
METHODS = ("raw", "gaussian", "bm3d", "topaz", "noise2void", "nt2c-coarse", "nt2c-fine")
#: Re-weighting variants of the fine model (:func:`nt2c.run.variants.fine_variant`, trained on first use in
#: RUN/ablation/<method>-<noise_source>/): method name -> (coefficient fit, noise source).
VARIANTS = {
    "nt2c-fine-paper": ("paper", "patches"),
    "nt2c-fine-gan": ("matched", "gan"),
    "nt2c-fine-calibrated": ("calibrated", "patches"),
}
BORDER_FRACTION = 0.05
THRESHOLDS = (0.25, 0.5, 1.0, 2.0, 3.0)  # robust sigmas of the heat map
PICK_MAX_POINTS = 3000  # mean-shift subset (the picker's default is 20000): for speed, the same for all
FRAME_CROP_PX = 16
NOISE_BAND = (0.35, 0.5)  # cycles/px where the frame's share of the average is fitted


@dataclass
class Micrograph:
    """One labelled micrograph of the set: average, labels (x, y, radius px) and optional frame."""

    name: str
    image: np.ndarray
    coords_xy: np.ndarray
    radius_px: np.ndarray
    frame: np.ndarray | None = None


def list_names(data_dir: Path) -> list[str]:
    """Sorted names with both ``NAME.mrc`` and ``NAME_coords.csv``."""
    return sorted(
        p.name[: -len("_coords.csv")]
        for p in Path(data_dir).glob("*_coords.csv")
        if (p.parent / (p.name[: -len("_coords.csv")] + ".mrc")).is_file()
    )


def split_names(names: list[str]) -> tuple[list[str], list[str]]:
    """DEV = even positions of the sorted names, HELD-OUT = odd positions."""
    names = sorted(names)
    return names[0::2], names[1::2]


def load_micrograph(data_dir: Path, name: str) -> Micrograph:
    from nt2c.io import read_image

    image, _ = read_image(Path(data_dir) / f"{name}.mrc")
    table = np.loadtxt(Path(data_dir) / f"{name}_coords.csv", delimiter=",", skiprows=1, ndmin=2)
    frame_path = Path(data_dir) / f"{name}_frame.mrc"
    frame = read_image(frame_path)[0].astype(np.float32) if frame_path.is_file() else None
    return Micrograph(name, image.astype(np.float32), table[:, :2], table[:, 2], frame)


def border_mask(shape, fraction: float = BORDER_FRACTION) -> np.ndarray:
    """Mark the pixels within ``fraction`` of each side's length from the edges."""
    ny, nx = shape
    by, bx = int(round(fraction * ny)), int(round(fraction * nx))
    mask = np.ones(shape, dtype=bool)
    mask[by : ny - by, bx : nx - bx] = False
    return mask


def diameter_px(mics: list[Micrograph]) -> float:
    return 2.0 * float(np.median(np.concatenate([m.radius_px for m in mics])))


def excluded_area(mic: Micrograph, diameter: float) -> np.ndarray:
    """Border and contaminants of the raw average (method-independent)."""
    from nt2c.evaluation.picking import contamination_mask

    ny, nx = mic.image.shape
    small = mic.image[: ny // 4 * 4, : nx // 4 * 4].reshape(ny // 4, 4, nx // 4, 4).mean(axis=(1, 3))
    mask = contamination_mask(small, particle_diameter_px=diameter / 4.0)  # 4x binned, for speed
    full = np.zeros((ny, nx), dtype=bool)
    full[: ny // 4 * 4, : nx // 4 * 4] = np.repeat(np.repeat(mask, 4, axis=0), 4, axis=1)
    return border_mask(mic.image.shape) | full


def eq5_setup(mic: Micrograph, exclude: np.ndarray, *, box_px: int):
    from nt2c.evaluation.metrics import eq5_regions

    radius = int(np.ceil(np.median(mic.radius_px)))
    return eq5_regions(
        mic.image.shape, mic.coords_xy, box_px=box_px, exclusion_px=radius, exclude_mask=exclude
    )


def inside(coords_xy: np.ndarray, exclude: np.ndarray) -> np.ndarray:
    """Boolean: coordinates (x, y) not on an excluded pixel."""
    ny, nx = exclude.shape
    r = np.clip(np.round(coords_xy[:, 1]).astype(int), 0, ny - 1)
    c = np.clip(np.round(coords_xy[:, 0]).astype(int), 0, nx - 1)
    return ~exclude[r, c]


def picking_counts(
    image, mic: Micrograph, exclude, *, diameter: float, thresholds=THRESHOLDS, cache_file: Path | None = None
) -> list[dict]:
    """tp, fp, fn of the picker at each threshold (labels and picks on excluded pixels left out).

    With ``cache_file`` (JSON), thresholds already scored for this output are read from it, new ones added.
    """
    from nt2c.evaluation.picking import pick_particles, picking_heatmap, score_picks

    known = json.loads(cache_file.read_text()) if cache_file is not None and cache_file.is_file() else {}
    missing = [t for t in thresholds if f"{float(t):g}" not in known]
    if missing:
        truth = mic.coords_xy[inside(mic.coords_xy, exclude)]
        heat = picking_heatmap(image, particle_diameter_px=diameter, polarity="dark")
        for t in missing:
            picks = pick_particles(
                image,
                particle_diameter_px=diameter,
                threshold=float(t),
                exclude_mask=exclude,
                heat=heat,
                max_points=PICK_MAX_POINTS,
            ).coords_xy
            picks = picks[inside(picks, exclude)] if len(picks) else picks
            s = score_picks(picks, truth, radius_px=diameter / 2.0)
            known[f"{float(t):g}"] = {"threshold": float(t), "tp": s["tp"], "fp": s["fp"], "fn": s["fn"]}
        if cache_file is not None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            cache_file.write_text(json.dumps(known))
    return [known[f"{float(t):g}"] for t in thresholds]


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def choose_threshold(counts_by_mic: dict[str, list[dict]], dev: list[str]) -> float:
    """Return the threshold with the best F1 pooled over the DEV micrographs (ties: the lowest)."""
    n = len(next(iter(counts_by_mic.values())))
    best, best_f1 = None, -1.0
    for i in range(n):
        tp, fp, fn = (sum(counts_by_mic[m][i][k] for m in dev) for k in ("tp", "fp", "fn"))
        f1 = prf(tp, fp, fn)[2]
        if f1 > best_f1 + 1e-12:
            best, best_f1 = counts_by_mic[dev[0]][i]["threshold"], f1
    return float(best)


def reference_without_frame(
    average: np.ndarray, frame: np.ndarray, *, band=NOISE_BAND
) -> tuple[np.ndarray, float]:
    """Remove the frame's own share from the average: ``average - k * frame`` (the other 49 frames).

    The average contains the frame, so its noise is shared: on these pairs the raw frame's whole-image
    correlation with the average (0.16) is almost all that shared noise (0.01-0.02 without it). The grey
    levels of both files are rescaled, so ``k`` is fitted, as the least-squares coefficient of the frame in
    the average over the Fourier band ``band`` (cycles/px), where a single micrograph holds essentially no
    signal.
    """
    a = np.asarray(average, np.float64)
    f = np.asarray(frame, np.float64)
    ny, nx = a.shape
    k = np.hypot(np.fft.fftfreq(ny)[:, None], np.fft.fftfreq(nx)[None, :])
    sel = (k >= band[0]) & (k <= band[1])
    fa, ff = np.fft.fft2(a - a.mean()), np.fft.fft2(f - f.mean())
    coef = float((fa[sel] * ff[sel].conj()).real.sum() / (np.abs(ff[sel]) ** 2).sum())
    return (a - coef * f).astype(np.float32), coef


def frame_scores(denoised_frame, reference, average, *, pixel_size_A: float) -> dict:
    """Pearson r with the 49-frame reference and with the average, FRC crossings (A) with the reference."""
    from nt2c.evaluation.metrics import frc, pearson

    c = FRAME_CROP_PX
    out = np.asarray(denoised_frame)[c:-c, c:-c]
    ref = np.asarray(reference)[c:-c, c:-c]
    curve = frc(out, ref, pixel_size_A=pixel_size_A)
    return {
        "pearson": pearson(out, ref),
        "pearson_with_average": pearson(out, np.asarray(average)[c:-c, c:-c]),
        "frc05_A": 1.0 / curve.crossing_05,
        "frc0143_A": 1.0 / curve.crossing_0143,
    }


# ---------------------------------------------------------------------------------------------------------
# Denoising (cached)
# ---------------------------------------------------------------------------------------------------------
def _paths(cache: Path | None, method: str, key: str):
    return (None, None) if cache is None else (cache / method / f"{key}.npy", cache / method / f"{key}.json")


def _save(cache: Path | None, method: str, key: str, out: np.ndarray, seconds: float) -> None:
    path, meta = _paths(cache, method, key)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, out)
        meta.write_text(json.dumps({"seconds": seconds}))


def _load(cache: Path | None, method: str, key: str):
    path, meta = _paths(cache, method, key)
    if path is not None and path.is_file() and meta.is_file():
        return np.load(path), float(json.loads(meta.read_text())["seconds"])
    return None


#: What a sub-run of a finished run shares with it to train only its pairs and fine model again.
SHARED_WITH_SUBRUN = (
    "simulated",
    "noise",
    "models/coarse.safetensors",
    "models/coarse.json",
    "models/gan.safetensors",
    "models/gan.json",
    "micrographs.txt",
)


def link_subrun(parent, sub_path: Path):
    """Make ``sub_path`` a run sharing :data:`SHARED_WITH_SUBRUN` with ``parent`` (hard links); return it."""
    import shutil

    from nt2c.run.rundir import RunDir

    sub = RunDir(sub_path)
    sub.init_params(parent.params())
    for rel in SHARED_WITH_SUBRUN:
        src, dst = parent.path / rel, sub.path / rel
        if not src.exists() or dst.exists():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, copy_function=os.link)
        else:
            os.link(src, dst)
    return sub


def train_fine_again(parent, target, *, device: str, reweight: dict | None = None, stamp: bool = False):
    """Run ``reweight`` and ``train-fine`` in ``target`` with the settings ``parent``'s stamps recorded.

    The two stage functions are called directly, without the provenance checks of ``run_stage``: a run whose
    stamps predate input content hashes sees its inputs as changed once the data folder is provisioned again
    (new file times), and ``run_stage`` would then simulate and train the coarse model again.

    Parameters
    ----------
    parent, target : RunDir
        The run whose settings are used, and the run trained in (the same one, or a sub-run).
    device : str
    reweight : dict, optional
        Reweight settings replacing the recorded ones (``method``, ``noise_source``).
    stamp : bool
        Write the stages' stamps in ``target``.

    Returns
    -------
    dict of str to float
        Seconds per stage.
    """
    from nt2c.config import stage_config
    from nt2c.run.stages import STAGES, stage_inputs

    profile, params = parent.profile() or "quick", parent.params()
    seconds = {}
    for name, changes in (("reweight", reweight or {}), ("train-fine", {})):
        recorded = dict((parent.read_stamp(name) or {}).get("settings") or {})
        settings = stage_config(name, profile, **{**recorded, **changes, "device": device})
        start = time.perf_counter()
        outputs = STAGES[name].load()(target, settings, params)
        seconds[name] = time.perf_counter() - start
        if stamp:
            inputs = stage_inputs(target, name, settings)
            target.write_stamp(name, outputs, settings.to_dict(), seconds=seconds[name], inputs=inputs)
    return seconds


def train_variant(run: Path, fit: str, source: str, *, device: str) -> Path:
    """Train (or find) the fine model of a re-weighting variant in ``RUN/ablation/bench-<fit>-<source>/``.

    Like :func:`nt2c.run.variants.fine_variant` (same simulation, coarse model, noise patches and GAN, the
    run's own reweight and train-fine settings except the fit or the noise source), but through
    :func:`train_fine_again`, without the provenance checks of ``run_stage``.
    """
    from nt2c.run.rundir import RunDir

    parent = RunDir(run)
    sub_path = Path(run) / "ablation" / f"bench-{fit}-{source}"
    model = sub_path / "models" / "fine.safetensors"
    if not model.is_file():
        sub = link_subrun(parent, sub_path)
        train_fine_again(parent, sub, device=device, reweight={"method": fit, "noise_source": source})
    return model


def denoise_set(method, images: dict[str, np.ndarray], *, kind, run, device, cache, n2v: dict, options):
    """Denoise every image of ``images`` (name -> array) with ``method``: name -> (output, seconds).

    Noise2Void trains one model on all the images of the call (like NT2C, on the data it denoises); its
    training time is shared equally over them.
    """
    from nt2c.denoiser.inference import denoise_micrograph
    from nt2c.evaluation.baselines import denoise_with

    done = {n: _load(cache, method, f"{kind}_{n}") for n in images}
    if all(v is not None for v in done.values()):
        return done
    model, share = None, 0.0
    if method in VARIANTS:
        from nt2c.denoiser.inference import load_model

        model = load_model(train_variant(run, *VARIANTS[method], device=device))
    if method == "noise2void":
        from nt2c.evaluation.noise2void import train_noise2void

        t = time.perf_counter()
        model = train_noise2void(list(images.values()), device=device, **n2v).model
        share = (time.perf_counter() - t) / len(images)
    for name, im in images.items():
        if done[name] is not None:
            continue
        t = time.perf_counter()
        if model is not None:
            out = denoise_micrograph(model, im, device=device, show_progress=False)
        else:
            out = denoise_with(method, im, run=run, device=device, **options)
        seconds = time.perf_counter() - t + share
        _save(cache, method, f"{kind}_{name}", out, seconds)
        done[name] = (np.asarray(out, np.float32), seconds)
    return done


# ---------------------------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------------------------
def evaluate(
    data_dir: Path,
    *,
    run: Path | None,
    methods=METHODS,
    device: str = "auto",
    cache: Path | None = None,
    n2v: dict | None = None,
    options: dict | None = None,
    pixel_size_A: float = 1.5,
    thresholds=THRESHOLDS,
    parts=("micrographs", "picking", "frames"),
    log=print,
) -> dict:
    """Score every available method; returns per-micrograph rows, frame rows and the DEV-chosen thresholds.

    Picking: the threshold sweep runs on the DEV micrographs only; HELD-OUT is picked once, at the threshold
    chosen on DEV (so the HELD-OUT numbers never saw another threshold). ``parts`` leaves out "picking"
    (picking columns then empty), "frames", or "micrographs" (the averages: Eq. 5 and picking).
    """
    from nt2c.evaluation.baselines import method_status

    names = list_names(data_dir)
    dev, held = split_names(names)
    mics = {n: load_micrograph(data_dir, n) for n in names}
    diameter = diameter_px(list(mics.values()))
    status = method_status(
        [m for m in methods if m not in VARIANTS], run=run, describe=True, **(options or {})
    )
    for m in methods:
        if m in VARIANTS:
            status[m] = "fine model, re-weighting {} with {} noise".format(*VARIANTS[m])
    skipped = {m: s for m, s in status.items() if s.startswith("unavailable: ")}
    methods = [m for m in methods if m not in skipped]
    for m, s in skipped.items():
        log(f"skip {m}: {s}")
    excl = {n: excluded_area(mic, diameter) for n, mic in mics.items()}
    box_px = int(diameter) // 2 * 2  # the particle diameter, rounded down to even (60 px on EMPIAR-10146)
    regions = {n: eq5_setup(mic, excl[n], box_px=box_px) for n, mic in mics.items()}
    with_frame = [n for n in names if mics[n].frame is not None]
    refs = {n: reference_without_frame(mics[n].image, mics[n].frame) for n in with_frame}
    split_of = {n: ("DEV" if n in dev else "HELD-OUT") for n in names}
    common = dict(run=run, device=device, cache=cache, n2v=n2v or {}, options=options or {})
    rows, frame_rows, counts, chosen = [], [], {}, {}
    for method in methods:
        if "micrographs" not in parts:
            names_now = []
        else:
            names_now = names
            log(f"{method}: averages")
            outs = denoise_set(method, {n: m.image for n, m in mics.items()}, kind="avg", **common)
        pick = "picking" in parts and names_now
        if pick:
            log(f"{method}: picking")
        pick_cache = {n: None if cache is None else cache / method / f"picks_{n}.json" for n in names}
        counts[method] = {
            n: picking_counts(
                outs[n][0],
                mics[n],
                excl[n],
                diameter=diameter,
                thresholds=thresholds,
                cache_file=pick_cache[n],
            )
            for n in dev
            if pick
        }
        chosen[method] = choose_threshold(counts[method], dev) if pick else None
        for n in names_now:
            out, seconds = outs[n]
            if not pick:
                c = {"tp": None, "fp": None, "fn": None}
            elif n in dev:
                c = next(c for c in counts[method][n] if c["threshold"] == chosen[method])
            else:
                c = picking_counts(
                    out,
                    mics[n],
                    excl[n],
                    diameter=diameter,
                    thresholds=(chosen[method],),
                    cache_file=pick_cache[n],
                )[0]
            rows.append(
                {
                    "split": split_of[n],
                    "micrograph": n,
                    "method": method,
                    "eq5_dB": regions[n].snr(out),
                    "eq5_pairs": len(regions[n]),
                    "threshold": chosen[method],
                    "tp": c["tp"],
                    "fp": c["fp"],
                    "fn": c["fn"],
                    "seconds": seconds,
                }
            )
        if with_frame and "frames" in parts:
            log(f"{method}: frames")
            fouts = denoise_set(method, {n: mics[n].frame for n in with_frame}, kind="frame", **common)
            for n in with_frame:
                out, seconds = fouts[n]
                score = frame_scores(out, refs[n][0], mics[n].image, pixel_size_A=pixel_size_A)
                frame_rows.append(
                    {"split": split_of[n], "micrograph": n, "method": method, **score, "seconds": seconds}
                )
    return {
        "rows": rows,
        "frame_rows": frame_rows,
        "thresholds": chosen,
        "counts": counts,
        "dev": dev,
        "held_out": held,
        "skipped": skipped,
        "status": {m: status[m] for m in methods},
        "diameter_px": diameter,
        "frame_share": {n: refs[n][1] for n in with_frame},
    }


def summarise(result: dict) -> list[dict]:
    """One row per (split, method): mean Eq. 5, pooled picking P/R/F1, mean frame scores, seconds."""
    out = []
    methods = list(dict.fromkeys(r["method"] for r in result["rows"] + result["frame_rows"]))
    for split in ("HELD-OUT", "DEV"):
        for m in methods:
            rs = [r for r in result["rows"] if r["split"] == split and r["method"] == m]
            fs = [r for r in result["frame_rows"] if r["split"] == split and r["method"] == m]
            if rs and all(r["tp"] is not None for r in rs):
                p, rc, f1 = prf(*(sum(r[k] for r in rs) for k in ("tp", "fp", "fn")))
            else:
                p = rc = f1 = None
            row = {
                "split": split,
                "method": m,
                "n_micrographs": len(rs),
                "eq5_dB": float(np.mean([r["eq5_dB"] for r in rs])) if rs else None,
                "threshold": result["thresholds"][m],
                "precision": p,
                "recall": rc,
                "f1": f1,
                "n_frames": len(fs),
                "frame_pearson": float(np.mean([r["pearson"] for r in fs])) if fs else None,
                "frame_pearson_with_average": (
                    float(np.mean([r["pearson_with_average"] for r in fs])) if fs else None
                ),
                "frame_frc05_A": float(np.mean([r["frc05_A"] for r in fs])) if fs else None,
                "frame_frc0143_A": float(np.mean([r["frc0143_A"] for r in fs])) if fs else None,
                "seconds_per_micrograph": float(np.mean([r["seconds"] for r in rs])) if rs else None,
            }
            out.append(row)
    return out


def _fmt(v, digits=2):
    return "n/a" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def markdown(summary: list[dict], result: dict) -> str:
    lines = []
    for split in ("HELD-OUT", "DEV"):
        names = result["held_out"] if split == "HELD-OUT" else result["dev"]
        lines += [
            f"### {split} ({', '.join(names)})",
            "",
            "| method | Eq. 5 SNR (dB) | picking threshold (chosen on DEV) | precision | recall | F1 "
            "| frame-to-average r | FRC 0.5 (A) | FRC 0.143 (A) | s / micrograph |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in (r for r in summary if r["split"] == split):
            lines.append(
                f"| {r['method']} | {_fmt(r['eq5_dB'])} | {_fmt(r['threshold'])} | {_fmt(r['precision'])} "
                f"| {_fmt(r['recall'])} | {_fmt(r['f1'])} | {_fmt(r['frame_pearson'], 3)} "
                f"| {_fmt(r['frame_frc05_A'], 1)} | {_fmt(r['frame_frc0143_A'], 1)} "
                f"| {_fmt(r['seconds_per_micrograph'], 1)} |"
            )
        lines.append("")
    if result["skipped"]:
        lines.append("Left out: " + "; ".join(f"{m} ({s})" for m, s in result["skipped"].items()))
    return "\n".join(lines) + "\n"


def _write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def write_outputs(out_dir: Path, result: dict, meta: dict) -> str:
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarise(result)
    _write_csv(out_dir / "micrographs.csv", result["rows"])
    _write_csv(out_dir / "frames.csv", result["frame_rows"])
    _write_csv(out_dir / "summary.csv", summary)
    _write_csv(
        out_dir / "thresholds.csv", [{"method": m, "threshold": t} for m, t in result["thresholds"].items()]
    )
    text = markdown(summary, result)
    (out_dir / "summary.md").write_text(text)
    keep = {
        k: result[k]
        for k in ("thresholds", "dev", "held_out", "skipped", "status", "diameter_px", "frame_share")
    }
    (out_dir / "meta.json").write_text(json.dumps({**meta, **keep}, indent=1))
    return text


def make_run(run: Path, data_dir: Path, *, profile: str, sets: list[str], device: str) -> float:
    pattern = str(Path(data_dir) / "May08_??.??.??.mrc")
    cmd = ["nt2c", "run", "--params", str(PARAMS), "--micrographs", pattern, "--out", str(run)]
    cmd += ["--profile", profile, "--device", device] + [a for s in sets for a in ("--set", s)]
    print("+", " ".join(cmd), flush=True)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO)
    return time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--run", type=Path, help="a finished (or, with --make-run, new) nt2c run on the data")
    ap.add_argument("--make-run", action="store_true", help="run `nt2c run` on the 10 averages first")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--set", action="append", default=[], metavar="STAGE.KEY=VALUE", help="for --make-run")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "real")
    ap.add_argument("--cache", type=Path, help="denoised images (default RUN/bench_real_cache)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--topaz-cmd", help="sets NT2C_TOPAZ, e.g. 'V/bin/python -m topaz.commands.denoise'")
    ap.add_argument("--bm3d-stages", default="all", choices=("all", "hard"))
    ap.add_argument("--n2v-steps", type=int, default=400)
    ap.add_argument("--parts", default="micrographs,picking,frames", help="leave some out to split the work")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"data folder {args.data} is absent", file=sys.stderr)
        return 2
    if args.topaz_cmd:
        os.environ["NT2C_TOPAZ"] = args.topaz_cmd
    meta = {"date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "machine": platform.platform()}
    meta["cpus"] = os.cpu_count()
    meta["command"] = " ".join([sys.executable.split("/")[-1], *sys.argv])
    if args.make_run:
        if args.run is None:
            ap.error("--make-run needs --run RUN")
        meta["nt2c_run_seconds"] = make_run(
            args.run, args.data, profile=args.profile, sets=args.set, device=args.device
        )
    cache = args.cache or (args.run / "bench_real_cache" if args.run else None)
    result = evaluate(
        args.data,
        run=args.run,
        methods=[m for m in args.methods.split(",") if m],
        device=args.device,
        cache=cache,
        n2v={"steps": args.n2v_steps},
        options={"stages": args.bm3d_stages},
        parts=tuple(args.parts.split(",")),
    )
    print(write_outputs(args.out, result, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
