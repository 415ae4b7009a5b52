"""What ``nt2c evaluate`` scores: micrographs, their truth, and which split of the run they belong to.

A :class:`Micrograph` is one image to score, with what it can be scored against: a clean image (simulations),
particle coordinates (Eq. 5 boxes, picking F1) and a reference image (a higher-dose image of the same field).

Splits
------
:func:`run_datasets` scores only micrographs that no model of the run trained on, by default:

* ``test``: ``RUN/test/mic_NNNN.mrc`` with ``_clean.mrc`` and ``_coords.star`` beside them, simulated with
  their own seeds and never trained on -- "simulated test set (never trained on)";
* ``experimental``: ``RUN/micrographs.txt`` -- "same micrographs (noise learnt from them)";
* ``heldout``: ``RUN/heldout.txt`` -- "new micrographs of the same acquisition";
* ``training``: ``RUN/simulated/mic_NNNN.mrc``, only with ``include_training=True`` -- "training micrographs
  (in-sample)".

NT2C is transductive: it learns the noise of the micrographs it then denoises, so ``experimental`` is how a
user runs it, and ``heldout`` says whether what it learnt carries over to new micrographs of the same
acquisition. The coarse model's training pairs are cut from ``RUN/simulated``; scoring those is in-sample and
only on request.

Coordinates and references are matched to micrographs by name (:mod:`nt2c.evaluation.matching`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nt2c.errors import InputError
from nt2c.evaluation.matching import assign_files, match_by_name

__all__ = [
    "SPLITS",
    "Micrograph",
    "read_coords",
    "load_micrograph",
    "match_by_name",
    "run_datasets",
]

log = logging.getLogger(__name__)

#: dataset name -> the split it is on, as the tables and figures say it
SPLITS: dict[str, str] = {
    "test": "simulated test set (never trained on)",
    "experimental": "same micrographs (noise learnt from them)",
    "heldout": "new micrographs of the same acquisition",
    "training": "training micrographs (in-sample)",
    "external": "micrographs this run did not use",
}

_SIMULATED = "mic_[0-9][0-9][0-9][0-9].mrc"


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
        Particle centres (x, y) in px: true positions (simulations) or given particles (real data).
    path : pathlib.Path or None
    split : str or None
        Which split of the run it belongs to (a value of :data:`SPLITS`).
    reference : numpy.ndarray or None
        A higher-dose image of the same field, same shape (real data: the frame average of a single frame).
    reference_share : float or None
        When the reference contained the micrograph, the weight of the micrograph removed from it
        (:func:`nt2c.evaluation.metrics.decorrelated_reference`); None when nothing was removed.
    clean_path, coords_path, reference_path : pathlib.Path or None
        Where the clean image, the coordinates and the reference came from.
    """

    name: str
    image: np.ndarray
    pixel_size_A: float | None = None
    clean: np.ndarray | None = None
    coords_xy: np.ndarray | None = None
    path: Path | None = None
    split: str | None = None
    reference: np.ndarray | None = None
    clean_path: Path | None = None
    coords_path: Path | None = None
    reference_path: Path | None = None
    reference_share: float | None = None


# ---------------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------------
def _read_coords_csv(path: Path) -> np.ndarray:
    import csv

    with path.open(newline="") as fh:
        rows = [r for r in csv.reader(fh) if r and not r[0].lstrip().startswith("#")]
    if not rows:
        raise InputError(f"{path} is empty; give one particle per line as x,y[,radius] (px).")
    header = [c.strip().lower() for c in rows[0]]
    if "x" in header and "y" in header:
        ix, iy = header.index("x"), header.index("y")
        rows = rows[1:]
    else:
        ix, iy = 0, 1
    try:
        xy = np.array([[float(r[ix]), float(r[iy])] for r in rows], dtype=float).reshape(-1, 2)
    except (ValueError, IndexError):
        raise InputError(
            f"{path} is not a coordinate CSV: give a header x,y[,radius] and one particle per line in px "
            "(x = column, y = row)."
        ) from None
    return xy


def read_coords(path: str | os.PathLike) -> np.ndarray:
    """Read particle coordinates (x, y) in px from a STAR or CSV file.

    STAR: a RELION table with ``rlnCoordinateX``/``rlnCoordinateY``. CSV: a header naming ``x`` and ``y``
    (other columns, e.g. ``radius``, ignored) or no header and ``x,y[,...]`` per line; x is the column and y
    the row of the micrograph array, in px.

    Returns
    -------
    numpy.ndarray, float, shape (n, 2)
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"coordinate file {path} does not exist; check the path.")
    if path.suffix.lower() == ".csv":
        return _read_coords_csv(path)
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


def _same_shape(other: np.ndarray, image: np.ndarray, what: str, other_path, path) -> None:
    if other.shape != image.shape:
        raise InputError(
            f"{what} {other_path} has shape {other.shape}, the micrograph {path} {image.shape}; they must "
            "match (same field, same binning)."
        )


def _check_coords_fit(xy: np.ndarray, shape, coords_path, path) -> None:
    if len(xy) and not np.isfinite(xy).all():
        raise InputError(f"{coords_path} holds NaN or infinite coordinates.")
    ny, nx = shape
    inside = (xy[:, 0] >= -0.5) & (xy[:, 0] < nx) & (xy[:, 1] >= -0.5) & (xy[:, 1] < ny)
    if len(xy) and not inside.any():
        raise InputError(
            f"none of the {len(xy)} particles of {coords_path} lies inside the micrograph {path} "
            f"({nx} x {ny} px, x = column, y = row); are the coordinates binned differently, or for another "
            "micrograph?"
        )


def load_micrograph(
    path: str | os.PathLike,
    *,
    clean: str | os.PathLike | None = None,
    coords: str | os.PathLike | None = None,
    reference: str | os.PathLike | None = None,
    name: str | None = None,
    split: str | None = None,
    reference_contains_micrograph: bool = False,
) -> Micrograph:
    """Read a micrograph and, when present, its clean image, particle coordinates and reference image.

    Without ``clean``/``coords`` the files beside it are used: ``<stem>_clean.mrc`` (the simulator's and the
    stand-ins' noise-free image) and ``<stem>_coords.star``, ``<stem>_coords.csv`` or
    ``<stem>_autopick.star``. A reference is read only when given. With ``reference_contains_micrograph`` (the
    reference is an average that includes this micrograph, e.g. a movie's average and one of its frames) the
    micrograph's own noise is removed from the reference
    (:func:`nt2c.evaluation.metrics.decorrelated_reference`); without it, a warning says when the two
    evidently share noise.

    Raises
    ------
    InputError
        When a file is missing, a clean or reference image differs in shape from the micrograph, or no
        coordinate lies inside it.
    """
    from nt2c.io import read_image

    path = Path(path)
    image, pixel_size = read_image(path)
    clean_path = Path(clean) if clean is not None else _sibling(path, ("_clean.mrc",))
    coords_path = (
        Path(coords)
        if coords is not None
        else _sibling(path, ("_coords.star", "_coords.csv", "_autopick.star"))
    )
    clean_img = ref_img = xy = share = None
    if clean_path is not None:
        clean_img, _ = read_image(clean_path)
        _same_shape(clean_img, image, "clean image", clean_path, path)
    if reference is not None:
        ref_img, _ = read_image(reference)
        _same_shape(ref_img, image, "reference image", reference, path)
        ref_img, share = _reference(image, ref_img, reference_contains_micrograph, path, reference)
    if coords_path is not None:
        xy = read_coords(coords_path)
        _check_coords_fit(xy, image.shape, coords_path, path)
    return Micrograph(
        name or path.stem,
        image,
        pixel_size,
        clean_img,
        xy,
        path,
        split,
        ref_img,
        clean_path,
        coords_path,
        None if reference is None else Path(reference),
        share,
    )


def _reference(image, ref, contains: bool, path, ref_path) -> tuple[np.ndarray, float | None]:
    """Return the reference to score against and the weight of the micrograph removed from it (or None)."""
    from nt2c.evaluation.metrics import _high_band, decorrelated_reference

    if contains:
        out, k = decorrelated_reference(image, ref)
        return out.astype(np.float32), k
    hx = _high_band(np.asarray(image, np.float64), (0.35, 0.5))
    hy = _high_band(np.asarray(ref, np.float64), (0.35, 0.5))
    den = float(np.sqrt((hx * hx).sum() * (hy * hy).sum()))
    r = float((hx * hy).sum() / den) if den > 0 else 0.0
    if r > 0.05:
        log.warning(
            "%s and its reference %s correlate by %.2f near Nyquist, where a low-dose image holds no signal: "
            "the reference seems to contain the micrograph (a movie average and one of its frames). Pass "
            "--reference-contains-micrograph, or scores will reward keeping noise.",
            path,
            ref_path,
            r,
        )
    return ref, None


# ---------------------------------------------------------------------------------------------------------
# The run's datasets
# ---------------------------------------------------------------------------------------------------------
def _run_sources(root: Path) -> dict[str, list[Path]]:
    """Each split of the run and its micrograph files (absolute, resolved)."""
    from nt2c.run.micrographs import read_micrograph_list

    return {
        "test": [p.resolve() for p in sorted((root / "test").glob(_SIMULATED))],
        "experimental": read_micrograph_list(root, "micrographs"),
        "heldout": read_micrograph_list(root, "heldout"),
        "training": [p.resolve() for p in sorted((root / "simulated").glob(_SIMULATED))],
    }


def _split_of(paths: Sequence[Path], sources: dict[str, list[Path]]) -> str:
    labels = []
    for p in paths:
        key = next((k for k, files in sources.items() if p.resolve() in set(files)), "external")
        labels.append(SPLITS[key])
    labels = list(dict.fromkeys(labels))
    return labels[0] if len(labels) == 1 else "mixed: " + "; ".join(labels)


def run_datasets(
    run,
    *,
    micrographs: Sequence[str | os.PathLike] | None = None,
    coords: Sequence[str | os.PathLike] | str | os.PathLike | None = None,
    reference: Sequence[str | os.PathLike] | str | os.PathLike | None = None,
    include_training: bool = False,
    reference_contains_micrograph: bool = False,
    max_micrographs: int | None = None,
) -> dict[str, list[Micrograph]]:
    """Find the micrographs to evaluate in a run directory, grouped into datasets (see the module docstring).

    Parameters
    ----------
    run : RunDir or path-like
    micrographs : sequence of path-like, optional
        Evaluate these (paths or quoted patterns) instead of the run's: one dataset, named by the file's stem
        (one file) or ``"micrographs"``, whose split says where the run used them.
    coords : path-like or sequence of path-like, optional
        Particle coordinates (STAR or CSV; files, folders or patterns) matched by name to the user's
        micrographs (``micrographs``, or the run's ``experimental`` and ``heldout``); the simulated sets keep
        their true coordinates. Default: ``<stem>_coords.star``/``.csv`` or ``<stem>_autopick.star`` beside
        each.
    reference : path-like or sequence of path-like, optional
        Higher-dose images of the same fields (files, folders or patterns), matched by name the same way, for
        correlation and FRC against them.
    reference_contains_micrograph : bool
        The references are averages that include the micrographs (a movie's average for one of its frames):
        remove each micrograph's own noise from its reference first (see :func:`load_micrograph`).
    include_training : bool
        Also score ``RUN/simulated/mic_NNNN.mrc`` (dataset ``"training"``, in-sample: the coarse model's
        training pairs are cut from them).
    max_micrographs : int, optional
        At most this many micrographs per dataset (the first in list or name order).

    Returns
    -------
    dict of str to list of Micrograph
        ``"test"``, ``"experimental"``, ``"heldout"`` (and ``"training"``), empty ones left out; or the one
        dataset of ``micrographs``. Each micrograph's ``split`` says which set it is.
    """
    root = Path(getattr(run, "path", run))
    limit = None if max_micrographs is None else int(max_micrographs)
    sources = _run_sources(root)
    contains = reference_contains_micrograph
    if micrographs:
        paths = _explicit(micrographs)
        # match on the whole list (the in-order pairing of coordinate files counts them all), then cut
        coord_of, ref_of = assign_files(paths, coords, "coords"), assign_files(paths, reference, "reference")
        paths = paths[:limit]
        name = paths[0].stem if len(paths) == 1 else "micrographs"
        return {name: _load_all(paths, coord_of, ref_of, _split_of(paths, sources), contains)}
    out: dict[str, list[Micrograph]] = {}
    for key in ("test", "experimental", "heldout", "training"):
        if key == "training" and not include_training:
            continue
        paths = sources[key][:limit]
        if not paths:
            continue
        user = key in ("experimental", "heldout")  # the simulated sets keep their own truth
        coord_of = assign_files(paths, coords if user else None, "coords")
        ref_of = assign_files(paths, reference if user else None, "reference")
        out[key] = _load_all(paths, coord_of, ref_of, SPLITS[key], contains)
    return out


def _explicit(micrographs) -> list[Path]:
    """``--micrographs`` in the order given (patterns expanded and sorted in place)."""
    from nt2c.run.micrographs import expand_micrographs

    items = [micrographs] if isinstance(micrographs, (str, os.PathLike)) else list(micrographs)
    out: list[Path] = []
    for item in items:
        out += [p for p in expand_micrographs([item]) if p not in out]
    return out


def _load_all(paths: Sequence[Path], coord_of, ref_of, split: str, contains: bool) -> list[Micrograph]:
    return [
        load_micrograph(
            p, coords=coord_of[p], reference=ref_of[p], split=split, reference_contains_micrograph=contains
        )
        for p in paths
    ]
