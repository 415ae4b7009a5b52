"""``nt2c run``: the whole NT2C method, from simulation to denoised micrographs and a report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nt2c.commands._common import add_profile_args

HELP = "run the whole method (simulate ... train-fine), denoise the micrographs and write a report"
DESCRIPTION = (
    "Run simulate, train-coarse, extract-noise, train-gan, reweight and train-fine in RUN (each skipped when "
    "complete; a killed run resumes from the last stage or checkpoint), denoise the micrographs into "
    "RUN/denoised/ and write RUN/report/report.md. Without --micrographs it runs on the embedded default: "
    "'experimental' micrographs simulated with structural ice noise, a K2 detector and a gain non-uniformity."
)


def add_args(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``nt2c run``."""
    parser.add_argument(
        "--params",
        default=None,
        metavar="P.yaml",
        help="acquisition parameters of the micrographs (default: RUN/params.yaml, else the "
        "embedded example)",
    )
    parser.add_argument(
        "--micrographs",
        nargs="+",
        default=None,
        metavar="'DIR/*.mrc'",
        help="micrographs to learn the noise from and denoise (paths or quoted glob patterns)",
    )
    parser.add_argument("--out", required=True, metavar="RUN", help="run directory (created, or resumed)")
    add_profile_args(parser)
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument(
        "--seed", type=int, default=None, help="random seed of every stage (default: the run's, else 0)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="STAGE.KEY=VALUE",
        dest="overrides",
        help="replace one stage setting of the profile, e.g. --set extract-noise.threshold=0.5 "
        "--set train-fine.steps=900 (repeatable; kept for later calls on the run, see RUN/run.json; a "
        "changed setting re-runs its stage and every stage after it)",
    )
    parser.add_argument(
        "--use-model",
        choices=("auto", "fine", "coarse"),
        default=None,
        help="what RUN/denoised holds: the model Stein's self-check finds better on your micrographs "
        "(auto, the default), or always the fine or the coarse one (same as --set denoise.model=...)",
    )
    parser.add_argument(
        "--no-coarse-comparison",
        action="store_true",
        help="do not denoise the micrographs with the coarse model (no self-check: the fine model is used)",
    )


def main(args: argparse.Namespace) -> int:
    """Run ``nt2c run``; returns the exit status (2 when a micrograph was skipped)."""
    from nt2c.config import parse_stage_overrides
    from nt2c.run.pipeline import run_pipeline
    from nt2c.run.rundir import RunDir

    profile = args.profile
    if profile is None:  # validate --set against the profile the run will use
        info = RunDir(args.out).read_info() if Path(args.out).is_dir() else {}
        profile = info.get("profile") or "quick"
    overrides = parse_stage_overrides(args.overrides, profile)
    if args.use_model is not None:
        overrides.setdefault("denoise", {})["model"] = args.use_model
    result = run_pipeline(
        args.params,
        out=args.out,
        micrographs=args.micrographs,
        profile=args.profile,
        device=args.device,
        seed=args.seed,
        compare_coarse=not args.no_coarse_comparison,
        stage_overrides=overrides,
        change_profile=args.change_profile,
        echo=lambda line: print(line, file=sys.stderr, flush=True),
    )
    for path in result.denoised:
        print(path)
    print(
        f"RUN/denoised holds the {result.delivered} model's output: {result.delivered_reason}",
        file=sys.stderr,
    )
    if result.failed:
        print(
            f"nt2c run: {len(result.failed)} micrograph(s) skipped (listed in {result.report}); fix or "
            "remove them and run the same command again.",
            file=sys.stderr,
        )
        return 2
    if not result.did_work:
        print(f"nothing to do: {args.out} is complete.", file=sys.stderr)
    return 0
