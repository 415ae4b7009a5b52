"""Arguments and helpers shared by the stage subcommands."""

from __future__ import annotations

import argparse

from nt2c.config import PROFILES

__all__ = ["add_stage_args", "add_profile_args", "run_stage_from_args"]


def add_stage_args(parser: argparse.ArgumentParser, *, run_required: bool = True) -> None:
    """Add ``--run``, ``--profile``, ``--change-profile``, ``--seed``, ``--device`` and ``--force``."""
    # --run-dir: the same option under a name that torchrun's own parser does not take for its --run-path
    parser.add_argument(
        "--run",
        "--run-dir",
        dest="run",
        required=run_required,
        metavar="RUN",
        help="run directory (holds params.yaml); spell it --run-dir under torchrun",
    )
    add_profile_args(parser)
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: the profile's, 0)")
    parser.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--force", action="store_true", help="run even if the stage's outputs are complete")


def add_profile_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--profile`` (default: the run's) and ``--change-profile``."""
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        default=None,
        help="sizes and lengths (default: the run's profile, recorded in RUN/run.json; quick for a new run)",
    )
    parser.add_argument(
        "--change-profile",
        action="store_true",
        help="switch a run made with another profile to --profile (stages whose settings change re-run and "
        "replace their models)",
    )


def run_stage_from_args(stage: str, args: argparse.Namespace, **overrides) -> int:
    """Run ``stage`` in ``args.run`` and print the files it wrote."""
    from nt2c.run.rundir import RunDir
    from nt2c.run.stages import run_stage

    outputs = run_stage(
        stage,
        RunDir(args.run),
        profile=args.profile,
        change_profile=getattr(args, "change_profile", False),
        force=args.force,
        seed=args.seed,
        device=args.device,
        **overrides,
    )
    for path in outputs:
        print(path)
    return 0
