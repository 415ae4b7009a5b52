"""``nt2c train-coarse``: train the U-Net on simulated (noisy, clean) pairs (paper section 2.1.2)."""

from __future__ import annotations

import argparse

from nt2c.commands._common import add_stage_args, run_stage_from_args

HELP = "train the coarse U-Net denoiser on the run's simulated training pairs"
DESCRIPTION = (
    "Read RUN/simulated/pairs_noisy.mrcs and pairs_clean.mrcs (simulating them from RUN/params.yaml first "
    "when they are missing), train the U-Net with an L2 loss and write RUN/models/coarse.safetensors, "
    "coarse.json and RUN/report/coarse_curves.json. Checkpoints in RUN/checkpoints/ let a killed training "
    "resume: run the same command again. Options given here are kept in RUN/run.json for later calls on the "
    "run (`nt2c run` included)."
)


def add_train_args(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``train-coarse`` and ``train-fine`` (None keeps the profile's value)."""
    add_stage_args(parser)
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the profile's)")
    parser.add_argument("--batch-size", type=int, default=None, help="pairs per step")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate of AdamW")
    parser.add_argument("--patch-px", type=int, default=None, help="training crop side (px, multiple of 32)")


def train_overrides(args: argparse.Namespace) -> dict:
    """Return the training settings given on the command line (None: not given)."""
    return {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "patch_px": args.patch_px}


def add_args(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``nt2c train-coarse``."""
    add_train_args(parser)
    parser.add_argument("--width", type=int, default=None, help="U-Net channels (default: the profile's, 32)")
    parser.add_argument(
        "--first-kernel", type=int, default=None, help="first convolution's kernel side (odd)"
    )


def main(args: argparse.Namespace) -> int:
    """Run the stage ``train-coarse``; returns the exit status."""
    return run_stage_from_args(
        "train-coarse", args, width=args.width, first_kernel=args.first_kernel, **train_overrides(args)
    )
