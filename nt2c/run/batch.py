"""One batch-denoising loop, shared by ``nt2c run`` (``RUN/denoised/``) and ``nt2c denoise -o OUT``.

Each micrograph is read, denoised, checked (finite values), written atomically (``OUT/<name>.mrc``, and a
PNG preview on request) and dropped before the next, so memory stays constant over any number of files and a
killed batch resumes where it stopped. Every output has a provenance record ``OUT/.nt2c/<name>.json``: the
input (path, size, modification time), the sha256 of the model weights that made it, the settings that change
the result (tile, overlap, normalization, low_frequency_from_raw_px), and the output's shape and size. An
output is *current* when its record matches the input, the model and the settings, and the file on disk is a
complete MRC image of the recorded shape; a current output is skipped, any other one is denoised again
(another model, other settings, a changed input, a wrong-shape or cut-short file).

An existing output without a record (made by an older nt2c, or not by nt2c at all) is redone in a folder nt2c
owns (``RUN/denoised/``); ``nt2c denoise`` keeps it when it is a complete MRC image and refuses to overwrite
anything else unless ``--force`` (a file of the user's that happens to carry the name).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nt2c.config import LOW_FREQUENCY_FROM_RAW_PX
from nt2c.errors import InputError, NT2CError
from nt2c.io import read_json, write_json
from nt2c.run.rundir import file_sha256

__all__ = ["BatchResult", "denoise_batch", "mrc_shape", "output_record", "RECORD_DIR", "RESULT_SETTINGS"]

log = logging.getLogger(__name__)

#: Folder (inside the output folder) of the per-output provenance records.
RECORD_DIR = ".nt2c"
#: Inference settings that change the denoised image (batch size, memory cap and device do not).
RESULT_SETTINGS = ("tile", "overlap", "normalization", "low_frequency_from_raw_px")


@dataclass
class BatchResult:
    """What :func:`denoise_batch` did.

    Attributes
    ----------
    outputs : dict of pathlib.Path to pathlib.Path
        Input -> its current output (denoised now or before).
    denoised, skipped : list of pathlib.Path
        Outputs written by this call / already current.
    failed : dict of str to str
        Inputs that could not be denoised -> the one-line reason.
    stopped_early : bool
        ``max_files`` was reached before the end.
    """

    outputs: dict[Path, Path] = field(default_factory=dict)
    denoised: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    stopped_early: bool = False

    def counts(self) -> dict[str, int]:
        """Return ``{"denoised", "skipped", "failed", "stopped_early"}`` counts."""
        return {
            "denoised": len(self.denoised),
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "stopped_early": int(self.stopped_early),
        }


def mrc_shape(path: Path) -> tuple[int, int] | None:
    """``(ny, nx)`` of a complete 2-D MRC image at ``path`` (None when missing, cut short or not MRC)."""
    import mrcfile

    if not path.is_file():
        return None
    try:
        with mrcfile.open(path, mode="r", permissive=True, header_only=True) as mrc:
            h = mrc.header
            nx, ny, nz = int(h.nx), int(h.ny), int(h.nz)
            expected = nx * ny * nz * 4 + 1024 + int(h.nsymbt)
        if nz != 1 or path.stat().st_size < expected:
            return None
        return ny, nx
    except Exception:
        return None


def _record_path(dst: Path) -> Path:
    return dst.parent / RECORD_DIR / f"{dst.stem}.json"


def output_record(dst: str | os.PathLike) -> dict | None:
    """Read the provenance record of the output ``dst`` (None when it has none or it is unreadable)."""
    path = _record_path(Path(dst))
    if not path.is_file():
        return None
    try:
        return read_json(path)
    except NT2CError:
        return None


def _source_state(src: Path) -> list[int]:
    st = src.stat()
    return [st.st_size, st.st_mtime_ns]


def _is_current(src: Path, dst: Path, key: dict[str, Any]) -> bool:
    record = output_record(dst)
    if not record:
        return False
    try:
        state = _source_state(src)
    except OSError:
        return False
    shape = mrc_shape(dst)
    return (
        record.get("model_sha256") == key["model_sha256"]
        and record.get("settings") == key["settings"]
        and record.get("source") == str(src.resolve())
        and record.get("source_state") == state
        and shape is not None
        and list(shape) == record.get("shape")
        and dst.stat().st_size == record.get("bytes")
    )


def denoise_batch(
    model,
    files: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    model_sha256: str | None = None,
    model_path: str | os.PathLike | None = None,
    names: Sequence[str] | None = None,
    device: str = "auto",
    tile: int = 512,
    overlap: int = 64,
    batch_size: int = 4,
    max_memory_MB: float = 1024.0,
    normalization: str = "tiles",
    low_frequency_from_raw_px: float = LOW_FREQUENCY_FROM_RAW_PX,
    pixel_size_A: float | None = None,
    png: bool = False,
    force: bool = False,
    keep_unrecorded: bool = False,
    inputs: frozenset[Path] | set[Path] = frozenset(),
    max_files: int | None = None,
    on_file: Callable[[Path, str], None] | None = None,
    echo: Callable[[str], None] | None = print,
    warn: Callable[[str], None] | None = None,
    label: str = "",
) -> BatchResult:
    """Denoise ``files`` one at a time into ``out_dir``, skipping the outputs that are current.

    Parameters
    ----------
    model : torch.nn.Module or callable
        The network (on ``device``, eval mode), or a function returning it, called the first time a file has
        to be denoised (so that an up-to-date batch loads no model).
    files : iterable of path-like
        Input micrographs (MRC/TIFF), consumed lazily.
    out_dir : path-like
        Output folder (created); ``OUT/<name>.mrc`` per input, ``OUT/<name>.png`` with ``png``.
    model_sha256 : str, optional
        sha256 of the model weights (recorded with each output); computed from ``model_path`` when not given.
    model_path : path-like, optional
        The weights file (``.safetensors``).
    names : sequence of str, optional
        Output names (without ``.mrc``), one per file; default: each input's stem.
    device, tile, overlap, batch_size, max_memory_MB, normalization, low_frequency_from_raw_px
        As for :func:`nt2c.denoise_micrograph` (tile, overlap and period in px, memory cap in MB).
    pixel_size_A : float, optional
        Voxel size (Angstrom) written when an input has none (TIFF).
    png : bool
        Also write 8-bit PNG previews (at most 1024 px wide).
    force : bool
        Denoise every file, current or not (never an input).
    keep_unrecorded : bool
        Keep an existing complete output that has no provenance record, and refuse to overwrite an existing
        file without a record that is not a complete MRC image (``nt2c denoise``); False: redo both
        (a folder nt2c owns, ``RUN/denoised``).
    inputs : set of pathlib.Path
        Resolved input paths that must never be written.
    max_files : int, optional
        Stop after this many files were denoised (skipped and failed files do not count).
    on_file : callable, optional
        ``on_file(src, status)`` after each file, status ``"denoised"``, ``"skipped"`` or ``"failed"``.
    echo : callable or None
        Called with a line per denoised or skipped file; None: quiet.
    warn : callable, optional
        Called with a line per failed file (default: ``echo``, else the log).
    label : str
        Prefix of the lines (``"fine"``, ``"coarse"``).

    Returns
    -------
    BatchResult
    """
    from nt2c.progress import progress

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [Path(f) for f in files] if names is not None else files
    if names is not None and len(names) != len(files):
        raise ValueError(f"{len(names)} names for {len(files)} files")
    if model_sha256 is None:
        if model_path is None:
            raise ValueError("give model_sha256 or model_path")
        model_sha256 = file_sha256(model_path)
    key = {
        "model_sha256": model_sha256,
        "settings": {
            "tile": int(tile),
            "overlap": int(overlap),
            "normalization": str(normalization),
            "low_frequency_from_raw_px": float(low_frequency_from_raw_px),
        },
    }
    prefix = f"{label}: " if label else ""
    say = echo or (lambda line: None)
    complain = warn or echo or log.warning
    result = BatchResult()
    net = None
    for k, src in enumerate(progress(files, desc=label or "micrographs", unit="file")):
        src = Path(src)
        if max_files is not None and len(result.denoised) >= max_files:
            result.stopped_early = True
            break
        dst = out_dir / f"{names[k] if names is not None else src.stem}.mrc"
        png_path = dst.with_suffix(".png")
        status = "denoised"
        try:
            if dst.resolve() in inputs:
                raise InputError(f"the output {dst} would overwrite an input; choose another output folder.")
            if not force and dst.exists():
                current = _is_current(src, dst, key)
                if not current and keep_unrecorded and output_record(dst) is None:
                    if mrc_shape(dst) is None:
                        raise InputError(
                            f"{dst} exists and is not an nt2c output (not a complete MRC image); delete it, "
                            "choose another output folder, or use --force to replace it."
                        )
                    current = True  # made before nt2c recorded its outputs: kept, --force redoes it
                if current and (not png or png_path.is_file()):
                    status = "skipped"
            if status == "skipped":
                say(f"{prefix}{dst}: up to date, skipped (use --force to redo)")
            else:
                if net is None:
                    net = model() if callable(model) and not hasattr(model, "state_dict") else model
                start = time.perf_counter()
                image = _denoise_one(
                    net,
                    src,
                    dst,
                    device=device,
                    tile=tile,
                    overlap=overlap,
                    batch_size=batch_size,
                    max_memory_MB=max_memory_MB,
                    normalization=normalization,
                    low_frequency_from_raw_px=low_frequency_from_raw_px,
                    pixel_size_A=pixel_size_A,
                    model_path=model_path,
                )
                if png:
                    from nt2c.commands.denoise import write_png

                    write_png(png_path, image)
                ny, nx = image.shape
                del image
                record = {
                    **key,
                    "model": None if model_path is None else str(Path(model_path).resolve()),
                    "source": str(src.resolve()),
                    "source_state": _source_state(src),
                    "shape": [ny, nx],
                    "bytes": dst.stat().st_size,
                    "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                }
                write_json(_record_path(dst), record)
                say(f"{prefix}{dst}: {nx}x{ny} px denoised in {time.perf_counter() - start:.1f} s")
        except NT2CError as exc:
            status = "failed"
            reason = " ".join(str(exc).split())
            result.failed[str(src)] = reason
            complain(f"{prefix}skipping {src}: {reason}")
        if status == "denoised":
            result.denoised.append(dst)
        elif status == "skipped":
            result.skipped.append(dst)
        if status != "failed":
            result.outputs[src] = dst
        if on_file is not None:
            on_file(src, status)
    return result


def _denoise_one(net, src: Path, dst: Path, *, pixel_size_A, model_path, **options) -> np.ndarray:
    """Read ``src``, denoise it, check the result is finite and write it to ``dst``; returns the result."""
    from nt2c.denoiser import inference
    from nt2c.io import read_image, write_mrc

    image, pixel_size = read_image(src)
    result = np.asarray(inference.denoise_micrograph(net, image, **options), dtype=np.float32)
    del image
    if not np.isfinite(result).all():
        bad = int((~np.isfinite(result)).sum())
        which = f"the model {model_path}" if model_path is not None else "the model"
        raise InputError(
            f"{which} turned {src} into {bad} NaN or infinite pixels (broken weights?); retrain it or use "
            "another model."
        )
    write_mrc(dst, result, pixel_size_A=pixel_size or pixel_size_A, overwrite=True)
    return result


def denoise_settings(settings: Any) -> Mapping[str, Any]:
    """Return the keyword arguments of :func:`denoise_batch` for a :class:`~nt2c.config.DenoiseConfig`."""
    return {
        "device": settings.device,
        "tile": settings.tile,
        "overlap": settings.overlap,
        "batch_size": settings.batch_size,
        "normalization": settings.normalization,
        "low_frequency_from_raw_px": settings.low_frequency_from_raw_px,
    }
