"""Topaz-Denoise (Bepler et al. 2020) as a comparison method, run as a separate program.

Topaz is GPL-3.0: nt2c never imports or ships it, it only finds and calls its ``denoise`` command
(:func:`topaz_command`) on a temporary MRC file (:func:`topaz_denoise`). Registered as method ``"topaz"`` in
:data:`nt2c.evaluation.baselines.BASELINES` (installation notes there).
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from nt2c.errors import StageError

__all__ = ["TOPAZ_HELP", "topaz_command", "topaz_denoise"]


def _unavailable(message: str):
    from nt2c.evaluation.baselines import MethodUnavailableError  # lazy: baselines imports this module

    return MethodUnavailableError(message)


TOPAZ_HELP = (
    "Topaz-Denoise is not installed. It is an optional, separately licensed (GPL-3.0) program that nt2c only "
    "calls: install it with `pip install topaz-em` (or `pip install nt2c[benchmark]`), or point the "
    "environment variable NT2C_TOPAZ at a command that runs `topaz denoise`, e.g. "
    "NT2C_TOPAZ='python -m topaz.commands.denoise'."
)


def topaz_command() -> list[str] | None:
    """Find the command line prefix that runs Topaz's ``denoise`` (None when Topaz is not installed).

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
    from nt2c.io import read_image, validate_image, write_mrc

    cmd = topaz_command()
    if cmd is None:
        raise _unavailable(TOPAZ_HELP)
    x = validate_image(image, name="micrograph")
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
            raise _unavailable(f"could not start {cmd[0]!r} ({exc}). {TOPAZ_HELP}") from exc
        except subprocess.TimeoutExpired as exc:
            raise StageError(
                f"topaz denoise did not finish in {timeout_s:.0f} s; raise timeout_s or use a GPU."
            ) from exc
        result = out_dir / "micrograph.mrc"
        if proc.returncode != 0 or not result.is_file():
            tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-6:])
            raise _unavailable(
                f"topaz denoise failed (exit status {proc.returncode}) with `{' '.join(args)}`:\n{tail}\n"
                "Check the Topaz installation (`topaz denoise --help`), or leave 'topaz' out of the methods."
            )
        out, _ = read_image(result)
    if out.shape != x.shape:
        raise StageError(f"topaz returned an image of shape {out.shape} for an input of shape {x.shape}.")
    return out.astype(np.float32)
