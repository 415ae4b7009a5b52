"""Classical denoisers of the comparison tables: 2x-binning low-pass, Gaussian filter and BM3D.

Registered as methods ``lowpass``, ``gaussian`` and ``bm3d`` in :data:`nt2c.evaluation.baselines.BASELINES`
(which re-exports these functions).
"""

from __future__ import annotations

import numpy as np

from nt2c.errors import InputError

__all__ = ["lowpass_bin2", "gaussian_filter", "estimate_noise_sigma", "bm3d_denoise"]


def _image(image) -> np.ndarray:
    from nt2c.io import validate_image

    return validate_image(image, name="micrograph")


def lowpass_bin2(image: np.ndarray) -> np.ndarray:
    """2x binning then back to the input size: the paper's low-pass baseline.

    The image is averaged over 2 x 2 blocks (an odd last row/column is padded by repeating it), which
    low-passes it and halves the Nyquist frequency, and is brought back to (ny, nx) by bilinear
    interpolation with pixel edges aligned (``scipy.ndimage.zoom(grid_mode=True)``).

    Parameters
    ----------
    image : numpy.ndarray, shape (ny, nx)

    Returns
    -------
    numpy.ndarray, float32, shape (ny, nx)
    """
    from scipy import ndimage

    x = _image(image).astype(np.float64)
    ny, nx = x.shape
    if min(ny, nx) < 2:
        raise InputError(f"image of shape {x.shape} is too small to bin 2x.")
    x = np.pad(x, ((0, ny % 2), (0, nx % 2)), mode="edge")
    binned = x.reshape(x.shape[0] // 2, 2, x.shape[1] // 2, 2).mean(axis=(1, 3))
    up = ndimage.zoom(binned, 2, order=1, mode="nearest", grid_mode=True)
    return up[:ny, :nx].astype(np.float32)


def gaussian_filter(image: np.ndarray, *, sigma_px: float = 1.0) -> np.ndarray:
    """Gaussian low-pass filter (reflecting edges).

    Parameters
    ----------
    image : numpy.ndarray, shape (ny, nx)
    sigma_px : float
        Standard deviation of the kernel (px).

    Returns
    -------
    numpy.ndarray, float32, shape (ny, nx)
    """
    from scipy import ndimage

    if not sigma_px > 0:
        raise InputError(f"sigma_px={sigma_px} must be positive.")
    return ndimage.gaussian_filter(_image(image).astype(np.float64), float(sigma_px), mode="reflect").astype(
        np.float32
    )


def estimate_noise_sigma(image: np.ndarray, *, highpass_sigma_px: float = 8.0) -> float:
    """Robust estimate of the noise standard deviation of a micrograph (grey-level units).

    Cryo-EM micrographs are noise-dominated at all but the lowest spatial frequencies, so the noise level
    is measured on the high-pass residual ``r = image - G_sigma * image`` (``G`` a Gaussian of
    ``highpass_sigma_px``), which removes ice-thickness gradients and large contaminants but keeps nearly
    all the noise power, with the median absolute deviation ``sigma = 1.4826 median|r - median r|``, which
    ignores the few pixels of strong features (particle edges, hot pixels). It is the background noise
    level that BM3D's ``sigma_psd`` expects.

    Parameters
    ----------
    image : numpy.ndarray, shape (ny, nx)
    highpass_sigma_px : float
        Width of the Gaussian whose output is subtracted (px).

    Returns
    -------
    float
        The estimated noise standard deviation (> 0).
    """
    from scipy import ndimage

    x = _image(image).astype(np.float64)
    residual = x - ndimage.gaussian_filter(x, float(highpass_sigma_px), mode="reflect")
    sigma = 1.4826 * float(np.median(np.abs(residual - np.median(residual))))
    if sigma <= 0:
        sigma = float(residual.std())
    if sigma <= 0:
        raise InputError("the micrograph is constant (no noise to estimate); check the input file.")
    return sigma


def bm3d_denoise(
    image: np.ndarray,
    *,
    sigma: float | None = None,
    highpass_sigma_px: float = 8.0,
    stages: str = "all",
    profile: str = "np",
) -> np.ndarray:
    """BM3D with the noise level estimated from the micrograph.

    The image is standardised with its median and the noise sigma (:func:`estimate_noise_sigma` unless
    ``sigma`` is given), denoised with ``bm3d.bm3d(z, sigma_psd=1)`` and mapped back to the input units.

    Parameters
    ----------
    image : numpy.ndarray, shape (ny, nx)
    sigma : float, optional
        Noise standard deviation in the image's units (default: estimated).
    highpass_sigma_px : float
        See :func:`estimate_noise_sigma`.
    stages : {"all", "hard"}
        Both BM3D stages (hard thresholding then Wiener), or only the first (about twice as fast).
    profile : str
        ``bm3d`` profile (``"np"`` normal, ``"refilter"``, ``"lc"`` low complexity, ...).

    Returns
    -------
    numpy.ndarray, float32, shape (ny, nx)
    """
    try:
        import bm3d
    except ImportError as exc:  # pragma: no cover - declared dependency
        from nt2c.evaluation.baselines import MethodUnavailableError  # lazy: baselines imports this module

        raise MethodUnavailableError("BM3D needs the `bm3d` package: pip install bm3d") from exc
    x = _image(image).astype(np.float64)
    s = estimate_noise_sigma(x, highpass_sigma_px=highpass_sigma_px) if sigma is None else float(sigma)
    if not s > 0:
        raise InputError(f"sigma={sigma} must be positive.")
    stage_arg = {"all": bm3d.BM3DStages.ALL_STAGES, "hard": bm3d.BM3DStages.HARD_THRESHOLDING}.get(stages)
    if stage_arg is None:
        raise InputError(f"stages={stages!r}: use 'all' or 'hard'.")
    centre = float(np.median(x))
    z = (x - centre) / s
    out = np.asarray(bm3d.bm3d(z, sigma_psd=1.0, profile=profile, stage_arg=stage_arg)).reshape(x.shape)
    return (out * s + centre).astype(np.float32)
