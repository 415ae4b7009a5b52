"""``nt2c calibrate``: measure the run's micrographs against the simulation (``RUN/calibration/``)."""

from __future__ import annotations

import argparse

from nt2c.commands._common import add_stage_args, run_stage_from_args

HELP = "measure defocus, noise level and noise-to-signal ratio of the run's micrographs (RUN/calibration/)"
DESCRIPTION = (
    "Fit each micrograph's defocus and astigmatism to its Thon rings (or list those of a CTFFIND4 or RELION "
    "file beside them), measure the noise level and the noise-to-signal ratio in the micrographs' own units "
    "from the extracted noise patches, and compare them with the simulation: "
    "RUN/calibration/calibration.csv, defocus.csv, calibration.json and spectra.png. A stage of `nt2c run` "
    "(after extract-noise). `--set reweight.method=calibrated` builds the fine pairs at the measured ratio; "
    "`--set simulate.defocus_source=calibration` simulates at the fitted defoci."
)


def add_args(parser: argparse.ArgumentParser) -> None:
    """Add the stage options and those of the calibration."""
    add_stage_args(parser)
    parser.add_argument("--ctffind", default=None, metavar="OUT.txt", help="CTFFIND4 output text file")
    parser.add_argument("--relion", default=None, metavar="CTF.star", help="RELION micrographs_ctf.star")
    parser.add_argument(
        "--box",
        dest="box_px",
        type=int,
        default=None,
        help="tile side of the power spectra (px, default 512)",
    )


def main(args: argparse.Namespace) -> int:
    """Run the stage, then print what it found (``calibration.json``); returns the exit status."""
    from pathlib import Path

    from nt2c.calibration.measure import describe_calibration
    from nt2c.io import read_json

    status = run_stage_from_args(
        "calibrate", args, ctffind=args.ctffind, relion=args.relion, box_px=args.box_px
    )
    summary = read_json(Path(args.run) / "calibration" / "calibration.json")
    print(describe_calibration(summary))
    return status
