"""Detectors: MTF, DQE, dose to counts, shot noise.

Presets (frequencies ``w`` in units of Nyquist):

``ideal``
    MTF = DQE = 1: the counts are Poisson draws of the expected electrons per pixel.
``counting``
    A perfect counting detector with square pixels: MTF = sinc(pi w / 2) (0.637 at Nyquist), DQE = MTF^2.
``k2``
    Gatan K2 Summit at 300 kV, measured MTF and DQE (InSilicoTEM; MTF 0.514, DQE 0.225 at Nyquist).
``falcon3``
    Thermo Falcon III EC (counting) at 300 kV, measured MTF and DQE (InSilicoTEM; MTF 0.150 at Nyquist).
``k3``
    Gatan K3 standard counting at 300 kV: measured MTF (vendor/RELION star file); DQE modelled.
``falcon4``
    Thermo Falcon 4 EC at 300 kV: measured MTF (vendor/RELION star file); DQE modelled.

For ``k3`` and ``falcon4`` no DQE curve is available here, so ``DQE(w) = DQE(0) MTF(w)^2`` (flat normalised
noise power, as for a counting detector) with ``DQE(0)`` *assumed* equal to that of the same vendor's measured
predecessor (K2: 0.78, Falcon III EC: 0.889).

Noise model: with expected electrons ``lambda(x)`` per pixel (``dose * px^2 * I/I0``), a detector records
``MTF * lambda`` as signal, with noise power spectrum ``lambda * MTF^2 / DQE``. This is drawn as Poisson
counts with mean ``DQE(0) lambda`` divided by ``DQE(0)`` (white noise of variance ``lambda / DQE(0)``), whose
deviation from ``lambda`` is then filtered by ``H(w) = MTF(w) sqrt(DQE(0) / DQE(w))`` (``H(0) = 1``). The
``ideal`` preset is exactly Poisson.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from nt2c.errors import ConfigError

__all__ = ["DETECTOR_PRESETS", "detector_curves", "mtf", "dqe", "detect", "expected_counts"]

DETECTOR_PRESETS: tuple[str, ...] = ("ideal", "counting", "k2", "k3", "falcon3", "falcon4")
_ASSUMED_DQE0 = {"k3": 0.78, "falcon4": 0.889}
_DATA = Path(__file__).with_name("data") / "detectors_300kV.json"


@functools.lru_cache(maxsize=1)
def _tables() -> dict:
    return json.loads(_DATA.read_text())


def _check(detector: str) -> str:
    if detector not in DETECTOR_PRESETS:
        raise ConfigError(
            f"detector = {detector!r}: unknown preset; use one of {', '.join(DETECTOR_PRESETS)}."
        )
    return detector


def _interp(w, xp, fp):
    """Interpolate a table linearly in ``w``.

    Beyond a table that stops short of 0.99 Nyquist: linear extrapolation from its last two points (clipped at
    0); otherwise the last value is held (the InSilicoTEM tables end at 0.992 Nyquist).
    """
    w = np.asarray(w, dtype=np.float64)
    xp, fp = np.asarray(xp), np.asarray(fp)
    out = np.interp(w, xp, fp)
    beyond = w > xp[-1]
    if beyond.any() and xp[-1] < 0.99:
        slope = (fp[-1] - fp[-2]) / (xp[-1] - xp[-2])
        out = np.where(beyond, np.clip(fp[-1] + slope * (w - xp[-1]), 0.0, None), out)
    return out


def mtf(detector: str, w) -> np.ndarray:
    """MTF of ``detector`` at frequencies ``w`` (units of Nyquist, >= 0). Returns an array like ``w``."""
    _check(detector)
    w = np.abs(np.asarray(w, dtype=np.float64))
    if detector == "ideal":
        return np.ones_like(w)
    if detector == "counting":
        return np.sinc(w / 2)
    tab = _tables()[detector]
    return _interp(w, tab["freq_nyquist"], tab["mtf"])


def dqe(detector: str, w) -> np.ndarray:
    """DQE of ``detector`` at frequencies ``w`` (units of Nyquist). Returns an array like ``w``."""
    _check(detector)
    w = np.abs(np.asarray(w, dtype=np.float64))
    if detector == "ideal":
        return np.ones_like(w)
    if detector == "counting":
        return np.sinc(w / 2) ** 2
    tab = _tables()[detector]
    if tab["dqe"] is None:
        return _ASSUMED_DQE0[detector] * mtf(detector, w) ** 2
    return _interp(w, tab["freq_nyquist"], tab["dqe"])


def detector_curves(detector: str, n: int = 101) -> dict[str, np.ndarray]:
    """``{"w": (n,), "mtf": (n,), "dqe": (n,)}`` from 0 to Nyquist, for plots."""
    w = np.linspace(0, 1, n)
    return {"w": w, "mtf": mtf(detector, w), "dqe": dqe(detector, w)}


def _radial_nyquist(shape, device):
    import torch

    ny, nx = shape
    fy = torch.fft.fftfreq(ny, dtype=torch.float32, device=device)[:, None]
    fx = torch.fft.rfftfreq(nx, dtype=torch.float32, device=device)[None, :]
    return torch.sqrt(fx * fx + fy * fy) * 2.0  # units of Nyquist (corners reach sqrt(2))


def _filter(detector: str, shape, device, kind: str):
    import torch

    w = _radial_nyquist(shape, device)
    wn = w.cpu().numpy()
    if kind == "mtf":
        vals = mtf(detector, wn)
    else:  # noise shaping H = MTF sqrt(DQE(0) / DQE)
        d = np.clip(dqe(detector, wn), 1e-3, None)
        vals = mtf(detector, wn) * np.sqrt(dqe(detector, 0.0) / d)
    return torch.as_tensor(vals, dtype=torch.float32, device=device)


def expected_counts(intensity, *, dose_e_per_A2: float, pixel_size_A: float):
    """Convert relative intensity ``I / I0`` to expected electrons per pixel, ``dose * px^2 * I / I0``."""
    if not dose_e_per_A2 > 0:
        raise ConfigError(f"dose_e_per_A2 = {dose_e_per_A2!r}: must be positive (e.g. 40).")
    if not pixel_size_A > 0:
        raise ConfigError(f"pixel_size_A = {pixel_size_A!r}: must be positive.")
    return intensity * (dose_e_per_A2 * pixel_size_A**2)


def detect(expected, *, detector: str = "ideal", generator=None, clean_expected=None):
    """Record expected counts with a detector: the noisy image and the noise-free (MTF-blurred) one.

    Parameters
    ----------
    expected : torch.Tensor, shape (ny, nx)
        Expected electrons per pixel (>= 0) reaching the detector.
    detector : str
        One of :data:`DETECTOR_PRESETS`.
    generator : torch.Generator, optional
    clean_expected : torch.Tensor, optional
        Expected counts of the clean target (default ``expected``); returned through the MTF.

    Returns
    -------
    noisy, clean : torch.Tensor, float32, shape (ny, nx)
        Counts per pixel (gain-normalised so that the mean equals the mean expected electrons).
    """
    import torch

    _check(detector)
    expected = expected.clamp_min(0.0)
    clean_src = expected if clean_expected is None else clean_expected.clamp_min(0.0)
    if detector == "ideal":
        noisy = torch.poisson(expected, generator=generator)
        return noisy, clean_src.clone()
    shape = tuple(expected.shape)
    mtf_f = _filter(detector, shape, expected.device, "mtf")
    shape_f = _filter(detector, shape, expected.device, "noise")
    d0 = float(dqe(detector, 0.0))
    counts = torch.poisson(expected * d0, generator=generator) / d0
    noise = counts - expected
    signal = torch.fft.irfft2(torch.fft.rfft2(expected) * mtf_f, s=shape)
    noise = torch.fft.irfft2(torch.fft.rfft2(noise) * shape_f, s=shape)
    clean = (
        signal if clean_expected is None else torch.fft.irfft2(torch.fft.rfft2(clean_src) * mtf_f, s=shape)
    )
    return signal + noise, clean
