"""Re-weighted training pairs and the stage ``reweight``: real noise onto simulated signal (paper Eq. 4).

:func:`reweight_pairs` combines clean simulated patches ``S``, their simulated noisy versions ``X`` and noise
fields ``V`` with the coefficients of :mod:`nt2c.reweighting.fit`; :func:`reweight_stage` draws ``V`` from the
run's noise source (resampled real patches by default, or the GAN) and writes the fine denoiser's pairs.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from nt2c.errors import InputError, StageError
from nt2c.io import atomic_path, read_mrc, validate_image, write_json, write_mrc
from nt2c.reweighting.fit import _as_batch, _check_same_shape, fit_coefficients, modulation_map

__all__ = ["ReweightedPairs", "reweight_pairs", "crop_pairs", "read_coefficients", "reweight_stage"]

log = logging.getLogger(__name__)


@dataclass
class ReweightedPairs:
    """Training pairs made by :func:`reweight_pairs`.

    Attributes
    ----------
    noisy : numpy.ndarray, float32, shape (n, d, d)
        ``Y = F(alpha S + beta V + gamma)``, in the units of the reference ``X``.
    clean : numpy.ndarray, float32, shape (n, d, d)
        The target ``T = F(alpha S + gamma)``: the signal part of ``Y`` (``Y - T`` is rescaled GAN noise).
    coefficients : numpy.ndarray, float64, shape (n, 3)
        alpha, beta, gamma per pair.
    scale : numpy.ndarray, float64, shape (n,)
        The slope of F per pair (the effective noise weight is ``scale * beta``).
    method, modulation : str
    """

    noisy: np.ndarray
    clean: np.ndarray
    coefficients: np.ndarray
    scale: np.ndarray
    method: str
    modulation: str

    @property
    def alpha(self) -> np.ndarray:
        """Signal weight alpha per pair, shape (n,)."""
        return self.coefficients[:, 0]

    @property
    def beta(self) -> np.ndarray:
        """Noise weight beta per pair, shape (n,)."""
        return self.coefficients[:, 1]

    @property
    def gamma(self) -> np.ndarray:
        """Offset gamma per pair, shape (n,), in the units of the simulated patches."""
        return self.coefficients[:, 2]

    def noise_to_signal(self) -> np.ndarray:
        """Per pair, std(Y - T) / std(T): how noisy the synthesized input is (inf for a flat target)."""
        noise = (self.noisy - self.clean).reshape(len(self.noisy), -1).std(1)
        signal = self.clean.reshape(len(self.clean), -1).std(1)
        with np.errstate(divide="ignore"):
            return noise / signal


def reweight_pairs(
    S,
    X,
    V,
    *,
    method: Literal["paper", "matched", "calibrated"] = "matched",
    modulation: Literal["contrast", "none"] = "contrast",
    noise_scale: float | None = None,
) -> ReweightedPairs:
    """Transfer noise patches onto clean patches: build (noisy, clean) training pairs.

    Parameters
    ----------
    S : array_like, shape (n, d, d)
        Simulated clean patches.
    X : array_like, shape (n, d, d)
        The simulated noisy patches at the same places (reference for the coefficients and the contrast).
    V : array_like, shape (n, d, d)
        Noise patches (GAN samples), any units; each is centred before use.
    method : {"paper", "matched", "calibrated"}
        Coefficient fit (:func:`fit_coefficients`).
    modulation : {"contrast", "none"}
        The modulation F (:func:`modulation_map`).
    noise_scale : float, optional
        Units of ``S`` per unit of ``V`` for ``"calibrated"`` (:func:`calibrated_noise_scale`).

    Returns
    -------
    ReweightedPairs
    """
    S3, _ = _as_batch(S, "S (clean patches)")
    X3, _ = _as_batch(X, "X (noisy patches)")
    V3, _ = _as_batch(V, "V (noise patches)")
    _check_same_shape(S=S3, X=X3, V=V3)
    V3 = V3 - V3.mean(axis=(1, 2), keepdims=True, dtype=np.float64).astype(np.float32)
    coef = fit_coefficients(S3, V3, X3, method=method, noise_scale=noise_scale)
    a, b, g = (coef[:, k, None, None] for k in range(3))
    signal = a * S3.astype(np.float64) + g
    composite = signal + b * V3
    scale, offset = modulation_map(composite, X3, mode=modulation)
    scale3, offset3 = scale[:, None, None], offset[:, None, None]
    noisy = (scale3 * composite + offset3).astype(np.float32)
    clean = (scale3 * signal + offset3).astype(np.float32)
    return ReweightedPairs(
        noisy=noisy,
        clean=clean,
        coefficients=coef,
        scale=np.asarray(scale, np.float64),
        method=method,
        modulation=modulation,
    )


def crop_pairs(
    noisy, clean, size: int, n: int, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut ``n`` aligned random ``size x size`` crops from a stack of (noisy, clean) pairs.

    Every source pair is used in turn (a seeded permutation, repeated as often as needed) with a uniformly
    random crop position, so ``n`` may exceed the number of pairs (data augmentation).

    Parameters
    ----------
    noisy, clean : array_like, shape (m, p, p)
        Aligned simulated pairs, ``p >= size``.
    size : int
        Side of the crops (px).
    n : int
        Number of crops.
    seed : int

    Returns
    -------
    noisy_crops, clean_crops : numpy.ndarray, float32, shape (n, size, size)
    origins : numpy.ndarray, int64, shape (n, 3)
        Source index, top row and left column of each crop.
    """
    noisy = validate_image(noisy, name="simulated noisy pairs", ndim=3)
    clean = validate_image(clean, name="simulated clean pairs", ndim=3)
    if noisy.shape != clean.shape:
        raise InputError(
            f"noisy pairs {noisy.shape} and clean pairs {clean.shape} differ in shape; "
            "re-run `nt2c simulate --force`."
        )
    m, ph, pw = noisy.shape
    if size > min(ph, pw):
        raise InputError(
            f"the simulated pairs ({ph} x {pw} px) are smaller than the noise patches ({size} px); "
            "simulate larger pairs (simulate.pair_patch_px) or train the GAN at a smaller patch_px."
        )
    if n < 1:
        raise InputError(f"n={n}: ask for at least one pair.")
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(m) for _ in range(-(-n // m))])[:n]
    rows = rng.integers(0, ph - size + 1, n)
    cols = rng.integers(0, pw - size + 1, n)
    idx = order[:, None, None]
    r = rows[:, None, None] + np.arange(size)[None, :, None]
    c = cols[:, None, None] + np.arange(size)[None, None, :]
    return noisy[idx, r, c], clean[idx, r, c], np.stack([order, rows, cols], -1).astype(np.int64)


def _write_coefficients(path: Path, coef: np.ndarray, origins: np.ndarray, scale: np.ndarray) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["pair", "source", "row", "col", "alpha", "beta", "gamma", "modulation_scale"])
            for k, ((src, row, col), (a, b, g), s) in enumerate(zip(origins, coef, scale)):
                writer.writerow(
                    [k, int(src), int(row), int(col), f"{a:.8g}", f"{b:.8g}", f"{g:.8g}", f"{s:.8g}"]
                )
    return path


def read_coefficients(path) -> dict[str, np.ndarray]:
    """Read ``RUN/pairs/coefficients.csv`` into columns (``alpha``, ``beta``, ``gamma``, ...).

    Parameters
    ----------
    path : path-like
        The CSV file, or a run directory (``RUN/pairs/coefficients.csv`` is read).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "pairs" / "coefficients.csv"
    if not path.is_file():
        raise InputError(f"{path} does not exist; run `nt2c reweight --run RUN` first.")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not {"alpha", "beta", "gamma"} <= set(rows[0]):
        raise InputError(f"{path} has no alpha/beta/gamma rows; delete it and run `nt2c reweight --force`.")
    return {key: np.array([float(r[key]) for r in rows]) for key in rows[0]}


def reweight_stage(run, settings, params) -> list[Path]:
    """Pipeline stage ``reweight``: real noise onto simulated clean patches -> ``RUN/pairs/``.

    Reads ``RUN/simulated/pairs_clean.mrcs`` and ``pairs_noisy.mrcs`` and draws ``settings.n_pairs`` noise
    fields of side d (``settings.patch_px``, by default the GAN's patch side): samples of the GAN
    ``RUN/models/gan.safetensors`` (``noise_source="gan"``, the paper; larger sides blend GAN patches,
    :func:`nt2c.noise.fields.sample_noise_fields`) or resampled real noise patches ``RUN/noise/patches.mrcs``
    (``noise_source="patches"``, :func:`nt2c.noise.fields.resample_patches`). Cuts as many random aligned
    d x d crops of the simulated pairs, and writes ``RUN/pairs/pairs_noisy.mrcs`` (Y), ``pairs_clean.mrcs``
    (the targets), ``coefficients.csv`` (alpha, beta, gamma per pair with the crop origins),
    ``pairs_sources.csv`` (the simulated micrograph and position of each pair) and ``summary.json``.

    Parameters
    ----------
    run : RunDir
    settings : ReweightConfig
        ``method``, ``n_pairs``, ``noise_source``, ``patch_px``, ``seed``, ``device``.
    params : ExperimentParams
        Used for the pixel size written into the MRC headers.

    Returns
    -------
    list of pathlib.Path
    """
    sim = run.simulated
    noisy_path, clean_path = sim / "pairs_noisy.mrcs", sim / "pairs_clean.mrcs"
    for path in (noisy_path, clean_path):
        if not path.is_file():
            raise StageError(f"{path} is missing; run `nt2c simulate --run {run.path}` first.")
    gan_path = run.models / "gan.safetensors"
    patches_path = run.noise / "patches.mrcs"
    if settings.noise_source == "gan" and not gan_path.is_file():
        raise StageError(f"{gan_path} is missing; run `nt2c train-gan --run {run.path}` first.")
    if settings.noise_source == "patches" and not patches_path.is_file():
        raise StageError(f"{patches_path} is missing; run `nt2c extract-noise --run {run.path}` first.")
    sim_noisy, _ = read_mrc(noisy_path)
    sim_clean, _ = read_mrc(clean_path)
    if sim_noisy.ndim == 2:
        sim_noisy, sim_clean = sim_noisy[None], sim_clean[None]

    from nt2c.noise.fields import resample_patches, sample_noise_fields

    if settings.noise_source == "gan":
        V = sample_noise_fields(
            gan_path, settings.n_pairs, settings.patch_px, seed=settings.seed, device=settings.device
        )
    else:
        V = resample_patches(
            read_mrc(patches_path)[0], settings.n_pairs, settings.patch_px, seed=settings.seed
        )
    V = np.asarray(V, dtype=np.float32)
    if V.ndim != 3 or V.shape[1] != V.shape[2] or V.shape[0] != settings.n_pairs:
        raise StageError(
            f"sample_noise returned shape {V.shape}, expected ({settings.n_pairs}, d, d) (a bug)."
        )
    d = V.shape[-1]
    X, S, origins = crop_pairs(sim_noisy, sim_clean, d, settings.n_pairs, seed=settings.seed)
    method, noise_scale, calibration = settings.method, None, None
    if method == "calibrated":
        noise_scale, calibration = calibrated_noise_scale(run, read_mrc(patches_path)[0])
        if noise_scale is None:
            log.warning(
                "reweight: the signal of the micrographs is not measurable above their noise (%s); "
                "the pairs use the 'matched' fit instead of 'calibrated'",
                calibration["why"],
            )
            method = "matched"
    pairs = reweight_pairs(S, X, V, method=method, noise_scale=noise_scale)
    out = run.pairs
    paths = [
        write_mrc(out / "pairs_noisy.mrcs", pairs.noisy, pixel_size_A=params.pixel_size_A, overwrite=True),
        write_mrc(out / "pairs_clean.mrcs", pairs.clean, pixel_size_A=params.pixel_size_A, overwrite=True),
        _write_coefficients(out / "coefficients.csv", pairs.coefficients, origins, pairs.scale),
    ]
    paths += _write_sources(sim, out, origins)
    if calibration is not None:
        paths.append(run.path / "calibration" / "signal_noise.json")
    nsr = pairs.noise_to_signal()
    summary = {
        "method": method,
        "method_requested": settings.method,
        "calibration": calibration,
        "noise_source": settings.noise_source,
        "modulation": pairs.modulation,
        "n_pairs": int(settings.n_pairs),
        "patch_px": int(d),
        "source_pairs": int(sim_noisy.shape[0]),
        "median": {k: float(np.median(v)) for k, v in zip("alpha beta gamma".split(), pairs.coefficients.T)},
        "median_noise_to_signal": float(np.median(nsr[np.isfinite(nsr)])) if np.isfinite(nsr).any() else None,
        "reference_noise_to_signal": _median_nsr(X, S),
    }
    paths.append(write_json(out / "summary.json", summary))
    log.info(
        "reweight: %d pairs of %d px, method %s, noise from %s, median beta %.3g",
        settings.n_pairs,
        d,
        settings.method,
        settings.noise_source,
        summary["median"]["beta"],
    )
    return paths


def calibrated_noise_scale(run, noise_patches) -> tuple[float | None, dict]:
    """Measure the noise scale of ``"calibrated"`` pairs: the data's noise-to-signal ratio on the simulation.

    The user's micrographs (up to :data:`nt2c.calibration.measure.SIGNAL_NOISE_MICROGRAPHS`, spread over the
    run's list) and their noise patches give the signal variance ``s2_data`` in the data's units
    (:func:`nt2c.calibration.signal_noise.measure_signal_noise`); the simulated micrographs, measured alike
    (:func:`nt2c.calibration.measure.simulated_signal_noise`), give ``s2_sim`` in the simulator's. A noise
    patch ``V`` (data units) times ``sqrt(s2_sim / s2_data)`` is then noise of the data's amplitude relative
    to the simulated signal. Also writes ``RUN/calibration/signal_noise.json``.

    Returns
    -------
    noise_scale : float or None
        None when the data's signal is not measurable.
    record : dict
        What was measured (JSON-ready), with ``why`` when ``noise_scale`` is None.
    """
    from nt2c.calibration.measure import SIGNAL_NOISE_MICROGRAPHS, simulated_signal_noise
    from nt2c.calibration.signal_noise import measure_signal_noise
    from nt2c.extraction.stage import list_micrographs
    from nt2c.io import read_image
    from nt2c.run.micrographs import spread_evenly

    paths = spread_evenly(list_micrographs(run), SIGNAL_NOISE_MICROGRAPHS)
    images = [read_image(p)[0] for p in paths]
    measured = measure_signal_noise(images, noise_patches, names=[Path(p).name for p in paths])
    t = measured.tile_px
    s2_sim, nsr_sim = simulated_signal_noise(run, t)
    if s2_sim is None:
        raise StageError(f"no simulated clean micrograph in {run.simulated}; run `nt2c simulate` first.")
    record = {
        "tile_px": t,
        "micrographs": [str(p) for p in paths],
        "noise_variance": measured.noise_variance,
        "signal_variance": measured.signal_variance,
        "signal_variance_standard_error": measured.standard_error,
        "noise_to_signal": measured.nsr,
        "noise_to_signal_per_micrograph": measured.per_micrograph,
        "noise_level_ratio": measured.noise_level_ratio,
        "simulated_signal_variance": s2_sim,
        "simulated_noise_to_signal": nsr_sim,
    }
    scale = None
    if measured.nsr is None:
        record["why"] = measured.why_not_measurable()
    elif s2_sim > 0:
        scale = float(np.sqrt(s2_sim / measured.signal_variance))
    record["noise_scale"] = scale
    write_json(run.path / "calibration" / "signal_noise.json", record)
    return scale, record


def _write_sources(sim: Path, out: Path, origins: np.ndarray) -> list[Path]:
    """``pairs_sources.csv`` of the new pairs: the simulated micrograph and position each was cut from."""
    from nt2c.denoiser.pairs import read_pair_sources, write_pair_sources

    path = sim / "pairs_sources.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        names = {int(r["index"]): r["micrograph"] for r in csv.DictReader(handle)}
    sim_sources = read_pair_sources(sim, len(read_mrc(sim / "pairs_clean.mrcs")[0]))
    src = sim_sources[origins[:, 0]]
    sources = np.stack([src[:, 0], src[:, 1] + origins[:, 1], src[:, 2] + origins[:, 2]], axis=1)
    mics = [names.get(i, f"micrograph {i}") for i in range(int(sources[:, 0].max()) + 1)]
    return [write_pair_sources(out / "pairs_sources.csv", sources, mics)]


def _median_nsr(X: np.ndarray, S: np.ndarray) -> float | None:
    """Median std(X - S) / std(S) of the simulated crops (the SNR the matched method reproduces)."""
    n = len(X)
    noise = (X - S).reshape(n, -1).std(1)
    signal = S.reshape(n, -1).std(1)
    ok = signal > 0
    return float(np.median(noise[ok] / signal[ok])) if ok.any() else None
