"""Contrast-guided noise and signal re-weighting (paper section 2.2.3, Eq. 4).

The fine denoiser is trained on pairs whose noise is the *user's* noise: noise patches ``V`` (GAN samples in the
paper, resampled real noise patches by default here, see below) are transferred onto simulated clean patches
``S``, using the simulated noisy patch ``X`` of the same place as the reference for contrast. Per patch, three
scalars (alpha, beta, gamma) weight signal, noise and offset, and the synthesized noisy patch is

.. math::  Y = \\mathcal{F}(\\alpha S + \\beta V + \\gamma).

Two ways to choose the coefficients are implemented (``method``):

``"paper"``
    Eq. 4 literally: least squares of ``X`` on ``[S, V, 1]`` over the ``d x d`` pixels of each patch, solved in
    closed form for whole batches through the normal equations. Because the GAN patch ``V`` is drawn
    independently of the noise realisation in ``X``, ``V`` explains nothing of ``X`` and beta is ~0 in
    expectation (its spread is about ``std(noise in X) / (std(V) * d)``): the "noisy" patches come out almost
    clean. The public reference code hides this by adding the noise again with weight 1 by hand (see
    ``reference-code-facts.md``).
``"matched"`` (default, chosen by measurement with ``benchmarks/bench_fine.py --ablation``: on the quick
profile's "experimental" stand-ins a fine model trained on literal-fit pairs scored 23.1 dB PSNR, the same as the
raw micrographs, i.e. it learnt the identity; one trained on matched pairs 24.7 dB)
    alpha from regressing ``X`` on ``S`` alone (unbiased: ``S`` is noise-free), *pooled over the batch* (one
    slope, one offset per patch: ``alpha = sum_i c_SX^i / sum_i c_SS^i``), gamma per patch from the means, and
    beta from matching the power of the noise patch to the power of the residual ``X - alpha S - gamma``, i.e.
    ``beta = sqrt(sum((R - mean R)^2) / sum((V - mean V)^2))``. The synthesized patch then has the signal and
    the signal-to-noise ratio of the simulated one, with the noise *texture* (spectrum, distribution) of the
    real noise, which is what the transfer is meant to achieve. Alpha is pooled because the simulator's ``X``
    is ``S`` plus zero-mean noise in the same units, so the slope belongs to the simulation, not to the patch;
    a per-patch slope is mostly noise where the patch holds little signal. On the real-data run of
    ``benchmarks/real_ucsf_1142.yaml`` (5.26 A/px, 128 px pairs) per-patch slopes spread from -6.5 to 11 (1st to
    99th percentile) and 4 % of the pairs had their contrast *inverted*, which teaches the network that the
    sign of a particle's contrast is arbitrary.

The modulation :math:`\\mathcal{F}` is left unspecified by the paper. Here it is the *contrast modulation*
(``modulation="contrast"``): the per-patch increasing affine map that gives the composite the grey-level
mean and standard deviation of the reference ``X`` ("we use the contrast of X as a baseline"),

.. math::  \\mathcal{F}(Z) = \\mu_X + (Z - \\mu_Z)\\,\\sigma_X / \\sigma_Z .

The same map is applied to the clean target ``T = F(alpha S + gamma)``, so that ``Y - T = (sigma_X / sigma_Z)
beta V`` is pure (rescaled) GAN noise and a perfect denoiser of ``Y`` returns ``T``. With ``"matched"``
coefficients ``F`` is close to the identity (it only removes the chance correlation between ``S`` and ``V``);
``modulation="none"`` is the identity. Being affine, F never changes a pair's signal-to-noise ratio, so the
comparison of the two methods does not depend on it.

Where ``V`` comes from (``noise_source`` of the stage):

``"gan"`` (the paper)
    samples of the WGAN-GP of :mod:`nt2c.noise.gan`;
``"patches"`` (default, chosen by measurement)
    the extracted real noise patches themselves, resampled: random crops under the eight rotations/flips
    (:func:`nt2c.noise.gan.resample_patches`).

Pairs larger than the noise patches (``patch_px``) blend several patches with windows whose squares sum to one
(:func:`nt2c.noise.gan.blend_noise_patches`). Measured with ``benchmarks/bench_fine.py --ablation --oracle``
on the quick profile's stand-ins (4 micrographs of 1024 px, PSNR of the fine model minus that of the coarse
one; the "oracle" is a fine model trained on the stand-ins' *true* noise, the ceiling of any noise transfer):
at 128 px (the quick default) with the pooled alpha, GAN noise -0.10 dB, resampled patches +0.27 dB, oracle
+0.31 dB, and the paper's literal fit -1.86 dB. Earlier, with per-patch alpha: GAN noise at 64 px -0.31 dB and
blended to 128 px -0.39 dB; resampled patches at 64 px +0.03 dB and at 128 px +0.27 dB. A GAN trained for
minutes on a CPU still makes noise whose per-pixel standard deviation depends on the position in the patch (1.1
to 15.5 against 7 to 9.5 for the real patches, in counts) and whose histogram is heavy-tailed, and a fine model
learns that wrong noise. With coarse training pairs simulated from idealised physics
(``benchmarks/nominal_physics.yaml``: ideal detector, no structural noise), so that the stand-ins' noise differs
more, and 900 fine steps: GAN +0.70 dB, resampled patches +1.05 dB, oracle +1.26 dB, paper's fit -1.04 dB, and a
control trained as long on the simulated pairs themselves +0.00 dB.
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

__all__ = [
    "METHODS",
    "MODULATIONS",
    "NOISE_SOURCES",
    "fit_coefficients",
    "modulation_map",
    "modulate",
    "ReweightedPairs",
    "reweight_pairs",
    "crop_pairs",
    "read_coefficients",
    "reweight_stage",
]

log = logging.getLogger(__name__)

METHODS: tuple[str, ...] = ("paper", "matched")
MODULATIONS: tuple[str, ...] = ("contrast", "none")
NOISE_SOURCES: tuple[str, ...] = ("patches", "gan")
_CHUNK = 512  # patches per float64 block (bounds memory for large batches)
_FLAT_CONTRAST = 1e-5  # clean patches with std(S) / |mean(S)| at or below this count as constant


def _as_batch(array, name: str) -> tuple[np.ndarray, bool]:
    raw = np.asarray(array)
    arr = validate_image(raw, name=name, ndim=(2, 3))
    if raw.dtype == np.float64:  # keep double precision when given (the fit itself runs in float64)
        arr = raw
    single = arr.ndim == 2
    return (arr[None] if single else arr), single


def _check_same_shape(**arrays: np.ndarray) -> None:
    shapes = {name: a.shape for name, a in arrays.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{k} {v}" for k, v in shapes.items())
        raise InputError(
            f"the patch stacks must have the same shape (n, d, d), got {listed}; crop them to one size."
        )


def fit_coefficients(S, V, X, *, method: Literal["paper", "matched"] = "paper") -> np.ndarray:
    """Per-patch coefficients (alpha, beta, gamma) of Eq. 4, in closed form for a whole batch.

    Parameters
    ----------
    S : array_like, shape (n, d, d) or (d, d)
        Simulated clean signal patches.
    V : array_like, same shape as ``S``
        Noise patches (GAN samples), in their own units.
    X : array_like, same shape as ``S``
        Simulated noisy patches at the same places as ``S`` (the reference).
    method : {"paper", "matched"}
        ``"paper"``: the least-squares solution of
        ``min || alpha S + beta V + gamma - X ||^2`` per patch (Eq. 4). ``"matched"``: alpha from the
        least-squares fit of ``X`` on ``S`` alone pooled over the batch (one offset per patch), gamma per patch,
        and beta matching the power of ``V`` to that of the residual (see the module docstring).

    Returns
    -------
    numpy.ndarray, float64, shape (n, 3) or (3,)
        Columns alpha (dimensionless), beta (units of X per unit of V), gamma (units of X).

    Notes
    -----
    The normal equations of Eq. 4 are solved on centred patches, which decouples gamma:
    with :math:`c_{ab} = \\sum (a - \\bar a)(b - \\bar b)`,

    .. math::
        \\begin{pmatrix} c_{SS} & c_{SV} \\\\ c_{SV} & c_{VV} \\end{pmatrix}
        \\begin{pmatrix} \\alpha \\\\ \\beta \\end{pmatrix} =
        \\begin{pmatrix} c_{SX} \\\\ c_{VX} \\end{pmatrix},
        \\qquad \\gamma = \\bar X - \\alpha \\bar S - \\beta \\bar V,

    which is the same minimiser as the 3 x 3 system on ``[S, V, 1]`` and better conditioned. When the 2 x 2
    system is singular (a constant patch, e.g. a clean crop without any particle) the minimum-norm solution
    of the centred system is returned: the coefficient of a constant column is 0, which leaves the fitted
    composite unchanged (the offset absorbs it). A clean patch whose relative contrast ``std(S) / |mean(S)|``
    is at most 1e-5 (float32 rounding of a flat background) counts as constant.
    """
    if method not in METHODS:
        raise InputError(f"method={method!r} is not a re-weighting method; use one of {', '.join(METHODS)}.")
    S, single = _as_batch(S, "S (clean patches)")
    V, _ = _as_batch(V, "V (noise patches)")
    X, _ = _as_batch(X, "X (noisy patches)")
    _check_same_shape(S=S, V=V, X=X)
    moments = np.concatenate(
        [
            _moments(S[i : i + _CHUNK], V[i : i + _CHUNK], X[i : i + _CHUNK])
            for i in range(0, S.shape[0], _CHUNK)
        ]
    )
    out = _solve(moments, method)
    return out[0] if single else out


# per-patch moments, one column each: the means of S, V, X and the centred cross products c_ab
_MOMENTS = ("ms", "mv", "mx", "css", "cvv", "csv", "csx", "cvx", "cxx")


def _moments(S: np.ndarray, V: np.ndarray, X: np.ndarray) -> np.ndarray:
    """The per-patch moments ``_MOMENTS`` of a block of patches, float64, shape (n, 9)."""
    n = S.shape[0]
    s = S.reshape(n, -1).astype(np.float64)
    v = V.reshape(n, -1).astype(np.float64)
    x = X.reshape(n, -1).astype(np.float64)
    ms, mv, mx = s.mean(1), v.mean(1), x.mean(1)
    s -= ms[:, None]
    v -= mv[:, None]
    x -= mx[:, None]
    # a clean patch whose contrast is below float32 resolution (a crop of pure background) carries no signal:
    # treat it as constant, or the fit would scale rounding noise up to the level of X
    flat = np.sqrt(np.einsum("ij,ij->i", s, s) / s.shape[1]) <= _FLAT_CONTRAST * (np.abs(ms) + 1e-30)
    s[flat] = 0.0

    def dot(a, b):
        return np.einsum("ij,ij->i", a, b)

    return np.stack([ms, mv, mx, dot(s, s), dot(v, v), dot(s, v), dot(s, x), dot(v, x), dot(x, x)], -1)


def _solve(moments: np.ndarray, method: str) -> np.ndarray:
    """Coefficients (alpha, beta, gamma), shape (n, 3), from the per-patch moments of the whole batch."""
    ms, mv, mx, css, cvv, csv, csx, cvx, cxx = moments.T
    n = moments.shape[0]
    if method == "paper":
        tiny = np.finfo(np.float64).eps * 64
        det = css * cvv - csv**2
        ok = det > tiny * np.maximum(css * cvv, np.finfo(np.float64).tiny)
        alpha = np.zeros(n)
        beta = np.zeros(n)
        safe = np.where(ok, det, 1.0)
        alpha[ok] = ((csx * cvv - cvx * csv) / safe)[ok]
        beta[ok] = ((cvx * css - csx * csv) / safe)[ok]
        if not ok.all():  # singular: minimum-norm solution of the centred system
            bad = np.flatnonzero(~ok)
            gram = np.stack([np.stack([css, csv], -1), np.stack([csv, cvv], -1)], -2)[bad]
            rhs = np.stack([csx, cvx], -1)[bad]
            sol = np.einsum("nij,nj->ni", np.linalg.pinv(gram, rcond=1e-12, hermitian=True), rhs)
            alpha[bad], beta[bad] = sol[:, 0], sol[:, 1]
    else:  # matched: one alpha for the batch (sum of c_SX over sum of c_SS), beta from the residual power
        total_css = css.sum()
        alpha = np.full(n, csx.sum() / total_css if total_css > 0 else 0.0)
        residual_power = np.maximum(
            cxx - 2.0 * alpha * csx + alpha**2 * css, 0.0
        )  # of the centred x - alpha s
        if np.any(cvv <= 0):
            raise InputError(
                f"{int(np.sum(cvv <= 0))} noise patch(es) are constant; the GAN samples carry no noise. "
                "Check RUN/models/gan.safetensors (retrain with `nt2c train-gan --force`)."
            )
        beta = np.sqrt(residual_power / cvv)
    gamma = mx - alpha * ms - beta * mv
    return np.stack([alpha, beta, gamma], -1)


def modulation_map(
    composite, reference, *, mode: Literal["contrast", "none"] = "contrast"
) -> tuple[np.ndarray, np.ndarray]:
    """The per-patch affine map of the modulation F: ``F(z) = scale * z + offset``.

    Parameters
    ----------
    composite : array_like, shape (n, d, d) or (d, d)
        ``Z = alpha S + beta V + gamma``.
    reference : array_like, same shape
        ``X``, whose grey-level mean and standard deviation F imposes (``mode="contrast"``).
    mode : {"contrast", "none"}
        ``"contrast"``: ``scale = std(X) / std(Z)``, ``offset = mean(X) - scale * mean(Z)``, so that
        ``F(Z)`` has exactly the mean and standard deviation of ``X`` (a constant ``Z`` is only shifted).
        ``"none"``: the identity (scale 1, offset 0).

    Returns
    -------
    scale, offset : numpy.ndarray, float64, shape (n,) or ()
        ``scale > 0`` always, so F is increasing and keeps the sign of the contrast.
    """
    if mode not in MODULATIONS:
        raise InputError(f"modulation={mode!r} is unknown; use one of {', '.join(MODULATIONS)}.")
    Z, single = _as_batch(composite, "composite")
    X, _ = _as_batch(reference, "reference")
    _check_same_shape(composite=Z, reference=X)
    n = Z.shape[0]
    if mode == "none":
        scale, offset = np.ones(n), np.zeros(n)
    else:
        z = Z.reshape(n, -1).astype(np.float64)
        x = X.reshape(n, -1).astype(np.float64)
        sz, sx = z.std(1), x.std(1)
        flat = sz <= np.finfo(np.float64).eps * np.maximum(np.abs(z).max(1), 1.0)
        scale = np.where(flat, 1.0, sx / np.where(flat, 1.0, sz))
        offset = x.mean(1) - scale * z.mean(1)
    return (scale[0], offset[0]) if single else (scale, offset)


def modulate(composite, reference, *, mode: Literal["contrast", "none"] = "contrast") -> np.ndarray:
    """Apply the modulation F to ``composite`` (see :func:`modulation_map`).

    Returns
    -------
    numpy.ndarray, float32, same shape as ``composite``
    """
    scale, offset = modulation_map(composite, reference, mode=mode)
    Z = validate_image(composite, name="composite", ndim=(2, 3)).astype(np.float64)
    if Z.ndim == 2:
        return (scale * Z + offset).astype(np.float32)
    return (scale[:, None, None] * Z + offset[:, None, None]).astype(np.float32)


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
        return self.coefficients[:, 0]

    @property
    def beta(self) -> np.ndarray:
        return self.coefficients[:, 1]

    @property
    def gamma(self) -> np.ndarray:
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
    method: Literal["paper", "matched"] = "matched",
    modulation: Literal["contrast", "none"] = "contrast",
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
    method : {"paper", "matched"}
        Coefficient fit (:func:`fit_coefficients`).
    modulation : {"contrast", "none"}
        The modulation F (:func:`modulation_map`).

    Returns
    -------
    ReweightedPairs
    """
    S3, _ = _as_batch(S, "S (clean patches)")
    X3, _ = _as_batch(X, "X (noisy patches)")
    V3, _ = _as_batch(V, "V (noise patches)")
    _check_same_shape(S=S3, X=X3, V=V3)
    V3 = V3 - V3.mean(axis=(1, 2), keepdims=True, dtype=np.float64).astype(np.float32)
    coef = fit_coefficients(S3, V3, X3, method=method)
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
    """Pipeline stage ``reweight``: GAN noise onto simulated clean patches -> ``RUN/pairs/``.

    Reads ``RUN/simulated/pairs_clean.mrcs`` and ``pairs_noisy.mrcs`` and draws ``settings.n_pairs`` noise fields
    of side d (``settings.patch_px``, by default the GAN's patch side): samples of the GAN
    ``RUN/models/gan.safetensors`` (``noise_source="gan"``, the paper; larger sides blend GAN patches,
    :func:`nt2c.noise.gan.sample_noise_fields`) or resampled real noise patches ``RUN/noise/patches.mrcs``
    (``noise_source="patches"``, :func:`nt2c.noise.gan.resample_patches`). Cuts as many random aligned
    d x d crops of the simulated pairs, and writes ``RUN/pairs/pairs_noisy.mrcs`` (Y), ``pairs_clean.mrcs``
    (the targets), ``coefficients.csv`` (alpha, beta, gamma per pair with the crop origins) and
    ``summary.json``.

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

    from nt2c.noise.gan import resample_patches, sample_noise_fields

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
    pairs = reweight_pairs(S, X, V, method=settings.method)
    out = run.pairs
    paths = [
        write_mrc(out / "pairs_noisy.mrcs", pairs.noisy, pixel_size_A=params.pixel_size_A, overwrite=True),
        write_mrc(out / "pairs_clean.mrcs", pairs.clean, pixel_size_A=params.pixel_size_A, overwrite=True),
        _write_coefficients(out / "coefficients.csv", pairs.coefficients, origins, pairs.scale),
    ]
    nsr = pairs.noise_to_signal()
    summary = {
        "method": settings.method,
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


def _median_nsr(X: np.ndarray, S: np.ndarray) -> float | None:
    """Median std(X - S) / std(S) of the simulated crops (the SNR the matched method reproduces)."""
    n = len(X)
    noise = (X - S).reshape(n, -1).std(1)
    signal = S.reshape(n, -1).std(1)
    ok = signal > 0
    return float(np.median(noise[ok] / signal[ok])) if ok.any() else None
