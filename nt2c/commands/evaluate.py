"""``nt2c evaluate``: every denoiser side by side on a run's micrographs (paper Table 1, Figs 7-9)."""

from __future__ import annotations

import argparse

HELP = "compare denoisers (raw, lowpass, gaussian, bm3d, topaz, NT2C): Eq. 5 SNR, PSNR/SSIM/FRC, picking F1"
DESCRIPTION = (
    "Run every method on the run's micrographs (RUN/simulated/mic_NNNN.mrc with their clean images and "
    "coordinates, and RUN/micrographs.txt) or on --micrographs, time it, and write RUN/report/evaluation.csv, "
    "evaluation.md and comparison figures: the Eq. 5 SNR from particle and nearby background boxes, PSNR/SSIM/"
    "Pearson/FRC against the clean image where there is one, and mean-shift picking scored against the "
    "coordinates. Methods that cannot run here (Topaz not installed, NT2C model not trained) are skipped."
)


def add_args(parser: argparse.ArgumentParser) -> None:
    from nt2c.evaluation.baselines import BASELINES
    from nt2c.evaluation.compare import DEFAULT_METHODS

    parser.add_argument("--run", required=True, metavar="RUN", help="run directory (models, report folder)")
    parser.add_argument(
        "--micrographs",
        nargs="+",
        metavar="MRC",
        default=None,
        help="evaluate these micrographs instead of the run's",
    )
    parser.add_argument(
        "--coords",
        nargs="+",
        metavar="STAR",
        default=None,
        help="particle coordinate STAR file(s), one per --micrographs entry (default: "
        "<stem>_coords.star or <stem>_autopick.star beside each micrograph)",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=list(BASELINES),
        default=None,
        metavar="METHOD",
        help=f"methods to compare (default: {' '.join(DEFAULT_METHODS)}); one of {', '.join(BASELINES)}",
    )
    parser.add_argument(
        "--particle-diameter-px",
        type=float,
        default=None,
        metavar="PX",
        help="particle diameter in px (default: from params.yaml, the specimen's diameter over pixel_size_A)",
    )
    parser.add_argument(
        "--max-micrographs",
        type=int,
        default=None,
        metavar="N",
        help="evaluate at most N micrographs per dataset",
    )
    parser.add_argument(
        "--mask-contamination",
        action="store_true",
        help="leave large dark objects (ice, ethane) out of the regions, the picks and the scoring",
    )
    parser.add_argument("--no-picking", action="store_true", help="skip the particle-picking case study")
    parser.add_argument("--no-figures", action="store_true", help="write only the tables")
    parser.add_argument(
        "--bm3d-stages",
        choices=("all", "hard"),
        default="all",
        help="BM3D stages: all (default) or hard (hard thresholding only, about twice as fast)",
    )
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def main(args: argparse.Namespace) -> int:
    from nt2c.evaluation.compare import evaluate_run

    result, written = evaluate_run(
        args.run,
        micrographs=args.micrographs,
        coords=args.coords,
        methods=args.methods,
        particle_diameter_px=args.particle_diameter_px,
        max_micrographs=args.max_micrographs,
        device=args.device,
        picking=not args.no_picking,
        mask_contamination=args.mask_contamination,
        figures=not args.no_figures,
        method_options={"stages": args.bm3d_stages},
        seed=args.seed,
    )
    print(result.to_markdown())
    for path in written:
        print(path)
    return 0
