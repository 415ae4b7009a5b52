"""``nt2c denoise``: denoise micrographs with a trained NT2C model (whole images, tiled, on CPU or GPU)."""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from pathlib import Path

HELP = "denoise MRC/TIFF micrographs with a trained model (coarse.safetensors or fine.safetensors)"
DESCRIPTION = (
    "Denoise each micrograph with an NT2C model in overlapping, blended tiles and write OUT/<name>.mrc with the "
    "input's voxel size (and OUT/<name>.png previews with --png). Inputs are never overwritten, existing outputs "
    "are skipped unless --force, unreadable files are reported and skipped; the exit status is 1 when any file "
    "failed."
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

    from ..io import atomic_path

    factor = max(1, int(np.ceil(max(image.shape) / max_side)))
    ny, nx = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    small = image[:ny, :nx].reshape(ny // factor, factor, nx // factor, factor).mean(axis=(1, 3))
    lo, hi = np.percentile(small, [0.5, 99.5])
    scaled = np.clip((small - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    with atomic_path(path) as tmp:
        mpimg.imsave(tmp, scaled, cmap="gray", vmin=0, vmax=1, format="png")
    return path


def main(args: argparse.Namespace) -> int:
    from ..config import stage_config
    from ..errors import InputError, NT2CError
    from ..inference import denoise_micrograph, load_model
    from ..io import read_image, write_mrc
    from ..progress import progress

    settings = stage_config(
        "denoise",
        "quick",
        tile=args.tile,
        overlap=args.overlap,
        batch_size=args.batch_size,
        device=args.device,
    )
    if args.max_memory_MB <= 0:
        raise InputError(f"--max-memory-MB {args.max_memory_MB}: must be positive (for example 1024).")
    files = expand_files(args.files)
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"-o {out_dir} exists and is not a folder; give an output folder.")
    inputs = {p.resolve() for p in files if p.exists()}
    targets: dict[Path, Path] = {}
    for src in files:
        dst = output_path(src, out_dir)
        if dst.resolve() in targets.values():
            raise InputError(
                f"two inputs would both be written to {dst} (same file name); denoise them into "
                "different output folders."
            )
        targets[src] = dst.resolve()
    model = load_model(args.model, device=settings.device)
    out_dir.mkdir(parents=True, exist_ok=True)

    failed, done, skipped = [], 0, 0
    for src in progress(files, desc="micrographs", unit="file"):
        dst = output_path(src, out_dir)
        png = dst.with_suffix(".png")
        try:
            if dst.resolve() in inputs:
                raise InputError(f"the output {dst} would overwrite an input; choose another -o folder.")
            if dst.exists() and not args.force:
                if not _complete(dst):
                    raise InputError(
                        f"{dst} exists and is not a complete MRC image; delete it or use --force."
                    )
                if not args.png or png.is_file():
                    print(f"{dst}: already there, skipped (use --force to redo)")
                    skipped += 1
                    continue
            start = time.perf_counter()
            image, pixel_size = read_image(src)
            result = denoise_micrograph(
                model,
                image,
                device=settings.device,
                tile=settings.tile,
                overlap=settings.overlap,
                batch_size=settings.batch_size,
                max_memory_MB=args.max_memory_MB,
            )
            write_mrc(dst, result, pixel_size_A=pixel_size or args.pixel_size_A, overwrite=True)
            if args.png:
                write_png(png, result)
            print(
                f"{dst}: {image.shape[1]}x{image.shape[0]} px denoised in {time.perf_counter() - start:.1f} s"
            )
            done += 1
        except NT2CError as exc:
            print(f"nt2c denoise: skipping {src}: {exc}", file=sys.stderr)
            failed.append(src)
    print(f"{done} denoised, {skipped} skipped, {len(failed)} failed -> {out_dir}")
    return 1 if failed else 0
