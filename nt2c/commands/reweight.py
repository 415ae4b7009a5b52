"""``nt2c reweight``: real noise onto simulated clean patches (contrast-guided re-weighting, paper 2.2.3)."""

from __future__ import annotations

import argparse

from nt2c.commands._common import add_stage_args, run_stage_from_args

HELP = "build the fine denoiser's training pairs: real noise re-weighted onto simulated clean patches"
DESCRIPTION = (
    "Read RUN/simulated/pairs_clean.mrcs and pairs_noisy.mrcs and the noise (resampled "
    "RUN/noise/patches.mrcs by default, or samples of the GAN RUN/models/gan.safetensors with --noise-source "
    "gan), fit (alpha, beta, gamma) per patch (Eq. 4; --method paper is the literal least squares, matched "
    "the default variance-matched variant at the simulator's noise-to-signal ratio, calibrated the ratio "
    "measured on your micrographs, written to RUN/calibration/signal_noise.json) and write "
    "RUN/pairs/pairs_noisy.mrcs, pairs_clean.mrcs, coefficients.csv and summary.json. Needs train-gan only "
    "with --noise-source gan."
)


def add_args(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``nt2c reweight``."""
    add_stage_args(parser)
    parser.add_argument(
        "--method",
        choices=("paper", "matched", "calibrated"),
        default=None,
        help="coefficient fit (default: matched; paper = Eq. 4 literally, beta ~ 0; calibrated = your "
        "micrographs' noise-to-signal ratio)",
    )
    parser.add_argument(
        "--noise-source",
        choices=("patches", "gan"),
        default=None,
        help="noise transferred: resampled real patches (default) or GAN samples (the paper)",
    )
    parser.add_argument(
        "--patch-px",
        type=int,
        default=None,
        metavar="PX",
        help="side of the pairs in px (default: the profile's; larger than the noise patches "
        "blends several of them)",
    )
    parser.add_argument(
        "--n-pairs",
        type=int,
        default=None,
        metavar="N",
        help="number of pairs to synthesize (default: the profile's)",
    )


def main(args: argparse.Namespace) -> int:
    """Run the stage ``reweight``; returns the exit status."""
    return run_stage_from_args(
        "reweight",
        args,
        method=args.method,
        noise_source=args.noise_source,
        patch_px=args.patch_px,
        n_pairs=args.n_pairs,
    )
