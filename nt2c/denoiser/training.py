"""Supervised training of the U-Net denoiser on (noisy, clean) pairs: the coarse and the fine stage.

Loss and data (paper Eq. 1 with p = 2): the mean squared error between the network's output on a noisy patch
and its clean counterpart. Every training crop is z-scored, ``(x - mean(x)) / std(x)``, with the *noisy*
crop's statistics, and the clean crop is mapped by the same affine transform, so the network learns the clean
image in its input's units; :func:`nt2c.denoise_micrograph` z-scores a micrograph by the statistics of its
typical training-sized tile (:func:`nt2c.denoiser.inference.normalization_stats`) to match. Augmentation
applies one of the eight flips/90-degree rotations to both images of a pair alike; noisy and clean are never
swapped (a bug of the public reference code, where the target then is a noisy image half of the time).

Optimisation: AdamW with a linear warm-up (5 % of the steps) and a cosine decay to 5 % of ``lr``; autocast
(bfloat16, or float16 with gradient scaling) on CUDA when ``mixed_precision`` is set.

Reproducibility and resume: the model is initialised from ``seed``; the order of the pairs is a permutation
drawn per epoch from ``(seed, epoch)``, and each step's crops and flips from ``(seed, step)``, so the data a
step sees does not depend on earlier steps. A checkpoint (weights, optimiser, schedule, gradient scaler,
curves) is written every ``checkpoint_every`` steps; a killed training started again with the same settings
resumes from it and, on the CPU, ends with bit-identical weights to an uninterrupted run. Checkpoints are read
with ``torch.load(weights_only=True)``, which never executes code.

Multi-GPU: launched by ``torchrun``, the same commands train with
:class:`torch.nn.parallel.DistributedDataParallel` (one process per GPU, ``cuda:LOCAL_RANK``; NCCL on CUDA,
Gloo on the CPU)::

    torchrun --nproc-per-node 4 -m nt2c train-coarse --run-dir RUN --profile full
    torchrun --nproc-per-node 4 -m nt2c train-fine --run-dir RUN --profile full

``batch_size`` is then the *global* batch: every rank draws the same seeded batch of step ``step`` and trains
on its rows ``rank, rank + N, ...`` (``batch_size`` must be a multiple of N), and DDP averages the gradients,
so a step sees the same pairs, crops and flips as in a single process. Only rank 0 writes checkpoints,
weights and curves (the others wait at a barrier); every rank resumes from the same checkpoint. The stages a
training needs must be complete before a ``torchrun`` launch (run them without torchrun); the GAN
(``train-gan``) also trains under torchrun, with the same conventions (see :mod:`nt2c.noise.gan`).
Spell the run folder ``--run-dir`` there: torchrun's own parser takes ``--run`` for its ``--run-path``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nt2c.errors import InputError, StageError
from nt2c.io import atomic_path, read_mrc, write_json

__all__ = [
    "TrainResult",
    "normalize_pair",
    "augment_pair",
    "psnr_dB",
    "lr_at",
    "train_denoiser",
    "load_pairs",
    "train_coarse_stage",
    "train_fine_stage",
    "toy_pairs",
]

log = logging.getLogger(__name__)

WARMUP_FRACTION = 0.05
FINAL_LR_FRACTION = 0.05
MAX_VAL_PAIRS = 64


# -- data ------------------------------------------------------------------------------------------
def normalize_pair(noisy: np.ndarray, clean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Z-score ``noisy`` by its own mean and standard deviation and map ``clean`` by the same transform.

    Parameters
    ----------
    noisy, clean : numpy.ndarray, shape (..., ny, nx)
        Aligned images; statistics are taken over the last two axes.

    Returns
    -------
    (noisy_n, clean_n) : numpy.ndarray, float32, same shapes
    """
    noisy = np.asarray(noisy, dtype=np.float64)
    mean = noisy.mean(axis=(-2, -1), keepdims=True)
    std = noisy.std(axis=(-2, -1), keepdims=True)
    std = np.where(std > 0, std, 1.0)
    return ((noisy - mean) / std).astype(np.float32), ((np.asarray(clean, np.float64) - mean) / std).astype(
        np.float32
    )


def augment_pair(noisy: np.ndarray, clean: np.ndarray, transform: int) -> tuple[np.ndarray, np.ndarray]:
    """Apply the same dihedral transform (0-7: ``transform % 4`` quarter turns, then a flip if ``>= 4``) to both.

    Parameters
    ----------
    noisy, clean : numpy.ndarray, shape (ny, nx)
    transform : int
        Index of one of the eight symmetries of the square.
    """
    k, flip = transform % 4, transform >= 4
    out = []
    for img in (noisy, clean):
        img = np.rot90(img, k)
        if flip:
            img = img[:, ::-1]
        out.append(np.ascontiguousarray(img))
    return out[0], out[1]


def psnr_dB(prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Peak signal-to-noise ratio (dB) of each image against its target, peak = the target's value range.

    Parameters
    ----------
    prediction, target : numpy.ndarray, shape (n, ny, nx)

    Returns
    -------
    numpy.ndarray, shape (n,)
    """
    prediction = np.asarray(prediction, np.float64)
    target = np.asarray(target, np.float64)
    mse = ((prediction - target) ** 2).mean(axis=(-2, -1))
    peak = target.max(axis=(-2, -1)) - target.min(axis=(-2, -1))
    return 10.0 * np.log10(np.maximum(peak, 1e-12) ** 2 / np.maximum(mse, 1e-20))


def lr_at(step: int, steps: int, lr: float) -> float:
    """Learning rate of optimiser step ``step`` (0-based): linear warm-up, then cosine decay to 5 % of ``lr``."""
    warmup = max(1, int(round(WARMUP_FRACTION * steps)))
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (
        FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    )


def _split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if n < 2:
        raise InputError(f"training needs at least 2 (noisy, clean) pairs, got {n}; simulate more pairs.")
    n_val = min(max(1, int(round(val_fraction * n))), n - 1)
    perm = np.random.default_rng([seed, 7919]).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val][:MAX_VAL_PAIRS])


def _batch_indices(step: int, batch_size: int, n_train: int, seed: int) -> np.ndarray:
    """Pair indices (into the training subset) used by ``step``: consecutive slices of per-epoch permutations."""
    first = step * batch_size
    out = []
    for pos in range(first, first + batch_size):
        epoch, offset = divmod(pos, n_train)
        out.append(np.random.default_rng([seed, 104729, epoch]).permutation(n_train)[offset])
    return np.asarray(out)


def _make_batch(noisy, clean, idx, patch: int, step: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, 15485863, step])
    ny, nx = noisy.shape[-2:]
    xs, ys = [], []
    for i in idx:
        y0 = int(rng.integers(0, ny - patch + 1))
        x0 = int(rng.integers(0, nx - patch + 1))
        n, c = augment_pair(
            noisy[i, y0 : y0 + patch, x0 : x0 + patch],
            clean[i, y0 : y0 + patch, x0 : x0 + patch],
            int(rng.integers(0, 8)),
        )
        xs.append(n)
        ys.append(c)
    return normalize_pair(np.stack(xs), np.stack(ys))


def _center_crop(stack: np.ndarray, side: int) -> np.ndarray:
    ny, nx = stack.shape[-2:]
    y0, x0 = (ny - side) // 2, (nx - side) // 2
    return stack[..., y0 : y0 + side, x0 : x0 + side]


def _fingerprint(*arrays: np.ndarray, extra: Any = None) -> str:
    h = hashlib.sha256()
    for arr in arrays:
        arr = np.ascontiguousarray(arr)
        h.update(str(arr.shape).encode())
        flat = arr.reshape(-1)
        h.update(flat[:: max(1, flat.size // 65536)].tobytes())
    h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def toy_pairs(
    n: int, size: int, *, seed: int = 0, noise_std: float = 1.0, blob_sigma_px: float = 3.0
) -> tuple[np.ndarray, np.ndarray]:
    """Small synthetic (noisy, clean) pairs for tests and demonstrations (not a physical simulation).

    The clean images are random points blurred by a Gaussian of ``blob_sigma_px`` (unit peak contrast, on an
    offset of 10), the noisy ones add white Gaussian noise of standard deviation ``noise_std``. For the
    physical simulator see :mod:`nt2c.simulation`.

    Returns
    -------
    noisy, clean : numpy.ndarray, float32, shape (n, size, size)
    """
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    clean = np.zeros((n, size, size))
    for img in clean:
        k = max(1, int(rng.poisson(size * size / 400)))
        img[rng.integers(0, size, k), rng.integers(0, size, k)] = rng.uniform(0.5, 1.5, k)
    clean = gaussian_filter(clean, (0, blob_sigma_px, blob_sigma_px), mode="wrap")
    clean = 10.0 + clean / clean.max()
    noisy = clean + rng.normal(0.0, noise_std, clean.shape)
    return noisy.astype(np.float32), clean.astype(np.float32)


# -- training --------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """What :func:`train_denoiser` returns.

    Attributes
    ----------
    model : nt2c.UNet
        The trained network (on the CPU, eval mode).
    curves : dict
        ``{"train": [{"step", "loss", "lr"}...], "val": [{"step", "loss", "psnr_dB", "seconds"}...],
        "input_psnr_dB": float}`` (losses in normalised units, PSNR of the noisy input as the baseline).
    resumed_from : int
        The step the run resumed from (0 for a fresh start).
    seconds : float
        Wall time of this call.
    """

    model: Any
    curves: dict
    resumed_from: int = 0
    seconds: float = 0.0
    info: dict = field(default_factory=dict)


def _settings_dict(settings) -> dict:
    return settings.to_dict() if hasattr(settings, "to_dict") else dict(settings)


def train_denoiser(
    noisy: np.ndarray,
    clean: np.ndarray,
    settings,
    *,
    init_state: dict | None = None,
    init_config: dict | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    on_step: Callable[[int, float], None] | None = None,
    desc: str = "train",
) -> TrainResult:
    """Train a U-Net on aligned (noisy, clean) pairs with an L2 loss.

    Parameters
    ----------
    noisy, clean : numpy.ndarray, shape (n, p, p)
        Aligned training pairs (any consistent units; ``p >= 32``).
    settings : CoarseTrainConfig or FineTrainConfig
        ``patch_px, batch_size, steps, lr, weight_decay, val_fraction, checkpoint_every, width, first_kernel,
        mixed_precision, seed, device``.
    init_state : dict of str to torch.Tensor, optional
        Weights to start from (the fine stage starts from the coarse model).
    init_config : dict, optional
        Architecture of ``init_state`` (:meth:`UNet.config`); default: from ``settings``.
    checkpoint_path : path-like, optional
        Resumable state, written every ``settings.checkpoint_every`` steps and read at start when it matches
        these data and settings; removed when training ends.
    on_step : callable, optional
        ``on_step(step, loss)`` after each optimiser step (``step`` counts completed steps).
    desc : str
        Progress-bar label.

    Returns
    -------
    TrainResult
    """
    import torch

    from nt2c.denoiser.network import UNet, build_model
    from nt2c.device import seed_everything
    from nt2c.progress import progress
    from nt2c.run import distributed as ddp

    start_time = time.perf_counter()
    noisy = np.asarray(noisy, dtype=np.float32)
    clean = np.asarray(clean, dtype=np.float32)
    if noisy.ndim != 3 or noisy.shape != clean.shape:
        raise InputError(
            f"noisy and clean pairs must be two (n, p, p) stacks of the same shape, got "
            f"{noisy.shape} and {clean.shape}."
        )
    if not (np.isfinite(noisy).all() and np.isfinite(clean).all()):
        raise InputError(
            "training pairs contain NaN or infinite values; regenerate them (`nt2c simulate --force`)."
        )
    cfg = _settings_dict(settings)
    seed, steps = int(cfg["seed"]), int(cfg["steps"])
    side = min(noisy.shape[-2:])
    patch = min(int(cfg["patch_px"]), (side // 32) * 32)
    if patch < 32:
        raise InputError(
            f"training pairs of {noisy.shape[-2]}x{noisy.shape[-1]} px are too small; need >= 32 px."
        )
    if patch < cfg["patch_px"]:
        log.warning(
            "pairs are %d px; training on %d px crops instead of patch_px=%d", side, patch, cfg["patch_px"]
        )
    train_idx, val_idx = _split(len(noisy), float(cfg["val_fraction"]), seed)
    val_side = min((side // 32) * 32, 2 * patch)
    val_x, val_y = normalize_pair(
        _center_crop(noisy[val_idx], val_side), _center_crop(clean[val_idx], val_side)
    )
    dev = ddp.init_distributed(cfg.get("device", "auto"))  # resolve_device() when not under torchrun
    n_ranks, this_rank = ddp.world_size(), ddp.rank()
    if n_ranks > 1 and int(cfg["batch_size"]) % n_ranks:
        raise InputError(
            f"batch_size={cfg['batch_size']} is the global batch and must be a multiple of the {n_ranks} "
            f"processes; use batch_size={n_ranks * max(1, int(cfg['batch_size']) // n_ranks)}."
        )
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed patch size: let cuDNN pick the fastest kernels

    seed_everything(seed)
    arch = (
        dict(init_config)
        if init_config
        else {"arch": "nt2c.UNet", "width": int(cfg["width"]), "first_kernel": int(cfg["first_kernel"])}
    )
    model: UNet = build_model(arch)
    if init_state is not None:
        model.load_state_dict(init_state, strict=True)
    model.to(dev)
    fmt = torch.channels_last if dev.type == "cpu" else torch.contiguous_format  # faster CPU convolutions
    model.to(memory_format=fmt)
    net = model  # what the training steps call: the model itself, or its DDP wrapper under torchrun
    if n_ranks > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    opt = torch.optim.AdamW(model.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"]))
    use_amp = bool(cfg.get("mixed_precision", True)) and dev.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    fingerprint = _fingerprint(
        noisy,
        clean,
        extra={
            "settings": {k: v for k, v in cfg.items() if k not in ("device", "checkpoint_every")},
            "arch": arch,
            "init": None
            if init_state is None
            else _fingerprint(*[v.float().cpu().numpy() for v in init_state.values()]),
        },
    )
    curves: dict[str, Any] = {"train": [], "val": [], "input_psnr_dB": float(psnr_dB(val_x, val_y).mean())}
    step = 0
    elapsed_before = 0.0
    ckpt = Path(checkpoint_path) if checkpoint_path else None
    if ckpt is not None and ckpt.is_file():
        try:
            state = torch.load(ckpt, map_location="cpu", weights_only=True)
        except (
            Exception
        ) as exc:  # a checkpoint cut short by a kill during writing cannot exist (atomic), but be safe
            log.warning("ignoring unreadable checkpoint %s (%s)", ckpt, exc)
            state = None
        if state is not None and state.get("fingerprint") == fingerprint:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            scaler.load_state_dict(state["scaler"])
            curves = json.loads(state["curves"])
            step = int(state["step"])
            elapsed_before = float(curves["val"][-1]["seconds"]) if curves["val"] else 0.0
            torch.set_rng_state(state["torch_rng"])
            log.info("resuming %s from step %d of %d (%s)", desc, step, steps, ckpt)
        elif state is not None:
            log.info("checkpoint %s belongs to other data or settings; starting afresh", ckpt)
    resumed_from = step
    if n_ranks > 1 and ddp.broadcast_object(step) != step:
        raise StageError(
            f"{desc}: the ranks found different checkpoints in {ckpt}; every rank must see the same file "
            "system (delete the checkpoint to start afresh)."
        )

    def save_checkpoint() -> None:
        if ckpt is None:
            return
        if this_rank != 0:  # rank 0 writes; the others wait until the file is complete
            ddp.barrier()
            return
        payload = {
            "fingerprint": fingerprint,
            "step": step,
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": opt.state_dict(),
            "scaler": scaler.state_dict(),
            "curves": json.dumps(curves),
            "torch_rng": torch.get_rng_state(),
        }
        with atomic_path(ckpt) as tmp:
            torch.save(payload, tmp)
        ddp.barrier()

    def evaluate() -> tuple[float, float]:
        model.eval()
        preds = []
        with torch.inference_mode():
            for i in range(0, len(val_x), 8):
                xb = torch.from_numpy(val_x[i : i + 8, None]).to(dev).contiguous(memory_format=fmt)
                with torch.autocast(dev.type, dtype=amp_dtype, enabled=use_amp):
                    preds.append(model(xb).float().cpu().numpy()[:, 0])
        model.train()
        pred = np.concatenate(preds)
        return float(((pred - val_y) ** 2).mean()), float(psnr_dB(pred, val_y).mean())

    every = int(cfg["checkpoint_every"])
    bs = int(cfg["batch_size"])
    model.train()
    quiet = {"disable": True} if this_rank else {}  # one progress bar, rank 0's
    bar = progress(total=steps, initial=step, desc=desc, unit="step", **quiet)
    running: list[float] = []
    try:
        while step < steps:
            for group in opt.param_groups:
                group["lr"] = lr_at(step, steps, float(cfg["lr"]))
            idx = train_idx[_batch_indices(step, bs, len(train_idx), seed)]
            xb, yb = _make_batch(noisy, clean, idx, patch, step, seed)
            if n_ranks > 1:  # this rank's rows of the global batch
                xb = np.ascontiguousarray(xb[this_rank::n_ranks])
                yb = np.ascontiguousarray(yb[this_rank::n_ranks])
            xb = torch.from_numpy(xb[:, None]).to(dev).contiguous(memory_format=fmt)
            yb = torch.from_numpy(yb[:, None]).to(dev).contiguous(memory_format=fmt)
            opt.zero_grad(set_to_none=True)
            with torch.autocast(dev.type, dtype=amp_dtype, enabled=use_amp):
                loss = torch.mean((net(xb).float() - yb) ** 2)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            value = float(loss.detach()) if n_ranks == 1 else ddp.all_reduce_mean(float(loss.detach()), dev)
            if not math.isfinite(value):
                raise StageError(
                    f"{desc}: the loss became {value} at step {step}; lower lr (now {cfg['lr']})."
                )
            running.append(value)
            step += 1
            curves["train"].append({"step": step, "loss": value, "lr": opt.param_groups[0]["lr"]})
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4f}")
            if step % every == 0 or step == steps:
                val_loss, val_psnr = evaluate()
                curves["val"].append(
                    {
                        "step": step,
                        "loss": val_loss,
                        "psnr_dB": val_psnr,
                        "train_loss": float(np.mean(running)) if running else None,
                        "seconds": round(elapsed_before + time.perf_counter() - start_time, 2),
                    }
                )
                running = []
                if step < steps:
                    save_checkpoint()
            if on_step is not None:
                on_step(step, value)
    finally:
        bar.close()
    ddp.barrier()
    if ckpt is not None and ckpt.is_file() and this_rank == 0:
        ckpt.unlink()
    model.to("cpu").to(memory_format=torch.contiguous_format).eval()
    seconds = time.perf_counter() - start_time
    return TrainResult(
        model=model,
        curves=curves,
        resumed_from=resumed_from,
        seconds=seconds,
        info={
            "patch_px": patch,
            "n_train": int(len(train_idx)),
            "n_val": int(len(val_idx)),
            "device": str(dev),
            "mixed_precision": use_amp,
            "world_size": n_ranks,
        },
    )


# -- stages ----------------------------------------------------------------------------------------
def load_pairs(folder: str | os.PathLike, *, stage_hint: str) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Read ``pairs_noisy.mrcs`` and ``pairs_clean.mrcs`` from ``folder``.

    Returns
    -------
    noisy, clean : numpy.ndarray, float32, shape (n, p, p)
    pixel_size_A : float or None
    """
    folder = Path(folder)
    paths = [folder / "pairs_noisy.mrcs", folder / "pairs_clean.mrcs"]
    for path in paths:
        if not path.is_file():
            raise StageError(f"{path} is missing; run `{stage_hint}` first.")
    noisy, pixel_size = read_mrc(paths[0])
    clean, _ = read_mrc(paths[1])
    if noisy.ndim == 2 and clean.ndim == 2:
        noisy, clean = noisy[None], clean[None]
    if noisy.shape != clean.shape or noisy.ndim != 3:
        raise InputError(
            f"{paths[0]} {noisy.shape} and {paths[1]} {clean.shape} must be (n, p, p) stacks of the "
            f"same shape; delete them and run `{stage_hint}` again."
        )
    return noisy, clean, pixel_size


def _finish(
    run,
    name: str,
    result: TrainResult,
    cfg: dict,
    pixel_size_A: float | None,
    source: str,
    extra: dict | None = None,
) -> list[Path]:
    from nt2c.denoiser.inference import save_model
    from nt2c.run import distributed as ddp

    if not ddp.is_main():  # rank 0 writes the artefacts; the others return their paths once they exist
        ddp.barrier()
        curves = "coarse_curves.json" if name == "coarse" else f"{name}_curves.json"
        return [
            run.models / f"{name}.safetensors",
            run.models / f"{name}.json",
            run.report / curves,
        ]
    final = result.curves["val"][-1] if result.curves["val"] else {}
    info = {
        "training": {
            "stage": f"train-{name}",
            "source_pairs": source,
            "settings": cfg,
            "pixel_size_A": pixel_size_A,
            "seconds": round(result.seconds, 2),
            "final_val_psnr_dB": final.get("psnr_dB"),
            "input_val_psnr_dB": result.curves.get("input_psnr_dB"),
            **result.info,
            **(extra or {}),
        }
    }
    weights, sidecar = save_model(result.model, run.models / f"{name}.safetensors", info=info)
    outputs = [weights, sidecar]
    if name == "coarse":
        outputs.append(write_json(run.report / "coarse_curves.json", result.curves))
    else:
        outputs.append(write_json(run.report / f"{name}_curves.json", result.curves))
    ddp.barrier()
    return outputs


def train_coarse_stage(run, settings, params) -> list[Path]:
    """Stage ``train-coarse``: train the U-Net on ``RUN/simulated/pairs_{noisy,clean}.mrcs``.

    Writes ``RUN/models/coarse.safetensors`` + ``coarse.json`` and ``RUN/report/coarse_curves.json``;
    checkpoints go to ``RUN/checkpoints/coarse.pt``.
    """
    noisy, clean, pixel_size = load_pairs(run.simulated, stage_hint=f"nt2c simulate --run {run.path}")
    cfg = _settings_dict(settings)
    result = train_denoiser(
        noisy, clean, settings, checkpoint_path=run.checkpoints / "coarse.pt", desc="train-coarse"
    )
    return _finish(run, "coarse", result, cfg, pixel_size or params.pixel_size_A, "simulated/pairs_*.mrcs")


def train_fine_stage(run, settings, params) -> list[Path]:
    """Stage ``train-fine``: start from ``RUN/models/coarse.safetensors`` and train on ``RUN/pairs/``.

    The architecture is the coarse model's (a ``width``/``first_kernel`` in ``settings`` that differs is
    ignored with a warning). Writes ``RUN/models/fine.safetensors`` + ``fine.json`` and
    ``RUN/report/fine_curves.json``; checkpoints go to ``RUN/checkpoints/fine.pt``.
    """
    from nt2c.denoiser.inference import load_model

    coarse_path = run.models / "coarse.safetensors"
    if not coarse_path.is_file():
        raise StageError(f"{coarse_path} is missing; run `nt2c train-coarse --run {run.path}` first.")
    coarse = load_model(coarse_path)
    arch = coarse.config()
    cfg = _settings_dict(settings)
    if (cfg["width"], cfg["first_kernel"]) != (arch["width"], arch["first_kernel"]):
        log.warning(
            "train-fine: using the coarse model's architecture (width %d, first_kernel %d) instead of "
            "width %d, first_kernel %d",
            arch["width"],
            arch["first_kernel"],
            cfg["width"],
            cfg["first_kernel"],
        )
    noisy, clean, pixel_size = load_pairs(run.pairs, stage_hint=f"nt2c reweight --run {run.path}")
    result = train_denoiser(
        noisy,
        clean,
        settings,
        init_state=coarse.state_dict(),
        init_config=arch,
        checkpoint_path=run.checkpoints / "fine.pt",
        desc="train-fine",
    )
    return _finish(
        run,
        "fine",
        result,
        cfg,
        pixel_size or params.pixel_size_A,
        "pairs/pairs_*.mrcs",
        extra={"initialised_from": "models/coarse.safetensors"},
    )
