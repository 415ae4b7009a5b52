"""The GAN noise synthesizer: WGAN-GP training on extracted noise patches, and bulk sampling.

NT2C learns the noise of the user's micrographs from the few pure-noise patches that the extraction stage
finds, and generates as many new noise patches as the re-weighting stage needs (paper section 2.1.2, Eq. 2).

Training (:func:`train_gan`)
----------------------------
The critic ``D`` minimises Eq. 2 of the paper (Gulrajani et al. 2017)::

    L_D = E[D(fake)] - E[D(real)] + lambda * E[(||grad_xhat D(xhat)||_2 - 1)^2],
    xhat = eps * real + (1 - eps) * fake,   eps ~ U(0, 1) per sample,

where the norm is taken **per sample over all of (C, H, W)** (:func:`gradient_penalty`); the reference code
takes it over dim=1 (the single channel), which penalises every pixel's derivative separately. The generator
``G`` minimises ``-E[D(G(z))]``; ``n_critic`` critic steps precede each generator step; both use Adam
(paper and full profile: lr 1e-4 and betas (0.5, 0.9) as in Gulrajani et al.; the reference code uses beta2 =
0.999; the quick profile uses lr 1e-3 and a small width so that a few hundred iterations on a CPU learn the
noise colour and histogram).

Data: the patches are z-scored with the *training set's* global mean and standard deviation (one scalar each,
stored in ``gan.json`` and undone by :func:`sample_noise`); each batch holds ``batch_size`` distinct patches,
randomly cropped to the GAN size, randomly rotated by a multiple of 90 degrees and flipped. Crops preserve
the statistics of stationary noise; rotations and flips preserve those of isotropic noise (set
``augment=False`` for a detector with direction-dependent correlations).

Everything is seeded (a CPU ``torch.Generator`` draws batches, latents and interpolation weights, so a CPU
and a CUDA run see the same data); a checkpoint (``RUN/checkpoints/gan.pt``: networks, optimisers, random
state, curves) is written every ``checkpoint_every`` iterations, and a rerun resumes from it -- bit for bit
the run it continues, on the same device.

After training, the generator's batch-norm statistics are re-estimated over many batches at the final weights
(the running averages kept during training lag behind the changing generator), and the generator is used in
evaluation mode: each generated patch then depends only on its own latent vector, not on the batch.

Multi-GPU (``torchrun``)
------------------------
Launched by ``torchrun`` the stage trains on N processes (one per GPU, ``cuda:LOCAL_RANK``; NCCL on CUDA,
Gloo on the CPU) with the conventions of :mod:`nt2c.denoiser.training`::

    torchrun --nproc-per-node 4 -m nt2c train-gan --run-dir RUN --profile full

``batch_size`` is the *global* batch (a multiple of N): every rank draws the same seeded batch, latents and
interpolation weights and uses rows ``rank, rank + N, ...``; gradients are averaged across ranks, so an
iteration is the single-process iteration on the same data (to float rounding). Only rank 0 writes the
checkpoint, the model and the report (the others wait at a barrier); every rank resumes from the same
checkpoint, and a checkpoint of a single-process run resumes under ``torchrun`` and vice versa.

Why no :class:`~torch.nn.parallel.DistributedDataParallel`: DDP averages gradients from hooks that fire
while ``backward()`` accumulates into ``.grad``; it does not support ``torch.autograd.grad`` and double
backward (pytorch issue 63812: ``backward(create_graph=True)`` through DDP raises; issue 47562: wrong
gradients with a gradient penalty), and the critic is called three times per step and frozen during the
generator step, which DDP's reducer handles only with ``find_unused_parameters``. So, as StyleGAN2-ADA does,
each network's gradients are averaged explicitly after ``backward()``: one ``all_reduce`` of all its
gradients flattened into one buffer.

Batch norm: the generator's batch norm normalises by the statistics of the batch. If each rank used its
own rows, a step would differ from the single-process step and the running statistics would differ between
ranks. :class:`torch.nn.SyncBatchNorm` fixes that on GPUs but refuses CPU tensors (Gloo), so under
``torchrun`` the generator's layers are replaced by :class:`CrossRankBatchNorm2d`: it ``all_reduce``-s the
per-channel sums (mean, then centred squares: the *global* batch's statistics), with a differentiable
``all_reduce`` whose backward sums the gradients of the statistics across ranks, so the averaged gradient is
the single-process one. Its running averages are computed from the reduced statistics and so agree on all
ranks. After training, every rank re-estimates the statistics (:func:`recalibrate_batchnorm`, the same
latents on all ranks) and rank 0's parameters and buffers of both networks are broadcast, so all ranks end
with bit-identical weights and buffers.

Scoring (:func:`noise_fidelity_report`): a share of the patches (``holdout_fraction``) never enters training;
the generated noise, white Gaussian noise of the held-out mean and variance, the simulator's own noise and
crops of the training patches (the floor set by the finite sample sizes) are each compared with them by
:func:`nt2c.noise.fidelity.noise_fidelity`.

Limits: the DCGAN generator maps one latent *vector* to a whole patch, so stationarity (the same
statistics everywhere in the patch) must be learnt, and stride-2 transposed convolutions favour periodic
patterns; a short training leaves both visible (patches with calmer and busier regions, peaks in the power
spectrum). The fidelity report measures them; longer training (full profile) is the first remedy to try.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nt2c.config import GanConfig, stage_config
from nt2c.errors import InputError, StageError
from nt2c.io import atomic_path, read_json, read_mrc, validate_image, write_json
from nt2c.progress import progress

__all__ = [
    "gradient_penalty",
    "train_gan",
    "TrainedGan",
    "save_generator",
    "load_generator",
    "sample_noise",
    "sample_noise_fields",
    "resample_patches",
    "blend_noise_patches",
    "split_patches",
    "fidelity_sets",
    "noise_fidelity_report",
    "train_gan_stage",
]

log = logging.getLogger(__name__)

_CHECKPOINT_VERSION = 1
# settings that may change between a checkpoint and the run resuming from it
_RESUMABLE = ("iterations", "checkpoint_every", "device", "holdout_fraction", "n_eval")


# ---------------------------------------------------------------------------------------------------------
# loss
# ---------------------------------------------------------------------------------------------------------
def gradient_penalty(critic, real, fake, *, eps=None, generator=None, return_norms: bool = False):
    """Compute the WGAN-GP gradient penalty, per sample over (C, H, W).

    Parameters
    ----------
    critic : callable
        Maps a (B, C, H, W) tensor to (B,) scores (or (B, 1)).
    real, fake : torch.Tensor, shape (B, C, H, W)
        Real and generated samples (``fake`` detached from the generator).
    eps : torch.Tensor, shape (B,) or (B, 1, 1, 1), optional
        Interpolation weights in [0, 1]; drawn uniformly when omitted.
    generator : torch.Generator, optional
        CPU generator for ``eps``.
    return_norms : bool
        Also return the per-sample gradient norms.

    Returns
    -------
    penalty : torch.Tensor, scalar
        ``mean_i (||grad D(xhat_i)||_2 - 1)^2`` with the norm over all of sample i's values.
    norms : torch.Tensor, shape (B,)
        Only with ``return_norms``.
    """
    import torch

    if real.shape != fake.shape:
        raise ValueError(f"real {tuple(real.shape)} and fake {tuple(fake.shape)} batches differ in shape")
    b = real.shape[0]
    if eps is None:
        eps = torch.rand(b, generator=generator)
    eps = eps.reshape(b, *([1] * (real.dim() - 1))).to(device=real.device, dtype=real.dtype)
    xhat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    scores = critic(xhat)
    (grad,) = torch.autograd.grad(scores.sum(), xhat, create_graph=True)
    norms = grad.reshape(b, -1).norm(2, dim=1)
    penalty = ((norms - 1.0) ** 2).mean()
    return (penalty, norms) if return_norms else penalty


# ---------------------------------------------------------------------------------------------------------
# several processes (torchrun)
# ---------------------------------------------------------------------------------------------------------
_CLASSES: dict = {}


def _cross_rank_classes() -> dict:
    """Build the torch classes on first use (importing this module does not import torch)."""
    if _CLASSES:
        return _CLASSES
    import torch
    import torch.distributed as dist

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

        In training mode inside a process group of several ranks, the per-channel mean and (biased)
        variance are those of all ranks' inputs together: two differentiable ``all_reduce`` calls, of the
        sums and then of the centred squares. The running averages are updated from them like
        :class:`torch.nn.BatchNorm2d` does (unbiased variance), so they agree on every rank. Otherwise
        (evaluation mode, one process) it is :class:`torch.nn.BatchNorm2d`; the state-dict keys are the same.

        Parameters
        ----------
        num_features : int
            Channels ``C`` of the (B, C, H, W) input.
        **kwargs
            As for :class:`torch.nn.BatchNorm2d`.
        """

        def forward(self, x):
            if not (
                self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
            ):
                return super().forward(x)
            self._check_input_dim(x)
            n_local = x.shape[0] * x.shape[2] * x.shape[3]
            local = torch.cat([x.sum(dim=(0, 2, 3)), x.new_tensor([float(n_local)])])
            sums = _AllReduceSum.apply(local)
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
                        1.0 / float(self.num_batches_tracked.item())
                        if self.momentum is None
                        else self.momentum
                    )
                    unbiased = var.detach() * (n / (n - 1).clamp_min(1))  # tensors: no device sync
                    self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                    self.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)
            return y

    CrossRankBatchNorm2d.__qualname__ = "CrossRankBatchNorm2d"  # nt2c.noise.gan.CrossRankBatchNorm2d

    def average_gradients(module) -> None:
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

    def broadcast_state(module, src: int = 0) -> None:
        """Overwrite every parameter and buffer with rank ``src``'s (bit-identical modules on all ranks)."""
        with torch.no_grad():
            for t in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(t.data, src=src)

    def to_cross_rank(module, *, back: bool = False):
        """Swap each ``BatchNorm2d`` of ``module`` for a ``CrossRankBatchNorm2d`` (``back``: the reverse).

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

    _CLASSES.update(
        CrossRankBatchNorm2d=CrossRankBatchNorm2d,
        average_gradients=average_gradients,
        broadcast_state=broadcast_state,
        to_cross_rank=to_cross_rank,
    )
    return _CLASSES


def __getattr__(name: str):
    if name == "CrossRankBatchNorm2d":
        return _cross_rank_classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------------------
def _check_patches(patches, settings: GanConfig, *, name: str = "noise patches") -> np.ndarray:
    arr = validate_image(patches, name=name, ndim=(2, 3))
    if arr.ndim == 2:
        arr = arr[None]
    n, h, w = arr.shape
    if min(h, w) < settings.patch_px:
        raise InputError(
            f"{name} are {h} x {w} px, smaller than the GAN's patch_px = {settings.patch_px}; extract larger "
            f"patches (extract-noise patch_size >= {settings.patch_px}) or train a smaller GAN (patch_px=64)."
        )
    if n < settings.batch_size:
        raise InputError(
            f"{n} {name} are too few for a batch of {settings.batch_size} distinct patches; extract more "
            "(more micrographs, a lower extract-noise threshold) or lower train-gan batch_size."
        )
    if float(arr.std()) == 0.0:
        raise InputError(f"{name} are constant; noise patches must vary (check the extraction).")
    return arr


def split_patches(n: int, holdout_fraction: float, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split ``n`` patch indices into training and held-out sets (seeded).

    Returns
    -------
    train, heldout : numpy.ndarray of int
        Sorted indices; ``heldout`` holds ``round(holdout_fraction * n)`` of them (at least one when the
        fraction is positive and ``n >= 2``).
    """
    n_hold = int(round(holdout_fraction * n))
    if holdout_fraction > 0 and n >= 2:
        n_hold = max(1, n_hold)
    n_hold = min(n_hold, n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_hold:]), np.sort(perm[:n_hold])


class _Batches:
    """Random augmented crops of z-scored patches, drawn with a CPU torch.Generator.

    Every call draws the whole (global) batch of ``batch_size``; ``rows`` selects the rows returned (under
    torchrun ``slice(rank, None, world_size)``), so the random stream does not depend on the rank.
    """

    def __init__(
        self, data, patch_px: int, batch_size: int, augment: bool, generator, device, rows=slice(None)
    ):
        self.data = data  # (n, h, w) float32 tensor on device
        self.d = patch_px
        self.b = batch_size
        self.augment = augment
        self.g = generator
        self.device = device
        self.rows = rows
        self.order: list[int] = []

    def __call__(self):
        import torch

        n, h, w = self.data.shape
        if len(self.order) < self.b:
            self.order += torch.randperm(n, generator=self.g).tolist()
        idx, self.order = self.order[: self.b], self.order[self.b :]
        ys = torch.randint(0, h - self.d + 1, (self.b,), generator=self.g).tolist()
        xs = torch.randint(0, w - self.d + 1, (self.b,), generator=self.g).tolist()
        rots = torch.randint(0, 4, (self.b,), generator=self.g).tolist()
        flips = torch.randint(0, 2, (self.b,), generator=self.g).tolist()
        crops = []
        r = self.rows
        for i, y, x, k, f in zip(idx[r], ys[r], xs[r], rots[r], flips[r]):
            c = self.data[i, y : y + self.d, x : x + self.d]
            if self.augment:
                c = torch.rot90(c, k, dims=(0, 1))
                if f:
                    c = torch.flip(c, dims=(1,))
            crops.append(c)
        return torch.stack(crops)[:, None].contiguous()


# ---------------------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------------------
@dataclass
class TrainedGan:
    """Result of :func:`train_gan`.

    Attributes
    ----------
    generator, critic : torch.nn.Module
        The networks (generator in evaluation mode, batch-norm statistics recalibrated).
    mean, std : float
        z-score of the training patches (their units).
    curves : dict of str to list
        Per generator iteration: ``iteration``, ``critic_loss``, ``generator_loss``, ``wasserstein_estimate``
        (``E[D(real)] - E[D(fake)]``, mean over the critic steps), ``gradient_penalty``, ``grad_norm``
        (mean per-sample critic gradient norm at the interpolates), ``seconds`` (cumulative wall time).
    settings : GanConfig
    resumed_from : int
        Iteration the run resumed from (0 for a fresh run).
    """

    generator: object
    critic: object
    mean: float
    std: float
    curves: dict = field(default_factory=dict)
    settings: GanConfig | None = None
    resumed_from: int = 0


def _fingerprint(settings: GanConfig, data: np.ndarray) -> dict:
    keep = {k: v for k, v in settings.to_dict().items() if k not in _RESUMABLE}
    keep["data_sha1"] = hashlib.sha1(np.ascontiguousarray(data).tobytes()).hexdigest()
    keep["data_shape"] = list(data.shape)
    keep["version"] = _CHECKPOINT_VERSION
    return keep


def train_gan(
    patches,
    settings: GanConfig | None = None,
    *,
    checkpoint_path: str | os.PathLike | None = None,
    device: str | None = None,
    on_iteration: Callable[[int, dict], None] | None = None,
) -> TrainedGan:
    """Train the WGAN-GP noise synthesizer on a stack of noise patches.

    Under ``torchrun`` every rank calls this function with the same arguments; see "Multi-GPU" in the module
    docstring (``batch_size`` is the global batch, only rank 0 writes the checkpoint).

    Parameters
    ----------
    patches : array_like, shape (n, h, w)
        Pure-noise patches (any units, e.g. counts/px), ``h, w >= settings.patch_px``, ``n >= batch_size``.
    settings : GanConfig, optional
        Network sizes and optimisation (default: the quick profile's).
    checkpoint_path : path-like, optional
        Where to keep resumable state; an existing compatible checkpoint is resumed.
    device : str, optional
        Overrides ``settings.device``.
    on_iteration : callable, optional
        ``on_iteration(iteration, values)`` after each generator iteration (and after its checkpoint);
        ``iteration`` counts completed iterations, ``values`` maps the curve names to this iteration's value.

    Returns
    -------
    TrainedGan
        Identical (weights and batch-norm buffers) on every rank under ``torchrun``.
    """
    import torch

    from nt2c.noise.networks import Critic, Generator
    from nt2c.run import distributed as ddp

    settings = settings or stage_config("train-gan", "quick")
    data = _check_patches(patches, settings)
    dev = ddp.init_distributed(device or settings.device)  # resolve_device() when not under torchrun
    n_ranks, this_rank = ddp.world_size(), ddp.rank()
    if n_ranks > 1 and settings.batch_size % n_ranks:
        raise InputError(
            f"train-gan batch_size={settings.batch_size} is the global batch and must be a multiple of the "
            f"{n_ranks} processes; use batch_size={n_ranks * max(1, settings.batch_size // n_ranks)}."
        )
    cross = _cross_rank_classes() if n_ranks > 1 else None
    rows = slice(this_rank, None, n_ranks) if n_ranks > 1 else slice(None)  # this rank's rows of a batch
    mean = float(data.mean(dtype=np.float64))
    std = float(data.std(dtype=np.float64))
    z_data = torch.from_numpy(((data - mean) / std).astype(np.float32)).to(dev)

    torch.manual_seed(settings.seed)
    gen = Generator(
        patch_px=settings.patch_px,
        latent_dim=settings.latent_dim,
        width=settings.width,
        spatial_latent=settings.spatial_latent,
    ).to(dev)
    critic = Critic(patch_px=settings.patch_px, width=settings.width).to(dev)
    if cross is not None:  # batch statistics of the global batch (before the optimiser sees the parameters)
        cross["to_cross_rank"](gen)
    betas = (settings.beta1, settings.beta2)
    opt_g = torch.optim.Adam(gen.parameters(), lr=settings.lr, betas=betas)
    opt_d = torch.optim.Adam(critic.parameters(), lr=settings.lr, betas=betas)
    rng = torch.Generator().manual_seed(settings.seed)
    names = (
        "iteration",
        "critic_loss",
        "generator_loss",
        "wasserstein_estimate",
        "gradient_penalty",
        "grad_norm",
        "seconds",
    )
    curves: dict[str, list] = {k: [] for k in names}
    start = 0
    fingerprint = _fingerprint(settings, data)
    ckpt = Path(checkpoint_path) if checkpoint_path is not None else None
    if ckpt is not None and ckpt.is_file():
        try:
            state = torch.load(ckpt, map_location=dev, weights_only=True)
        except Exception as exc:  # corrupt or foreign file
            log.warning("ignoring unreadable GAN checkpoint %s (%s); training from scratch", ckpt, exc)
            state = None
        if (
            state is not None
            and state.get("fingerprint") == fingerprint
            and state["iteration"] <= settings.iterations
        ):
            gen.load_state_dict(state["generator"])
            critic.load_state_dict(state["critic"])
            opt_g.load_state_dict(state["opt_g"])
            opt_d.load_state_dict(state["opt_d"])
            rng.set_state(state["rng"].cpu())  # map_location moved it
            curves = {k: list(state["curves"][k]) for k in names}
            start = int(state["iteration"])
            log.info("resuming GAN training from iteration %d (%s)", start, ckpt)
        elif state is not None:
            log.info("GAN checkpoint %s was made with other settings or data; training from scratch", ckpt)
    if cross is not None:
        import torch.distributed as dist

        starts: list = [None] * n_ranks
        dist.all_gather_object(starts, start)
        if len(set(starts)) > 1:
            raise StageError(
                f"train-gan: the ranks found different checkpoints in {ckpt} (iterations {starts}); every "
                "rank must see the same file system (delete the checkpoint to start afresh)."
            )
        cross["broadcast_state"](gen)  # the same start on every rank, whatever their initialisation
        cross["broadcast_state"](critic)

    batches = _Batches(z_data, settings.patch_px, settings.batch_size, settings.augment, rng, dev, rows)
    b = settings.batch_size

    def latent():
        return torch.randn(b, gen.latent_size, generator=rng)[rows].to(dev)

    def save_checkpoint(iteration: int) -> None:
        if ckpt is None:
            return
        if this_rank != 0:  # rank 0 writes; the others wait until the file is complete
            ddp.barrier()
            return
        state = {
            "fingerprint": fingerprint,
            "iteration": iteration,
            "generator": gen.state_dict(),
            "critic": critic.state_dict(),
            "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict(),
            "rng": rng.get_state(),
            "curves": curves,
        }
        with atomic_path(ckpt) as tmp:
            torch.save(state, tmp)
        ddp.barrier()

    gen.train()
    critic.train()
    t0 = time.perf_counter() - (curves["seconds"][-1] if curves["seconds"] else 0.0)
    quiet = {"disable": True} if this_rank else {}  # one progress bar, rank 0's
    bar = progress(
        range(start, settings.iterations), initial=start, total=settings.iterations, desc="WGAN-GP", **quiet
    )
    for it in bar:
        d_losses, w_est, gps, gnorms = [], [], [], []
        for _ in range(settings.n_critic):
            real = batches()
            with torch.no_grad():
                fake = gen(latent())
            eps = torch.rand(b, generator=rng)[rows]
            d_real = critic(real).mean()
            d_fake = critic(fake).mean()
            gp, norms = gradient_penalty(critic, real, fake, eps=eps, return_norms=True)
            loss_d = d_fake - d_real + settings.gp_lambda * gp
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            if cross is not None:
                cross["average_gradients"](critic)
            opt_d.step()
            d_losses.append(loss_d.item())
            w_est.append((d_real - d_fake).item())
            gps.append(gp.item())
            gnorms.append(norms.mean().item())
        for p in critic.parameters():
            p.requires_grad_(False)
        loss_g = -critic(gen(latent())).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        if cross is not None:
            cross["average_gradients"](gen)
        opt_g.step()
        for p in critic.parameters():
            p.requires_grad_(True)
        values = [np.mean(d_losses), loss_g.item(), np.mean(w_est), np.mean(gps), np.mean(gnorms)]
        if cross is not None:  # means over the ranks' rows: the values of the global batch
            import torch.distributed as dist

            t = torch.tensor(values, dtype=torch.float64, device=dev)
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            values = (t / n_ranks).tolist()
        for key, value in zip(names, (it + 1, *values, time.perf_counter() - t0)):
            curves[key].append(float(value))
        if not all(math.isfinite(curves[k][-1]) for k in ("critic_loss", "generator_loss")):
            raise StageError(
                f"GAN training diverged at iteration {it + 1} (loss not finite); "
                f"lower lr (now {settings.lr}) "
                "or check the patches for outliers."
            )
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(
                W=f"{curves['wasserstein_estimate'][-1]:.3f}", gp=f"{curves['gradient_penalty'][-1]:.3f}"
            )
        if (it + 1) % settings.checkpoint_every == 0 or it + 1 == settings.iterations:
            save_checkpoint(it + 1)
        if on_iteration is not None:
            on_iteration(it + 1, {k: curves[k][-1] for k in names})

    if cross is not None:  # plain batch norm again: each rank recalibrates on the whole (same) batches
        cross["to_cross_rank"](gen, back=True)
    recalibrate_batchnorm(gen, gen.latent_size, batch_size=max(b, 32), batches=8, generator=rng, device=dev)
    if cross is not None:  # guard against non-deterministic kernels: rank 0's weights and buffers everywhere
        cross["broadcast_state"](gen)
        cross["broadcast_state"](critic)
    return TrainedGan(
        generator=gen.eval(),
        critic=critic.eval(),
        mean=mean,
        std=std,
        curves=curves,
        settings=settings,
        resumed_from=start,
    )


def recalibrate_batchnorm(
    gen, latent_dim: int, *, batch_size: int = 32, batches: int = 8, generator=None, device=None
) -> None:
    """Re-estimate the generator's batch-norm statistics at its current weights (cumulative average).

    Parameters
    ----------
    gen : torch.nn.Module
        The generator; left in evaluation mode.
    latent_dim : int
        Length of the generator's latent vectors (its ``latent_size``).
    batch_size, batches : int
        ``batches`` forward passes of ``batch_size`` latent vectors.
    generator : torch.Generator, optional
        CPU generator for the latents.
    """
    import torch

    bns = [m for m in gen.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the passes below
    gen.train()
    with torch.no_grad():
        for _ in range(batches):
            gen(torch.randn(batch_size, latent_dim, generator=generator).to(device))
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    gen.eval()


# ---------------------------------------------------------------------------------------------------------
# saving, loading, sampling
# ---------------------------------------------------------------------------------------------------------
def save_generator(
    path: str | os.PathLike, trained: TrainedGan, *, extra: dict | None = None
) -> tuple[Path, Path]:
    """Write the generator to ``path`` (safetensors) and its sidecar ``path.with_suffix('.json')``.

    The sidecar holds the architecture, the normalisation (``mean``, ``std``: ``patch = std * G(z) + mean``)
    and the training settings, plus ``extra``.
    """
    from safetensors.torch import save_file

    from nt2c.noise.networks import gan_architecture

    path = Path(path)
    s = trained.settings
    tensors = {k: v.detach().cpu().contiguous() for k, v in trained.generator.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "model": "nt2c.noise.networks.Generator"})
    sidecar = {
        "model": "gan-generator",
        "architecture": gan_architecture(
            patch_px=s.patch_px, latent_dim=s.latent_dim, width=s.width, spatial_latent=s.spatial_latent
        ),
        "normalisation": {
            "kind": "z-score over the training patches",
            "mean": trained.mean,
            "std": trained.std,
            "inverse": "patch = std * G(z) + mean",
        },
        "latent": "standard normal",
        "settings": s.to_dict(),
        "iterations_done": len(trained.curves.get("iteration", [])),
        **(extra or {}),
    }
    json_path = write_json(path.with_suffix(".json"), sidecar)
    return path, json_path


def _model_paths(model_path) -> tuple[Path, Path]:
    path = Path(model_path)
    if path.is_dir():  # a run directory
        path = path / "models" / "gan.safetensors"
    if path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    sidecar = path.with_suffix(".json")
    if not path.is_file() or not sidecar.is_file():
        raise InputError(
            f"no trained GAN at {path} (with sidecar {sidecar.name}); "
            "train one with `nt2c train-gan --run RUN`."
        )
    return path, sidecar


def load_generator(model_path, *, device: str = "auto"):
    """Load a trained generator and its sidecar.

    Parameters
    ----------
    model_path : path-like
        ``gan.safetensors`` (or its ``.json`` sidecar, or a run directory).
    device : str

    Returns
    -------
    generator : nt2c.noise.networks.Generator
        In evaluation mode, on ``device``.
    meta : dict
        The sidecar (architecture, normalisation, settings).
    """
    from safetensors.torch import load_file

    from nt2c.device import resolve_device
    from nt2c.noise.networks import Generator

    path, sidecar = _model_paths(model_path)
    meta = read_json(sidecar)
    try:
        arch = meta["architecture"]
        norm = meta["normalisation"]
        gen = Generator(
            patch_px=arch["patch_px"],
            latent_dim=arch["latent_dim"],
            width=arch["width"],
            spatial_latent=bool(arch.get("spatial_latent", False)),
        )
        float(norm["mean"]), float(norm["std"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{sidecar} is not a GAN sidecar ({exc!r} missing); train the GAN again.") from exc
    try:
        state = load_file(str(path))
        gen.load_state_dict(state)
    except Exception as exc:
        raise InputError(
            f"{path} does not hold the generator described in {sidecar.name} ({exc}); train the GAN again."
        ) from exc
    dev = resolve_device(device)
    return gen.to(dev).eval(), meta


def sample_noise(
    model_path, n: int, *, seed: int = 0, device: str = "auto", batch_size: int = 256
) -> np.ndarray:
    """Generate noise patches with a trained GAN.

    Parameters
    ----------
    model_path : path-like
        ``RUN/models/gan.safetensors`` (or its sidecar, or the run directory).
    n : int
        Number of patches.
    seed : int
        Seed of the latent vectors; the same seed gives the same patches for any ``batch_size``.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda[:N]"``.
    batch_size : int
        Patches per forward pass (memory only).

    Returns
    -------
    numpy.ndarray, float32, shape (n, d, d)
        Noise in the units of the training patches (``std * G(z) + mean``).
    """
    import torch

    if int(n) < 1:
        raise InputError(f"n = {n}: ask for at least one noise patch.")
    if int(batch_size) < 1:
        raise InputError(f"batch_size = {batch_size} must be at least 1.")
    n, batch_size = int(n), int(batch_size)
    gen, meta = load_generator(model_path, device=device)
    dev = next(gen.parameters()).device
    mean, std = float(meta["normalisation"]["mean"]), float(meta["normalisation"]["std"])
    d = gen.patch_px
    out = np.empty((n, d, d), dtype=np.float32)
    rng = torch.Generator().manual_seed(int(seed))
    block = 4096  # latents are drawn in fixed blocks, so batch_size does not change them
    with torch.no_grad():
        for b0 in range(0, n, block):
            z_block = torch.randn(block, gen.latent_size, generator=rng)[: min(block, n - b0)]
            for s0 in range(0, z_block.shape[0], batch_size):
                z = z_block[s0 : s0 + batch_size].to(dev)
                x = gen(z)[:, 0].float().cpu().numpy()
                out[b0 + s0 : b0 + s0 + len(x)] = x * std + mean
    return out


def blend_noise_patches(patches, size: int) -> np.ndarray:
    """Assemble noise fields larger than the patches by power-preserving overlap blending.

    The GAN generates ``d x d`` patches; the fine denoiser learns more when it trains on larger crops (it then
    sees the noise's low frequencies and the context the U-Net's five poolings need). Each field is a grid of
    independent patches at a stride of ``d / 2``, each weighted by the separable window
    ``w(t) = sin(pi (t + 1/2) / d)``, ``t = 0 .. d-1``, and summed. Two neighbouring windows satisfy
    ``w(t)^2 + w(t + d/2)^2 = 1``, so at every pixel the squared weights of the (four) overlapping patches sum
    to one: for independent zero-mean patches the blend keeps the variance everywhere and, at lags small
    against ``d``, the autocorrelation (the power spectrum), without seams. Structure at scales beyond ``d``
    is not created. The grid starts half a patch outside the field, so the border is blended like the inside.

    Parameters
    ----------
    patches : array_like, shape (n_fields * k, d, d)
        Noise patches (``d`` even), consumed in order, ``k = tiles_per_field(size, d)`` per field. They are
        centred on their common mean before blending and the mean is added back.
    size : int
        Side of the fields (px), ``size >= d``.

    Returns
    -------
    numpy.ndarray, float32, shape (n_fields, size, size)

    Raises
    ------
    InputError
        Odd ``d``, ``size < d``, or a number of patches that is not a multiple of ``k``.
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
    mean = float(patches.mean(dtype=np.float64))
    window = np.sin(np.pi * (np.arange(d) + 0.5) / d)
    weight = (window[:, None] * window[None, :]).astype(np.float32)
    canvas_px = (per_axis + 1) * half
    fields = np.empty((n // k, size, size), dtype=np.float32)
    for f in range(n // k):
        canvas = np.zeros((canvas_px, canvas_px), dtype=np.float32)
        tiles = patches[f * k : (f + 1) * k]
        for i in range(per_axis):
            for j in range(per_axis):
                canvas[i * half : i * half + d, j * half : j * half + d] += weight * (
                    tiles[i * per_axis + j] - mean
                )
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
    _, sidecar = _model_paths(model_path)
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


# ---------------------------------------------------------------------------------------------------------
# fidelity report
# ---------------------------------------------------------------------------------------------------------
def _simulator_noise(run, d: int) -> tuple[np.ndarray | None, str]:
    sim = run.path / "simulated"
    noisy_p, clean_p = sim / "pairs_noisy.mrcs", sim / "pairs_clean.mrcs"
    if not (noisy_p.is_file() and clean_p.is_file()):
        return None, "no RUN/simulated/pairs_noisy.mrcs and pairs_clean.mrcs"
    noisy, _ = read_mrc(noisy_p)
    clean, _ = read_mrc(clean_p)
    if noisy.shape != clean.shape or noisy.ndim != 3:
        return None, f"simulated pairs have mismatched shapes {noisy.shape} and {clean.shape}"
    if min(noisy.shape[1:]) < d:
        return None, f"simulated pairs ({noisy.shape[1]} px) are smaller than the GAN patches ({d} px)"
    return noisy - clean, "RUN/simulated/pairs_noisy.mrcs - pairs_clean.mrcs"


def fidelity_sets(
    run, *, model_path=None, n: int | None = None, seed: int | None = None, device: str = "auto"
) -> tuple[dict[str, np.ndarray], dict]:
    """Rebuild the patch sets scored in ``RUN/report/noise_fidelity.json``.

    Parameters
    ----------
    run : RunDir or path-like
    model_path : path-like, optional
        Default ``RUN/models/gan.safetensors``.
    n : int, optional
        Patches per set (default: the GAN's ``n_eval`` setting).
    seed : int, optional
        Default: the GAN's training seed.
    device : str

    Returns
    -------
    sets : dict of str to numpy.ndarray, each (n, d, d) float32
        ``"real (held-out)"``: random crops of the held-out patches (never seen in training);
        ``"gan"``: generated; ``"simulator"`` (when the run has simulated pairs): the simulator's noise
        ``noisy - clean``, crops shifted to the held-out mean (the difference is zero-mean by construction);
        ``"real (train)"``: crops of the training patches -- the score a perfect model would get given the
        finite sample sizes.
    info : dict
        Where each set came from.
    """
    from nt2c.noise.fidelity import random_crops
    from nt2c.run.rundir import RunDir

    run = run if isinstance(run, RunDir) else RunDir(run)
    model_path = model_path or run.path / "models" / "gan.safetensors"
    _, sidecar = _model_paths(model_path)
    meta = read_json(sidecar)
    s = meta["settings"]
    d = int(meta["architecture"]["patch_px"])
    n = int(n or s.get("n_eval", 256))
    seed = int(s["seed"] if seed is None else seed)
    patches_path = run.path / "noise" / "patches.mrcs"
    patches, _ = read_mrc(patches_path)
    if patches.ndim == 2:
        patches = patches[None]
    split = meta.get("split", {})
    heldout = np.asarray(split.get("heldout", []), dtype=int)
    train = np.asarray(split.get("train", range(len(patches))), dtype=int)
    if heldout.size == 0:
        raise StageError(
            "the GAN was trained without held-out patches (holdout_fraction = 0); "
            "train it again with holdout_fraction > 0 to score it."
        )
    if max(heldout.max(), train.max()) >= len(patches):
        raise StageError(f"{patches_path} changed since the GAN was trained; run `nt2c train-gan --force`.")
    # never more crops than distinct crop positions: patches of exactly d px are each used once
    positions = (patches.shape[1] - d + 1) * (patches.shape[2] - d + 1)
    n_real = min(n, len(heldout) * positions)
    n = min(n, len(train) * positions)
    real = random_crops(patches[heldout], d, n_real, seed=seed + 1)
    sets = {"real (held-out)": real, "gan": sample_noise(model_path, n, seed=seed + 2, device=device)}
    info = {
        "real (held-out)": f"{len(heldout)} held-out patches of {patches_path.name}, "
        f"{n_real} random {d} px crops",
        "gan": f"{n} patches from {Path(model_path).name}",
    }
    sim, why = _simulator_noise(run, d)
    if sim is not None:
        crops = random_crops(sim, d, n, seed=seed + 3)
        shift = float(real.mean(dtype=np.float64) - crops.mean(dtype=np.float64))
        sets["simulator"] = (crops + shift).astype(np.float32)
        info["simulator"] = f"{why}, {n} random {d} px crops, shifted by {shift:.4g} to the held-out mean"
    else:
        info["simulator"] = f"not available: {why}"
    sets["real (train)"] = random_crops(patches[train], d, n, seed=seed + 4)
    info["real (train)"] = (
        f"{len(train)} training patches, {n} random {d} px crops (what a perfect model scores "
        "with these sample sizes)"
    )
    info["white_gaussian"] = "white Gaussian noise with the held-out pixel mean and variance"
    return sets, info


def noise_fidelity_report(
    run,
    *,
    model_path=None,
    n: int | None = None,
    seed: int | None = None,
    device: str = "auto",
    window: int = 3,
) -> dict:
    """Score the GAN and the baselines against the held-out real patches.

    Returns
    -------
    dict
        ``rows`` (model name to :func:`nt2c.noise.fidelity.noise_fidelity` result: ``gan``, ``white_gaussian``,
        ``simulator`` when available, ``real (train)``), ``sources`` (where each set came from), ``patch_px``,
        ``n_real`` (held-out crops), ``n_per_model`` (patches per scored set), ``window``.
    """
    from nt2c.noise.fidelity import fidelity_table

    sets, info = fidelity_sets(run, model_path=model_path, n=n, seed=seed, device=device)
    real = sets.pop("real (held-out)")
    ordered = {
        "gan": sets["gan"],
        "white_gaussian": None,
        "simulator": sets.get("simulator"),
        "real (train)": sets["real (train)"],
    }
    if seed is None:
        seed = int(
            read_json(_model_paths(model_path or Path(run) / "models" / "gan.safetensors")[1])["settings"][
                "seed"
            ]
        )
    rows = fidelity_table(
        real, {k: v for k, v in ordered.items() if k != "white_gaussian"}, window=window, seed=seed + 5
    )
    rows = {k: rows[k] for k in ordered if k in rows}
    return {
        "reference": info["real (held-out)"],
        "sources": info,
        "patch_px": int(real.shape[1]),
        "n_real": int(real.shape[0]),
        "n_per_model": int(sets["gan"].shape[0]),
        "window": window,
        "rows": rows,
    }


# ---------------------------------------------------------------------------------------------------------
# the pipeline stage
# ---------------------------------------------------------------------------------------------------------
def train_gan_stage(run, settings: GanConfig, params) -> list[Path]:
    """Stage ``train-gan``: train on ``RUN/noise/patches.mrcs``, save the generator, score it.

    Writes ``RUN/models/gan.safetensors`` + ``gan.json``, ``RUN/report/gan_curves.json`` and
    ``RUN/report/noise_fidelity.json``; keeps ``RUN/checkpoints/gan.pt`` for resuming. Under ``torchrun``
    every rank trains and rank 0 writes these files.
    """
    from nt2c.run import distributed as ddp

    patches_path = run.path / "noise" / "patches.mrcs"
    if not patches_path.is_file():
        raise StageError(f"{patches_path} is missing; run `nt2c extract-noise --run {run.path}` first.")
    patches, pixel_size_A = read_mrc(patches_path)
    if patches.ndim == 2:
        patches = patches[None]
    train_idx, held_idx = split_patches(len(patches), settings.holdout_fraction, seed=settings.seed)
    if settings.holdout_fraction > 0 and len(train_idx) < settings.batch_size:
        raise InputError(
            f"{patches_path} holds {len(patches)} patches; after holding out {len(held_idx)} for the "
            f"fidelity report, {len(train_idx)} are too few for batch_size = {settings.batch_size}. "
            "Extract more patches, lower batch_size or holdout_fraction."
        )
    trained = train_gan(patches[train_idx], settings, checkpoint_path=run.checkpoints / "gan.pt")
    if not ddp.is_main():  # under torchrun rank 0 writes (and scores); the others return the paths it writes
        ddp.barrier()
        names = ["models/gan.safetensors", "models/gan.json", "report/gan_curves.json"]
        names += ["report/noise_fidelity.json"] if len(held_idx) else []
        return [run.path / name for name in names]
    model_path, json_path = save_generator(
        run.models / "gan.safetensors",
        trained,
        extra={
            "source": str(patches_path.relative_to(run.path)),
            "pixel_size_A": pixel_size_A,
            "split": {"train": train_idx.tolist(), "heldout": held_idx.tolist()},
        },
    )
    curves_path = write_json(run.report / "gan_curves.json", trained.curves)
    outputs = [model_path, json_path, curves_path]
    if len(held_idx):
        report = noise_fidelity_report(run, model_path=model_path, device=settings.device)
        outputs.append(write_json(run.report / "noise_fidelity.json", report))
    ddp.barrier()
    return outputs
