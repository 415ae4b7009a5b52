"""Denoisers to compare, behind one interface: the paper's baselines and the NT2C models.

================  ==========================================================================================
method            what it does
================  ==========================================================================================
``raw``           nothing (the input, as float32): the reference row of every table
``lowpass``       2x binning (mean of 2 x 2 blocks) then bilinear interpolation back to the input size, as
                  the paper's "Lowpass filter (2x binning)"
``gaussian``      Gaussian filter, ``sigma_px`` (default 1 px)
``bm3d``          BM3D (Dabov et al. 2007; the ``bm3d`` package, both stages, ``profile="np"``), with the
                  noise level estimated from the micrograph itself (:func:`estimate_noise_sigma`)
``topaz``         Topaz-Denoise's pretrained model (``unet`` by default) run by the ``topaz-em`` program in a
                  separate process (:mod:`nt2c.evaluation.topaz`). Topaz is GPL-3.0: nt2c never imports or
                  ships it, it only calls it
``noise2void``    Noise2Void (Krull et al. 2019), self-supervised, *trained per call* on the micrograph(s)
                  given (:mod:`nt2c.evaluation.noise2void`): CAREamics when it is installed, else nt2c's own
                  blind-spot training of the NT2C U-Net. Cost: the training (400 steps by default, a few
                  minutes on 2 CPU cores) on top of a U-Net pass; to denoise many micrographs with one model,
                  call :func:`nt2c.evaluation.noise2void.noise2void_denoise` with all of them
``nt2c-coarse``   the coarse NT2C denoiser (``RUN/models/coarse.safetensors``) through
                  :mod:`nt2c.denoiser.inference`
``nt2c-fine``     the fine NT2C denoiser (``RUN/models/fine.safetensors``)
================  ==========================================================================================

Every method maps a 2-D float image (ny, nx) to a float32 image of the same shape (grey levels need not
match the input's: the metrics fit scale and offset or are scale-free). A method whose package, program or
model is missing raises :class:`MethodUnavailableError` saying how to get it; :func:`method_status` tells
in advance which methods can run (and, with ``describe=True``, what runs, e.g. which Noise2Void back-end).

Installing Topaz: ``pip install topaz-em`` puts a ``topaz`` program on the PATH. Three known snags of topaz-em
0.3.20 with recent stacks: ``topaz denoise`` imports Topaz's training code, which needs a ``torchvision``
matching the installed torch (``NT2C_TOPAZ="python -m topaz.commands.denoise"`` runs the denoising command
alone and avoids it); it finds its pretrained weights through ``pkg_resources``, which setuptools 81 removed
(``pip install "setuptools<81"`` beside it restores it); and it imports ``h5py``. A separate virtual
environment keeps these out of nt2c's: ``python -m venv --system-site-packages V`` and ``V/bin/pip install
--no-deps topaz-em "setuptools<81" h5py``, then ``NT2C_TOPAZ="V/bin/python -m topaz.commands.denoise"``.

Timing on this project's 2-core CPU (indicative): ``lowpass`` and ``gaussian`` take well under a second on a
1024^2 micrograph; ``bm3d`` took 7 s on a 512^2 crop with the cores idle (so about 30 s for 1024^2;
``stages="hard"`` halves it) and 3-4 minutes for a 927 x 959 micrograph while the cores were shared by several
jobs; ``topaz`` (``unet``, CPU) took 13 s on that micrograph idle, 40 s shared, including the program start.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nt2c.errors import InputError, StageError
from nt2c.evaluation.filters import bm3d_denoise, estimate_noise_sigma, gaussian_filter, lowpass_bin2
from nt2c.evaluation.noise2void import noise2void_baseline
from nt2c.evaluation.topaz import TOPAZ_HELP, topaz_command, topaz_denoise

__all__ = [
    "BASELINES",
    "Method",
    "MethodUnavailableError",
    "denoise_with",
    "method_status",
    "estimate_noise_sigma",
    "lowpass_bin2",
    "gaussian_filter",
    "bm3d_denoise",
    "topaz_denoise",
    "topaz_command",
    "nt2c_denoise",
    "noise2void_baseline",
]


class MethodUnavailableError(StageError):
    """A denoising method cannot run here (its package, program or model is missing)."""


def _image(image) -> np.ndarray:
    from nt2c.io import validate_image

    return validate_image(image, name="micrograph")


# ---------------------------------------------------------------------------------------------------------
# NT2C models (through nt2c.denoiser.inference, written by the denoiser stage)
# ---------------------------------------------------------------------------------------------------------
_MODEL_CACHE: dict[tuple[str, float], object] = {}


def _nt2c_model_path(which: str, run=None, model_path=None) -> Path:
    if model_path is not None:
        return Path(model_path)
    if run is None:
        raise MethodUnavailableError(
            f"nt2c-{which} needs a run directory (run=...) or model_path=... to find {which}.safetensors."
        )
    root = Path(getattr(run, "path", run))
    return root / "models" / f"{which}.safetensors"


def _nt2c_unavailable(which: str, run=None, model_path=None) -> str | None:
    if importlib.util.find_spec("nt2c.denoiser.inference") is None:
        return (
            "nt2c.denoiser.inference is not part of this installation yet (the denoiser module is missing)."
        )
    try:
        path = _nt2c_model_path(which, run, model_path)
    except MethodUnavailableError as exc:
        return str(exc)
    if not path.is_file():
        stage = "train-coarse" if which == "coarse" else "train-fine"
        return f"{path} does not exist; train it first with `nt2c {stage} --run {path.parent.parent}`."
    return None


def nt2c_denoise(
    image: np.ndarray, *, which: str = "fine", run=None, model_path=None, device: str = "auto", **options
) -> np.ndarray:
    """Denoise with a trained NT2C U-Net (``RUN/models/{coarse,fine}.safetensors``).

    Parameters
    ----------
    image : numpy.ndarray, shape (ny, nx)
    which : {"coarse", "fine"}
    run : RunDir or path-like, optional
        Run directory holding ``models/<which>.safetensors``.
    model_path : path-like, optional
        The weights file (instead of ``run``).
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda[:N]"``.
    **options
        Passed to :func:`nt2c.denoiser.inference.denoise_micrograph` (``tile``, ``overlap``, ...).

    Returns
    -------
    numpy.ndarray, float32, shape (ny, nx)
    """
    reason = _nt2c_unavailable(which, run, model_path)
    if reason:
        raise MethodUnavailableError(f"nt2c-{which}: {reason}")
    inference = importlib.import_module("nt2c.denoiser.inference")
    path = _nt2c_model_path(which, run, model_path)
    key = (str(path.resolve()), path.stat().st_mtime)
    model = _MODEL_CACHE.get(key)
    if model is None:
        model = inference.load_model(path)
        _MODEL_CACHE.clear()  # keep one model in memory at a time
        _MODEL_CACHE[key] = model
    x = _image(image)
    out = np.asarray(inference.denoise_micrograph(model, x, device=device, **options), dtype=np.float32)
    if out.shape != x.shape:
        raise StageError(f"nt2c-{which} returned shape {out.shape} for an input of shape {x.shape}.")
    return out


def _noise2void_backend_note(run=None, **_) -> str:
    from nt2c.evaluation.noise2void import careamics_available

    if careamics_available():
        return "CAREamics Noise2Void, trained per call"
    return "nt2c's own blind-spot (N2V) training of the NT2C U-Net, per call (CAREamics is not installed)"


# ---------------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Method:
    """One denoising method of :data:`BASELINES`.

    Attributes
    ----------
    name : str
        Registry key (``"bm3d"``).
    label : str
        Row label in tables and figures (``"BM3D"``).
    run : callable
        ``run(image, *, pixel_size_A, run, device, **options) -> float32 image``.
    unavailable : callable
        ``unavailable(run=None, **options) -> str | None``: why the method cannot run here, or None.
    """

    name: str
    label: str
    run: Callable[..., np.ndarray]
    unavailable: Callable[..., str | None]


def _always(run=None, **_):
    return None


def _bm3d_missing(run=None, **_):
    return (
        None if importlib.util.find_spec("bm3d") else "the `bm3d` package is not installed: pip install bm3d"
    )


def _topaz_missing(run=None, **_):
    return None if topaz_command() else TOPAZ_HELP


BASELINES: dict[str, Method] = {
    "raw": Method("raw", "Raw", lambda im, **_: _image(im).copy(), _always),
    "lowpass": Method("lowpass", "Lowpass", lambda im, **_: lowpass_bin2(im), _always),
    "gaussian": Method(
        "gaussian", "Gaussian", lambda im, sigma_px=1.0, **_: gaussian_filter(im, sigma_px=sigma_px), _always
    ),
    "bm3d": Method(
        "bm3d",
        "BM3D",
        lambda im, *, sigma=None, highpass_sigma_px=8.0, stages="all", profile="np", **_: bm3d_denoise(
            im, sigma=sigma, highpass_sigma_px=highpass_sigma_px, stages=stages, profile=profile
        ),
        _bm3d_missing,
    ),
    "topaz": Method(
        "topaz",
        "TopazDe-gen",
        lambda im, *, device="auto", topaz_model="unet", **_: topaz_denoise(
            im, model=topaz_model, device=device
        ),
        _topaz_missing,
    ),
    "noise2void": Method(
        "noise2void",
        "Noise2Void",
        lambda im, *, device="auto", **opts: noise2void_baseline(
            im,
            device=device,
            **{k: v for k, v in opts.items() if k.startswith("n2v_") or k == "inference_options"},
        ),
        _always,
    ),
    "nt2c-coarse": Method(
        "nt2c-coarse",
        "NT2C (coarse)",
        lambda im, *, run=None, device="auto", coarse_model_path=None, inference_options=None, **_: (
            nt2c_denoise(
                im,
                which="coarse",
                run=run,
                model_path=coarse_model_path,
                device=device,
                **(inference_options or {}),
            )
        ),
        lambda run=None, coarse_model_path=None, **_: _nt2c_unavailable("coarse", run, coarse_model_path),
    ),
    "nt2c-fine": Method(
        "nt2c-fine",
        "NT2C",
        lambda im, *, run=None, device="auto", fine_model_path=None, inference_options=None, **_: (
            nt2c_denoise(
                im,
                which="fine",
                run=run,
                model_path=fine_model_path,
                device=device,
                **(inference_options or {}),
            )
        ),
        lambda run=None, fine_model_path=None, **_: _nt2c_unavailable("fine", run, fine_model_path),
    ),
}


def _method(name: str) -> Method:
    if name not in BASELINES:
        raise InputError(f"unknown denoising method {name!r}; choose from {', '.join(BASELINES)}.")
    return BASELINES[name]


def method_status(methods=None, *, run=None, describe: bool = False, **options) -> dict[str, str | None]:
    """Which methods can run here.

    Parameters
    ----------
    methods : iterable of str, optional
        Method names (default: all of :data:`BASELINES`).
    run : RunDir or path-like, optional
        Run directory (for the NT2C models).
    describe : bool
        Give, for the methods that can run, a line saying what runs instead of None (for ``noise2void``:
        which back-end, CAREamics or nt2c's own blind-spot training); unavailable ones then start with
        ``"unavailable: "``.
    **options
        Method options (``fine_model_path=...``).

    Returns
    -------
    dict of str to (str or None)
        Method name to None when it can run (or its description with ``describe=True``), else the reason it
        cannot (with what to do).
    """
    names = list(BASELINES) if methods is None else list(methods)
    status = {name: _method(name).unavailable(run=run, **options) for name in names}
    if not describe:
        return status
    notes = {
        "noise2void": _noise2void_backend_note,
        "topaz": lambda **_: f"`{' '.join(topaz_command() or [])}`",
    }
    return {
        name: (f"unavailable: {why}" if why else notes.get(name, lambda **_: BASELINES[name].label)(run=run))
        for name, why in status.items()
    }


def denoise_with(
    method: str,
    image: np.ndarray,
    *,
    pixel_size_A: float | None = None,
    run=None,
    device: str = "auto",
    **options,
) -> np.ndarray:
    """Denoise ``image`` with one of :data:`BASELINES`.

    Parameters
    ----------
    method : str
        ``"raw"``, ``"lowpass"``, ``"gaussian"``, ``"bm3d"``, ``"topaz"``, ``"noise2void"``, ``"nt2c-coarse"``
        or ``"nt2c-fine"``.
    image : numpy.ndarray, shape (ny, nx)
        The micrograph (any grey-level units).
    pixel_size_A : float, optional
        Pixel size (A/px); methods with settings in Angstrom use it (the current ones work in pixels).
    run : RunDir or path-like, optional
        Run directory holding the NT2C models.
    device : str
        For the methods that use torch: ``"auto"``, ``"cpu"`` or ``"cuda[:N]"``.
    **options
        Method settings: ``sigma_px`` (gaussian); ``sigma``, ``highpass_sigma_px``, ``stages``, ``profile``
        (bm3d); ``topaz_model`` (topaz); ``n2v_steps``, ``n2v_patch_px``, ``n2v_batch_size``, ``n2v_seed``,
        ``n2v_backend``, ``n2v_model_config`` (noise2void); ``coarse_model_path``, ``fine_model_path``,
        ``inference_options`` (nt2c-*, noise2void). Options meant for other methods are ignored.

    Returns
    -------
    numpy.ndarray, float32, shape (ny, nx)

    Raises
    ------
    MethodUnavailableError
        When the method's package, program or model is missing (the message says how to get it).
    """
    m = _method(method)
    reason = m.unavailable(run=run, **options)
    if reason:
        raise MethodUnavailableError(f"{method}: {reason}")
    x = _image(image)
    out = m.run(x, pixel_size_A=pixel_size_A, run=run, device=device, **options)
    if out.shape != x.shape:
        raise StageError(
            f"method {method} returned shape {out.shape} for an input of shape {x.shape} (a bug)."
        )
    return np.asarray(out, dtype=np.float32)
