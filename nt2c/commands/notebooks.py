"""``nt2c notebooks run``: execute the tutorial series with papermill."""

from __future__ import annotations

import argparse

from nt2c.config import PROFILES

HELP = "run the tutorial notebooks in batch (papermill)"
DESCRIPTION = (
    "Execute the ordered notebook series (notebooks/NN_*.ipynb) with papermill, "
    "each in a fresh python3 kernel, "
    "with the profile's parameters injected; write the executed notebooks and a summary; "
    "exit 1 if any failed."
)


def add_args(parser: argparse.ArgumentParser) -> None:
    """Add the ``run`` and ``list`` actions and their options to the ``notebooks`` subcommand's parser."""
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    run = sub.add_parser("run", help="execute the series", description=DESCRIPTION)
    run.add_argument("--profile", choices=PROFILES, default="quick", help="run profile (default: quick)")
    run.add_argument("--out", default="runs/notebooks", help="output folder (default: runs/notebooks)")
    run.add_argument("--only", nargs="+", metavar="NN", help="notebook numbers or name prefixes to run")
    run.add_argument(
        "--params",
        action="append",
        metavar="P.yaml",
        help="experiment parameter file; repeat to run the series once per file",
    )
    run.add_argument(
        "--notebooks", default=None, help="folder of the series (default: the repository's notebooks/)"
    )
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--device", default="auto")
    run.add_argument("--timeout", type=int, default=None, metavar="S", help="limit for one cell, in seconds")
    run.add_argument("--force", action="store_true", help="re-run notebooks that passed before")
    sub.add_parser("list", help="list the notebooks of the series")


def main(args: argparse.Namespace) -> int:
    """Run or list the notebooks; return the exit status (1 when a notebook failed, else 0)."""
    from nt2c.tutorial.runner import format_summary, list_notebooks, run_notebooks

    if args.action == "list":
        for book in list_notebooks():
            print(book.name)
        return 0
    results = run_notebooks(
        profile=args.profile,
        out=args.out,
        only=args.only,
        params_files=args.params,
        notebooks_dir=args.notebooks,
        seed=args.seed,
        device=args.device,
        cell_timeout_s=args.timeout,
        force=args.force,
    )
    print()
    print(format_summary(results))
    return 1 if any(r.status == "failed" for r in results) else 0
