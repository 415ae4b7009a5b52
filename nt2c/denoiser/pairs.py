"""Training pairs of the denoiser: reading them, splitting them, and the batches a training step sees.

Every training crop is z-scored, ``(x - mean(x)) / std(x)``, with the *noisy* crop's statistics, and the clean
crop is mapped by the same affine transform (:func:`normalize_pair`), so the network learns the clean image in
its input's units. Augmentation applies one of the eight flips/90-degree rotations to both images of a pair
alike (:func:`augment_pair`); noisy and clean are never swapped (a bug of the public reference code, where the
target then is a noisy image half of the time).

Validation pairs never share pixels with training pairs (:func:`split_by_source`): the pairs of whole
micrographs are held out when the pairs come from several, else the pairs of one side of the micrograph, with
a gap of ``margin_px`` to the other side's.

Each step's pairs, crops and flips are drawn from ``(seed, step)`` alone (:func:`batch_indices`,
:func:`make_batch`), so the data a step sees does not depend on earlier steps (exact resume).
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import numpy as np

from nt2c.errors import InputError, StageError
from nt2c.io import atomic_path, read_mrc

__all__ = [
    "normalize_pair",
    "augment_pair",
    "split_by_source",
    "batch_indices",
    "make_batch",
    "center_crop",
    "load_pairs",
    "read_pair_sources",
    "write_pair_sources",
    "toy_pairs",
    "MAX_VAL_PAIRS",
]

log = logging.getLogger(__name__)

MAX_VAL_PAIRS = 64


def normalize_pair(noisy: np.ndarray, clean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Z-score ``noisy`` by its own mean and standard deviation and map ``clean`` by the same transform.

    Parameters
    ----------
    noisy, clean : numpy.ndarray, shape (..., ny, nx)
        Aligned images; statistics are taken over the last two axes.

    Returns
    -------
    (noisy_n, clean_n) : numpy.ndarray, float32, same shapes
    """
    noisy = np.asarray(noisy, dtype=np.float64)
    mean = noisy.mean(axis=(-2, -1), keepdims=True)
    std = noisy.std(axis=(-2, -1), keepdims=True)
    std = np.where(std > 0, std, 1.0)
    return ((noisy - mean) / std).astype(np.float32), ((np.asarray(clean, np.float64) - mean) / std).astype(
        np.float32
    )


def augment_pair(noisy: np.ndarray, clean: np.ndarray, transform: int) -> tuple[np.ndarray, np.ndarray]:
    """Apply one dihedral transform (0-7: ``transform % 4`` quarter turns, then a flip if ``>= 4``) to both.

    Parameters
    ----------
    noisy, clean : numpy.ndarray, shape (ny, nx)
    transform : int
        Index of one of the eight symmetries of the square.
    """
    k, flip = transform % 4, transform >= 4
    out = []
    for img in (noisy, clean):
        img = np.rot90(img, k)
        if flip:
            img = img[:, ::-1]
        out.append(np.ascontiguousarray(img))
    return out[0], out[1]


def split_by_source(
    sources: np.ndarray | None, n: int, val_fraction: float, *, patch_px: int, seed: int, margin_px: int = 64
) -> tuple[np.ndarray, np.ndarray, str]:
    """Split ``n`` pairs into training and validation pairs that share no pixel.

    Parameters
    ----------
    sources : numpy.ndarray, int, shape (n, 3), or None
        Micrograph index, top row and left column (px) each pair was cut at (``pairs_sources.csv``). None:
        a random split of the pairs (a warning says that validation then measures the training fit when the
        pairs overlap).
    n : int
        Number of pairs.
    val_fraction : float
        Share of micrographs (or of the field's width) held out.
    patch_px : int
        Side of the pairs (px).
    seed : int
    margin_px : int
        With one micrograph: the gap (px) kept between the training and the validation side.

    Returns
    -------
    train, val : numpy.ndarray of int
        Sorted pair indices; ``val`` holds at most :data:`MAX_VAL_PAIRS`.
    how : str
        What the validation set is, in words (recorded in the model's sidecar).
    """
    if n < 2:
        raise InputError(f"training needs at least 2 (noisy, clean) pairs, got {n}; simulate more pairs.")
    if sources is None:
        n_val = min(max(1, int(round(val_fraction * n))), n - 1)
        perm = np.random.default_rng([seed, 7919]).permutation(n)
        log.warning(
            "no pair sources: validation pairs are a random share of the pairs and may overlap training ones"
        )
        return (
            np.sort(perm[n_val:]),
            np.sort(perm[:n_val][:MAX_VAL_PAIRS]),
            "random pairs (may overlap training)",
        )
    sources = np.asarray(sources, dtype=np.int64).reshape(n, 3)
    mics = np.unique(sources[:, 0])
    if len(mics) >= 2:
        n_val = min(max(1, int(round(val_fraction * len(mics)))), len(mics) - 1)
        held = np.sort(np.random.default_rng([seed, 7919]).permutation(mics)[:n_val])
        is_val = np.isin(sources[:, 0], held)
        train, val = np.flatnonzero(~is_val), np.flatnonzero(is_val)
        how = f"pairs of held-out micrograph(s) {held.tolist()}"
    else:  # one micrograph: its right side, a margin away from every training pair
        cols = sources[:, 2]
        span = int(cols.max()) + patch_px
        cut = int(round(span * (1 - max(val_fraction, 0.1))))
        val = np.flatnonzero(cols >= cut)
        train = np.flatnonzero(cols + patch_px + margin_px <= cut)
        how = f"pairs right of column {cut} px, training pairs ending {margin_px} px before it"
    if len(train) == 0 or len(val) == 0:
        raise InputError(
            "cannot hold out validation pairs that share no pixel with the training pairs "
            f"({how}: {len(train)} training, {len(val)} validation); "
            "simulate more micrographs or lower val_fraction."
        )
    return train, val[:MAX_VAL_PAIRS], how


def batch_indices(step: int, batch_size: int, n_train: int, seed: int) -> np.ndarray:
    """Return the pair indices (into the training subset) of ``step``: slices of per-epoch permutations."""
    first = step * batch_size
    out = []
    for pos in range(first, first + batch_size):
        epoch, offset = divmod(pos, n_train)
        out.append(np.random.default_rng([seed, 104729, epoch]).permutation(n_train)[offset])
    return np.asarray(out)


def make_batch(noisy, clean, idx, patch: int, step: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut the normalised, augmented random ``patch`` px crops of pairs ``idx`` for training step ``step``."""
    rng = np.random.default_rng([seed, 15485863, step])
    ny, nx = noisy.shape[-2:]
    xs, ys = [], []
    for i in idx:
        y0 = int(rng.integers(0, ny - patch + 1))
        x0 = int(rng.integers(0, nx - patch + 1))
        n, c = augment_pair(
            noisy[i, y0 : y0 + patch, x0 : x0 + patch],
            clean[i, y0 : y0 + patch, x0 : x0 + patch],
            int(rng.integers(0, 8)),
        )
        xs.append(n)
        ys.append(c)
    return normalize_pair(np.stack(xs), np.stack(ys))


def center_crop(stack: np.ndarray, side: int) -> np.ndarray:
    """Return the central ``side x side`` crop of every image of a (..., ny, nx) stack."""
    ny, nx = stack.shape[-2:]
    y0, x0 = (ny - side) // 2, (nx - side) // 2
    return stack[..., y0 : y0 + side, x0 : x0 + side]


def load_pairs(folder: str | os.PathLike, *, stage_hint: str) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Read ``pairs_noisy.mrcs`` and ``pairs_clean.mrcs`` from ``folder``.

    Returns
    -------
    noisy, clean : numpy.ndarray, float32, shape (n, p, p)
    pixel_size_A : float or None
    """
    folder = Path(folder)
    paths = [folder / "pairs_noisy.mrcs", folder / "pairs_clean.mrcs"]
    for path in paths:
        if not path.is_file():
            raise StageError(f"{path} is missing; run `{stage_hint}` first.")
    noisy, pixel_size = read_mrc(paths[0])
    clean, _ = read_mrc(paths[1])
    if noisy.ndim == 2 and clean.ndim == 2:
        noisy, clean = noisy[None], clean[None]
    if noisy.shape != clean.shape or noisy.ndim != 3:
        raise InputError(
            f"{paths[0]} {noisy.shape} and {paths[1]} {clean.shape} must be (n, p, p) stacks of the "
            f"same shape; delete them and run `{stage_hint}` again."
        )
    return noisy, clean, pixel_size


def write_pair_sources(path: str | os.PathLike, sources: np.ndarray, micrographs: list[str]) -> Path:
    """Write where each pair was cut: ``micrograph,index,row,col`` per pair (``pairs_sources.csv``)."""
    sources = np.asarray(sources, dtype=np.int64).reshape(-1, 3)
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["micrograph", "index", "row", "col"])
            for m, r, c in sources:
                writer.writerow([micrographs[m], int(m), int(r), int(c)])
    return Path(path)


def read_pair_sources(folder: str | os.PathLike, n: int) -> np.ndarray | None:
    """Read ``(n, 3)`` micrograph index, row, col of each pair from ``folder/pairs_sources.csv`` (or None)."""
    path = Path(folder) / "pairs_sources.csv"
    if not path.is_file():
        return None
    with open(path, newline="") as handle:
        rows = [(int(r["index"]), int(r["row"]), int(r["col"])) for r in csv.DictReader(handle)]
    if len(rows) != n:
        raise StageError(
            f"{path} lists {len(rows)} pairs for {n} pairs; run the stage that wrote the pairs again."
        )
    return np.asarray(rows, dtype=np.int64).reshape(n, 3)


def toy_pairs(
    n: int, size: int, *, seed: int = 0, noise_std: float = 1.0, blob_sigma_px: float = 3.0
) -> tuple[np.ndarray, np.ndarray]:
    """Small synthetic (noisy, clean) pairs for tests and demonstrations (not a physical simulation).

    The clean images are random points blurred by a Gaussian of ``blob_sigma_px`` (unit peak contrast, on an
    offset of 10), the noisy ones add white Gaussian noise of standard deviation ``noise_std``. For the
    physical simulator see :mod:`nt2c.simulation`.

    Returns
    -------
    noisy, clean : numpy.ndarray, float32, shape (n, size, size)
    """
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    clean = np.zeros((n, size, size))
    for img in clean:
        k = max(1, int(rng.poisson(size * size / 400)))
        img[rng.integers(0, size, k), rng.integers(0, size, k)] = rng.uniform(0.5, 1.5, k)
    clean = gaussian_filter(clean, (0, blob_sigma_px, blob_sigma_px), mode="wrap")
    clean = 10.0 + clean / clean.max()
    noisy = clean + rng.normal(0.0, noise_std, clean.shape)
    return noisy.astype(np.float32), clean.astype(np.float32)
