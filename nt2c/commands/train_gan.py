"""``nt2c train-gan``: the WGAN-GP noise synthesizer on the run's noise patches (paper section 2.1.2)."""

from __future__ import annotations

import argparse

from nt2c.commands._common import add_stage_args, run_stage_from_args

HELP = "train the WGAN-GP noise synthesizer on RUN/noise/patches.mrcs"
DESCRIPTION = (
    "Train a Wasserstein GAN with a per-sample gradient penalty on the noise patches RUN/noise/patches.mrcs "
    "(holding some out for scoring), write the generator RUN/models/gan.safetensors + gan.json, the loss "
    "curves "
    "RUN/report/gan_curves.json and the noise-fidelity table RUN/report/noise_fidelity.json (generated and "
    "baseline noise against the held-out patches). Resumes from RUN/checkpoints/gan.pt after an interruption."
)


def add_args(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``nt2c train-gan``."""
    add_stage_args(parser)
    parser.add_argument(
        "--patch-px",
        type=int,
        choices=(64, 128, 256),
        default=None,
        help="side of the generated patches in px (default: the profile's)",
    )
    parser.add_argument(
        "--iterations", type=int, default=None, help="generator iterations (default: the profile's)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="patches per batch (default: the profile's)"
    )
    parser.add_argument("--width", type=int, default=None, help="network width (default: the profile's)")
    parser.add_argument("--lr", type=float, default=None, help="Adam learning rate (default: the profile's)")
    parser.add_argument(
        "--no-augment",
        dest="augment",
        action="store_const",
        const=False,
        default=None,
        help="no 90-degree rotations or flips (for anisotropic detector noise)",
    )
    parser.add_argument(
        "--spatial-latent",
        dest="spatial_latent",
        action="store_const",
        const=True,
        default=None,
        help="latent values on a (d/16)^2 grid instead of one vector (stationary, more diverse noise)",
    )


def main(args: argparse.Namespace) -> int:
    """Run ``nt2c train-gan``; returns the exit status."""
    return run_stage_from_args(
        "train-gan",
        args,
        patch_px=args.patch_px,
        iterations=args.iterations,
        batch_size=args.batch_size,
        width=args.width,
        lr=args.lr,
        augment=args.augment,
        spatial_latent=args.spatial_latent,
    )
