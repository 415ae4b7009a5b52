"""The paper's estimated SNR (Eq. 5, after Bepler et al. 2020) and the placement of its region pairs.

Eq. 5 needs no ground truth: it compares the grey-level variance of *signal* boxes (on particles) with that of
paired *background* boxes (nearby, holding no particle). :func:`snr_eq5` / :func:`snr_eq5_terms` compute it
from given boxes; :func:`eq5_regions` places the boxes from particle coordinates (:class:`Eq5Regions`), the
same boxes for every method compared, since the value depends on which boxes are chosen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nt2c.errors import InputError

__all__ = ["snr_eq5", "snr_eq5_terms", "Eq5Regions", "eq5_regions"]


def _region(arr, name: str) -> np.ndarray:
    a = np.asarray(arr)
    if a.ndim != 2:
        raise InputError(f"{name} must be a 2-D array (a box cut from a micrograph), got shape {a.shape}.")
    if a.size < 2:
        raise InputError(
            f"{name} has {a.size} pixel(s); a region needs at least 2 pixels to have a variance."
        )
    if np.iscomplexobj(a) or not np.issubdtype(a.dtype, np.number):
        raise InputError(f"{name} must hold real numbers, got dtype {a.dtype}.")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise InputError(f"{name} contains NaN or infinite values; cut the regions from a finite image.")
    return a


def snr_eq5_terms(
    signal_regions: Sequence[np.ndarray], background_regions: Sequence[np.ndarray]
) -> np.ndarray:
    """Per-pair terms ``10 (log10 v_s^i - log10 v_b^i)`` of Eq. 5, in dB.

    Parameters and errors as in :func:`snr_eq5`.

    Returns
    -------
    numpy.ndarray, float64, shape (N,)
        One value per (signal, background) pair; their mean is :func:`snr_eq5`.
    """
    if isinstance(signal_regions, np.ndarray) and signal_regions.ndim == 2:
        raise InputError(
            "signal_regions must be a sequence of 2-D regions, not one 2-D array; wrap it in a list."
        )
    if isinstance(background_regions, np.ndarray) and background_regions.ndim == 2:
        raise InputError(
            "background_regions must be a sequence of 2-D regions, not one 2-D array; wrap it in a list."
        )
    signal_regions = list(signal_regions)
    background_regions = list(background_regions)
    if len(signal_regions) != len(background_regions):
        raise InputError(
            f"Eq. 5 needs paired regions: got {len(signal_regions)} signal and {len(background_regions)} "
            "background regions; pass one background region per signal region (see "
            "nt2c.evaluation.eq5.eq5_regions)."
        )
    if not signal_regions:
        raise InputError("Eq. 5 needs at least one (signal, background) region pair; got none.")
    terms = np.empty(len(signal_regions))
    for i, (xs, xb) in enumerate(zip(signal_regions, background_regions)):
        xs = _region(xs, f"signal region {i}")
        xb = _region(xb, f"background region {i}")
        mu_b = xb.mean()
        v_b = xb.var()  # population variance (ddof=0)
        s = xs - mu_b  # the signal of the region: the raw box minus the mean of its background
        v_s = s.var()
        if v_b <= 0:
            raise InputError(
                f"background region {i} is constant (variance 0): log10 of it is undefined; "
                "choose a region of the micrograph (a clipped or padded area has no noise)."
            )
        if v_s <= 0:
            raise InputError(
                f"signal region {i} is constant (variance 0): log10 of it is undefined; "
                "choose a region of the micrograph (a clipped or padded area has no signal)."
            )
        terms[i] = 10.0 * (np.log10(v_s) - np.log10(v_b))
    return terms


def snr_eq5(signal_regions: Sequence[np.ndarray], background_regions: Sequence[np.ndarray]) -> float:
    r"""Compute the paper's estimated SNR (Eq. 5, after Bepler et al. 2020), in dB.

    For N paired regions, the signal region :math:`x_s^i` (a box on a particle) and the background region
    :math:`x_b^i` (a box as close as possible to it that holds no particle):

    * :math:`\mu_b^i, v_b^i` are the mean and (population, ``ddof=0``) variance of the background pixels;
    * the *signal* is :math:`s^i = x_s^i - \mu_b^i` and :math:`v_s^i` its variance over the signal box;
    * :math:`\mathrm{SNR} = \frac{10}{N} \sum_i \left(\log_{10} v_s^i - \log_{10} v_b^i\right)`.

    Subtracting :math:`\mu_b^i` does not change a variance, so :math:`v_s^i` is the variance of the signal box
    itself: the SNR is the mean log-ratio of the grey-level variance on a particle to that of nearby empty
    ice. It grows when a denoiser removes background fluctuation while keeping the particle's contrast. It
    is *not* a physical SNR: the signal box also holds noise (so a raw micrograph scores near 0 dB), it is
    blind to whether the structure kept is the true one (a filter that invents high-contrast blobs on
    particles scores well) and it depends on the box size and on which regions are chosen, so only values
    computed with the same regions are comparable (the paper says as much).

    Parameters
    ----------
    signal_regions : sequence of array_like, each 2-D (h, w)
        Boxes on particles, in any grey-level units.
    background_regions : sequence of array_like, each 2-D (h', w')
        The paired background boxes, same length and order as ``signal_regions`` (sizes may differ).

    Returns
    -------
    float
        SNR in dB (larger is better).

    Raises
    ------
    InputError
        When the sequences differ in length or are empty, a region is not 2-D, has fewer than 2 pixels,
        holds NaN/Inf, or is constant (zero variance).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> signal = [rng.normal(0, 10.0, (32, 32))]      # variance ~100
    >>> background = [rng.normal(0, 1.0, (32, 32))]  # variance ~1
    >>> round(snr_eq5(signal, background))             # 10 log10(100 / 1)
    20
    """
    return float(np.mean(snr_eq5_terms(signal_regions, background_regions)))


# ---------------------------------------------------------------------------------------------------------
# Region pairs for Eq. 5
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Eq5Regions:
    """Paired signal/background boxes on one micrograph (see :func:`eq5_regions`).

    Attributes
    ----------
    box_px : int
        Side of every box (px).
    signal_corners : numpy.ndarray, int, shape (N, 2)
        (row, col) of the top-left pixel of each signal box.
    background_corners : numpy.ndarray, int, shape (N, 2)
        (row, col) of the top-left pixel of the paired background box.
    coords_xy : numpy.ndarray, float, shape (N, 2)
        The particle coordinates (x, y) in px that the signal boxes are centred on.
    shape : tuple of int
        (ny, nx) of the micrograph the boxes were placed on.
    """

    box_px: int
    signal_corners: np.ndarray
    background_corners: np.ndarray
    coords_xy: np.ndarray
    shape: tuple[int, int]

    def __len__(self) -> int:
        return len(self.signal_corners)

    def cut(self, image: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Cut the boxes out of ``image`` (ny, nx), which must have the shape the boxes were placed on.

        Returns
        -------
        signal, background : list of numpy.ndarray, each (box_px, box_px)
        """
        image = np.asarray(image)
        if image.shape != tuple(self.shape):
            raise InputError(
                f"image of shape {image.shape} does not match the micrograph the regions were placed on "
                f"({tuple(self.shape)}); resize the output back to the input size first."
            )
        b = self.box_px
        sig = [image[r : r + b, c : c + b] for r, c in self.signal_corners]
        bg = [image[r : r + b, c : c + b] for r, c in self.background_corners]
        return sig, bg

    def snr(self, image: np.ndarray) -> float:
        """Eq. 5 SNR (dB) of ``image`` over these regions."""
        return snr_eq5(*self.cut(image))


def eq5_regions(
    shape: tuple[int, int],
    coords_xy: np.ndarray,
    *,
    box_px: int,
    exclusion_px: int | None = None,
    exclude_mask: np.ndarray | None = None,
    max_pairs: int | None = None,
) -> Eq5Regions:
    """Place Eq. 5's signal and background boxes from particle coordinates.

    Each signal box (``box_px`` square) is centred on a particle. Its background box is the box, of the same
    size and entirely inside the micrograph, whose centre is nearest (Euclidean) to the particle among the
    boxes that overlap no particle: no pixel of it lies within ``exclusion_px`` (Chebyshev distance) of any
    particle coordinate, nor on ``exclude_mask``. Several particles may share a background box. Particles
    whose signal box would leave the micrograph, or that have no valid background box, are left out.

    Parameters
    ----------
    shape : (int, int)
        (ny, nx) of the micrograph.
    coords_xy : array_like, shape (n, 2)
        Particle centres (x = column, y = row) in px, as in RELION's rlnCoordinateX/Y.
    box_px : int
        Side of the signal and background boxes (px); about the particle diameter.
    exclusion_px : int, optional
        Half-side of the square around each particle that background boxes must avoid (default
        ``box_px // 2``, i.e. a particle occupies a box like its signal box).
    exclude_mask : numpy.ndarray of bool, shape (ny, nx), optional
        Pixels no background box may touch (carbon edge, contamination).
    max_pairs : int, optional
        Keep at most this many pairs (the first ones in coordinate order).

    Returns
    -------
    Eq5Regions

    Raises
    ------
    InputError
        When the box does not fit, there are no coordinates, or no pair can be placed.
    """
    from scipy import ndimage

    ny, nx = (int(shape[0]), int(shape[1]))
    box_px = int(box_px)
    if box_px < 2 or box_px > min(ny, nx):
        raise InputError(
            f"box_px={box_px} must be between 2 and the micrograph's smaller side ({min(ny, nx)} px)."
        )
    coords = np.asarray(coords_xy, dtype=float).reshape(-1, 2) if np.size(coords_xy) else np.empty((0, 2))
    if len(coords) == 0:
        raise InputError("no particle coordinates: Eq. 5 needs particles to place signal regions on.")
    if not np.isfinite(coords).all():
        raise InputError("particle coordinates contain NaN or infinite values.")
    exclusion_px = box_px // 2 if exclusion_px is None else int(exclusion_px)
    if exclusion_px < 0:
        raise InputError(f"exclusion_px={exclusion_px} must be >= 0.")

    # occupied pixels: a square of half-side exclusion_px around every particle (plus the user's mask)
    occupied = np.zeros((ny, nx), dtype=bool)
    for x, y in coords:
        r, c = int(round(y)), int(round(x))
        occupied[
            max(r - exclusion_px, 0) : max(min(r + exclusion_px + 1, ny), 0),
            max(c - exclusion_px, 0) : max(min(c + exclusion_px + 1, nx), 0),
        ] = True
    if exclude_mask is not None:
        mask = np.asarray(exclude_mask, dtype=bool)
        if mask.shape != (ny, nx):
            raise InputError(f"exclude_mask has shape {mask.shape}, expected the micrograph's {(ny, nx)}.")
        occupied |= mask
    # free[r, c]: the box with top-left corner (r, c) is inside the image and touches no occupied pixel
    integral = np.zeros((ny + 1, nx + 1))
    integral[1:, 1:] = np.cumsum(np.cumsum(occupied, axis=0), axis=1)
    b = box_px
    counts = integral[b:, b:] - integral[:-b, b:] - integral[b:, :-b] + integral[:-b, :-b]
    free = counts == 0  # shape (ny - b + 1, nx - b + 1)
    if not free.any():
        raise InputError(
            f"no {box_px} px box on this micrograph is free of particles; use a smaller box_px or "
            "exclusion_px (the particles cover the whole micrograph)."
        )
    # nearest free corner to every corner position (one Euclidean distance transform)
    _, (near_r, near_c) = ndimage.distance_transform_edt(~free, return_indices=True)

    sig, bg, kept = [], [], []
    half = b // 2
    for x, y in coords:
        r0, c0 = int(round(y)) - half, int(round(x)) - half
        if r0 < 0 or c0 < 0 or r0 + b > ny or c0 + b > nx:
            continue
        sig.append((r0, c0))
        bg.append((int(near_r[r0, c0]), int(near_c[r0, c0])))
        kept.append((x, y))
        if max_pairs is not None and len(sig) >= max_pairs:
            break
    if not sig:
        raise InputError(
            f"none of the {len(coords)} particles has a {box_px} px box inside the micrograph; "
            "check that the coordinates are in pixels of this micrograph (not binned/unbinned)."
        )
    return Eq5Regions(
        box_px, np.array(sig, dtype=int), np.array(bg, dtype=int), np.array(kept, dtype=float), (ny, nx)
    )
