"""The pipeline stage ``extract-noise``: background patches of every micrograph of the run.

Each micrograph is enhanced with the run's coarse denoiser, tested by :func:`~nt2c.extraction.patches
.extract_noise_patches`, and the selected patches are cut from the raw micrograph into one stack.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nt2c.errors import StageError
from nt2c.extraction.patches import _SELECTED, NoisePatches, NoNoisePatchError, extract_noise_patches

__all__ = ["extract_noise_stage", "list_micrographs", "box_particle_distance", "EXTRACT_OPTIONS"]

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


def extract_noise_stage(run, settings, params) -> list[Path]:
    """Pipeline stage ``extract-noise``: background patches of every micrograph of the run.

    Reads the micrographs of :func:`list_micrographs`, enhances each with the coarse denoiser
    (``RUN/models/coarse.safetensors``), runs :func:`extract_noise_patches` with ``settings``
    (:class:`~nt2c.config.ExtractConfig`) and writes

    * ``RUN/noise/patches.mrcs``: the (n, d, d) float32 patches from the raw micrographs, voxel size set;
    * ``RUN/noise/patches.csv``: ``micrograph,row,col,score,raw_mean,raw_std`` per patch;
    * ``RUN/noise/<mic>_boxes.png``: each micrograph with its selected boxes.

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    import csv

    from nt2c.io import atomic_path, read_image, write_mrc
    from nt2c.progress import progress

    micrographs = list_micrographs(run, settings.micrographs)
    model_path = Path(run.path) / "models" / "coarse.safetensors"
    if not model_path.is_file():
        raise StageError(f"{model_path} is missing; run `nt2c train-coarse --run {run.path}` first.")
    from nt2c.denoiser.inference import denoise_micrograph, load_model  # lazy: torch

    model = load_model(model_path)
    noise_dir = run.noise
    options = {name: getattr(settings, name) for name in EXTRACT_OPTIONS}
    stacks, rows, outputs = [], [], []
    pixel_size = None
    empty_reasons = []
    for path in progress(micrographs, desc="extract-noise", unit="mic"):
        raw, px = read_image(path)
        pixel_size = pixel_size or px
        enhanced = np.asarray(
            denoise_micrograph(model, raw, device=settings.device, show_progress=False), dtype=np.float32
        )
        result = extract_noise_patches(raw, enhanced, allow_empty=True, **options)
        if len(result) == 0:
            empty_reasons.append(f"{path.name}: {result.explain_empty()}")
        stacks.append(result.patches)
        for (r, c), score, i in zip(result.boxes, result.scores, np.flatnonzero(result.status == _SELECTED)):
            rows.append(
                (path.name, int(r), int(c), float(score), float(result.raw_mean[i]), float(result.raw_std[i]))
            )
        figure_path = noise_dir / f"{path.stem}_boxes.png"
        title = f"{path.name}: {len(result)} noise patches of {result.candidates.shape[0]} candidates"
        _save_boxes_figure(figure_path, raw, result, title=title)
        outputs.append(figure_path)
    total = sum(len(s) for s in stacks)
    if total == 0:
        raise NoNoisePatchError("no noise patch found in any micrograph. " + " | ".join(empty_reasons))
    stack_path = write_mrc(
        noise_dir / "patches.mrcs",
        np.concatenate(stacks, axis=0),
        pixel_size_A=pixel_size or params.pixel_size_A,
        overwrite=True,
    )
    table_path = noise_dir / "patches.csv"
    with atomic_path(table_path) as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["micrograph", "row", "col", "score", "raw_mean", "raw_std"])
            writer.writerows(rows)
    return [stack_path, table_path, *outputs]


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
