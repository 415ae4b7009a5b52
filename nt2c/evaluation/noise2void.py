"""Noise2Void: a self-supervised baseline trained on the micrographs themselves (Krull et al. 2019).

What a user without a simulator would reach for. A blind-spot network learns to predict each pixel from its
neighbourhood only: in every training patch a few pixels are *masked* (their value replaced by that of a
random neighbour), the network sees the masked patch, and the loss is the squared error between its output and
the original values at the masked pixels only. Pixel-wise independent noise cannot be predicted from the
neighbours, so the network learns the expected (clean) value. Noise correlated between neighbouring pixels
(the detector's MTF, an interpolated or binned micrograph) partly leaks through; that is a known limit of N2V
on cryo-EM data.

Two back-ends
-------------
``"careamics"``
    CAREamics (``careamics.CAREamist`` with ``create_n2v_configuration``), the maintained implementation, used
    by ``backend="auto"`` when ``import careamics`` works. Its current release needs torchvision <= 0.26
    (torch <= 2.11), which does not install beside torch 2.13, so this path has not been run in this project.
``"nt2c"``
    nt2c's own blind-spot training of nt2c's U-Net (:class:`nt2c.denoiser.network.UNet`, the coarse/fine
    denoisers' architecture, so the comparison isolates the training signal), with the N2V paper's masking
    scheme (:func:`blind_spot_mask`): stratified selection of about ``mask_fraction`` of the pixels of each
    patch (one random pixel in each cell of a grid of side ``round(1 / sqrt(mask_fraction))``), each replaced
    by a uniformly drawn pixel of its ``window_px`` x ``window_px`` neighbourhood other than itself ("uniform
    pixel selection"). Each micrograph is z-scored by :func:`nt2c.denoiser.inference.normalization_stats`
    (what :func:`nt2c.denoiser.inference.denoise_micrograph` uses), random ``patch_px`` crops are drawn with a
    random dihedral transform, and Adam runs with nt2c's warm-up + cosine learning-rate schedule. Seeded: the
    same seed, data and device give the same model.

Cost: the model is trained per call on the micrographs given. With the defaults of :func:`noise2void_denoise`
(400 steps of 16 patches of 64^2 px, width-32 U-Net) training takes a few minutes on 2 CPU cores (about
0.3-0.6 s per step, more while the cores are shared) and seconds on a GPU; denoising then costs what the NT2C
models cost (:func:`nt2c.denoiser.inference.denoise_micrograph`).

One module because the masking scheme, the training and the denoising of the baseline belong together
and are read together; it is slightly over 400 lines with its docstrings.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field

import numpy as np

from nt2c.errors import InputError

__all__ = [
    "Noise2VoidResult",
    "blind_spot_mask",
    "careamics_available",
    "noise2void_backend",
    "noise2void_baseline",
    "noise2void_denoise",
    "train_noise2void",
]


@dataclass
class Noise2VoidResult:
    """What :func:`train_noise2void` returns: the model and its training record.

    Attributes
    ----------
    model : nt2c.denoiser.network.UNet
        The trained network (on CPU, eval mode), for :func:`nt2c.denoiser.inference.denoise_micrograph`.
    losses : list of float
        Masked-pixel loss of every step (normalised units squared).
    backend : str
        ``"nt2c"`` (the CAREamics back-end returns no nt2c model; see :func:`noise2void_denoise`).
    settings : dict
        The training settings used.
    """

    model: object
    losses: list[float] = field(default_factory=list)
    backend: str = "nt2c"
    settings: dict = field(default_factory=dict)


def careamics_available() -> bool:
    """Whether the CAREamics package can be found (found, not imported)."""
    return importlib.util.find_spec("careamics") is not None


def noise2void_backend(backend: str = "auto") -> str:
    """Resolve ``backend`` to the back-end that runs: ``"careamics"`` or ``"nt2c"``.

    Raises
    ------
    InputError
        For an unknown name, or ``"careamics"`` when it is not installed.
    """
    if backend not in ("auto", "nt2c", "careamics"):
        raise InputError(f"backend={backend!r} is not known; use 'auto', 'nt2c' or 'careamics'.")
    if backend == "careamics" and not careamics_available():
        raise InputError(
            "backend='careamics' but CAREamics is not installed (pip install careamics; it needs "
            "torch <= 2.11); use backend='nt2c'."
        )
    if backend == "auto":
        return "careamics" if careamics_available() else "nt2c"
    return backend


def blind_spot_mask(
    patches: np.ndarray, *, mask_fraction: float = 0.005, window_px: int = 5, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """N2V masking: replace stratified random pixels by a random neighbour of their ``window_px`` window.

    Parameters
    ----------
    patches : numpy.ndarray, shape (n, p, p)
        Training patches (any units).
    mask_fraction : float
        Target fraction of masked pixels (N2V: 0.2-1 %); the grid side is ``round(1 / sqrt(mask_fraction))``
        px and one pixel is masked per cell, so the realised fraction is ``1 / side**2`` for sides dividing
        ``p`` (cells cut by the patch edge still get one pixel, when it falls inside).
    window_px : int
        Side of the odd neighbourhood window the replacement is drawn from (N2V: 5).
    rng : numpy.random.Generator
        Source of randomness.

    Returns
    -------
    masked : numpy.ndarray, float32, shape (n, p, p)
        The patches with the selected pixels replaced.
    mask : numpy.ndarray, bool, shape (n, p, p)
        True at the masked pixels.

    Notes
    -----
    The replacement comes from the *original* patch, never the pixel itself; a neighbour outside the patch is
    reflected back inside (with the offset's sign flipped, so it never lands on the pixel itself).
    """
    x = np.asarray(patches, dtype=np.float32)
    if x.ndim != 3 or x.shape[1] != x.shape[2]:
        raise InputError(f"patches of shape {x.shape}: need (n, p, p).")
    if not 0 < mask_fraction <= 0.25:
        raise InputError(f"mask_fraction={mask_fraction}: use a small fraction such as 0.005 (0.2-1 %).")
    if window_px < 3 or window_px % 2 == 0:
        raise InputError(f"window_px={window_px}: use an odd window of at least 3 px (N2V uses 5).")
    n, p, _ = x.shape
    half = window_px // 2
    if p <= 2 * half:
        raise InputError(f"patch side {p} px is too small for a {window_px} px window.")
    side = max(2, int(round(1.0 / math.sqrt(mask_fraction))))
    cells = np.arange(0, p, side)
    cy, cx = np.meshgrid(cells, cells, indexing="ij")
    cy, cx = cy.ravel(), cx.ravel()
    k = cy.size
    ys = cy[None, :] + rng.integers(0, side, size=(n, k))
    xs = cx[None, :] + rng.integers(0, side, size=(n, k))
    keep = (ys < p) & (xs < p)
    # offsets in the window other than (0, 0): draw among window_px**2 - 1 positions
    pick = rng.integers(0, window_px * window_px - 1, size=(n, k))
    pick = pick + (pick >= (window_px * window_px) // 2)  # skip the centre
    dy, dx = pick // window_px - half, pick % window_px - half
    ny_, nx_ = ys + dy, xs + dx
    # out of the patch: flip the offset (then it is inside, since p > 2 * half, and still not the pixel)
    ny_ = np.where((ny_ < 0) | (ny_ >= p), ys - dy, ny_)
    nx_ = np.where((nx_ < 0) | (nx_ >= p), xs - dx, nx_)
    b = np.broadcast_to(np.arange(n)[:, None], ys.shape)
    b, ys, xs, ny_, nx_ = b[keep], ys[keep], xs[keep], ny_[keep], nx_[keep]
    masked = x.copy()
    masked[b, ys, xs] = x[b, ny_, nx_]
    mask = np.zeros(x.shape, dtype=bool)
    mask[b, ys, xs] = True
    return masked, mask


def _normalised(images) -> list[np.ndarray]:
    from nt2c.denoiser.inference import normalization_stats
    from nt2c.io import validate_image

    if isinstance(images, np.ndarray) and images.ndim == 2:
        images = [images]
    out = []
    for i, image in enumerate(images):
        arr = validate_image(image, name=f"images[{i}]", ndim=2).astype(np.float64)
        mean, std = normalization_stats(arr)
        if not std > 0:
            raise InputError(f"images[{i}] is constant: Noise2Void needs noisy micrographs.")
        out.append(((arr - mean) / std).astype(np.float32))
    if not out:
        raise InputError("no images given: Noise2Void trains on the micrographs it then denoises.")
    return out


def _batch(
    images: list[np.ndarray], *, patch_px: int, batch_size: int, rng: np.random.Generator
) -> np.ndarray:
    crops = []
    for _ in range(batch_size):
        im = images[int(rng.integers(0, len(images)))]
        ny, nx = im.shape
        y0, x0 = int(rng.integers(0, ny - patch_px + 1)), int(rng.integers(0, nx - patch_px + 1))
        crop = np.rot90(im[y0 : y0 + patch_px, x0 : x0 + patch_px], int(rng.integers(0, 4)))
        crops.append(crop[:, ::-1] if rng.integers(0, 2) else crop)
    return np.ascontiguousarray(np.stack(crops), dtype=np.float32)


def train_noise2void(
    images,
    *,
    steps: int = 400,
    patch_px: int = 64,
    batch_size: int = 16,
    mask_fraction: float = 0.005,
    window_px: int = 5,
    lr: float = 4e-4,
    model_config: dict | None = None,
    seed: int = 0,
    device: str = "auto",
) -> Noise2VoidResult:
    """Train nt2c's U-Net by Noise2Void on the micrographs themselves (the ``"nt2c"`` back-end).

    Parameters
    ----------
    images : numpy.ndarray, shape (ny, nx), or sequence of them
        The noisy micrographs (any units; each is z-scored by its typical-tile statistics).
    steps : int
        Optimiser steps.
    patch_px : int
        Side of the training crops (px); each micrograph must be at least this large.
    batch_size : int
        Crops per step.
    mask_fraction, window_px : float, int
        Masking (see :func:`blind_spot_mask`).
    lr : float
        Peak Adam learning rate (linear warm-up, cosine decay; :func:`nt2c.denoiser.training.lr_at`).
    model_config : dict, optional
        :func:`nt2c.denoiser.network.build_model` arguments (default: ``UNet()``'s, width 32, depth 5).
    seed : int
        Seed of the initial weights, the crops and the masks.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda[:N]"``.

    Returns
    -------
    Noise2VoidResult
    """
    import torch

    from nt2c.denoiser.network import build_model
    from nt2c.denoiser.training import lr_at
    from nt2c.device import resolve_device

    if steps < 1 or batch_size < 1 or patch_px < 16:
        raise InputError(
            f"steps={steps}, batch_size={batch_size}, patch_px={patch_px}: need >= 1, >= 1, >= 16."
        )
    data = _normalised(images)
    small = [im.shape for im in data if min(im.shape) < patch_px]
    if small:
        raise InputError(
            f"micrograph(s) of shape {small[0]} smaller than patch_px={patch_px}; lower patch_px."
        )
    dev = resolve_device(device)
    torch.manual_seed(seed)
    model = build_model(dict(model_config or {"arch": "nt2c.UNet"})).to(dev).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng([seed, 20190331])
    losses = []
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr)
        clean = _batch(data, patch_px=patch_px, batch_size=batch_size, rng=rng)
        masked, mask = blind_spot_mask(clean, mask_fraction=mask_fraction, window_px=window_px, rng=rng)
        xb = torch.from_numpy(masked[:, None]).to(dev)
        yb = torch.from_numpy(clean[:, None]).to(dev)
        mb = torch.from_numpy(mask[:, None]).to(dev)
        loss = ((model(xb) - yb)[mb] ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    settings = dict(
        steps=steps, patch_px=patch_px, batch_size=batch_size, mask_fraction=mask_fraction,
        window_px=window_px, lr=lr, seed=seed, model=model.config(),
    )  # fmt: skip
    return Noise2VoidResult(model=model.cpu().eval(), losses=losses, backend="nt2c", settings=settings)


def _careamics_denoise(images: list[np.ndarray], *, steps: int, patch_px: int, batch_size: int, seed: int):
    """CAREamics N2V (not run in this project: CAREamics does not install beside torch 2.13)."""
    from careamics import CAREamist
    from careamics.config import create_n2v_configuration

    stack = np.stack(images) if len({im.shape for im in images}) == 1 else None
    n_batches = max(1, len(images) * 64 // batch_size)  # careamics counts epochs over its own patch grid
    config = create_n2v_configuration(
        experiment_name="nt2c_n2v",
        data_type="array",
        axes="SYX" if stack is not None else "YX",
        patch_size=[patch_px, patch_px],
        batch_size=batch_size,
        num_epochs=max(1, steps // n_batches),
    )
    engine = CAREamist(source=config)
    engine.train(train_source=stack if stack is not None else images[0])
    return [
        np.asarray(engine.predict(source=im, axes="YX"), dtype=np.float32).reshape(im.shape) for im in images
    ]


def noise2void_denoise(
    images,
    *,
    steps: int = 400,
    patch_px: int = 64,
    batch_size: int = 16,
    seed: int = 0,
    device: str = "auto",
    backend: str = "auto",
    train_on=None,
    model_config: dict | None = None,
    **inference_options,
) -> list[np.ndarray]:
    """Train Noise2Void on micrographs and denoise them (one model for all the images of the call).

    Parameters
    ----------
    images : numpy.ndarray, shape (ny, nx), or sequence of them
        The micrographs to denoise.
    steps, patch_px, batch_size, seed, device
        See :func:`train_noise2void`.
    backend : {"auto", "nt2c", "careamics"}
        See the module docstring (:func:`noise2void_backend`).
    train_on : sequence of arrays, optional
        Train on these instead of ``images`` (e.g. the full-dose micrographs, to denoise frames).
    model_config : dict, optional
        U-Net arguments (``"nt2c"`` back-end; see :func:`train_noise2void`).
    **inference_options
        Passed to :func:`nt2c.denoiser.inference.denoise_micrograph` (``tile``, ``overlap``, ...).

    Returns
    -------
    list of numpy.ndarray, float32
        The denoised images, in the units of the inputs.
    """
    from nt2c.denoiser.inference import denoise_micrograph

    single = isinstance(images, np.ndarray) and images.ndim == 2
    images = [images] if single else list(images)
    which = noise2void_backend(backend)
    source = images if train_on is None else list(train_on)
    if which == "careamics":  # pragma: no cover - CAREamics does not install beside torch 2.13
        return _careamics_denoise(images, steps=steps, patch_px=patch_px, batch_size=batch_size, seed=seed)
    result = train_noise2void(
        source,
        steps=steps,
        patch_px=patch_px,
        batch_size=batch_size,
        model_config=model_config,
        seed=seed,
        device=device,
    )
    inference_options.setdefault("show_progress", False)
    inference_options.setdefault("low_frequency_from_raw_px", 0)  # the published method, as it is
    return [denoise_micrograph(result.model, im, device=device, **inference_options) for im in images]


def noise2void_baseline(
    image: np.ndarray,
    *,
    device: str = "auto",
    n2v_steps: int = 400,
    n2v_patch_px: int = 64,
    n2v_batch_size: int = 16,
    n2v_seed: int = 0,
    n2v_backend: str = "auto",
    n2v_model_config: dict | None = None,
    inference_options: dict | None = None,
) -> np.ndarray:
    """Noise2Void trained on ``image`` itself, then applied to it (see :mod:`nt2c.evaluation.noise2void`).

    Parameters
    ----------
    image : numpy.ndarray, shape (ny, nx)
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda[:N]"``.
    n2v_steps, n2v_patch_px, n2v_batch_size, n2v_seed, n2v_model_config
        :func:`train_noise2void`'s ``steps``, ``patch_px``, ``batch_size``, ``seed``
        and ``model_config``.
    n2v_backend : {"auto", "nt2c", "careamics"}
        See :func:`noise2void_backend`.
    inference_options : dict, optional
        Passed to :func:`nt2c.denoiser.inference.denoise_micrograph`.

    Returns
    -------
    numpy.ndarray, float32, shape (ny, nx)
    """
    from nt2c.denoiser.inference import denoise_micrograph
    from nt2c.io import validate_image

    x = validate_image(image, name="micrograph")
    if noise2void_backend(n2v_backend) == "nt2c":
        result = train_noise2void(
            x,
            steps=n2v_steps,
            patch_px=min(n2v_patch_px, (min(x.shape) // 16) * 16),
            batch_size=n2v_batch_size,
            model_config=n2v_model_config,
            seed=n2v_seed,
            device=device,
        )
        opts = {"show_progress": False, "low_frequency_from_raw_px": 0, **(inference_options or {})}
        return np.asarray(denoise_micrograph(result.model, x, device=device, **opts), np.float32)
    return noise2void_denoise(  # pragma: no cover - CAREamics does not install beside torch 2.13
        x,
        steps=n2v_steps,
        patch_px=n2v_patch_px,
        batch_size=n2v_batch_size,
        seed=n2v_seed,
        backend="careamics",
    )[0]
