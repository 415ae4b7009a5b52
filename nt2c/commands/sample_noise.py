"""``nt2c sample-noise``: generate noise patches with the run's trained GAN."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "generate N noise patches with the trained GAN (MRC stack)"
DESCRIPTION = (
    "Generate N noise patches with RUN/models/gan.safetensors (or --model) and write them as a float32 MRC "
    "stack "
    "(default RUN/noise/generated.mrcs), in the units of the extracted patches, with the run's pixel size."
)


def add_args(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``nt2c sample-noise``."""
    parser.add_argument("--run", required=True, metavar="RUN", help="run directory")
    parser.add_argument("-n", type=int, required=True, metavar="N", help="number of patches")
    parser.add_argument(
        "-o",
        "--out",
        default=None,
        metavar="OUT.mrcs",
        help="output stack (default RUN/noise/generated.mrcs)",
    )
    parser.add_argument(
        "--model", default=None, help="generator weights (default RUN/models/gan.safetensors)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the latent vectors (default 0)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--batch-size", type=int, default=256, help="patches per forward pass (default 256)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def main(args: argparse.Namespace) -> int:
    """Run ``nt2c sample-noise``; returns the exit status."""
    from nt2c.io import read_json, write_mrc
    from nt2c.noise.generator import sample_noise
    from nt2c.run.rundir import RunDir

    run = RunDir(args.run)
    model = Path(args.model) if args.model else run.path / "models" / "gan.safetensors"
    out = Path(args.out) if args.out else run.path / "noise" / "generated.mrcs"
    patches = sample_noise(model, args.n, seed=args.seed, device=args.device, batch_size=args.batch_size)
    sidecar = model.with_suffix(".json")
    pixel_size = read_json(sidecar).get("pixel_size_A") if sidecar.is_file() else None
    if pixel_size is None and run.params_path.is_file():
        pixel_size = run.params().pixel_size_A
    write_mrc(out, patches, pixel_size_A=pixel_size, overwrite=args.overwrite)
    print(out)
    return 0
