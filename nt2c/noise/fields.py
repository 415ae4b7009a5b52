"""Noise fields for the re-weighting: resampled real noise patches, or blended GAN samples.

The re-weighting stage needs many noise fields as large as its training crops. Two sources:

* :func:`resample_patches` -- the extracted real patches themselves, randomly cropped, turned and flipped
  (the default, ``reweight.noise_source: patches``): real noise, but only as varied as the patches;
* :func:`sample_noise_fields` -- GAN samples (the paper's setting, ``noise_source: gan``).

Fields larger than one patch are assembled by :func:`blend_noise_patches`, a power-preserving overlap blend.
"""

from __future__ import annotations

import numpy as np

from nt2c.errors import InputError
from nt2c.io import read_json, validate_image
from nt2c.noise.generator import generator_paths, sample_noise

__all__ = ["blend_noise_patches", "resample_patches", "tiles_per_axis", "sample_noise_fields"]


def blend_noise_patches(patches, size: int, *, centre: str = "each") -> np.ndarray:
    """Assemble noise fields larger than the patches by power-preserving overlap blending.

    The GAN generates ``d x d`` patches; the fine denoiser learns more when it trains on larger crops (it then
    sees the noise's low frequencies and the context the U-Net's five poolings need). Each field is a grid of
    independent patches at a stride of ``d / 2``, each weighted by the separable window
    ``w(t) = sin(pi (t + 1/2) / d)``, ``t = 0 .. d-1``, and summed. Two neighbouring windows satisfy
    ``w(t)^2 + w(t + d/2)^2 = 1``, so at every pixel the squared weights of the (four) overlapping patches sum
    to one: for independent zero-mean patches the blend keeps the variance everywhere and, at lags small
    against ``d``, the autocorrelation (the power spectrum), without seams. Structure at scales beyond ``d``
    is not created. The grid starts half a patch outside the field, so the border is blended like the inside.
    Each patch is centred on its own mean first: a real patch's level depends on where it was cut (ice
    thickness, gain, illumination), and blended uncentred it would print a window-shaped bump at the scale
    of the patch into the field.

    Parameters
    ----------
    patches : array_like, shape (n_fields * k, d, d)
        Noise patches (``d`` even), consumed in order, ``k = tiles_per_field(size, d)`` per field. Each is
        centred on its own mean before blending; the mean of all patches is added back.
    size : int
        Side of the fields (px), ``size >= d``.
    centre : {"each", "all"}
        ``"each"``: every patch centred on its own mean (the default); ``"all"``: only the mean of all patches
        removed, each patch keeping its own level (the blend before the third session, kept for the ablation
        ``benchmarks/bench_blend.py``).

    Returns
    -------
    numpy.ndarray, float32, shape (n_fields, size, size)

    Raises
    ------
    InputError
        Odd ``d``, ``size < d``, a number of patches not a multiple of ``k``, or an unknown ``centre``.
    """
    patches = validate_image(patches, name="noise patches", ndim=3)
    n, d, d2 = patches.shape
    size = int(size)
    if d != d2 or d % 2:
        raise InputError(f"noise patches must be square with an even side; got {d} x {d2} px.")
    if size < d:
        raise InputError(f"size={size} is smaller than the patches ({d} px); crop them instead.")
    per_axis = tiles_per_axis(size, d)
    k = per_axis**2
    if n % k:
        raise InputError(
            f"{n} patches do not make whole fields: a {size} px field takes {k} patches of {d} px."
        )
    half = d // 2
    if centre not in ("each", "all"):
        raise InputError(f"centre = {centre!r}: use 'each' or 'all'.")
    mean = float(patches.mean(dtype=np.float64))
    axes = (1, 2) if centre == "each" else None
    centred = patches - patches.mean(axis=axes, keepdims=True, dtype=np.float64).astype(np.float32)
    window = np.sin(np.pi * (np.arange(d) + 0.5) / d)
    weight = (window[:, None] * window[None, :]).astype(np.float32)
    canvas_px = (per_axis + 1) * half
    fields = np.empty((n // k, size, size), dtype=np.float32)
    for f in range(n // k):
        canvas = np.zeros((canvas_px, canvas_px), dtype=np.float32)
        tiles = centred[f * k : (f + 1) * k]
        for i in range(per_axis):
            for j in range(per_axis):
                canvas[i * half : i * half + d, j * half : j * half + d] += weight * tiles[i * per_axis + j]
        fields[f] = canvas[half : half + size, half : half + size] + mean
    return fields


def resample_patches(patches, n: int, size: int | None = None, *, seed: int = 0) -> np.ndarray:
    """Draw ``n`` noise fields from real noise patches: random crops under the eight rotations/flips.

    The non-generative noise source of the re-weighting (``noise_source="patches"``): each output is a
    uniformly random ``d x d`` crop (``d = min(size, patch side)``) of a uniformly random patch, turned by a
    random multiple of 90 degrees and flipped with probability 1/2 (the GAN's augmentations, which assume
    isotropic noise). A ``size`` larger than the patches blends such crops (:func:`blend_noise_patches`).
    Unlike GAN samples these are the real noise itself, but only as varied as the patches are.

    Parameters
    ----------
    patches : array_like, shape (m, h, w)
        Noise patches (``RUN/noise/patches.mrcs``), any units.
    n : int
        Number of fields.
    size : int or None
        Side of the fields (px); None: ``min(h, w)``.
    seed : int

    Returns
    -------
    numpy.ndarray, float32, shape (n, size, size)
    """
    if np.ndim(patches) == 3 and np.shape(patches)[0] == 0:
        raise InputError("no noise patches to resample; run `nt2c extract-noise --run RUN` first.")
    patches = validate_image(patches, name="noise patches", ndim=3)
    m, h, w = patches.shape
    if int(n) < 1:
        raise InputError(f"n = {n}: ask for at least one noise field.")
    side = min(h, w)
    size = side if size is None else int(size)
    d = side - side % 2 if size > side else size  # larger fields blend crops of the whole (even) side
    k = 1 if size == d else tiles_per_axis(size, d) ** 2
    rng = np.random.default_rng(seed)
    count = int(n) * k
    which = rng.integers(0, m, count)
    rows = rng.integers(0, h - d + 1, count)
    cols = rng.integers(0, w - d + 1, count)
    turns = rng.integers(0, 4, count)
    flips = rng.integers(0, 2, count).astype(bool)
    crops = np.empty((count, d, d), dtype=np.float32)
    for i in range(count):
        crop = np.rot90(patches[which[i], rows[i] : rows[i] + d, cols[i] : cols[i] + d], turns[i])
        crops[i] = crop[:, ::-1] if flips[i] else crop
    return crops if k == 1 else blend_noise_patches(crops, size)


def tiles_per_axis(size: int, d: int) -> int:
    """Patches per axis that :func:`blend_noise_patches` needs for a ``size`` px field of ``d`` px patches."""
    return -(-int(size) // (int(d) // 2)) + 1


def sample_noise_fields(
    model_path, n: int, size: int | None = None, *, seed: int = 0, device: str = "auto", batch_size: int = 256
) -> np.ndarray:
    """Generate ``n`` noise fields of ``size x size`` px with a trained GAN.

    ``size`` equal to the GAN's patch side (or None) returns :func:`sample_noise`'s patches; a larger ``size``
    blends ``tiles_per_axis(size, d)**2`` generated patches per field (:func:`blend_noise_patches`).

    Parameters
    ----------
    model_path : path-like
        ``RUN/models/gan.safetensors``.
    n : int
        Number of fields.
    size : int or None
        Side of the fields (px); at least the GAN's patch side ``d``.
    seed, device, batch_size
        As for :func:`sample_noise`.

    Returns
    -------
    numpy.ndarray, float32, shape (n, size, size)
        Noise in the units of the training patches.
    """
    _, sidecar = generator_paths(model_path)
    try:
        d = int(read_json(sidecar)["architecture"]["patch_px"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{sidecar} is not a GAN sidecar ({exc!r} missing); train the GAN again.") from exc
    if size is None or int(size) == d:
        return sample_noise(model_path, n, seed=seed, device=device, batch_size=batch_size)
    if int(size) < d:
        raise InputError(f"size={size} is smaller than the GAN's patches ({d} px); use size={d} or more.")
    k = tiles_per_axis(size, d) ** 2
    out = np.empty((int(n), int(size), int(size)), dtype=np.float32)
    chunk = max(1, 4096 // k)  # fields per call: bounds the memory of the patches in flight
    for f0 in range(0, int(n), chunk):
        m = min(chunk, int(n) - f0)
        patches = sample_noise(model_path, m * k, seed=seed + f0, device=device, batch_size=batch_size)
        out[f0 : f0 + m] = blend_noise_patches(patches, size)
    return out
