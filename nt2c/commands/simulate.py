"""``nt2c simulate``: simulate micrographs (noisy, clean, coordinates) from experiment parameters."""

from __future__ import annotations

import argparse
from pathlib import Path

from nt2c.commands._common import add_stage_args, run_stage_from_args

HELP = "simulate micrographs and clean targets from experiment parameters"
DESCRIPTION = """Simulate cryo-EM micrographs with the physical simulator (specimen potential, ice, CTF,
detector).

Two modes:
  nt2c simulate --params P.yaml --out DIR [-n N] [--seed S] [--profile P]
      writes DIR/params.yaml and, per micrograph NAME (mic_0000, ...): NAME.mrc (noisy, counts/px),
      NAME_clean.mrc (the clean target), NAME_coords.star and NAME.json; existing files are kept unless
      --force.
  nt2c simulate --run RUN [--profile P]
      runs the pipeline stage: RUN/simulated/ with the micrographs and the training pairs
      (pairs_noisy.mrcs, pairs_clean.mrcs)."""


def add_args(parser: argparse.ArgumentParser) -> None:
    """Options of ``nt2c simulate``."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_stage_args(parser, run_required=False)
    parser.add_argument(
        "--params", metavar="P.yaml", help="experiment parameters (default: the embedded example)"
    )
    parser.add_argument("--out", metavar="DIR", help="output folder for the micrographs (instead of --run)")
    parser.add_argument(
        "-n",
        "--n-micrographs",
        type=int,
        default=None,
        metavar="N",
        help="number of micrographs (default: params' n_micrographs, or the profile's)",
    )


def main(args: argparse.Namespace) -> int:
    """Run ``nt2c simulate``."""
    from nt2c.config import load_params, save_params, stage_config
    from nt2c.errors import ConfigError, InputError
    from nt2c.simulation.stage import simulate_dataset

    if bool(args.run) == bool(args.out):
        raise ConfigError(
            "give exactly one of --out DIR (write micrographs there) or --run RUN (pipeline stage)."
        )
    if args.run:
        if args.params:
            from nt2c.run.rundir import RunDir

            RunDir(args.run).init_params(args.params)
        overrides = {}
        if args.n_micrographs is not None:
            overrides["n_micrographs"] = args.n_micrographs
        return run_stage_from_args("simulate", args, **overrides)
    params = load_params(args.params)
    settings = stage_config(
        "simulate",
        args.profile or "quick",
        seed=args.seed,
        device=args.device,
        n_micrographs=args.n_micrographs,
    )
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder; choose another.")
    out.mkdir(parents=True, exist_ok=True)
    params_path = out / "params.yaml"
    if params_path.exists() and not args.force:
        raise InputError(
            f"{params_path} already exists; use another --out folder or pass --force to replace it."
        )
    n = settings.n_micrographs or params.n_micrographs
    size = settings.image_size_px or params.image_size_px
    if settings.image_size_px is not None or settings.n_micrographs is not None:
        params = load_params(params, n_micrographs=n, image_size_px=list(size))
    written = simulate_dataset(
        params,
        out,
        n_micrographs=n,
        seed=settings.seed,
        image_size_px=size,
        overwrite=args.force,
        allow_fewer=settings.image_size_px is not None,
        device=settings.device,
    )
    save_params(params, params_path, overwrite=True)
    for path in [params_path, *written]:
        print(path)
    return 0
