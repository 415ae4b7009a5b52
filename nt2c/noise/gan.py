"""The WGAN-GP noise synthesizer's training: Eq. 2 of the paper, one critic step and one generator step.

NT2C learns the noise of the user's micrographs from the few pure-noise patches that the extraction stage
finds, and generates as many new noise patches as the re-weighting stage needs (paper section 2.1.2, Eq. 2).

The critic ``D`` minimises (Gulrajani et al. 2017; :func:`critic_step`)::

    L_D = E[D(fake)] - E[D(real)] + lambda * E[(||grad_xhat D(xhat)||_2 - 1)^2],
    xhat = eps * real + (1 - eps) * fake,   eps ~ U(0, 1) per sample,

where the norm is taken **per sample over all of (C, H, W)** (:func:`gradient_penalty`); the reference code
takes it over dim=1 (the single channel), which penalises every pixel's derivative separately. The generator
``G`` minimises ``-E[D(G(z))]`` (:func:`generator_step`); ``n_critic`` critic steps precede each generator
step; both use Adam (paper and full profile: lr 1e-4 and betas (0.5, 0.9) as in Gulrajani et al.; the
reference code uses beta2 = 0.999; the quick profile uses lr 1e-3 and a small width so that a few hundred
iterations on a CPU learn the noise colour and histogram).

Data: the patches are z-scored with the *training set's* global mean and standard deviation (one scalar each,
stored in ``gan.json`` and undone by :func:`nt2c.noise.generator.sample_noise`); each batch holds
``batch_size`` distinct patches (fewer patches than that: the batch shrinks to them, with a warning), randomly
cropped to the GAN size, randomly rotated by a multiple of 90 degrees and flipped. Crops preserve the
statistics of stationary noise; rotations and flips preserve those of isotropic noise (set ``augment=False``
for a detector with direction-dependent correlations).

Everything is seeded (a CPU ``torch.Generator`` draws batches, latents and interpolation weights, so a CPU and
a CUDA run see the same data); a checkpoint (``RUN/checkpoints/gan.pt``: networks, optimisers, random state,
the rest of the shuffled patch order, curves) is written every ``checkpoint_every`` iterations, and a rerun
resumes from it -- bit for bit the run it continues, on the same device.

After training, the generator's batch-norm statistics are re-estimated over many batches at the final weights
(the running averages kept during training lag behind the changing generator), and the generator is used in
evaluation mode: each generated patch then depends only on its own latent vector, not on the batch.

Under ``torchrun`` the same function trains on several processes: see :mod:`nt2c.noise.cross_rank`.

Limits: the DCGAN generator maps one latent *vector* to a whole patch, so stationarity (the same statistics
everywhere in the patch) must be learnt, and stride-2 transposed convolutions favour periodic patterns; a
short training leaves both visible (patches with calmer and busier regions, peaks in the power spectrum). The
fidelity report (:mod:`nt2c.noise.stage`) measures them; longer training (full profile) is the first remedy.

One module because the loss terms, the two steps and the training loop that checkpoints and resumes them share
one seeded random stream and one checkpoint format; batches, the networks, cross-process averaging and the
saved generator are already in their own modules, and about a third of this one is docstrings.
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
from nt2c.io import atomic_path
from nt2c.noise.batches import PatchBatches, check_patches
from nt2c.progress import progress

__all__ = [
    "gradient_penalty",
    "critic_step",
    "generator_step",
    "train_gan",
    "TrainedGan",
    "recalibrate_batchnorm",
]

log = logging.getLogger(__name__)

_CHECKPOINT_VERSION = 2  # 2: the rest of the shuffled patch order is kept, so a resume is bit-identical
# settings that may change between a checkpoint and the run resuming from it
_RESUMABLE = ("iterations", "checkpoint_every", "device", "holdout_fraction", "n_eval")
_CURVES = (
    "iteration",
    "critic_loss",
    "generator_loss",
    "wasserstein_estimate",
    "gradient_penalty",
    "grad_norm",
    "seconds",
)


# ---------------------------------------------------------------------------------------------------------
# the algorithm: Eq. 2 of the paper
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


def critic_step(critic, gen, real, z, eps, optimizer, *, gp_lambda: float, sync=None) -> dict[str, float]:
    """One update of the critic: minimise ``D(fake) - D(real) + lambda * GP`` (Eq. 2).

    Parameters
    ----------
    critic, gen : torch.nn.Module
        The critic and the generator (the generator is only evaluated).
    real : torch.Tensor, shape (B, 1, d, d)
        A batch of z-scored real noise patches.
    z : torch.Tensor, shape (B, latent)
        Latent vectors for the fake batch.
    eps : torch.Tensor, shape (B,)
        Interpolation weights of the gradient penalty.
    optimizer : torch.optim.Optimizer
        The critic's.
    gp_lambda : float
        Weight of the gradient penalty.
    sync : callable, optional
        Called on the critic between ``backward`` and ``step`` (under torchrun: average the gradients).

    Returns
    -------
    dict
        ``critic_loss``, ``wasserstein_estimate`` (``E[D(real)] - E[D(fake)]``), ``gradient_penalty``,
        ``grad_norm`` (mean per-sample critic gradient norm at the interpolates).
    """
    import torch

    with torch.no_grad():
        fake = gen(z)
    d_real = critic(real).mean()
    d_fake = critic(fake).mean()
    penalty, norms = gradient_penalty(critic, real, fake, eps=eps, return_norms=True)
    loss = d_fake - d_real + gp_lambda * penalty
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if sync is not None:
        sync(critic)
    optimizer.step()
    return {
        "critic_loss": loss.item(),
        "wasserstein_estimate": (d_real - d_fake).item(),
        "gradient_penalty": penalty.item(),
        "grad_norm": norms.mean().item(),
    }


def generator_step(gen, critic, z, optimizer, *, sync=None) -> float:
    """One update of the generator: minimise ``-E[D(G(z))]`` with the critic frozen; returns the loss."""
    critic.requires_grad_(False)
    loss = -critic(gen(z)).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if sync is not None:
        sync(gen)
    optimizer.step()
    critic.requires_grad_(True)
    return loss.item()


# ---------------------------------------------------------------------------------------------------------
# training: the loop, checkpoints and several processes around the two steps
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
        The settings trained with (``batch_size`` as used, when fewer patches than asked shrank it).
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


def _load_checkpoint(ckpt: Path | None, fingerprint: dict, iterations: int, device):
    """Load the checkpoint's state if it was made with these settings and data, else return None."""
    import torch

    if ckpt is None or not ckpt.is_file():
        return None
    try:
        state = torch.load(ckpt, map_location=device, weights_only=True)
    except Exception as exc:  # corrupt or foreign file
        log.warning("ignoring unreadable GAN checkpoint %s (%s); training from scratch", ckpt, exc)
        return None
    if state.get("fingerprint") != fingerprint or state["iteration"] > iterations:
        log.info("GAN checkpoint %s was made with other settings or data; training from scratch", ckpt)
        return None
    return state


def train_gan(
    patches,
    settings: GanConfig | None = None,
    *,
    checkpoint_path: str | os.PathLike | None = None,
    device: str | None = None,
    on_iteration: Callable[[int, dict], None] | None = None,
) -> TrainedGan:
    """Train the WGAN-GP noise synthesizer on a stack of noise patches.

    Under ``torchrun`` every rank calls this function with the same arguments (see
    :mod:`nt2c.noise.cross_rank`; ``batch_size`` is the global batch, only rank 0 writes the checkpoint).

    Parameters
    ----------
    patches : array_like, shape (n, h, w)
        Pure-noise patches (any units, e.g. counts/px), ``h, w >= settings.patch_px``, ``n >= 2``; with fewer
        than ``batch_size`` patches the batch shrinks to ``n`` (a warning is logged).
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
    dev = ddp.init_distributed(device or settings.device)  # resolve_device() when not under torchrun
    n_ranks, this_rank = ddp.world_size(), ddp.rank()
    if n_ranks > 1 and settings.batch_size % n_ranks:
        raise InputError(
            f"train-gan batch_size={settings.batch_size} is the global batch and must be a multiple of the "
            f"{n_ranks} processes; use batch_size={n_ranks * max(1, settings.batch_size // n_ranks)}."
        )
    data, b = check_patches(patches, settings, n_ranks)
    if b != settings.batch_size:
        settings = settings.model_copy(update={"batch_size": b})
    cross = None
    if n_ranks > 1:
        from nt2c.noise import cross_rank as cross
    rows = slice(this_rank, None, n_ranks)  # this rank's rows of a global batch
    mean, std = float(data.mean(dtype=np.float64)), float(data.std(dtype=np.float64))
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
        cross.to_cross_rank(gen)
    betas = (settings.beta1, settings.beta2)
    opt_g = torch.optim.Adam(gen.parameters(), lr=settings.lr, betas=betas)
    opt_d = torch.optim.Adam(critic.parameters(), lr=settings.lr, betas=betas)
    rng = torch.Generator().manual_seed(settings.seed)
    batches = PatchBatches(z_data, settings.patch_px, b, settings.augment, rng, rows)
    curves: dict[str, list] = {k: [] for k in _CURVES}
    fingerprint = _fingerprint(settings, data)
    ckpt = Path(checkpoint_path) if checkpoint_path is not None else None
    state = _load_checkpoint(ckpt, fingerprint, settings.iterations, dev)
    start = 0
    if state is not None:
        gen.load_state_dict(state["generator"])
        critic.load_state_dict(state["critic"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        rng.set_state(state["rng"].cpu())  # map_location moved it
        batches.order = [int(i) for i in state["order"].tolist()]
        curves = {k: list(state["curves"][k]) for k in _CURVES}
        start = int(state["iteration"])
        log.info("resuming GAN training from iteration %d (%s)", start, ckpt)
    if cross is not None:
        import torch.distributed as dist

        starts: list = [None] * n_ranks
        dist.all_gather_object(starts, start)
        if len(set(starts)) > 1:
            raise StageError(
                f"train-gan: the ranks found different checkpoints in {ckpt} (iterations {starts}); every "
                "rank must see the same file system (delete the checkpoint to start afresh)."
            )
        cross.broadcast_state(gen)  # the same start on every rank, whatever their initialisation
        cross.broadcast_state(critic)
    sync = cross.average_gradients if cross is not None else None

    def latent():
        return torch.randn(b, gen.latent_size, generator=rng)[rows].to(dev)

    def save_checkpoint(iteration: int) -> None:
        if ckpt is not None and this_rank == 0:  # rank 0 writes; the others wait until the file is complete
            state = {
                "fingerprint": fingerprint,
                "iteration": iteration,
                "generator": gen.state_dict(),
                "critic": critic.state_dict(),
                "opt_g": opt_g.state_dict(),
                "opt_d": opt_d.state_dict(),
                "rng": rng.get_state(),
                "order": torch.tensor(batches.order, dtype=torch.int64),
                "curves": curves,
            }
            with atomic_path(ckpt) as tmp:
                torch.save(state, tmp)
        if ckpt is not None:
            ddp.barrier()

    gen.train()
    critic.train()
    t0 = time.perf_counter() - (curves["seconds"][-1] if curves["seconds"] else 0.0)
    quiet = {"disable": True} if this_rank else {}  # one progress bar, rank 0's
    bar = progress(
        range(start, settings.iterations), initial=start, total=settings.iterations, desc="WGAN-GP", **quiet
    )
    for it in bar:
        steps = []
        for _ in range(settings.n_critic):
            real, z = batches(), latent()
            eps = torch.rand(b, generator=rng)[rows]
            steps.append(
                critic_step(critic, gen, real, z, eps, opt_d, gp_lambda=settings.gp_lambda, sync=sync)
            )
        loss_g = generator_step(gen, critic, latent(), opt_g, sync=sync)
        values = {k: float(np.mean([s[k] for s in steps])) for k in steps[0]}
        values["generator_loss"] = loss_g
        if cross is not None:  # means over the ranks' rows: the values of the global batch
            t = torch.tensor(list(values.values()), dtype=torch.float64, device=dev)
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            values = dict(zip(values, (t / n_ranks).tolist()))
        values.update(iteration=it + 1, seconds=time.perf_counter() - t0)
        for key in _CURVES:
            curves[key].append(float(values[key]))
        if not (math.isfinite(values["critic_loss"]) and math.isfinite(values["generator_loss"])):
            raise StageError(
                f"GAN training diverged at iteration {it + 1} (loss not finite); "
                f"lower lr (now {settings.lr}) or check the patches for outliers."
            )
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(W=f"{values['wasserstein_estimate']:.3f}", gp=f"{values['gradient_penalty']:.3f}")
        if (it + 1) % settings.checkpoint_every == 0 or it + 1 == settings.iterations:
            save_checkpoint(it + 1)
        if on_iteration is not None:
            on_iteration(it + 1, {k: curves[k][-1] for k in _CURVES})

    if cross is not None:  # plain batch norm again: each rank recalibrates on the whole (same) batches
        cross.to_cross_rank(gen, back=True)
    recalibrate_batchnorm(gen, gen.latent_size, batch_size=max(b, 32), batches=8, generator=rng, device=dev)
    if cross is not None:  # guard against non-deterministic kernels: rank 0's weights and buffers everywhere
        cross.broadcast_state(gen)
        cross.broadcast_state(critic)
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
