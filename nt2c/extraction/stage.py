"""The pipeline stage ``extract-noise``: background patches of every micrograph of the run.

Each micrograph is enhanced with the run's coarse denoiser, tested by :func:`~nt2c.extraction.patches
.extract_noise_patches`, and the selected patches are cut from the raw micrograph into one stack.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from nt2c.errors import InputError, StageError
from nt2c.extraction.patches import _SELECTED, NoisePatches, NoNoisePatchError, extract_noise_patches

__all__ = [
    "extract_noise_stage",
    "list_micrographs",
    "relaxations",
    "box_particle_distance",
    "EXTRACT_OPTIONS",
    "MIN_FALLBACK_PATCH_PX",
]

log = logging.getLogger(__name__)

#: Smallest patch side (px) the fallbacks go down to.
MIN_FALLBACK_PATCH_PX = 64

#: The settings of :class:`~nt2c.config.ExtractConfig` passed to :func:`extract_noise_patches`.
EXTRACT_OPTIONS = (
    "patch_size",
    "step",
    "n_sub",
    "threshold",
    "criterion",
    "std_max",
    "mean_tol",
    "var_tol",
    "clip_percentile",
    "margin_px",
    "outlier_sigma",
    "max_overlap",
)


def list_micrographs(run, patterns=None) -> list[Path]:
    """List the micrographs an extraction scans.

    Parameters
    ----------
    run : RunDir
    patterns : sequence of str, optional
        Paths or glob patterns (``nt2c extract-noise --micrographs``; relative to the current directory),
        expanded by :func:`nt2c.run.micrographs.expand_micrographs`. Default: the run's list.

    Returns
    -------
    list of pathlib.Path
        The paths listed in ``RUN/micrographs.txt`` (:func:`nt2c.run.micrographs.read_micrograph_list`), or
        when it is absent the noisy simulated micrographs ``RUN/simulated/mic_????.mrc``.
    """
    from nt2c.run.micrographs import expand_micrographs, read_micrograph_list

    if patterns:
        return expand_micrographs(list(patterns))
    root = Path(run.path)
    found = read_micrograph_list(run) or sorted((root / "simulated").glob("mic_????.mrc"))
    if not found:
        raise StageError(
            f"no micrograph to scan in {root}: write RUN/micrographs.txt (one path per line), "
            f"or run `nt2c simulate --run {root}` first."
        )
    return found


def relaxations(settings) -> list[tuple[str, dict[str, Any]]]:
    """List the extraction options to try in turn: the configured ones, then relaxed ones.

    With ``settings.fallback``, each step relaxes one thing further, in this order, and stops at documented
    floors: the SSIM threshold by 0.1 down to ``settings.threshold_floor``; then the patch side halved (at
    least ``MIN_FALLBACK_PATCH_PX``), each time with the threshold back at the configured value and lowered
    again. Non-SSIM criteria only get the smaller patches. The stage takes the first step that finds
    ``settings.min_patches`` patches, else the one that found most.

    Returns
    -------
    list of (str, dict)
        A description of the step (empty for the configured options) and the keyword arguments of
        :func:`extract_noise_patches`.
    """
    base = {name: getattr(settings, name) for name in EXTRACT_OPTIONS}
    steps: list[tuple[str, dict[str, Any]]] = [("", base)]
    if not settings.fallback:
        return steps
    sides = [base["patch_size"]]
    while sides[-1] // 2 >= MIN_FALLBACK_PATCH_PX:
        sides.append(sides[-1] // 2)
    for side in sides:
        grid = {
            "patch_size": side,
            "step": None if base["step"] is None else max(1, base["step"] * side // sides[0]),
        }
        label = "" if side == sides[0] else f"patch_size {side} px"
        if side != sides[0]:
            steps.append((label, {**base, **grid}))
        if base["criterion"] != "ssim":
            continue
        threshold = base["threshold"] - 0.1
        while threshold >= settings.threshold_floor - 1e-9:
            what = f"threshold {threshold:.2f}" + (f", {label}" if label else "")
            steps.append((what, {**base, **grid, "threshold": round(threshold, 6)}))
            threshold -= 0.1
    return steps


def extract_noise_stage(run, settings, params) -> list[Path]:
    """Pipeline stage ``extract-noise``: background patches of every micrograph of the run.

    Reads the micrographs of :func:`list_micrographs`, enhances each with the coarse denoiser
    (``RUN/models/coarse.safetensors``), runs :func:`extract_noise_patches` with ``settings``
    (:class:`~nt2c.config.ExtractConfig`); when all micrographs together give fewer than
    ``settings.min_patches`` patches (crowded fields, single low-dose frames), it tries the
    :func:`relaxations` in turn and says so.
    Writes

    * ``RUN/noise/patches.mrcs``: the (n, d, d) float32 patches from the raw micrographs, voxel size set;
    * ``RUN/noise/patches.csv``: ``micrograph,row,col,score,raw_mean,raw_std`` per patch;
    * ``RUN/noise/extraction.json``: the options used, every fallback tried and the patches per micrograph;
    * ``RUN/noise/<mic>_boxes.png``: each micrograph with its selected boxes.

    Returns
    -------
    list of pathlib.Path
        The files written.

    Raises
    ------
    NoNoisePatchError
        No patch in any micrograph even at the last relaxation.
    """
    from nt2c.io import read_image, write_json, write_mrc
    from nt2c.run.micrographs import check_run_micrographs

    micrographs, bad = check_run_micrographs(run, list_micrographs(run, settings.micrographs))
    for path, reason in bad.items():
        log.warning("extract-noise: skipping %s: %s", path, reason)
    if not micrographs:
        raise InputError(f"none of the micrographs of {run.path} is readable; fix the files or the list.")
    model_path = Path(run.path) / "models" / "coarse.safetensors"
    if not model_path.is_file():
        raise StageError(f"{model_path} is missing; run `nt2c train-coarse --run {run.path}` first.")
    from nt2c.denoiser.inference import load_model  # lazy: torch

    images = _EnhancedMicrographs(micrographs, load_model(model_path), device=settings.device)
    tried, best = [], None
    for what, options in relaxations(settings):
        results = [extract_noise_patches(raw, enh, allow_empty=True, **options) for _, raw, enh, _ in images]
        total = sum(len(r) for r in results)
        tried.append({"fallback": what or "configured options", "patches": total})
        if what:
            log.warning("extract-noise fallback: %s -> %d patches", what, total)
        if best is None or total > best[0]:
            best = (total, what, options, results)
        if total >= settings.min_patches:
            break
    total, what, options, results = best  # the first step with enough patches, else the one with most
    for step in tried:
        step["used"] = step["fallback"] == (what or "configured options")
    if total == 0:
        reasons = " | ".join(f"{p.name}: {r.explain_empty()}" for p, r in zip(micrographs, results))
        steps = "; ".join(f"{step['fallback']}: {step['patches']}" for step in tried)
        raise NoNoisePatchError(
            f"no noise patch found in any micrograph, even after {len(tried) - 1} relaxation(s) down to "
            f"{tried[-1]['fallback']} (fallbacks tried: {steps}). {reasons}"
        )
    if total < settings.min_patches:
        log.warning(
            "extract-noise: only %d patches (min_patches = %d) after every fallback",
            total,
            settings.min_patches,
        )
    pixel_size = images.pixel_size_A or params.pixel_size_A
    noise_dir = run.noise
    outputs = [
        write_mrc(
            noise_dir / "patches.mrcs",
            np.concatenate([r.patches for r in results], axis=0),
            pixel_size_A=pixel_size,
            overwrite=True,
        ),
        _write_table(noise_dir / "patches.csv", micrographs, results),
        write_json(
            noise_dir / "extraction.json",
            {
                "options": {k: v for k, v in options.items()},
                "fallbacks": tried,
                "min_patches": settings.min_patches,
                "patches_per_micrograph": {p.name: len(r) for p, r in zip(micrographs, results)},
            },
        ),
    ]
    for path, result in zip(micrographs, results):
        raw = read_image(path)[0]
        figure_path = noise_dir / f"{path.stem}_boxes.png"
        title = f"{path.name}: {len(result)} noise patches of {result.candidates.shape[0]} candidates"
        _save_boxes_figure(figure_path, raw, result, title=title)
        outputs.append(figure_path)
    return outputs


class _EnhancedMicrographs:
    """The (path, raw, enhanced, pixel size) of every micrograph, denoised once when they fit in memory.

    The fallbacks test the same enhanced images again; up to ``budget_bytes`` of raw and enhanced images are
    kept in memory, larger data sets are denoised again for each relaxation (slower, bounded memory).
    """

    def __init__(self, paths: list[Path], model, *, device: str, budget_bytes: int = 2 * 2**30):
        self.paths, self.model, self.device = paths, model, device
        self.budget_bytes = budget_bytes
        self.cache: list | None = []
        self.pixel_size_A: float | None = None

    def _load(self, path: Path):
        from nt2c.denoiser.inference import denoise_micrograph
        from nt2c.io import read_image

        raw, px = read_image(path)
        self.pixel_size_A = self.pixel_size_A or px
        # the network's output alone: the SSIM test was designed and measured on it (ice gradients from
        # the raw micrograph would change which patches look like background)
        enhanced = denoise_micrograph(
            self.model, raw, device=self.device, show_progress=False, low_frequency_from_raw_px=0
        )
        return path, raw, np.asarray(enhanced, dtype=np.float32), px

    def __iter__(self):
        from nt2c.progress import progress

        if self.cache and len(self.cache) == len(self.paths):
            yield from self.cache
            return
        used = 0
        for path in progress(self.paths, desc="extract-noise", unit="mic"):
            item = self._load(path)
            used += item[1].nbytes + item[2].nbytes
            if self.cache is not None and used <= self.budget_bytes:
                self.cache.append(item)
            else:
                self.cache = None  # too large to keep: denoise again if a fallback needs it
            yield item


def _write_table(path: Path, micrographs: list[Path], results: list[NoisePatches]) -> Path:
    import csv

    from nt2c.io import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["micrograph", "row", "col", "score", "raw_mean", "raw_std"])
            for mic, result in zip(micrographs, results):
                selected = np.flatnonzero(result.status == _SELECTED)
                for (r, c), score, i in zip(result.boxes, result.scores, selected):
                    mean, std = float(result.raw_mean[i]), float(result.raw_std[i])
                    writer.writerow([mic.name, int(r), int(c), float(score), mean, std])
    return path


def box_particle_distance(boxes: np.ndarray, patch_size: int, particles_xy: np.ndarray) -> np.ndarray:
    """Distance from each box to the nearest particle centre (0 when a centre lies inside the box).

    Parameters
    ----------
    boxes : numpy.ndarray, shape (n, 2)
        Top-left (row, col) of the boxes (px).
    patch_size : int
        Box side d (px).
    particles_xy : numpy.ndarray, shape (m, 2)
        Particle centres as (x, y) = (col, row) in px, as in RELION STAR files.

    Returns
    -------
    numpy.ndarray, shape (n,)
        Distances in px (``inf`` when there is no particle).
    """
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 2)
    xy = np.asarray(particles_xy, dtype=float).reshape(-1, 2)
    if len(xy) == 0:
        return np.full(len(boxes), np.inf)
    rows, cols = boxes[:, :1], boxes[:, 1:]
    dy = np.maximum(0.0, np.maximum(rows - xy[:, 1], xy[:, 1] - (rows + patch_size - 1)))
    dx = np.maximum(0.0, np.maximum(cols - xy[:, 0], xy[:, 0] - (cols + patch_size - 1)))
    return np.hypot(dy, dx).min(axis=1)


def _save_boxes_figure(path: Path, image: np.ndarray, result: NoisePatches, *, title: str) -> None:
    from nt2c.io import atomic_path
    from nt2c.plots.extraction import plot_boxes

    fig = plot_boxes(image, result, title=title)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=80)
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
