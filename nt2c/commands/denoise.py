"""``nt2c denoise``: denoise micrographs with a trained NT2C model (whole images, tiled, on CPU or GPU)."""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

HELP = "denoise MRC/TIFF micrographs with a trained model (coarse.safetensors or fine.safetensors)"
DESCRIPTION = (
    "Denoise each micrograph with an NT2C model in overlapping, blended tiles and write OUT/<name>.mrc with the "
    "input's voxel size (and OUT/<name>.png previews with --png). Inputs are never overwritten, existing outputs "
    "are skipped unless --force, unreadable files are reported and skipped; the exit status is 1 when any file "
    "failed. Files are processed one at a time (constant memory) and written atomically, so a killed run "
    "started again resumes where it stopped. Under `torchrun --nproc-per-node N -m nt2c denoise ...` rank r "
    "takes files r, r+N, ... on its own GPU (cuda:LOCAL_RANK)."
)


def add_args(parser: argparse.ArgumentParser) -> None:
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
    """The input paths, with wildcard patterns that name no existing file expanded (sorted)."""
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
    """Whether ``path`` is an existing, readable MRC image (nt2c writes atomically, so it is complete)."""
    import mrcfile

    if not path.is_file():
        return False

    try:
        with mrcfile.open(path, mode="r", permissive=True, header_only=True) as mrc:
            h = mrc.header
            expected = int(h.nx) * int(h.ny) * int(h.nz) * 4 + 1024 + int(h.nsymbt)
        return path.stat().st_size >= expected
    except Exception:
        return False


def write_png(path: Path, image, *, max_side: int = 1024) -> Path:
    """An 8-bit grey PNG preview: block-averaged to at most ``max_side`` px, 0.5-99.5 percentile range."""
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
    device: str = "auto",
    tile: int = 512,
    overlap: int = 64,
    batch_size: int = 4,
    max_memory_MB: float = 1024.0,
    normalization: str = "tiles",
    pixel_size_A: float | None = None,
    png: bool = False,
    force: bool = False,
    inputs: frozenset[Path] | set[Path] = frozenset(),
    max_files: int | None = None,
    on_file: Callable[[Path, str], None] | None = None,
    verbose: bool = True,
) -> dict[str, int]:
    """Denoise ``files`` one at a time into ``out_dir``, keeping no image after its output is written.

    Memory stays constant over any number of files: each micrograph is read, denoised, written atomically
    (a temporary file renamed into place, so a kill leaves no partial output) and dropped before the next.
    A complete output is skipped unless ``force``, which makes a killed run resumable.

    Parameters
    ----------
    model : nt2c.UNet
        Network on ``device``, in eval mode.
    files : iterable of pathlib.Path
        Input micrographs (MRC/TIFF), consumed lazily.
    out_dir : pathlib.Path
        Existing output folder; ``OUT/<stem>.mrc`` (and ``.png`` with ``png``) per input.
    device, tile, overlap, batch_size, max_memory_MB, normalization
        As for :func:`nt2c.denoise_micrograph` (tile and overlap in px, memory cap in MB).
    pixel_size_A : float, optional
        Voxel size (Angstrom) written when an input has none.
    png, force : bool
        Also write PNG previews; redo complete outputs.
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
    from nt2c.denoiser.inference import denoise_micrograph
    from nt2c.errors import InputError, NT2CError
    from nt2c.io import read_image, write_mrc
    from nt2c.progress import progress

    counts = {"denoised": 0, "skipped": 0, "failed": 0, "stopped_early": 0}
    for src in progress(files, desc="micrographs", unit="file"):
        if max_files is not None and counts["denoised"] >= max_files:
            counts["stopped_early"] = 1
            break
        dst = output_path(src, out_dir)
        png_path = dst.with_suffix(".png")
        status = "denoised"
        try:
            if dst.resolve() in inputs:
                raise InputError(f"the output {dst} would overwrite an input; choose another -o folder.")
            if dst.exists() and not force:
                if not _complete(dst):
                    raise InputError(
                        f"{dst} exists and is not a complete MRC image; delete it or use --force."
                    )
                if not png or png_path.is_file():
                    if verbose:
                        print(f"{dst}: already there, skipped (use --force to redo)")
                    status = "skipped"
            if status == "denoised":
                start = time.perf_counter()
                image, pixel_size = read_image(src)
                shape = image.shape
                result = denoise_micrograph(
                    model,
                    image,
                    device=device,
                    tile=tile,
                    overlap=overlap,
                    batch_size=batch_size,
                    max_memory_MB=max_memory_MB,
                    normalization=normalization,
                )
                del image
                write_mrc(dst, result, pixel_size_A=pixel_size or pixel_size_A, overwrite=True)
                if png:
                    write_png(png_path, result)
                del result
                if verbose:
                    print(f"{dst}: {shape[1]}x{shape[0]} px denoised in {time.perf_counter() - start:.1f} s")
        except NT2CError as exc:
            print(f"nt2c denoise: skipping {src}: {exc}", file=sys.stderr)
            status = "failed"
        counts[status] += 1
        if on_file is not None:
            on_file(src, status)
    return counts


def main(args: argparse.Namespace) -> int:
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

    counts = denoise_files(
        model,
        files,
        out_dir,
        device=str(dev),
        tile=settings.tile,
        overlap=settings.overlap,
        batch_size=settings.batch_size,
        max_memory_MB=args.max_memory_MB,
        normalization=settings.normalization,
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
    return 1 if counts["failed"] else 0
