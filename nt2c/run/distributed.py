"""Helpers for running nt2c under ``torchrun`` (one process per GPU, :mod:`torch.distributed`).

``torchrun --nproc-per-node N -m nt2c ...`` starts N copies of the command with ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK`` in their environment. These helpers read that environment, start the process group (NCCL on
CUDA, Gloo on the CPU) and give the few collective operations the training and the batch denoiser need. In a
plain single process every helper is a cheap no-op (``world_size() == 1``, ``rank() == 0``), so code written
with them runs unchanged without ``torchrun``.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Sequence
from typing import Any, TypeVar

from nt2c.errors import ConfigError

__all__ = [
    "env_world_size",
    "is_distributed",
    "rank",
    "local_rank",
    "world_size",
    "is_main",
    "init_distributed",
    "cleanup",
    "barrier",
    "broadcast_object",
    "all_reduce_mean",
    "shard",
    "rank_device",
]

T = TypeVar("T")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ConfigError(
            f"environment variable {name}={value!r} is not an integer; unset it or fix it."
        ) from exc


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 when not launched by ``torchrun``)."""
    return max(1, _env_int("WORLD_SIZE", 1))


def _initialized() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def is_distributed() -> bool:
    """Whether this is one of several processes (torchrun's ``WORLD_SIZE > 1`` or a group of size > 1)."""
    return world_size() > 1


def world_size() -> int:
    """Return the number of processes: the group's size when initialised, else ``WORLD_SIZE`` (or 1)."""
    if _initialized():
        import torch.distributed as dist

        return dist.get_world_size()
    return env_world_size()


def rank() -> int:
    """Global rank of this process (0 when not distributed)."""
    if _initialized():
        import torch.distributed as dist

        return dist.get_rank()
    return _env_int("RANK", 0)


def local_rank() -> int:
    """Rank of this process on its node (``LOCAL_RANK``; 0 when not distributed): the GPU it uses."""
    return _env_int("LOCAL_RANK", 0)


def is_main() -> bool:
    """Whether this process is rank 0, the one that writes files."""
    return rank() == 0


def rank_device(device: str = "auto"):
    """Return the torch device of this rank: ``cuda:LOCAL_RANK`` for ``"auto"``/``"cuda"`` under torchrun.

    Parameters
    ----------
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (an explicit index is kept as given).

    Returns
    -------
    torch.device
    """
    import torch

    from nt2c.device import resolve_device

    dev = resolve_device(device)
    if dev.type == "cuda" and env_world_size() > 1 and (device in (None, "auto", "cuda")):
        n_gpus = torch.cuda.device_count()
        if local_rank() >= n_gpus:
            raise ConfigError(
                f"LOCAL_RANK={local_rank()} but only {n_gpus} GPU(s) are visible; start torchrun with "
                f"--nproc-per-node {n_gpus} or fewer."
            )
        dev = torch.device("cuda", local_rank())
    return dev


def init_distributed(device: str = "auto"):
    """Join the ``torchrun`` process group when there is one, and return this rank's device.

    Idempotent: a second call (or a group initialised by the caller) only returns the device. Uses the NCCL
    backend on CUDA and Gloo on the CPU, reading the rendezvous from ``MASTER_ADDR``/``MASTER_PORT`` as set
    by ``torchrun``. The group is destroyed at interpreter exit (or by :func:`cleanup`).

    Parameters
    ----------
    device : str
        As for :func:`rank_device`.

    Returns
    -------
    torch.device
        ``cuda:LOCAL_RANK`` under torchrun on CUDA, else the device ``device`` resolves to.
    """
    import torch
    import torch.distributed as dist

    dev = rank_device(device)
    if env_world_size() <= 1 or _initialized():
        return dev
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; run without torchrun.")
    for name in ("MASTER_ADDR", "MASTER_PORT", "RANK"):
        if name not in os.environ:
            raise ConfigError(
                f"WORLD_SIZE is set but {name} is not; launch with `torchrun --nproc-per-node N`."
            )
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        dist.init_process_group("nccl", device_id=dev)
    else:
        dist.init_process_group("gloo")
    atexit.register(cleanup)
    return dev


def cleanup() -> None:
    """Destroy the process group if one is initialised (safe to call more than once)."""
    if _initialized():
        import torch.distributed as dist

        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank reaches this point (no-op when not distributed)."""
    if _initialized() and world_size() > 1:
        import torch.distributed as dist

        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank (picklable objects; returned unchanged when not distributed)."""
    if not (_initialized() and world_size() > 1):
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_mean(value: float, device=None) -> float:
    """Mean of a float over all ranks (``value`` itself when not distributed)."""
    if not (_initialized() and world_size() > 1):
        return float(value)
    import torch
    import torch.distributed as dist

    t = torch.tensor([float(value)], dtype=torch.float64, device=device or "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item()) / world_size()


def shard(items: Sequence[T], *, rank: int | None = None, world_size: int | None = None) -> list[T]:
    """Return this rank's share of ``items``: elements ``rank, rank + N, rank + 2N, ...`` (round-robin).

    Parameters
    ----------
    items : sequence
    rank, world_size : int, optional
        Default: this process's rank and the number of processes.

    Returns
    -------
    list
        Disjoint across ranks; their union is ``items``.
    """
    r = globals()["rank"]() if rank is None else int(rank)
    n = globals()["world_size"]() if world_size is None else int(world_size)
    if n < 1 or not 0 <= r < n:
        raise ConfigError(f"rank {r} of world size {n}: need 0 <= rank < world_size.")
    return list(items[r::n])
