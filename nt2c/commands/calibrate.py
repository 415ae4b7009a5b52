"""``nt2c calibrate``: measure the run's micrographs against the simulation (``RUN/calibration/``)."""

from __future__ import annotations

import argparse

HELP = "measure defocus, noise level and noise-to-signal ratio of the run's micrographs (RUN/calibration/)"
DESCRIPTION = (
    "Fit each micrograph's defocus and astigmatism to its Thon rings (or list those of a CTFFIND4 or RELION "
    "file beside them), measure the noise level and the noise-to-signal ratio in the micrographs' own units "
    "from the extracted noise patches, and compare them with the simulation: "
    "RUN/calibration/calibration.csv, calibration.json and spectra.png. "
    "`--set reweight.method=calibrated` builds the fine pairs at the measured ratio."
)


def add_args(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``nt2c calibrate``."""
    parser.add_argument("--run", required=True, metavar="RUN", help="run directory")
    parser.add_argument("--ctffind", default=None, metavar="OUT.txt", help="CTFFIND4 output text file")
    parser.add_argument("--relion", default=None, metavar="CTF.star", help="RELION micrographs_ctf.star")
    parser.add_argument("--box", type=int, default=512, help="tile side of the power spectra (px)")


def main(args: argparse.Namespace) -> int:
    """Run ``nt2c calibrate``; returns the exit status."""
    from nt2c.calibration.measure import calibrate_run
    from nt2c.run.rundir import RunDir

    run = RunDir(args.run)
    summary = calibrate_run(run, ctffind=args.ctffind, relion=args.relion, box_px=args.box)
    nsr = summary.get("noise_to_signal")
    print(f"{summary['micrographs']} micrographs; units: {summary['units']}")
    print(
        f"defocus fitted {summary['defocus_um_fitted'][0]}-{summary['defocus_um_fitted'][1]} um "
        f"(params.yaml: {summary['defocus_um_params'][0]}-{summary['defocus_um_params'][1]} um; "
        f"{summary['outside_params_range']} outside; {summary['fits_at_search_edge']} fits at the edge "
        "of the 0.3-6 um search range, i.e. no ring pattern found)"
    )
    if nsr is not None:
        sim = summary.get("simulated_noise_to_signal")
        print(
            f"noise-to-signal variance ratio {nsr:.3g} (the simulator's: "
            f"{'n/a' if sim is None else f'{sim:.3g}'}); noise variance {summary['noise_variance']:.4g}"
        )
    else:
        why = summary.get("why_no_noise_to_signal", "the signal does not stand out of the noise")
        print(f"noise-to-signal ratio: not measurable ({why})")
    print(run.path / "calibration")
    return 0
