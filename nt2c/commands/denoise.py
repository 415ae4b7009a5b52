"""``nt2c denoise``: denoise micrographs with a trained NT2C model (whole images, tiled, on CPU or GPU)."""

from __future__ import annotations

import argparse
import glob
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from nt2c.config import LOW_FREQUENCY_FROM_RAW_PX

HELP = "denoise MRC/TIFF micrographs with a trained model (coarse.safetensors or fine.safetensors)"
DESCRIPTION = (
    "Denoise each micrograph with an NT2C model in overlapping, blended tiles and write OUT/<name>.mrc with "
    "the input's voxel size (and OUT/<name>.png previews with --png). Inputs are never overwritten, existing "
    "outputs are skipped when they were made from the same input by the same model with the same settings (a "
    "record per output in OUT/.nt2c/; another model, other settings, a cut-short or wrong-shape output are "
    "redone; --force redoes all), unreadable files are reported and skipped; the exit status is 2 when any "
    "file failed. Files are processed one at a time (constant memory) and written atomically, so a killed "
    "run started again resumes where it stopped. Under `torchrun --nproc-per-node N -m nt2c denoise ...` "
    "rank r takes files r, r+N, ... on its own GPU (cuda:LOCAL_RANK)."
)


def add_args(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``nt2c denoise``."""
    parser.add_argument(
        "files",
        nargs="+",
        metavar="FILES",
        help="micrographs (.mrc, .mrcs, .map, .tif, .tiff; quoted wildcards are expanded)",
    )
    parser.add_argument(
        "--model",
        "-m",
        required=True,
        metavar="M",
        help="model weights NAME.safetensors (with NAME.json beside it), e.g. RUN/models/fine.safetensors",
    )
    parser.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="output folder (created when missing)"
    )
    parser.add_argument(
        "--png", action="store_true", help="also write 8-bit PNG previews (at most 1024 px wide)"
    )
    parser.add_argument("--tile", type=int, default=None, help="tile side in px (default 512)")
    parser.add_argument(
        "--overlap", type=int, default=None, help="pixels shared by neighbouring tiles (default 64)"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="tiles per forward pass (default 4)")
    parser.add_argument(
        "--normalization",
        choices=("tiles", "global"),
        default=None,
        help="z-score each micrograph by the median mean/std of its 128 px tiles (default; robust to ice "
        "contamination and carbon) or by the whole image's",
    )
    parser.add_argument(
        "--low-frequency-from-raw-px",
        type=float,
        default=None,
        dest="low_frequency_from_raw_px",
        metavar="PX",
        help="take periods longer than about PX pixels from the raw micrograph (default 50; 0: the "
        "network's output at every frequency)",
    )
    parser.add_argument(
        "--max-memory-MB",
        type=float,
        default=1024.0,
        dest="max_memory_MB",
        help="cap on the activation memory of one batch of tiles (default 1024)",
    )
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument(
        "--pixel-size-A",
        type=float,
        default=None,
        dest="pixel_size_A",
        help="voxel size to write when the input has none (TIFF); default: the input's",
    )
    parser.add_argument("--force", action="store_true", help="replace existing outputs (never the inputs)")
    parser.add_argument(
        "--max-files",
        type=int,
        default=None,
        dest="max_files",
        metavar="N",
        help="stop after denoising N files (per process; skipped files do not count); run again to continue",
    )


def expand_files(patterns: list[str]) -> list[Path]:
    """Expand the input paths: wildcard patterns that name no existing file are globbed (sorted)."""
    files: list[Path] = []
    for pattern in patterns:
        if not os.path.exists(pattern) and any(ch in pattern for ch in "*?["):
            matches = sorted(glob.glob(pattern))
            files.extend(Path(m) for m in matches) if matches else files.append(Path(pattern))
        else:
            files.append(Path(pattern))
    return files


def output_path(src: Path, out_dir: Path) -> Path:
    """``OUT/<stem>.mrc`` for an input ``<stem>.<ext>``."""
    return out_dir / f"{src.stem}.mrc"


def _complete(path: Path) -> bool:
    """Whether ``path`` is an existing, complete 2-D MRC image."""
    from nt2c.run.batch import mrc_shape

    return mrc_shape(path) is not None


def write_png(path: Path, image, *, max_side: int = 1024) -> Path:
    """Write an 8-bit grey PNG preview: block-averaged to at most ``max_side`` px, 0.5-99.5 percentiles."""
    import numpy as np
    from matplotlib import image as mpimg

    from nt2c.io import atomic_path

    factor = max(1, int(np.ceil(max(image.shape) / max_side)))
    ny, nx = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    small = image[:ny, :nx].reshape(ny // factor, factor, nx // factor, factor).mean(axis=(1, 3))
    lo, hi = np.percentile(small, [0.5, 99.5])
    scaled = np.clip((small - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    with atomic_path(path) as tmp:
        mpimg.imsave(tmp, scaled, cmap="gray", vmin=0, vmax=1, format="png")
    return path


def denoise_files(
    model,
    files: Iterable[Path],
    out_dir: Path,
    *,
    model_path: str | os.PathLike | None = None,
    model_sha256: str | None = None,
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
    inputs: frozenset[Path] | set[Path] = frozenset(),
    max_files: int | None = None,
    on_file: Callable[[Path, str], None] | None = None,
    verbose: bool = True,
) -> dict[str, int]:
    """Denoise ``files`` one at a time into ``out_dir`` (``nt2c denoise``), skipping current outputs.

    The loop is :func:`nt2c.run.batch.denoise_batch` (shared with ``nt2c run``): constant memory, atomic
    writes, a provenance record ``OUT/.nt2c/<stem>.json`` per output (model sha256, settings, input), so that
    another model or other settings re-denoise and a cut-short or wrong-shape output is redone. An existing
    output without a record is kept when it is a complete MRC image, and never overwritten otherwise (unless
    ``force``).

    Parameters
    ----------
    model : nt2c.UNet
        Network on ``device``, in eval mode.
    files : iterable of pathlib.Path
        Input micrographs (MRC/TIFF).
    out_dir : pathlib.Path
        Output folder; ``OUT/<stem>.mrc`` (and ``.png`` with ``png``) per input.
    model_path, model_sha256
        The weights file, or its sha256 (one of them; recorded with each output).
    device, tile, overlap, batch_size, max_memory_MB, normalization, low_frequency_from_raw_px
        As for :func:`nt2c.denoise_micrograph` (tile, overlap and period in px, memory cap in MB).
    pixel_size_A : float, optional
        Voxel size (Angstrom) written when an input has none.
    png, force : bool
        Also write PNG previews; redo current outputs.
    inputs : set of pathlib.Path
        Resolved input paths that must never be written.
    max_files : int, optional
        Stop after this many files were denoised (skipped and failed files do not count).
    on_file : callable, optional
        ``on_file(src, status)`` after each file, status ``"denoised"``, ``"skipped"`` or ``"failed"``.
    verbose : bool
        Print a line per denoised or skipped file (failures are always reported on stderr).

    Returns
    -------
    dict
        ``{"denoised", "skipped", "failed", "stopped_early"}`` counts (``stopped_early`` is 0 or 1).
    """
    from nt2c.run.batch import denoise_batch

    result = denoise_batch(
        model,
        files,
        out_dir,
        model_path=model_path,
        model_sha256=model_sha256,
        device=device,
        tile=tile,
        overlap=overlap,
        batch_size=batch_size,
        max_memory_MB=max_memory_MB,
        normalization=normalization,
        low_frequency_from_raw_px=low_frequency_from_raw_px,
        pixel_size_A=pixel_size_A,
        png=png,
        force=force,
        keep_unrecorded=True,
        inputs=inputs,
        max_files=max_files,
        on_file=on_file,
        echo=print if verbose else None,
        warn=lambda line: print(f"nt2c denoise: {line}", file=sys.stderr),
    )
    return result.counts()


def main(args: argparse.Namespace) -> int:
    """Run ``nt2c denoise``; returns the exit status (2 when any file failed)."""
    from nt2c.config import stage_config
    from nt2c.denoiser.inference import load_model
    from nt2c.errors import InputError
    from nt2c.run import distributed

    settings = stage_config(
        "denoise",
        "quick",
        tile=args.tile,
        overlap=args.overlap,
        batch_size=args.batch_size,
        normalization=args.normalization,
        low_frequency_from_raw_px=args.low_frequency_from_raw_px,
        device=args.device,
    )
    if args.max_memory_MB <= 0:
        raise InputError(f"--max-memory-MB {args.max_memory_MB}: must be positive (for example 1024).")
    max_files = getattr(args, "max_files", None)
    if max_files is not None and max_files < 1:
        raise InputError(f"--max-files {max_files}: must be at least 1.")
    files = expand_files(args.files)
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"-o {out_dir} exists and is not a folder; give an output folder.")
    inputs = {p.resolve() for p in files if p.exists()}
    targets: set[Path] = set()
    for src in files:
        dst = output_path(src, out_dir).resolve()
        if dst in targets:
            raise InputError(
                f"two inputs would both be written to {dst} (same file name); denoise them into "
                "different output folders."
            )
        targets.add(dst)
    del targets
    # under torchrun: this rank's share (files r, r+N, ...) on its own GPU; no process group is needed
    n_ranks, rank = distributed.env_world_size(), distributed.rank()
    files = distributed.shard(files, rank=rank, world_size=n_ranks)
    dev = distributed.rank_device(settings.device)
    if dev.type == "cuda":
        import torch

        torch.backends.cudnn.benchmark = True  # tiles of one size: let cuDNN pick the fastest kernels
    model = load_model(args.model, device=str(dev))
    out_dir.mkdir(parents=True, exist_ok=True)
    model_weights = Path(args.model)
    if model_weights.suffix == ".json":  # load_model takes the sidecar too; the record names the weights
        model_weights = model_weights.with_suffix(".safetensors")

    counts = denoise_files(
        model,
        files,
        out_dir,
        model_path=model_weights,
        device=str(dev),
        tile=settings.tile,
        overlap=settings.overlap,
        batch_size=settings.batch_size,
        max_memory_MB=args.max_memory_MB,
        normalization=settings.normalization,
        low_frequency_from_raw_px=settings.low_frequency_from_raw_px,
        pixel_size_A=args.pixel_size_A,
        png=args.png,
        force=args.force,
        inputs=inputs,
        max_files=max_files,
    )
    where = f" (rank {rank} of {n_ranks})" if n_ranks > 1 else ""
    print(
        f"{counts['denoised']} denoised, {counts['skipped']} skipped, {counts['failed']} failed "
        f"-> {out_dir}{where}"
    )
    if counts["stopped_early"]:
        print(f"stopped after --max-files {max_files}; run the same command again to continue")
    return 2 if counts["failed"] else 0
