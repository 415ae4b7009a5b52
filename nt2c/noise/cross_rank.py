"""The GAN on several processes (``torchrun``): cross-rank batch norm and explicitly averaged gradients.

Launched by ``torchrun`` the stage ``train-gan`` trains on N processes (one per GPU, ``cuda:LOCAL_RANK``; NCCL
on CUDA, Gloo on the CPU) with the conventions of :mod:`nt2c.denoiser.training`::

    torchrun --nproc-per-node 4 -m nt2c train-gan --run-dir RUN --profile full

``batch_size`` is the *global* batch (a multiple of N): every rank draws the same seeded batch, latents and
interpolation weights and uses rows ``rank, rank + N, ...``; gradients are averaged across ranks, so an
iteration is the single-process iteration on the same data (to float rounding). Only rank 0 writes the
checkpoint, the model and the report (the others wait at a barrier); every rank resumes from the same
checkpoint, and a checkpoint of a single-process run resumes under ``torchrun`` and vice versa.

Why no :class:`~torch.nn.parallel.DistributedDataParallel`: DDP averages gradients from hooks that fire while
``backward()`` accumulates into ``.grad``; it does not support ``torch.autograd.grad`` and double backward
(pytorch issue 63812: ``backward(create_graph=True)`` through DDP raises; issue 47562: wrong gradients with a
gradient penalty), and the critic is called three times per step and frozen during the generator step, which
DDP's reducer handles only with ``find_unused_parameters``. So, as StyleGAN2-ADA does, each network's
gradients are averaged explicitly after ``backward()`` (:func:`average_gradients`: one ``all_reduce`` of all
its gradients flattened into one buffer).

Batch norm: the generator's batch norm normalises by the statistics of the batch. If each rank used its own
rows, a step would differ from the single-process step and the running statistics would differ between ranks.
:class:`torch.nn.SyncBatchNorm` fixes that on GPUs but refuses CPU tensors (Gloo), so under ``torchrun`` the
generator's layers are replaced by :class:`CrossRankBatchNorm2d` (:func:`to_cross_rank`): it ``all_reduce``-s
the per-channel sums (mean, then centred squares: the *global* batch's statistics), with a differentiable
``all_reduce`` whose backward sums the gradients of the statistics across ranks, so the averaged gradient is
the single-process one. Its running averages are computed from the reduced statistics and so agree on all
ranks. After training every rank re-estimates the statistics (the same latents on all ranks) and rank 0's
parameters and buffers of both networks are broadcast (:func:`broadcast_state`), so all ranks end with
bit-identical weights and buffers.

This module imports torch; :mod:`nt2c.noise.gan` imports it only when it runs under ``torchrun``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["CrossRankBatchNorm2d", "average_gradients", "broadcast_state", "to_cross_rank"]


class _AllReduceSum(torch.autograd.Function):
    """``all_reduce`` (sum) whose backward sums the incoming gradients across the ranks."""

    @staticmethod
    def forward(ctx, tensor):
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


class CrossRankBatchNorm2d(torch.nn.BatchNorm2d):
    """Batch norm over the union of the ranks' batches (the global batch), on CPU and CUDA.

    In training mode inside a process group of several ranks, the per-channel mean and (biased) variance are
    those of all ranks' inputs together: two differentiable ``all_reduce`` calls, of the sums and then of the
    centred squares. The running averages are updated from them like :class:`torch.nn.BatchNorm2d` does
    (unbiased variance), so they agree on every rank. Otherwise (evaluation mode, one process) it is
    :class:`torch.nn.BatchNorm2d`; the state-dict keys are the same.

    Parameters
    ----------
    num_features : int
        Channels ``C`` of the (B, C, H, W) input.
    **kwargs
        As for :class:`torch.nn.BatchNorm2d`.
    """

    def forward(self, x):
        """Normalise ``x`` (B, C, H, W) by the statistics of the global batch."""
        if not (
            self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        ):
            return super().forward(x)
        self._check_input_dim(x)
        n_local = x.shape[0] * x.shape[2] * x.shape[3]
        sums = _AllReduceSum.apply(torch.cat([x.sum(dim=(0, 2, 3)), x.new_tensor([float(n_local)])]))
        n = sums[-1]
        mean = sums[:-1] / n
        centred = x - mean[None, :, None, None]
        var = _AllReduceSum.apply((centred * centred).sum(dim=(0, 2, 3))) / n
        y = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = (
                    1.0 / float(self.num_batches_tracked.item()) if self.momentum is None else self.momentum
                )
                unbiased = var.detach() * (n / (n - 1).clamp_min(1))  # tensors: no device sync
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)
        return y


def average_gradients(module: torch.nn.Module) -> None:
    """Replace each parameter's ``.grad`` by its mean over the ranks (one ``all_reduce``)."""
    params = [p for p in module.parameters() if p.grad is not None]
    if not params:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    offset = 0
    for p in params:
        k = p.grad.numel()
        p.grad.copy_(flat[offset : offset + k].view_as(p.grad))
        offset += k


def broadcast_state(module: torch.nn.Module, src: int = 0) -> None:
    """Overwrite every parameter and buffer with rank ``src``'s (bit-identical modules on all ranks)."""
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=src)


def to_cross_rank(module: torch.nn.Module, *, back: bool = False) -> torch.nn.Module:
    """Swap each ``BatchNorm2d`` of ``module`` for a :class:`CrossRankBatchNorm2d` (``back``: the reverse).

    In place, keeping each layer's parameters and buffers; returns ``module``.
    """
    plain = torch.nn.BatchNorm2d
    src, dst = (CrossRankBatchNorm2d, plain) if back else (plain, CrossRankBatchNorm2d)
    for name, child in module.named_children():
        if type(child) is src:
            new = dst(
                child.num_features,
                eps=child.eps,
                momentum=child.momentum,
                affine=child.affine,
                track_running_stats=child.track_running_stats,
            )
            like = [t for t in [*child.parameters(), *child.buffers()] if t.is_floating_point()]
            if like:  # keep the layer's device and dtype
                new.to(device=like[0].device, dtype=like[0].dtype)
            new.load_state_dict(child.state_dict())
            new.train(child.training)
            setattr(module, name, new)
        else:
            to_cross_rank(child, back=back)
    return module
