"""Denoisers to compare, behind one interface: the paper's baselines and the NT2C models.

================  ==========================================================================================
method            what it does
================  ==========================================================================================
``raw``           nothing (the input, as float32): the reference row of every table
``lowpass``       2x binning (mean of 2 x 2 blocks) then bilinear interpolation back to the input size, as
                  the paper's "Lowpass filter (2x binning)"
``gaussian``      Gaussian filter, ``sigma_px`` (default 1 px)
``bm3d``          BM3D (Dabov et al. 2007; the ``bm3d`` package, both stages, ``profile="np"``), with the noise
                  level estimated from the micrograph itself (:func:`estimate_noise_sigma`)
``topaz``         Topaz-Denoise's pretrained model (``unet`` by default) run by the ``topaz-em`` program in a
                  separate process. Topaz is GPL-3.0: nt2c never imports or ships it, it only calls it
``nt2c-coarse``   the coarse NT2C denoiser (``RUN/models/coarse.safetensors``) through :mod:`nt2c.denoiser.inference`
``nt2c-fine``     the fine NT2C denoiser (``RUN/models/fine.safetensors``)
================  ==========================================================================================

Every method maps a 2-D float image (ny, nx) to a float32 image of the same shape (grey levels need not
match the input's: the metrics fit scale and offset or are scale-free). A method whose package, program or
model is missing raises :class:`MethodUnavailableError` saying how to get it; :func:`method_status` tells
in advance which methods can run.

Installing Topaz: ``pip install topaz-em`` puts a ``topaz`` program on the PATH. Two known snags of topaz-em
0.3.20 with recent stacks: ``topaz denoise`` imports Topaz's training code, which needs a ``torchvision`` matching
the installed torch (``NT2C_TOPAZ="python -m topaz.commands.denoise"`` runs the denoising command alone and avoids
it), and it finds its pretrained weights through ``pkg_resources``, which setuptools 81 removed
(``pip install "setuptools<81"`` beside it restores it).

Timing on this project's 2-core CPU (indicative): ``lowpass`` and ``gaussian`` take well under a second on a
1024^2 micrograph; ``bm3d`` took 7 s on a 512^2 crop with the cores idle (so about 30 s for 1024^2;
``stages="hard"`` halves it) and 3-4 minutes for a 927 x 959 micrograph while the cores were shared by several
jobs; ``topaz`` (``unet``, CPU) took 13 s on that micrograph idle, 40 s shared, including the program start.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nt2c.errors import InputError, StageError

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
]


class MethodUnavailableError(StageError):
    """A denoising method cannot run here (its package, program or model is missing)."""


# ---------------------------------------------------------------------------------------------------------
# Classical filters
# ---------------------------------------------------------------------------------------------------------
def _image(image) -> np.ndarray:
    from nt2c.io import validate_image

    return validate_image(image, name="micrograph")


def lowpass_bin2(image: np.ndarray) -> np.ndarray:
    """2x binning then back to the input size: the paper's low-pass baseline.

    The image is averaged over 2 x 2 blocks (an odd last row/column is padded by repeating it), which
    low-passes it and halves the Nyquist frequency, and is brought back to (ny, nx) by bilinear
    interpolation with pixel edges aligned (``scipy.ndimage.zoom(grid_mode=True)``).

    Parameters
    ----------
    image : numpy.ndarray, shape (ny, nx)

    Returns
    -------
    numpy.ndarray, float32, shape (ny, nx)
    """
    from scipy import ndimage

    x = _image(image).astype(np.float64)
    ny, nx = x.shape
    if min(ny, nx) < 2:
        raise InputError(f"image of shape {x.shape} is too small to bin 2x.")
    x = np.pad(x, ((0, ny % 2), (0, nx % 2)), mode="edge")
    binned = x.reshape(x.shape[0] // 2, 2, x.shape[1] // 2, 2).mean(axis=(1, 3))
    up = ndimage.zoom(binned, 2, order=1, mode="nearest", grid_mode=True)
    return up[:ny, :nx].astype(np.float32)


def gaussian_filter(image: np.ndarray, *, sigma_px: float = 1.0) -> np.ndarray:
    """Gaussian low-pass filter (reflecting edges).

    Parameters
    ----------
    image : numpy.ndarray, shape (ny, nx)
    sigma_px : float
        Standard deviation of the kernel (px).

    Returns
    -------
    numpy.ndarray, float32, shape (ny, nx)
    """
    from scipy import ndimage

    if not sigma_px > 0:
        raise InputError(f"sigma_px={sigma_px} must be positive.")
    return ndimage.gaussian_filter(_image(image).astype(np.float64), float(sigma_px), mode="reflect").astype(
        np.float32
    )


def estimate_noise_sigma(image: np.ndarray, *, highpass_sigma_px: float = 8.0) -> float:
    """Robust estimate of the noise standard deviation of a micrograph (grey-level units).

    Cryo-EM micrographs are noise-dominated at all but the lowest spatial frequencies, so the noise level
    is measured on the high-pass residual ``r = image - G_sigma * image`` (``G`` a Gaussian of
    ``highpass_sigma_px``), which removes ice-thickness gradients and large contaminants but keeps nearly
    all the noise power, with the median absolute deviation ``sigma = 1.4826 median|r - median r|``, which
    ignores the few pixels of strong features (particle edges, hot pixels). It is the background noise
    level that BM3D's ``sigma_psd`` expects.

    Parameters
    ----------
    image : numpy.ndarray, shape (ny, nx)
    highpass_sigma_px : float
        Width of the Gaussian whose output is subtracted (px).

    Returns
    -------
    float
        The estimated noise standard deviation (> 0).
    """
    from scipy import ndimage

    x = _image(image).astype(np.float64)
    residual = x - ndimage.gaussian_filter(x, float(highpass_sigma_px), mode="reflect")
    sigma = 1.4826 * float(np.median(np.abs(residual - np.median(residual))))
    if sigma <= 0:
        sigma = float(residual.std())
    if sigma <= 0:
        raise InputError("the micrograph is constant (no noise to estimate); check the input file.")
    return sigma


def bm3d_denoise(
    image: np.ndarray,
    *,
    sigma: float | None = None,
    highpass_sigma_px: float = 8.0,
    stages: str = "all",
    profile: str = "np",
) -> np.ndarray:
    """BM3D with the noise level estimated from the micrograph.

    The image is standardised with its median and the noise sigma (:func:`estimate_noise_sigma` unless
    ``sigma`` is given), denoised with ``bm3d.bm3d(z, sigma_psd=1)`` and mapped back to the input units.

    Parameters
    ----------
    image : numpy.ndarray, shape (ny, nx)
    sigma : float, optional
        Noise standard deviation in the image's units (default: estimated).
    highpass_sigma_px : float
        See :func:`estimate_noise_sigma`.
    stages : {"all", "hard"}
        Both BM3D stages (hard thresholding then Wiener), or only the first (about twice as fast).
    profile : str
        ``bm3d`` profile (``"np"`` normal, ``"refilter"``, ``"lc"`` low complexity, ...).

    Returns
    -------
    numpy.ndarray, float32, shape (ny, nx)
    """
    try:
        import bm3d
    except ImportError as exc:  # pragma: no cover - declared dependency
        raise MethodUnavailableError("BM3D needs the `bm3d` package: pip install bm3d") from exc
    x = _image(image).astype(np.float64)
    s = estimate_noise_sigma(x, highpass_sigma_px=highpass_sigma_px) if sigma is None else float(sigma)
    if not s > 0:
        raise InputError(f"sigma={sigma} must be positive.")
    stage_arg = {"all": bm3d.BM3DStages.ALL_STAGES, "hard": bm3d.BM3DStages.HARD_THRESHOLDING}.get(stages)
    if stage_arg is None:
        raise InputError(f"stages={stages!r}: use 'all' or 'hard'.")
    centre = float(np.median(x))
    z = (x - centre) / s
    out = np.asarray(bm3d.bm3d(z, sigma_psd=1.0, profile=profile, stage_arg=stage_arg)).reshape(x.shape)
    return (out * s + centre).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------
# Topaz-Denoise (GPL-3.0: called as a separate program, never imported)
# ---------------------------------------------------------------------------------------------------------
_TOPAZ_HELP = (
    "Topaz-Denoise is not installed. It is an optional, separately licensed (GPL-3.0) program that nt2c only "
    "calls: install it with `pip install topaz-em` (or `pip install nt2c[benchmark]`), or point the environment "
    "variable NT2C_TOPAZ at a command that runs `topaz denoise`, e.g. "
    "NT2C_TOPAZ='python -m topaz.commands.denoise'."
)


def topaz_command() -> list[str] | None:
    """The command line prefix that runs Topaz's ``denoise`` (None when Topaz is not installed).

    In order: the environment variable ``NT2C_TOPAZ`` (split like a shell would); ``python -m
    topaz.commands.denoise`` with this interpreter when the ``topaz`` package is importable (found, not
    imported); ``topaz denoise`` when a ``topaz`` program is on the PATH.
    """
    env = os.environ.get("NT2C_TOPAZ", "").strip()
    if env:
        return shlex.split(env)
    if importlib.util.find_spec("topaz") is not None:
        return [sys.executable, "-m", "topaz.commands.denoise"]
    exe = shutil.which("topaz")
    if exe:
        return [exe, "denoise"]
    return None


def topaz_denoise(
    image: np.ndarray,
    *,
    model: str = "unet",
    device: str = "auto",
    patch_size_px: int = 1024,
    patch_padding_px: int = 128,
    threads: int = 2,
    timeout_s: float = 3600.0,
) -> np.ndarray:
    """Denoise with a pretrained Topaz-Denoise model (Bepler et al. 2020) through the ``topaz`` program.

    The image is written to a temporary MRC file, ``topaz denoise -m MODEL -o DIR`` runs on it in a separate
    process, and the output is read back (Topaz keeps the input's grey-level scale).

    Parameters
    ----------
    image : numpy.ndarray, shape (ny, nx)
    model : {"unet", "unet-small", "fcnn", "affine", "unet-v0.2.1"}
        Pretrained model. (topaz-em 0.3 builds the network from ``--arch``, so the name is passed as both
        ``--model`` and, when it is an architecture, ``--arch``.)
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda[:N]"``.
    patch_size_px, patch_padding_px : int
        Topaz's ``--patch-size`` and ``--patch-padding`` (memory versus speed).
    threads : int
        CPU threads of the Topaz process.
    timeout_s : float
        Give up after this many seconds.

    Returns
    -------
    numpy.ndarray, float32, shape (ny, nx)
    """
    from nt2c.device import resolve_device
    from nt2c.io import read_image, write_mrc

    cmd = topaz_command()
    if cmd is None:
        raise MethodUnavailableError(_TOPAZ_HELP)
    x = _image(image)
    dev = resolve_device(device)
    topaz_device = str(dev.index or 0) if dev.type == "cuda" else "-1"
    with tempfile.TemporaryDirectory(prefix="nt2c_topaz_") as tmp:
        src = Path(tmp) / "micrograph.mrc"
        out_dir = Path(tmp) / "out"
        out_dir.mkdir()
        write_mrc(src, x)
        args = [
            *cmd,
            "-d",
            topaz_device,
            "-j",
            str(int(threads)),
            "-m",
            model,
            "-o",
            str(out_dir),
            "-s",
            str(int(patch_size_px)),
            "-p",
            str(int(patch_padding_px)),
        ]
        if model in ("unet", "unet-small", "unet2", "unet3", "fcnet", "fcnet2", "affine"):
            args += ["--arch", model]
        args.append(str(src))
        try:
            proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s)
        except FileNotFoundError as exc:
            raise MethodUnavailableError(f"could not start {cmd[0]!r} ({exc}). {_TOPAZ_HELP}") from exc
        except subprocess.TimeoutExpired as exc:
            raise StageError(
                f"topaz denoise did not finish in {timeout_s:.0f} s; raise timeout_s or use a GPU."
            ) from exc
        result = out_dir / "micrograph.mrc"
        if proc.returncode != 0 or not result.is_file():
            tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-6:])
            raise MethodUnavailableError(
                f"topaz denoise failed (exit status {proc.returncode}) with `{' '.join(args)}`:\n{tail}\n"
                "Check the Topaz installation (`topaz denoise --help`), or leave 'topaz' out of the methods."
            )
        out, _ = read_image(result)
    if out.shape != x.shape:
        raise StageError(f"topaz returned an image of shape {out.shape} for an input of shape {x.shape}.")
    return out.astype(np.float32)


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
    return None if topaz_command() else _TOPAZ_HELP


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


def method_status(methods=None, *, run=None, **options) -> dict[str, str | None]:
    """Which methods can run here.

    Parameters
    ----------
    methods : iterable of str, optional
        Method names (default: all of :data:`BASELINES`).
    run : RunDir or path-like, optional
        Run directory (for the NT2C models).
    **options
        Method options (``fine_model_path=...``).

    Returns
    -------
    dict of str to (str or None)
        Method name to None when it can run, else the reason it cannot (with what to do).
    """
    names = list(BASELINES) if methods is None else list(methods)
    return {name: _method(name).unavailable(run=run, **options) for name in names}


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
        ``"raw"``, ``"lowpass"``, ``"gaussian"``, ``"bm3d"``, ``"topaz"``, ``"nt2c-coarse"`` or ``"nt2c-fine"``.
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
        (bm3d); ``topaz_model`` (topaz); ``coarse_model_path``, ``fine_model_path``, ``inference_options``
        (nt2c-*). Options meant for other methods are ignored.

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
