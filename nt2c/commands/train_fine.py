"""``nt2c train-fine``: fine-tune the coarse U-Net on the re-weighted pairs (paper section 2.2.3)."""

from __future__ import annotations

import argparse

from nt2c.commands._common import run_stage_from_args
from nt2c.commands.train_coarse import add_train_args, train_overrides

HELP = "train the fine U-Net denoiser, starting from the coarse one, on the re-weighted pairs"
DESCRIPTION = (
    "Initialise from RUN/models/coarse.safetensors, train on RUN/pairs/pairs_noisy.mrcs and "
    "pairs_clean.mrcs (real noise re-weighted onto simulated clean patches) and write "
    "RUN/models/fine.safetensors and fine.json. Missing or out-of-date earlier stages run first. A killed "
    "training resumes from RUN/checkpoints/ when run again."
)


def add_args(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``nt2c train-fine``."""
    add_train_args(parser)


def main(args: argparse.Namespace) -> int:
    """Run the stage ``train-fine``; returns the exit status."""
    return run_stage_from_args("train-fine", args, **train_overrides(args))
