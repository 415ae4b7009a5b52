"""Image-quality metrics for denoised micrographs: the paper's SNR (Eq. 5), PSNR, SSIM, Pearson, FRC.

Two kinds of measure:

* **Without ground truth** (real micrographs): :func:`snr_eq5`, the SNR of the paper's Eq. 5 (after
  Bepler et al. 2020, Topaz-Denoise), computed from paired *signal* regions (boxes on particles) and
  *background* regions (boxes near them that hold no particle). :func:`eq5_regions` builds such pairs from
  particle coordinates.
* **Against a clean image** (simulated micrographs): :func:`psnr`, :func:`ssim`, :func:`pearson` and the
  Fourier ring correlation :func:`frc`. A denoiser's output has arbitrary grey levels (a network trained on
  normalised pairs, a filter on counts), so PSNR and SSIM first map the output onto the clean image with the
  least-squares scale and offset of :func:`fit_affine`; they then measure structure, not units.

All functions take 2-D arrays (ny, nx) and return plain Python floats (or a small dataclass).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from nt2c.errors import InputError

__all__ = [
    "snr_eq5",
    "snr_eq5_terms",
    "fit_affine",
    "psnr",
    "ssim",
    "pearson",
    "frc",
    "FRCResult",
    "Eq5Regions",
    "eq5_regions",
]


# ---------------------------------------------------------------------------------------------------------
# Eq. 5
# ---------------------------------------------------------------------------------------------------------
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
            f"Eq. 5 needs paired regions: got {len(signal_regions)} signal and {len(background_regions)} background "
            "regions; pass one background region per signal region (see nt2c.evaluation.metrics.eq5_regions)."
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
    r"""The paper's estimated SNR (Eq. 5, after Bepler et al. 2020), in dB.

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
        Half-side of the square around each particle that background boxes must avoid (default ``box_px // 2``,
        i.e. a particle occupies a box like its signal box).
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


# ---------------------------------------------------------------------------------------------------------
# Full-reference metrics
# ---------------------------------------------------------------------------------------------------------
def _pair(output, clean) -> tuple[np.ndarray, np.ndarray]:
    from nt2c.io import validate_image

    validate_image(output, name="output")  # checks only: the metrics compute in float64 of the given values
    validate_image(clean, name="clean image")
    out = np.asarray(output, dtype=np.float64)
    ref = np.asarray(clean, dtype=np.float64)
    if out.shape != ref.shape:
        raise InputError(f"output {out.shape} and clean image {ref.shape} must have the same shape.")
    return out, ref


def fit_affine(output: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    r"""Least-squares scale and offset mapping ``output`` onto ``clean``.

    Minimises :math:`\sum (a \cdot \mathrm{output} + b - \mathrm{clean})^2` over the pixels.

    Parameters
    ----------
    output, clean : numpy.ndarray, shape (ny, nx)

    Returns
    -------
    scale, offset : float
        ``a`` and ``b`` (``a = 0`` when ``output`` is constant).
    """
    out, ref = _pair(output, clean)
    do = out - out.mean()
    var = float((do * do).sum())
    scale = float((do * (ref - ref.mean())).sum() / var) if var > 0 else 0.0
    offset = float(ref.mean() - scale * out.mean())
    return scale, offset


def _fitted(output, clean, fit: bool) -> tuple[np.ndarray, np.ndarray]:
    out, ref = _pair(output, clean)
    if fit:
        a, b = fit_affine(out, ref)
        out = a * out + b
    return out, ref


def psnr(
    output: np.ndarray, clean: np.ndarray, *, fit: bool = True, data_range: float | None = None
) -> float:
    """Peak signal-to-noise ratio of ``output`` against ``clean``, in dB.

    ``PSNR = 10 log10(data_range^2 / MSE)``, with the MSE taken after the affine fit of :func:`fit_affine`
    (so it is invariant to the output's scale and offset) unless ``fit=False``.

    Parameters
    ----------
    output, clean : numpy.ndarray, shape (ny, nx)
    fit : bool
        Map the output onto the clean image's grey levels first.
    data_range : float, optional
        Peak-to-peak range of the clean image (default ``clean.max() - clean.min()``).

    Returns
    -------
    float
        dB; ``inf`` for a perfect match.
    """
    out, ref = _fitted(output, clean, fit)
    rng = float(ref.max() - ref.min()) if data_range is None else float(data_range)
    if rng <= 0:
        raise InputError("the clean image is constant, so PSNR is undefined; pass data_range explicitly.")
    mse = float(np.mean((out - ref) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(rng * rng / mse))


def ssim(
    output: np.ndarray,
    clean: np.ndarray,
    *,
    fit: bool = True,
    data_range: float | None = None,
    win_size: int = 7,
) -> float:
    """Structural similarity (Wang et al. 2004, scikit-image's implementation) after the affine fit.

    Parameters
    ----------
    output, clean : numpy.ndarray, shape (ny, nx)
    fit : bool
        Map the output onto the clean image's grey levels first (:func:`fit_affine`).
    data_range : float, optional
        Range of the clean image (default ``clean.max() - clean.min()``).
    win_size : int
        Side of the sliding window (odd, px).

    Returns
    -------
    float
        Mean SSIM in [-1, 1].
    """
    from skimage.metrics import structural_similarity

    out, ref = _fitted(output, clean, fit)
    rng = float(ref.max() - ref.min()) if data_range is None else float(data_range)
    if rng <= 0:
        raise InputError("the clean image is constant, so SSIM is undefined; pass data_range explicitly.")
    if min(ref.shape) < win_size:
        raise InputError(f"images of shape {ref.shape} are smaller than the SSIM window ({win_size} px).")
    return float(structural_similarity(out, ref, data_range=rng, win_size=win_size))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation coefficient of two images' pixels (invariant to scale and offset).

    Parameters
    ----------
    a, b : numpy.ndarray, shape (ny, nx)

    Returns
    -------
    float
        In [-1, 1].
    """
    x, y = _pair(a, b)
    x = x - x.mean()
    y = y - y.mean()
    den = float(np.sqrt((x * x).sum() * (y * y).sum()))
    if den == 0:
        raise InputError("one of the images is constant, so their correlation is undefined.")
    return float((x * y).sum() / den)


# ---------------------------------------------------------------------------------------------------------
# Fourier ring correlation
# ---------------------------------------------------------------------------------------------------------
@dataclass
class FRCResult:
    """A Fourier ring correlation curve and its threshold crossings.

    Attributes
    ----------
    frequency : numpy.ndarray, shape (n_rings,)
        Centre of each ring: cycles/px, or 1/A when ``pixel_size_A`` was given.
    correlation : numpy.ndarray, shape (n_rings,)
        FRC of each ring (ring 0 is the lowest non-zero frequency band; the DC term is left out).
    n_pixels : numpy.ndarray of int, shape (n_rings,)
        Fourier pixels in each ring.
    crossing_0143, crossing_05 : float
        Frequency (same units as ``frequency``) where the curve first falls below 0.143 / 0.5, linearly
        interpolated between rings; the last ring's frequency when it never does (the curve stays above the
        threshold up to Nyquist), the first ring's when it starts below.
    pixel_size_A : float or None
    """

    frequency: np.ndarray
    correlation: np.ndarray
    n_pixels: np.ndarray
    crossing_0143: float
    crossing_05: float
    pixel_size_A: float | None = None
    unit: str = field(default="1/px")

    def resolution(self, threshold: float = 0.143) -> float:
        """The crossing as a spacing: 1 / frequency, in A (with ``pixel_size_A``) or px."""
        f = self.crossing_0143 if threshold == 0.143 else self.crossing_05 if threshold == 0.5 else None
        if f is None:
            f = _crossing(self.frequency, self.correlation, threshold)
        return float("inf") if f <= 0 else 1.0 / f


def _crossing(freq: np.ndarray, corr: np.ndarray, threshold: float) -> float:
    below = np.nonzero(corr < threshold)[0]
    if len(below) == 0:
        return float(freq[-1])
    k = int(below[0])
    if k == 0:
        return float(freq[0])
    c0, c1 = corr[k - 1], corr[k]
    t = (c0 - threshold) / (c0 - c1) if c0 != c1 else 0.0
    return float(freq[k - 1] + t * (freq[k] - freq[k - 1]))


def _tukey(n: int, alpha: float) -> np.ndarray:
    """Tukey (tapered cosine) window of length ``n``: flat centre, cosine roll-off over ``alpha * n / 2`` each end."""
    x = np.arange(n) / max(n - 1, 1)
    w = np.ones(n)
    edge = alpha / 2
    lo, hi = x < edge, x > 1 - edge
    w[lo] = 0.5 * (1 + np.cos(np.pi * (x[lo] / edge - 1)))
    w[hi] = 0.5 * (1 + np.cos(np.pi * ((x[hi] - 1) / edge + 1)))
    return w


def frc(
    a: np.ndarray,
    b: np.ndarray,
    *,
    pixel_size_A: float | None = None,
    n_rings: int | None = None,
    taper: float = 0.1,
) -> FRCResult:
    """Fourier ring correlation of two images (Saxton & Baumeister 1982).

    ``FRC(r) = Re sum_{|k| in r} A(k) B*(k) / sqrt(sum |A(k)|^2 sum |B(k)|^2)`` over rings of spatial frequency
    |k| of equal width ``0.5 / n_rings`` cycles/px from 0 to Nyquist (0.5 cycles/px); corner frequencies beyond
    Nyquist are left out. For a non-square image the frequency of a Fourier pixel is
    ``sqrt((ky/ny)^2 + (kx/nx)^2)`` cycles/px.

    Against a clean image the FRC is the per-frequency correlation, a function of the spectral SNR of the
    output. A linear, rotationally symmetric filter (low-pass, Gaussian) multiplies both images' ring sums by
    the same gain and so leaves the FRC unchanged (up to the ring width): only adaptive, non-linear denoisers
    can raise it. With a CTF-modulated clean image the curve dips at the CTF zeros, and the first crossing
    can come from such a dip.

    Parameters
    ----------
    a, b : numpy.ndarray, shape (ny, nx)
        Typically a denoiser's output and the clean image (FRC is invariant to scale, and the mean is removed).
    pixel_size_A : float, optional
        Pixel size (A/px); frequencies are then in 1/A.
    n_rings : int, optional
        Number of rings (default ``min(ny, nx) // 4``, i.e. two Fourier pixels wide, which halves the
        statistical noise of one-pixel rings).
    taper : float
        Fraction of each side rolled off with a cosine (Tukey) window before the transform, so that the
        image edges do not add a spurious cross of correlated frequencies; 0 disables it.

    Returns
    -------
    FRCResult
    """
    x, y = _pair(a, b)
    ny, nx = x.shape
    if min(ny, nx) < 8:
        raise InputError(f"images of shape {x.shape} are too small for an FRC (need at least 8 x 8 px).")
    if not 0 <= taper < 1:
        raise InputError(f"taper={taper} must be in [0, 1).")
    if pixel_size_A is not None and pixel_size_A <= 0:
        raise InputError(f"pixel_size_A={pixel_size_A} must be positive.")
    n_rings = int(n_rings or min(ny, nx) // 4)
    if n_rings < 2:
        raise InputError(f"n_rings={n_rings} must be at least 2.")
    x = x - x.mean()
    y = y - y.mean()
    if taper > 0:
        win = np.outer(_tukey(ny, taper), _tukey(nx, taper))
        x = x * win
        y = y * win
    fa = np.fft.rfft2(x)
    fb = np.fft.rfft2(y)
    ky = np.fft.fftfreq(ny)[:, None]
    kx = np.fft.rfftfreq(nx)[None, :]
    radius = np.sqrt(ky * ky + kx * kx)
    # rfft2 holds half the spectrum: the columns 1..(nx-1)//2 stand for two Fourier pixels each
    weight = np.full(kx.shape, 2.0)
    weight[0, 0] = 1.0
    if nx % 2 == 0:
        weight[0, -1] = 1.0
    weight = np.broadcast_to(weight, radius.shape)
    edges = np.linspace(0.0, 0.5, n_rings + 1)
    ring = np.digitize(radius, edges) - 1  # 0 .. n_rings-1 inside Nyquist
    inside = (radius > 0) & (radius <= 0.5)
    ring = np.where(inside, np.clip(ring, 0, n_rings - 1), -1)
    sel = ring >= 0
    idx = ring[sel]
    w = weight[sel]
    cross = np.bincount(idx, weights=w * (fa[sel] * np.conj(fb[sel])).real, minlength=n_rings)
    pa = np.bincount(idx, weights=w * np.abs(fa[sel]) ** 2, minlength=n_rings)
    pb = np.bincount(idx, weights=w * np.abs(fb[sel]) ** 2, minlength=n_rings)
    npx = np.bincount(idx, weights=w, minlength=n_rings).astype(int)
    keep = npx > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(pa * pb > 0, cross / np.sqrt(pa * pb), 0.0)
    freq = 0.5 * (edges[:-1] + edges[1:])
    freq, corr, npx = freq[keep], corr[keep], npx[keep]
    unit = "1/px"
    if pixel_size_A is not None:
        freq = freq / float(pixel_size_A)
        unit = "1/A"
    return FRCResult(
        freq,
        corr,
        npx,
        _crossing(freq, corr, 0.143),
        _crossing(freq, corr, 0.5),
        None if pixel_size_A is None else float(pixel_size_A),
        unit,
    )
