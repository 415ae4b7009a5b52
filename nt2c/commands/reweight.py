"""``nt2c reweight``: GAN noise onto simulated clean patches (contrast-guided re-weighting, paper section 2.2.3)."""

from __future__ import annotations

import argparse

from ._common import add_stage_args, run_stage_from_args

HELP = "build the fine denoiser's training pairs: GAN noise re-weighted onto simulated clean patches"
DESCRIPTION = (
    "Read RUN/simulated/pairs_clean.mrcs and pairs_noisy.mrcs and the GAN RUN/models/gan.safetensors, fit "
    "(alpha, beta, gamma) per patch (Eq. 4; --method paper is the literal least squares, matched the default "
    "variance-matched variant) and write RUN/pairs/pairs_noisy.mrcs, pairs_clean.mrcs and coefficients.csv."
)


def add_args(parser: argparse.ArgumentParser) -> None:
    add_stage_args(parser)
    parser.add_argument("--method", choices=("paper", "matched"), default=None,
                        help="coefficient fit (default: matched; paper = Eq. 4 literally, beta ~ 0)")
    parser.add_argument("--n-pairs", type=int, default=None, metavar="N",
                        help="number of pairs to synthesize (default: the profile's)")


def main(args: argparse.Namespace) -> int:
    return run_stage_from_args("reweight", args, method=args.method, n_pairs=args.n_pairs)
