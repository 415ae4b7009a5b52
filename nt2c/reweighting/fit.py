r"""Contrast-guided noise and signal re-weighting (paper section 2.2.3, Eq. 4).

The fine denoiser is trained on pairs whose noise is the *user's* noise: noise patches ``V`` (GAN samples in
the paper, resampled real noise patches by default here, see below) are transferred onto simulated clean
patches ``S``, using the simulated noisy patch ``X`` of the same place as the reference for contrast. Per
patch, three scalars (alpha, beta, gamma) weight signal, noise and offset, and the synthesized noisy patch is

.. math::  Y = \mathcal{F}(\alpha S + \beta V + \gamma).

Three ways to choose the coefficients are implemented (``method``):

``"paper"``
    Eq. 4 literally: least squares of ``X`` on ``[S, V, 1]`` over the ``d x d`` pixels of each patch, solved
    in closed form for whole batches through the normal equations. Because the GAN patch ``V`` is drawn
    independently of the noise realisation in ``X``, ``V`` explains nothing of ``X`` and beta is ~0 in
    expectation (its spread is about ``std(noise in X) / (std(V) * d)``): the "noisy" patches come out almost
    clean. The public reference code hides this by adding the noise again with weight 1 by hand (see
    ``reference-code-facts.md``).
``"matched"`` (default, chosen by measurement: see ``benchmarks/RESULTS.md``)
    alpha from regressing ``X`` on ``S`` alone (unbiased: ``S`` is noise-free), *pooled over the batch* (one
    slope, one offset per patch: ``alpha = sum_i c_SX^i / sum_i c_SS^i``), gamma per patch from the means, and
    beta from matching the power of the noise patch to the power of the residual ``X - alpha S - gamma``, i.e.
    ``beta = sqrt(sum((R - mean R)^2) / sum((V - mean V)^2))``. The synthesized patch then has the signal and
    the signal-to-noise ratio of the simulated one, with the noise *texture* (spectrum, distribution) of the
    real noise, which is what the transfer is meant to achieve. Alpha is pooled because the simulator's ``X``
    is ``S`` plus zero-mean noise in the same units, so the slope belongs to the simulation, not to the patch;
    a per-patch slope is mostly noise where the patch holds little signal (on a real micrograph, per-patch
    slopes inverted the contrast of some pairs, which teaches the network that the sign of a particle's
    contrast is arbitrary).

``"calibrated"``
    alpha and gamma as ``"matched"``, and one beta for the whole batch, ``beta = alpha * noise_scale``, where
    ``noise_scale`` puts the pairs at the noise-to-signal ratio of the *user's* micrographs, measured from
    them and their noise patches (:mod:`nt2c.calibration.signal_noise`; the ``reweight`` stage computes it
    and writes ``RUN/calibration/signal_noise.json``). "matched" reproduces the simulator's ratio, which
    need not be the data's; "calibrated" keeps the real noise at its real amplitude relative to the signal
    (every noise patch keeps its own level). When the data's signal is not measurable above the noise (a
    single low-dose frame) the stage falls back to "matched" and says so.

The modulation :math:`\mathcal{F}` is left unspecified by the paper. Here it is the *contrast modulation*
(``modulation="contrast"``): the per-patch increasing affine map that gives the composite the grey-level
mean and standard deviation of the reference ``X`` ("we use the contrast of X as a baseline"),

.. math::  \mathcal{F}(Z) = \mu_X + (Z - \mu_Z)\,\sigma_X / \sigma_Z .

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
    (:func:`nt2c.noise.fields.resample_patches`).

Pairs larger than the noise patches (``patch_px``) blend several patches with windows whose squares sum to one
(:func:`nt2c.noise.fields.blend_noise_patches`). Why resampled patches are the default: a GAN trained for
minutes on a CPU still makes noise whose per-pixel standard deviation depends on the position in the patch and
whose histogram is heavy-tailed, and a fine model learns that wrong noise. The measurements behind both
defaults (``benchmarks/bench_fine.py --ablation --oracle``) are in ``benchmarks/RESULTS.md``; they were taken
on the stand-ins the defaults were then reported on, so treat them as development figures.

This module fits the coefficients; :mod:`nt2c.reweighting.stage` builds the pairs and runs the stage.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from nt2c.errors import InputError
from nt2c.io import validate_image

__all__ = ["METHODS", "MODULATIONS", "NOISE_SOURCES", "fit_coefficients", "modulation_map", "modulate"]

METHODS: tuple[str, ...] = ("paper", "matched", "calibrated")
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


def fit_coefficients(
    S,
    V,
    X,
    *,
    method: Literal["paper", "matched", "calibrated"] = "paper",
    noise_scale: float | None = None,
) -> np.ndarray:
    r"""Per-patch coefficients (alpha, beta, gamma) of Eq. 4, in closed form for a whole batch.

    Parameters
    ----------
    S : array_like, shape (n, d, d) or (d, d)
        Simulated clean signal patches.
    V : array_like, same shape as ``S``
        Noise patches (GAN samples), in their own units.
    X : array_like, same shape as ``S``
        Simulated noisy patches at the same places as ``S`` (the reference).
    method : {"paper", "matched", "calibrated"}
        ``"paper"``: the least-squares solution of
        ``min || alpha S + beta V + gamma - X ||^2`` per patch (Eq. 4). ``"matched"``: alpha from the
        least-squares fit of ``X`` on ``S`` alone pooled over the batch (one offset per patch), gamma per
        patch, and beta matching the power of ``V`` to that of the residual (see the module docstring).
        ``"calibrated"``: alpha and gamma as ``"matched"``, and one ``beta = alpha * noise_scale`` for all
        patches, which keeps each noise patch's real amplitude relative to the others.
    noise_scale : float, optional
        Required by ``"calibrated"``: units of ``S`` per unit of ``V`` that put the pairs at the data's own
        noise-to-signal ratio (:func:`nt2c.calibration.signal_noise.measure_signal_noise`; computed by the
        ``reweight`` stage).

    Returns
    -------
    numpy.ndarray, float64, shape (n, 3) or (3,)
        Columns alpha (dimensionless), beta (units of X per unit of V), gamma (units of X).

    Notes
    -----
    The normal equations of Eq. 4 are solved on centred patches, which decouples gamma:
    with :math:`c_{ab} = \sum (a - \bar a)(b - \bar b)`,

    .. math::
        \begin{pmatrix} c_{SS} & c_{SV} \\ c_{SV} & c_{VV} \end{pmatrix}
        \begin{pmatrix} \alpha \\ \beta \end{pmatrix} =
        \begin{pmatrix} c_{SX} \\ c_{VX} \end{pmatrix},
        \qquad \gamma = \bar X - \alpha \bar S - \beta \bar V,

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
    if method == "calibrated" and not (noise_scale is not None and noise_scale > 0):
        raise InputError(f"method='calibrated' needs a positive noise_scale, got {noise_scale!r}.")
    out = _solve(moments, method, noise_scale)
    return out[0] if single else out


_MOMENTS = ("ms", "mv", "mx", "css", "cvv", "csv", "csx", "cvx", "cxx")


def _moments(S: np.ndarray, V: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Compute the per-patch moments ``_MOMENTS`` of a block of patches, float64, shape (n, 9)."""
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


def _solve(moments: np.ndarray, method: str, noise_scale: float | None = None) -> np.ndarray:
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
    else:  # matched, calibrated: one alpha for the batch (sum of c_SX over sum of c_SS)
        total_css = css.sum()
        alpha = np.full(n, csx.sum() / total_css if total_css > 0 else 0.0)
    if method == "calibrated":  # one beta: the data's noise-to-signal ratio, each patch at its own amplitude
        beta = alpha * float(noise_scale)
    elif method == "matched":  # beta from the residual power
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
    """Compute the per-patch affine map of the modulation F: ``F(z) = scale * z + offset``.

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
