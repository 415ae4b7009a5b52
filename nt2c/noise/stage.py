"""The stage ``train-gan``: train the WGAN-GP on the extracted patches, save it, and score its noise.

A share of the patches (``holdout_fraction``) never enters training. :func:`noise_fidelity_report` compares
with them, statistic by statistic (:func:`nt2c.noise.fidelity.noise_fidelity`): the generated noise, white
Gaussian noise of the held-out mean and variance, the simulator's own noise, and crops of the training patches
(the floor set by the finite sample sizes).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from nt2c.config import GanConfig
from nt2c.errors import StageError
from nt2c.io import read_json, read_mrc, write_json
from nt2c.noise import gan
from nt2c.noise.generator import generator_paths, sample_noise, save_generator

__all__ = ["split_patches", "fidelity_sets", "noise_fidelity_report", "train_gan_stage"]

log = logging.getLogger(__name__)


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
    _, sidecar = generator_paths(model_path)
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
        ``rows`` (model name to :func:`nt2c.noise.fidelity.noise_fidelity` result: ``gan``,
        ``white_gaussian``, ``simulator`` when available, ``real (train)``), ``sources`` (where each set came
        from), ``patch_px``, ``n_real`` (held-out crops), ``n_per_model`` (patches per scored set),
        ``window``.
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
            read_json(generator_paths(model_path or Path(run) / "models" / "gan.safetensors")[1])["settings"][
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
    if len(train_idx) < settings.batch_size:
        log.warning(
            "train-gan: %s holds %d patches; %d held out for the fidelity report leave %d for training, "
            "fewer than batch_size = %d: the batch shrinks to the patches there are "
            "(extract more for a better GAN).",
            patches_path,
            len(patches),
            len(held_idx),
            len(train_idx),
            settings.batch_size,
        )
    trained = gan.train_gan(patches[train_idx], settings, checkpoint_path=run.checkpoints / "gan.pt")
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
