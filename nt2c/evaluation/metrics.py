"""Image-quality metrics for denoised micrographs: the paper's SNR (Eq. 5), PSNR, SSIM, Pearson, FRC.

Two kinds of measure:

* **Without ground truth** (real micrographs): the SNR of the paper's Eq. 5 from paired particle and
  background boxes, in :mod:`nt2c.evaluation.eq5` (:func:`snr_eq5`, :func:`eq5_regions`; re-exported here).
* **Against a reference image**: :func:`psnr`, :func:`ssim` and :func:`pearson` (this module) and the Fourier
  ring correlation :func:`frc` (:mod:`nt2c.evaluation.frc`, re-exported here). The reference is the clean
  image of a simulation, or, for real data, a higher-dose image of the same field (``nt2c evaluate
  --reference``).

Which PSNR is which
-------------------
A denoiser's output has arbitrary grey levels (a network trained on normalised pairs, a filter on counts), so
:func:`psnr` and :func:`ssim` here first map the output onto the clean image with the least-squares scale and
offset of :func:`fit_affine` (``fit=True``, the default): they measure structure, not units. This is the PSNR
of ``nt2c evaluate`` (``evaluation.csv`` column ``psnr_dB``), of the notebooks' tables and of the benchmarks.

The training curves (``RUN/report/*_curves.json`` ``psnr_dB``, the model sidecars' ``final_val_psnr_dB`` and
``input_val_psnr_dB``) use :func:`nt2c.denoiser.training.psnr_dB` instead: *no* fit, per normalised training
patch, peak = that patch's clean range, averaged over patches. The two are different numbers and are not
comparable: the fitted PSNR is never lower than ``psnr(..., fit=False)`` on the same image (the fit minimises
the MSE), and a whole micrograph's range differs from a patch's. Compare only like with like.

:func:`pearson` is the correlation coefficient; it equals the correlation after any scale-and-offset fit
(Pearson's r is invariant to both), so it needs no ``fit`` option.

A reference that *contains* the micrograph (the average of a movie scored against one of its frames) shares
that micrograph's noise: a single frame of a 50-frame average correlates with it by about ``1/sqrt(50) =
0.14`` at every frequency from the shared noise alone, which rewards a denoiser for keeping noise.
:func:`decorrelated_reference` removes the micrograph's share from such a reference first.

All functions take 2-D arrays (ny, nx) and return plain Python floats (or a small dataclass).
"""

from __future__ import annotations

import numpy as np

from nt2c.errors import InputError
from nt2c.evaluation.eq5 import Eq5Regions, eq5_regions, snr_eq5, snr_eq5_terms
from nt2c.evaluation.frc import FRCResult, frc

__all__ = [
    "decorrelated_reference",
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
    (so it is invariant to the output's scale and offset) unless ``fit=False``. This is the PSNR of
    ``nt2c evaluate``; the training curves' ``psnr_dB`` is another, unfitted, per-patch number (see the module
    docstring, "Which PSNR is which").

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


def _high_band(image: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    """Keep the Fourier components with ``band[0] <= |k| <= band[1]`` (cycles/px); return the real image."""
    x = image - image.mean()
    ky = np.fft.fftfreq(x.shape[0])[:, None]
    kx = np.fft.rfftfreq(x.shape[1])[None, :]
    radius = np.sqrt(ky * ky + kx * kx)
    keep = (radius >= band[0]) & (radius <= band[1])
    return np.fft.irfft2(np.fft.rfft2(x) * keep, s=x.shape)


def decorrelated_reference(
    image: np.ndarray, reference: np.ndarray, *, band_cycles_px: tuple[float, float] = (0.35, 0.5)
) -> tuple[np.ndarray, float]:
    r"""Remove a micrograph's own noise from a reference that contains it (a movie average vs one frame).

    When the reference is an average that includes ``image`` (in arbitrary grey-level units, e.g. each file
    rescaled on its own), ``reference = a * (image + rest) + b`` up to the scale of ``image``. Near Nyquist
    (``band_cycles_px``) a low-dose frame holds essentially no specimen signal, so there the two images
    correlate only through the shared noise; the least-squares weight ``k`` of ``image`` in ``reference`` over
    that band is the share to remove: the result ``reference - k * image`` (a scaled ``rest`` plus an offset)
    no longer shares the micrograph's noise, and correlation and FRC against it measure signal only.

    Parameters
    ----------
    image : numpy.ndarray, shape (ny, nx)
        The (raw) micrograph the reference contains.
    reference : numpy.ndarray, shape (ny, nx)
        The higher-dose image of the same field.
    band_cycles_px : (float, float)
        Spatial-frequency band (cycles/px, at most 0.5) in which the signal is taken as negligible.

    Returns
    -------
    reference : numpy.ndarray, float64, shape (ny, nx)
        ``reference - k * image``.
    k : float
        The weight removed (0 when the two do not share noise).
    """
    x, y = _pair(image, reference)
    lo, hi = (float(band_cycles_px[0]), float(band_cycles_px[1]))
    if not 0 < lo < hi <= 0.5:
        raise InputError(f"band_cycles_px={band_cycles_px} must satisfy 0 < low < high <= 0.5 (cycles/px).")
    hx, hy = _high_band(x, (lo, hi)), _high_band(y, (lo, hi))
    power = float((hx * hx).sum())
    if power <= 0:
        raise InputError(
            "the micrograph has no power near Nyquist, so its share of the reference is unknown."
        )
    k = float((hx * hy).sum() / power)
    return y - k * x, k
