"""Whole-micrograph denoising with a trained U-Net, and safe model files.

A model is stored as two files: ``NAME.safetensors`` (the weights; loading it never executes code, unlike a
pickled ``torch.save``) and ``NAME.json`` (the architecture arguments, the normalisation convention and how
the model was trained). :func:`load_model` rebuilds the network from the sidecar and loads the weights.

Normalisation convention (shared with :mod:`nt2c.denoiser.training`): the network sees ``(x - mean) / std`` of
its noisy input and predicts the clean image mapped by the *same* affine transform, so its prediction is
mapped back with ``y * std + mean`` and comes out in the units of the input (counts per pixel for raw
micrographs). Training uses each noisy patch's statistics. Inference uses the *typical patch* of the
micrograph (:func:`normalization_stats`): the medians, over non-overlapping 128 px tiles, of the tile means
and standard deviations. The standard deviation of a whole micrograph is a poor stand-in for that of its
patches wherever it holds something large and dark (ice contamination, carbon edge, a thickness gradient): on
the real EMPIAR-10025 micrograph of ``../shared/data`` a contaminant makes it 4.6x the typical tile's, so its
noise reached the network at a fifth of the level it was trained on (the Eq. 5 SNR gain of a coarse model went
from +2.5 dB with the global statistics to +12 dB with the tile medians; ``normalization="global"`` keeps the
old behaviour).

:func:`denoise_micrograph` cuts the normalised micrograph into overlapping tiles aligned to the
U-Net's pooling grid, runs them in memory-capped batches and blends them with weights that are zero in the
outer quarter of each overlap and ramp linearly across its middle half, so tile borders leave no seam. When a
quarter of the overlap exceeds the network's receptive radius, the result equals one pass over the whole image
up to float rounding.

One module because the model files and tiled inference share the model's sidecar (architecture and
normalisation) and its checks; a third of it is docstrings.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from nt2c.config import LOW_FREQUENCY_FROM_RAW_PX
from nt2c.errors import InputError
from nt2c.io import atomic_path, validate_image, write_json

__all__ = [
    "load_model",
    "save_model",
    "read_model_info",
    "denoise_micrograph",
    "tile_starts",
    "blend_weights",
    "estimate_tile_memory_MB",
    "normalization_stats",
    "keep_raw_low_frequencies",
    "LOW_FREQUENCY_FROM_RAW_PX",
]

NORMALIZATION_TILE_PX = 128  # the training crop side of the default profiles

log = logging.getLogger(__name__)

NORMALIZATION = {
    "input": "zscore",
    "statistics": "mean and standard deviation of the noisy input (per patch in training; at inference "
    "the medians of the means and standard deviations of 128 px tiles of the micrograph)",
    "target": "the clean image mapped by the same affine transform as its noisy input",
    "output": "prediction * std + mean, in the units of the input",
}


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def _weights(path: Path) -> Path:
    return path.with_suffix(".safetensors")


def save_model(model, path: str | os.PathLike, *, info: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Write ``model``'s weights to ``path`` (safetensors) and its configuration to the ``.json`` beside it.

    Parameters
    ----------
    model : nt2c.UNet
    path : path-like
        ``NAME.safetensors`` (the suffix is set if missing).
    info : dict, optional
        Extra JSON-serialisable entries for the sidecar (training settings, curves summary, ...).

    Returns
    -------
    (weights_path, sidecar_path)
    """
    from safetensors.torch import save_file

    from nt2c import __version__
    from nt2c.denoiser.network import model_config

    weights = _weights(Path(path))
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_path(weights) as tmp:
        save_file(state, str(tmp), metadata={"format": "nt2c-model", "arch": "nt2c.UNet"})
    sidecar = {
        "format": "nt2c-model",
        "format_version": 1,
        "nt2c_version": __version__,
        "weights": weights.name,
        "model": model_config(model),
        "normalization": NORMALIZATION,
    }
    sidecar.update(info or {})
    write_json(_sidecar(weights), sidecar)
    return weights, _sidecar(weights)


def _model_file(path: Path) -> Path:
    """Check that ``path`` names a model file (``NAME.safetensors`` or ``NAME.json``); return the weights."""
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.safetensors"))
        hint = f" ({', '.join(found)} are there)" if found else ""
        raise InputError(f"{path} is a folder; give the model file NAME.safetensors inside it{hint}.")
    if path.suffix not in (".safetensors", ".json"):
        candidate = _weights(path)
        hint = (
            f"; the model beside it is {candidate}, pass that path"
            if candidate.is_file() and candidate != path
            else ""
        )
        raise InputError(
            f"{path} is not an nt2c model file: a model is NAME.safetensors with its NAME.json sidecar "
            f"(pickled .pt/.pth files and checkpoints are not loaded){hint}."
        )
    return _weights(path)


def read_model_info(path: str | os.PathLike) -> dict:
    """Read the JSON sidecar of a model file (``NAME.safetensors`` or ``NAME.json``)."""
    path = Path(path)
    side = _sidecar(_model_file(path))
    if not side.is_file():
        raise InputError(
            f"{side} is missing: an nt2c model is NAME.safetensors plus NAME.json; copy both files "
            "(or retrain with `nt2c train-coarse`)."
        )
    try:
        info = json.loads(side.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{side} is not valid JSON ({exc}); copy the model's .json sidecar again.") from exc
    if isinstance(info, dict) and info.get("model") == "gan-generator":
        raise InputError(
            f"{side} describes the GAN noise generator, not a denoiser; give a denoiser such as "
            "RUN/models/coarse.safetensors or RUN/models/fine.safetensors."
        )
    if not isinstance(info, dict) or info.get("format") != "nt2c-model" or "model" not in info:
        raise InputError(
            f"{side} is not an nt2c model sidecar (no 'format': 'nt2c-model' / 'model' entries)."
        )
    return info


def _describe_config(config: dict) -> str:
    config = dict(config)
    arch = config.pop("arch", "nt2c.UNet")
    return f"{arch}({', '.join(f'{k}={v}' for k, v in sorted(config.items()))})"


def _state_mismatch(expected: dict, state: dict) -> str:
    """Summarise in one line how the tensors in ``state`` differ from the model's ``expected`` ones."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    parts = []
    if reshaped:
        k = reshaped[0]
        parts.append(
            f"{len(reshaped)} tensors of other shapes (e.g. {k!r}: {list(state[k].shape)} in the file, "
            f"{list(expected[k].shape)} expected)"
        )
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {missing[0]!r})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]!r})")
    return "; ".join(parts)


def load_model(path: str | os.PathLike, *, device: str = "cpu"):
    """Load a denoiser saved by :func:`save_model` (or the training stages), without unpickling anything.

    Parameters
    ----------
    path : path-like
        ``NAME.safetensors`` or its ``NAME.json`` sidecar; both files must exist. Any other suffix is an
        error (nothing else is loaded in its place).
    device : str
        Where to put the weights (``"auto"``, ``"cpu"``, ``"cuda[:N]"``).

    Returns
    -------
    nt2c.UNet
        In eval mode, with the sidecar available as ``model.nt2c_info``.

    Raises
    ------
    InputError
        When a file is missing, corrupt, not a denoiser, its weights hold NaN or infinite values, or they do
        not fit the architecture in the sidecar. Every message is one line naming the file.
    """
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from nt2c.denoiser.network import build_model
    from nt2c.device import resolve_device

    path = Path(path)
    weights = _model_file(path)
    if not weights.is_file():
        raise InputError(
            f"model weights {weights} do not exist; train a model (`nt2c train-coarse --run RUN`) "
            "or pass the path of an existing NAME.safetensors."
        )
    info = read_model_info(weights)
    try:
        model = build_model(info["model"])
    except (ValueError, TypeError) as exc:
        raise InputError(f"{_sidecar(weights)}: cannot build the model ({exc}).") from exc
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(
            f"{weights} is not a readable safetensors file ({exc}); copy or retrain it."
        ) from exc
    mismatch = _state_mismatch(model.state_dict(), state)
    if mismatch:
        raise InputError(
            f"{weights} does not match the architecture in {_sidecar(weights).name}, "
            f"{_describe_config(info['model'])}: {mismatch}. Copy NAME.safetensors and NAME.json of the same "
            "model together, or retrain."
        )
    bad = [k for k, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise InputError(
            f"{weights} holds NaN or infinite weights ({len(bad)} of {len(state)} tensors, e.g. {bad[0]!r}): "
            "its training diverged; retrain it (e.g. with a lower learning rate) or use another model."
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # a mismatch the check above does not see (dtype, ...): keep it to one line
        reason = " ".join(str(exc).split())[:300]
        raise InputError(
            f"{weights} does not match the architecture in {_sidecar(weights).name}: {reason}"
        ) from None
    model.nt2c_info = info
    return model.to(resolve_device(device)).eval()


# -- tiling ----------------------------------------------------------------------------------------
def tile_starts(size: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles of side ``tile`` covering ``[0, size)`` with the given stride.

    The last tile is shifted back to end at ``size``; ``tile >= size`` gives one tile at 0.
    """
    if tile >= size:
        return [0]
    starts = list(range(0, size - tile, stride))
    starts.append(size - tile)
    return sorted(set(starts))


def blend_weights(start: int, tile: int, size: int, overlap: int) -> np.ndarray:
    """1-D blending weights of the tile ``[start, start + tile)`` in an axis of length ``size``.

    At an edge that borders another tile the weight is 0 over the outer ``overlap // 4`` pixels (the part
    most affected by the missing context), then ramps linearly to 1 over the next
    ``overlap - 2 * (overlap // 4)`` pixels. At an image edge the weight is 1.

    Returns
    -------
    numpy.ndarray, float64, shape (tile,)
    """
    d = np.arange(tile, dtype=np.float64)
    w = np.ones(tile)
    crop = overlap // 4
    ramp = max(overlap - 2 * crop, 1)
    if start > 0:
        w *= np.clip((d - crop + 1) / (ramp + 1), 0.0, 1.0)
    if start + tile < size:
        w *= np.clip((tile - 1 - d - crop + 1) / (ramp + 1), 0.0, 1.0)
    return w


def estimate_tile_memory_MB(model, tile_y: int, tile_x: int, batch_size: int) -> float:
    """Rough peak activation memory (MB) of one inference batch (measured factor, with a safety margin)."""
    width = getattr(model, "width", 48)
    floats_per_px = 3.0 * width + 8.0
    return 1.5 * 4.0 * floats_per_px * tile_y * tile_x * batch_size / 2**20


def normalization_stats(
    image, *, mode: str = "tiles", tile_px: int = NORMALIZATION_TILE_PX
) -> tuple[float, float]:
    """Return the (mean, std) by which :func:`denoise_micrograph` normalises a micrograph.

    Parameters
    ----------
    image : numpy.ndarray, shape (ny, nx)
        The micrograph, any real units.
    mode : {"tiles", "global"}
        ``"tiles"``: the medians over the non-overlapping ``tile_px`` tiles of the tile means and standard
        deviations -- the statistics of a typical training-sized patch, robust to contamination, carbon or
        gradients that inflate the global standard deviation. ``"global"``: mean and std of the whole image.
        Images smaller than one tile use the global statistics.
    tile_px : int
        Tile side (px).

    Returns
    -------
    tuple of float
        ``(mean, std)`` in the units of ``image``; ``std`` is 0 only for a constant image.
    """
    if mode not in ("tiles", "global"):
        raise InputError(f"normalization={mode!r} is not known; use 'tiles' (default) or 'global'.")
    arr = np.asarray(image)
    ny, nx = arr.shape
    my, mx = ny // tile_px, nx // tile_px
    if mode == "global" or my == 0 or mx == 0:
        return float(arr.mean(dtype=np.float64)), float(arr.std(dtype=np.float64))
    tiles = arr[: my * tile_px, : mx * tile_px].reshape(my, tile_px, mx, tile_px).astype(np.float64)
    mean = float(np.median(tiles.mean(axis=(1, 3))))
    std = float(np.median(tiles.std(axis=(1, 3))))
    if not std > 0:  # mostly constant tiles (padding): fall back on the whole image
        return float(arr.mean(dtype=np.float64)), float(arr.std(dtype=np.float64))
    return mean, std


def denoise_micrograph(
    model,
    image,
    *,
    normalization: str = "tiles",
    device: str = "auto",
    tile: int = 512,
    overlap: int = 64,
    batch_size: int = 4,
    max_memory_MB: float = 1024.0,
    low_frequency_from_raw_px: float = LOW_FREQUENCY_FROM_RAW_PX,
    show_progress: bool = True,
) -> np.ndarray:
    """Denoise a whole micrograph with overlapping, blended tiles.

    Parameters
    ----------
    model : nt2c.UNet or path-like
        A network (moved to ``device`` in place and set to eval mode) or a model file for :func:`load_model`.
    image : array_like, shape (ny, nx)
        The noisy micrograph (any real units; finite values).
    normalization : {"tiles", "global"}
        How the input is z-scored before the network (see :func:`normalization_stats`).
    device : str
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda[:N]"``.
    tile : int
        Tile side (px), rounded down to a multiple of the network's pooling factor (32); tiles never exceed
        the (padded) image.
    overlap : int
        Pixels shared by neighbouring tiles (rounded up so that the stride is a multiple of 32); must be less
        than half of ``tile``. The outer quarter of each overlap is discarded, the middle half cross-faded.
    batch_size : int
        Tiles per forward pass (reduced when ``max_memory_MB`` demands it).
    max_memory_MB : float
        Cap on the estimated activation memory of one batch (MB); the batch, then the tile, shrink to fit.
    low_frequency_from_raw_px : float
        Periods longer than about this (px) are taken from the raw micrograph
        (:func:`keep_raw_low_frequencies`); 0 keeps the network's output at every frequency.
    show_progress : bool
        Show a progress bar over the tiles (subject to :func:`nt2c.set_progress`).

    Returns
    -------
    numpy.ndarray, float32, shape (ny, nx)
        The denoised micrograph in the units of ``image``.

    Raises
    ------
    InputError
        For a bad image or tiling parameters, and when the network's output holds NaN or infinite values
        (then nothing is returned, so no such micrograph is ever written).
    """
    import torch

    from nt2c.denoiser.network import pad_to_multiple
    from nt2c.device import resolve_device
    from nt2c.progress import progress

    if isinstance(model, (str, os.PathLike)):
        model = load_model(model)
    arr = validate_image(image, name="image", ndim=2)
    if tile < 32 or batch_size < 1 or overlap < 0 or 2 * overlap >= tile:
        raise InputError(
            f"tile={tile}, overlap={overlap}, batch_size={batch_size}: need tile >= 32, "
            "0 <= overlap < tile / 2 and batch_size >= 1 (defaults: tile 512, overlap 64)."
        )
    if max_memory_MB <= 0:
        raise InputError(f"max_memory_MB={max_memory_MB} must be positive (for example 1024).")
    if not low_frequency_from_raw_px >= 0:
        raise InputError(
            f"low_frequency_from_raw_px={low_frequency_from_raw_px}: use a period in px (for example "
            f"{LOW_FREQUENCY_FROM_RAW_PX:g}), or 0 to keep the network's output at every frequency."
        )
    dev = resolve_device(device)
    model = model.to(dev).eval()
    if dev.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    multiple = int(getattr(model, "multiple", 32))

    ny, nx = arr.shape
    mean, std = normalization_stats(arr, mode=normalization)
    if not std > 0:
        return np.full_like(arr, mean, dtype=np.float32)
    norm = torch.from_numpy(((arr - mean) / std).astype(np.float32))
    padded = pad_to_multiple(norm, multiple)
    py, px = padded.shape

    tile = max(multiple, (tile // multiple) * multiple)
    ty, tx = min(tile, py), min(tile, px)
    batch = batch_size
    while estimate_tile_memory_MB(model, ty, tx, batch) > max_memory_MB:
        if batch > 1:
            batch = max(1, batch // 2)
        elif max(ty, tx) > max(2 * multiple, 2 * overlap + multiple):
            ty = max(multiple, (ty // 2 // multiple) * multiple)
            tx = max(multiple, (tx // 2 // multiple) * multiple)
        else:
            break
    if (ty, tx) != (min(tile, py), min(tile, px)) or batch != batch_size:
        log.info("memory cap %.0f MB: tiles %dx%d, batch %d", max_memory_MB, ty, tx, batch)

    def stride_for(t: int) -> int:
        ov = min(overlap, t // 2 - 1) if t > 2 else 0
        return max(multiple, ((t - ov) // multiple) * multiple)

    sy, sx = stride_for(ty), stride_for(tx)
    ovy, ovx = ty - sy, tx - sx
    ys, xs = tile_starts(py, ty, sy), tile_starts(px, tx, sx)
    wy = {y: blend_weights(y, ty, py, ovy) for y in ys}
    wx = {x: blend_weights(x, tx, px, ovx) for x in xs}
    wsum_y = np.zeros(py)
    wsum_x = np.zeros(px)
    for y in ys:
        wsum_y[y : y + ty] += wy[y]
    for x in xs:
        wsum_x[x : x + tx] += wx[x]
    if (wsum_y <= 0).any() or (wsum_x <= 0).any():  # cannot happen with overlap // 4 crops; kept as a guard
        raise RuntimeError("tile weights leave pixels uncovered (a bug; please report)")

    out = np.zeros((py, px), dtype=np.float32)
    coords = [(y, x) for y in ys for x in xs]
    bar = progress(
        total=len(coords), desc="denoise tiles", unit="tile", **({} if show_progress else {"disable": True})
    )
    with torch.inference_mode():
        for i in range(0, len(coords), batch):
            chunk = coords[i : i + batch]
            xb = torch.stack([padded[y : y + ty, x : x + tx] for y, x in chunk])[:, None]
            xb = xb.to(dev)
            if dev.type == "cpu":
                xb = xb.contiguous(memory_format=torch.channels_last)
            yb = model(xb)
            yb = yb.float().cpu().numpy()[:, 0]
            for (y, x), pred in zip(chunk, yb):
                out[y : y + ty, x : x + tx] += pred * np.outer(wy[y], wx[x]).astype(np.float32)
            bar.update(len(chunk))
    bar.close()
    out /= np.outer(wsum_y, wsum_x).astype(np.float32)
    result = out[:ny, :nx] * np.float32(std) + np.float32(mean)
    bad = int(np.size(result) - np.count_nonzero(np.isfinite(result)))
    if bad:
        raise InputError(
            f"the denoised micrograph has {bad} NaN or infinite pixels of {result.size}: the model "
            f"({_model_label(model)}) produced non-finite values; check that its weights are finite and that "
            "it was trained on data like this micrograph, or retrain it. Nothing was written."
        )
    if low_frequency_from_raw_px > 0:
        result = _add_raw_low_frequencies(arr, result, low_frequency_from_raw_px)
    return np.ascontiguousarray(result, dtype=np.float32)


def keep_raw_low_frequencies(raw, denoised, *, period_px: float = LOW_FREQUENCY_FROM_RAW_PX) -> np.ndarray:
    """Take the longest periods of a denoised micrograph from the raw one.

    The networks are trained on patches of 64-128 px, normalised patch by patch, so they cannot learn what a
    micrograph holds at periods of hundreds of pixels (ice thickness, the particles' own low-frequency
    contrast): measured on the DEV halves of ``benchmarks/RESULTS.md``, their outputs there correlate less
    with the truth than the raw micrograph does. Shot noise is weak there (white noise spreads its power
    evenly, and these frequencies are few), so the difference ``raw - denoised`` is low-passed and added
    back::

        out = denoised + G_sigma * (raw - denoised),   sigma = period_px / (sqrt(2) pi)

    The Gaussian ``G_sigma`` (reflected at the edges) passes ``exp(-(k period_px)^2)`` of frequency ``k``
    (cycles/px): 37 % at one cycle per ``period_px``, 2 % at two; shorter periods keep the network's output.
    Whatever else the raw micrograph holds at those periods comes back too: on nt2c's own stand-ins, whose
    clean reference leaves out the structure of their thick ice, this costs PSNR and picking F1
    (``benchmarks/RESULTS.md``).

    Parameters
    ----------
    raw : array_like, shape (ny, nx)
        The micrograph, in any units.
    denoised : array_like, shape (ny, nx)
        Its denoised version, in the same units.
    period_px : float
        Crossover period (px), > 0.

    Returns
    -------
    numpy.ndarray, float32, shape (ny, nx)
    """
    raw = validate_image(raw, name="raw micrograph", ndim=2)
    denoised = validate_image(denoised, name="denoised micrograph", ndim=2)
    if raw.shape != denoised.shape:
        raise InputError(f"raw {raw.shape} and denoised {denoised.shape} micrographs differ in shape.")
    if not period_px > 0:
        raise InputError(f"period_px={period_px}: must be > 0 (for example {LOW_FREQUENCY_FROM_RAW_PX:g}).")
    return _add_raw_low_frequencies(raw, denoised, period_px)


def _add_raw_low_frequencies(raw: np.ndarray, denoised: np.ndarray, period_px: float) -> np.ndarray:
    """:func:`keep_raw_low_frequencies` on arrays already checked (same shape, finite, ``period_px > 0``)."""
    from scipy import ndimage

    sigma = float(period_px) / (np.sqrt(2.0) * np.pi)
    difference = raw.astype(np.float64) - denoised.astype(np.float64)
    low = ndimage.gaussian_filter(difference, sigma, mode="reflect")
    return (denoised.astype(np.float64) + low).astype(np.float32)


def _model_label(model) -> str:
    info = getattr(model, "nt2c_info", None)
    if isinstance(info, dict) and isinstance(info.get("model"), dict):
        return _describe_config(info["model"])
    return type(model).__name__
