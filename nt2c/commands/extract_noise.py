"""``nt2c extract-noise``: background (pure-noise) patches of the run's micrographs (paper section 2.2.2)."""

from __future__ import annotations

import argparse

from nt2c.commands._common import add_stage_args, run_stage_from_args

HELP = "cut pure-noise background patches from the run's micrographs (patch-similarity test)"
DESCRIPTION = (
    "Enhance each micrograph (RUN/micrographs.txt, --micrographs, or the simulated "
    "RUN/simulated/mic_????.mrc) with the coarse denoiser RUN/models/coarse.safetensors, find the background "
    "patches with the SSIM test of the paper (or --criterion std / meanvar) and write RUN/noise/patches.mrcs "
    "(float32 stack from the raw micrographs), RUN/noise/patches.csv (micrograph,row,col,score,...) and "
    "RUN/noise/<mic>_boxes.png."
)


def add_args(parser: argparse.ArgumentParser) -> None:
    """Add the stage options and the extraction parameters."""
    add_stage_args(parser)
    parser.add_argument(
        "--micrographs",
        nargs="+",
        default=None,
        metavar="GLOB",
        help="micrographs to scan (paths or quoted globs; default: the run's)",
    )
    parser.add_argument(
        "--patch-size", type=int, default=None, help="d: patch side in px (default: the profile's)"
    )
    parser.add_argument(
        "--step", type=int, default=None, help="s: stride between candidates in px (default d/2)"
    )
    parser.add_argument(
        "--n-sub", type=int, default=None, help="N: local patches per patch, a square (default 4)"
    )
    parser.add_argument("--threshold", type=float, default=None, help="thre: min pairwise SSIM (default 0.7)")
    parser.add_argument(
        "--criterion",
        choices=("ssim", "std", "meanvar"),
        default=None,
        help="background test: ssim (paper), std (reference code), meanvar (GCBD)",
    )
    parser.add_argument(
        "--margin-px", type=int, default=None, help="test the patch grown by this margin (px)"
    )
    parser.add_argument(
        "--max-overlap",
        type=float,
        default=None,
        help="largest area fraction two selected patches may share (default: no limit)",
    )


def main(args: argparse.Namespace) -> int:
    """Run the stage with the options given (None keeps the profile's value)."""
    micrographs = tuple(args.micrographs) if args.micrographs else None
    return run_stage_from_args(
        "extract-noise",
        args,
        micrographs=micrographs,
        patch_size=args.patch_size,
        step=args.step,
        n_sub=args.n_sub,
        threshold=args.threshold,
        criterion=args.criterion,
        margin_px=args.margin_px,
        max_overlap=args.max_overlap,
    )
