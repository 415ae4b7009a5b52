"""Supervised training of the U-Net denoiser on (noisy, clean) pairs: one step, and the loop around it.

Loss (paper Eq. 1 with p = 2): the mean squared error between the network's output on a noisy crop and its
clean counterpart, both z-scored by the noisy crop's statistics (:mod:`nt2c.denoiser.pairs`).
:func:`training_step` is that step; :func:`train_denoiser` is the loop: the schedule, validation, checkpoints
and several processes.

Optimisation: AdamW with a linear warm-up (5 % of the steps) and a cosine decay to 5 % of ``lr``
(:func:`lr_at`); autocast (bfloat16, or float16 with gradient scaling) on CUDA when ``mixed_precision`` is
set.

Validation: pairs that share no pixel with the training pairs (:func:`nt2c.denoiser.pairs.split_by_source`),
scored by :func:`validation_psnr_dB`: the PSNR of ``nt2c evaluate`` (:func:`nt2c.evaluation.metrics.psnr`,
after the affine fit), per centre crop, averaged. So a learning curve and an evaluation table use one PSNR.

Reproducibility and resume: the model is initialised from ``seed``; each step's data is drawn from
``(seed, step)`` alone. A checkpoint (weights, optimiser, schedule, gradient scaler, curves) is written every
``checkpoint_every`` steps; a killed training started again with the same settings resumes from it and, on the
CPU, ends with bit-identical weights to an uninterrupted run. Checkpoints are read with
``torch.load(weights_only=True)``, which never executes code.

Multi-GPU: launched by ``torchrun``, the same commands train with
:class:`torch.nn.parallel.DistributedDataParallel` (one process per GPU, ``cuda:LOCAL_RANK``; NCCL on CUDA,
Gloo on the CPU)::

    torchrun --nproc-per-node 4 -m nt2c train-coarse --run-dir RUN --profile full

``batch_size`` is then the *global* batch: every rank draws the same seeded batch of step ``step`` and trains
on its rows ``rank, rank + N, ...`` (``batch_size`` must be a multiple of N), and DDP averages the gradients,
so a step sees the same pairs, crops and flips as in a single process. Only rank 0 writes checkpoints, weights
and curves; every rank resumes from the same checkpoint. The stages a training needs must be complete before a
``torchrun`` launch. Spell the run folder ``--run-dir`` there: torchrun's own parser takes ``--run``.

One module because the step, the schedule, the validation score and the loop (checkpoints, resume, processes)
must agree on one seeded data stream and one checkpoint format; the pairs and the network live in
:mod:`nt2c.denoiser.pairs` and :mod:`nt2c.denoiser.network`, and a quarter of this one is docstrings.
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

from nt2c.denoiser.pairs import batch_indices, center_crop, make_batch, normalize_pair, split_by_source
from nt2c.errors import InputError, StageError
from nt2c.io import atomic_path

__all__ = ["TrainResult", "training_step", "validation_psnr_dB", "lr_at", "train_denoiser"]

log = logging.getLogger(__name__)

WARMUP_FRACTION = 0.05
FINAL_LR_FRACTION = 0.05


def training_step(net, optimizer, scaler, noisy, clean, *, amp_dtype=None) -> float:
    """One optimiser step of Eq. 1 (p = 2): minimise ``mean((net(noisy) - clean)^2)``.

    Parameters
    ----------
    net : torch.nn.Module
        The U-Net (or its DDP wrapper).
    optimizer : torch.optim.Optimizer
    scaler : torch.amp.GradScaler
        Scales the loss for float16 autocast (a no-op when disabled).
    noisy, clean : torch.Tensor, shape (B, 1, p, p)
        A batch of normalised pairs on the model's device.
    amp_dtype : torch.dtype, optional
        Autocast to this dtype (CUDA mixed precision); None: full precision.

    Returns
    -------
    float
        The batch's loss (this process's rows).
    """
    import torch

    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(noisy.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        loss = torch.mean((net(noisy).float() - clean) ** 2)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return float(loss.detach())


def validation_psnr_dB(prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
    """PSNR (dB) of each image against its target, as ``nt2c evaluate`` computes it (affine fit first).

    Parameters
    ----------
    prediction, target : numpy.ndarray, shape (n, ny, nx)

    Returns
    -------
    numpy.ndarray, shape (n,)
    """
    from nt2c.evaluation.metrics import psnr

    return np.array(
        [psnr(p, t) for p, t in zip(np.asarray(prediction), np.asarray(target))], dtype=np.float64
    )


def lr_at(step: int, steps: int, lr: float) -> float:
    """Return the learning rate of step ``step`` (0-based): linear warm-up, cosine decay to 5 % of ``lr``."""
    warmup = max(1, int(round(WARMUP_FRACTION * steps)))
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (
        FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    )


@dataclass
class TrainResult:
    """What :func:`train_denoiser` returns.

    Attributes
    ----------
    model : nt2c.UNet
        The trained network (on the CPU, eval mode).
    curves : dict
        ``{"train": [{"step", "loss", "lr"}...], "val": [{"step", "loss", "psnr_dB", "seconds"}...],
        "input_psnr_dB": float}`` (losses in normalised units; PSNR as :func:`validation_psnr_dB`, of the
        noisy input as the baseline).
    resumed_from : int
        The step the run resumed from (0 for a fresh start).
    seconds : float
        Wall time of this call.
    info : dict
        Crop size, pair counts, how validation pairs were held out, device, world size.
    """

    model: Any
    curves: dict
    resumed_from: int = 0
    seconds: float = 0.0
    info: dict = field(default_factory=dict)


def _settings_dict(settings) -> dict:
    return settings.to_dict() if hasattr(settings, "to_dict") else dict(settings)


def _fingerprint(*arrays: np.ndarray, extra: Any = None) -> str:
    h = hashlib.sha256()
    for arr in arrays:
        arr = np.ascontiguousarray(arr)
        h.update(str(arr.shape).encode())
        flat = arr.reshape(-1)
        h.update(flat[:: max(1, flat.size // 65536)].tobytes())
    h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def _check_pairs(noisy, clean, patch_px: int) -> tuple[np.ndarray, np.ndarray, int]:
    noisy = np.asarray(noisy, dtype=np.float32)
    clean = np.asarray(clean, dtype=np.float32)
    if noisy.ndim != 3 or noisy.shape != clean.shape:
        raise InputError(
            f"noisy and clean pairs must be two (n, p, p) stacks of the same shape, got {noisy.shape} and "
            f"{clean.shape}."
        )
    if not (np.isfinite(noisy).all() and np.isfinite(clean).all()):
        raise InputError(
            "training pairs contain NaN or infinite values; regenerate them (`nt2c simulate --force`)."
        )
    side = min(noisy.shape[-2:])
    patch = min(int(patch_px), (side // 32) * 32)
    if patch < 32:
        raise InputError(
            f"training pairs of {noisy.shape[-2]}x{noisy.shape[-1]} px are too small; need >= 32 px."
        )
    if patch < patch_px:
        log.warning("pairs are %d px; training on %d px crops instead of patch_px=%d", side, patch, patch_px)
    return noisy, clean, patch


class _Checkpoint:
    """Resumable state of a training (rank 0 writes, every rank reads)."""

    def __init__(self, path, fingerprint: str, rank: int):
        self.path = Path(path) if path else None
        self.fingerprint = fingerprint
        self.rank = rank

    def load(self) -> dict | None:
        import torch

        if self.path is None or not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # cannot be cut short by a kill (atomic writes), but be safe
            log.warning("ignoring unreadable checkpoint %s (%s)", self.path, exc)
            return None
        if state.get("fingerprint") != self.fingerprint:
            log.info("checkpoint %s belongs to other data or settings; starting afresh", self.path)
            return None
        return state

    def save(self, **state) -> None:
        import torch

        from nt2c.run import distributed as ddp

        if self.path is None:
            return
        if self.rank == 0:  # the others wait until the file is complete
            with atomic_path(self.path) as tmp:
                torch.save({"fingerprint": self.fingerprint, **state}, tmp)
        ddp.barrier()

    def remove(self) -> None:
        if self.path is not None and self.path.is_file() and self.rank == 0:
            self.path.unlink()


def train_denoiser(
    noisy: np.ndarray,
    clean: np.ndarray,
    settings,
    *,
    sources: np.ndarray | None = None,
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
    sources : numpy.ndarray, int, shape (n, 3), optional
        Micrograph index, row and column each pair was cut at (``pairs_sources.csv``): validation pairs are
        then taken from micrographs (or a side of the micrograph) no training pair comes from. Without it the
        split is random and a warning says so.
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

    from nt2c.denoiser.network import build_model
    from nt2c.device import seed_everything
    from nt2c.progress import progress
    from nt2c.run import distributed as ddp

    start_time = time.perf_counter()
    cfg = _settings_dict(settings)
    seed, steps, bs = int(cfg["seed"]), int(cfg["steps"]), int(cfg["batch_size"])
    noisy, clean, patch = _check_pairs(noisy, clean, int(cfg["patch_px"]))
    train_idx, val_idx, held_out = split_by_source(
        sources, len(noisy), float(cfg["val_fraction"]), patch_px=noisy.shape[-1], seed=seed
    )
    val_side = min((min(noisy.shape[-2:]) // 32) * 32, 2 * patch)
    val_x, val_y = normalize_pair(
        center_crop(noisy[val_idx], val_side), center_crop(clean[val_idx], val_side)
    )
    dev = ddp.init_distributed(cfg.get("device", "auto"))  # resolve_device() when not under torchrun
    n_ranks, this_rank = ddp.world_size(), ddp.rank()
    if n_ranks > 1 and bs % n_ranks:
        raise InputError(
            f"batch_size={bs} is the global batch and must be a multiple of the {n_ranks} processes; use "
            f"batch_size={n_ranks * max(1, bs // n_ranks)}."
        )
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed patch size: let cuDNN pick the fastest kernels

    # -- the network and its optimiser
    seed_everything(seed)
    arch = (
        dict(init_config)
        if init_config
        else {"arch": "nt2c.UNet", "width": int(cfg["width"]), "first_kernel": int(cfg["first_kernel"])}
    )
    model = build_model(arch)
    if init_state is not None:
        model.load_state_dict(init_state, strict=True)
    fmt = torch.channels_last if dev.type == "cpu" else torch.contiguous_format  # faster CPU convolutions
    model.to(dev).to(memory_format=fmt)
    net = model  # what the steps call: the model itself, or its DDP wrapper under torchrun
    if n_ranks > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    opt = torch.optim.AdamW(model.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"]))
    use_amp = bool(cfg.get("mixed_precision", True)) and dev.type == "cuda"
    amp_dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if use_amp else None
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    # -- resume
    init_print = (
        None if init_state is None else _fingerprint(*[v.float().cpu().numpy() for v in init_state.values()])
    )
    settings_print = {k: v for k, v in cfg.items() if k not in ("device", "checkpoint_every")}
    fingerprint = _fingerprint(
        noisy, clean, extra={"settings": settings_print, "arch": arch, "init": init_print, "split": held_out}
    )
    ckpt = _Checkpoint(checkpoint_path, fingerprint, this_rank)
    curves: dict[str, Any] = {
        "train": [],
        "val": [],
        "input_psnr_dB": float(validation_psnr_dB(val_x, val_y).mean()),
    }
    step, elapsed_before = 0, 0.0
    state = ckpt.load()
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        curves = json.loads(state["curves"])
        step = int(state["step"])
        elapsed_before = float(curves["val"][-1]["seconds"]) if curves["val"] else 0.0
        torch.set_rng_state(state["torch_rng"])
        log.info("resuming %s from step %d of %d (%s)", desc, step, steps, ckpt.path)
    resumed_from = step
    if n_ranks > 1 and ddp.broadcast_object(step) != step:
        raise StageError(
            f"{desc}: the ranks found different checkpoints in {ckpt.path}; "
            "every rank must see the same file system (delete the checkpoint to start afresh)."
        )

    def validate() -> tuple[float, float]:
        model.eval()
        preds = []
        with torch.inference_mode():
            for i in range(0, len(val_x), 8):
                xb = torch.from_numpy(val_x[i : i + 8, None]).to(dev).contiguous(memory_format=fmt)
                with torch.autocast(dev.type, dtype=amp_dtype, enabled=use_amp):
                    preds.append(model(xb).float().cpu().numpy()[:, 0])
        model.train()
        pred = np.concatenate(preds)
        return float(((pred - val_y) ** 2).mean()), float(validation_psnr_dB(pred, val_y).mean())

    def to_device(batch: np.ndarray):
        if n_ranks > 1:  # this rank's rows of the global batch
            batch = np.ascontiguousarray(batch[this_rank::n_ranks])
        return torch.from_numpy(batch[:, None]).to(dev).contiguous(memory_format=fmt)

    # -- the loop
    every = int(cfg["checkpoint_every"])
    model.train()
    quiet = {"disable": True} if this_rank else {}  # one progress bar, rank 0's
    bar = progress(total=steps, initial=step, desc=desc, unit="step", **quiet)
    running: list[float] = []
    try:
        while step < steps:
            for group in opt.param_groups:
                group["lr"] = lr_at(step, steps, float(cfg["lr"]))
            xb, yb = make_batch(
                noisy, clean, train_idx[batch_indices(step, bs, len(train_idx), seed)], patch, step, seed
            )
            value = training_step(net, opt, scaler, to_device(xb), to_device(yb), amp_dtype=amp_dtype)
            if n_ranks > 1:
                value = ddp.all_reduce_mean(value, dev)
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
                val_loss, val_psnr = validate()
                seconds = round(elapsed_before + time.perf_counter() - start_time, 2)
                train_loss = float(np.mean(running)) if running else None
                curves["val"].append(
                    {
                        "step": step,
                        "loss": val_loss,
                        "psnr_dB": val_psnr,
                        "train_loss": train_loss,
                        "seconds": seconds,
                    }
                )
                running = []
                if step < steps:
                    ckpt.save(
                        step=step,
                        model={k: v.detach().cpu() for k, v in model.state_dict().items()},
                        optimizer=opt.state_dict(),
                        scaler=scaler.state_dict(),
                        curves=json.dumps(curves),
                        torch_rng=torch.get_rng_state(),
                    )
            if on_step is not None:
                on_step(step, value)
    finally:
        bar.close()
    ddp.barrier()
    ckpt.remove()
    model.to("cpu").to(memory_format=torch.contiguous_format).eval()
    return TrainResult(
        model=model,
        curves=curves,
        resumed_from=resumed_from,
        seconds=time.perf_counter() - start_time,
        info={
            "patch_px": patch,
            "n_train": int(len(train_idx)),
            "n_val": int(len(val_idx)),
            "validation": held_out,
            "device": str(dev),
            "mixed_precision": use_amp,
            "world_size": n_ranks,
        },
    )
