"""``nt2c evaluate``: every denoiser side by side on a run's micrographs (paper Table 1, Figs 7-9)."""

from __future__ import annotations

import argparse

HELP = "compare denoisers (raw, filters, bm3d, topaz, NT2C) on held-out micrographs: Eq. 5, PSNR/FRC, F1"
DESCRIPTION = (
    "Run every method on the micrographs no model of the run trained on, time it, and write "
    "RUN/report/evaluation.csv, evaluation.md and comparison figures, each saying which split it is on: "
    "'test' (RUN/test, simulated with clean images and coordinates, never trained on), 'experimental' "
    "(RUN/micrographs.txt: the same micrographs the noise was learnt from) and 'heldout' "
    "(RUN/heldout.txt: new micrographs of the same acquisition); --include-training adds the training "
    "micrographs (RUN/simulated, in-sample). Measured: the Eq. 5 SNR from particle and nearby background "
    "boxes, PSNR/SSIM/Pearson/FRC against the clean image where there is one, correlation and FRC against "
    "a --reference image, and mean-shift picking scored against the coordinates. --coords and --reference "
    "files are matched to the micrographs by name: a file whose name (without a _coords, _autopick, "
    "_manualpick, _picks or _particles ending) is NAME belongs to NAME.mrc and NAME_*.mrc (e.g. the "
    "average NAME.mrc is the reference of the single frame NAME_frame.mrc). Methods that cannot run here "
    "(Topaz not installed, NT2C model not trained) are skipped."
)


def add_args(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``nt2c evaluate`` to ``parser``."""
    from nt2c.evaluation.baselines import BASELINES
    from nt2c.evaluation.compare import DEFAULT_METHODS

    parser.add_argument("--run", required=True, metavar="RUN", help="run directory (models, report folder)")
    parser.add_argument(
        "--micrographs",
        nargs="+",
        metavar="MRC",
        default=None,
        help="evaluate these micrographs (paths or quoted patterns) instead of the run's",
    )
    parser.add_argument(
        "--coords",
        nargs="+",
        metavar="FILE",
        default=None,
        help="particle coordinates for the user's micrographs (--micrographs, or the run's micrographs.txt "
        "and heldout.txt): STAR (rlnCoordinateX/Y) or CSV (x,y[,radius], px) files, folders or quoted "
        "patterns, matched by name (NAME_coords.csv -> NAME.mrc, NAME_frame.mrc); default: "
        "<stem>_coords.star/.csv or <stem>_autopick.star beside each micrograph",
    )
    parser.add_argument(
        "--reference",
        nargs="+",
        metavar="IMAGE",
        default=None,
        help="higher-dose images of the same fields (files, folders or quoted patterns), matched by name "
        "(NAME.mrc is the reference of NAME_frame.mrc and any NAME_*.mrc): adds the correlation "
        "coefficient and FRC crossings against them",
    )
    parser.add_argument(
        "--reference-contains-micrograph",
        action="store_true",
        help="the references are averages that include the micrographs (a movie's average scored against one "
        "of its frames): remove each micrograph's own noise from its reference first, else the shared noise "
        "(about 1/sqrt(number of frames) of correlation at every frequency) rewards keeping noise",
    )
    parser.add_argument(
        "--include-training",
        action="store_true",
        help="also score the training micrographs RUN/simulated/mic_NNNN.mrc (in-sample: the coarse training "
        "pairs are cut from them)",
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
    """Run ``nt2c evaluate``: evaluate, print the Markdown tables and the files written; returns 0."""
    from nt2c.evaluation.compare import evaluate_run

    result, written = evaluate_run(
        args.run,
        micrographs=args.micrographs,
        coords=args.coords,
        reference=args.reference,
        include_training=args.include_training,
        reference_contains_micrograph=args.reference_contains_micrograph,
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
