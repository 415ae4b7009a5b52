"""Measure which background test separates empty ice from particles, on averages and on single frames.

For every candidate patch of a micrograph of the labelled EMPIAR-10146 set, the three criteria of
:func:`nt2c.extract_noise_patches` (``ssim``, ``std``, ``meanvar``) give a score on the coarse-denoised image.
The labels (``NAME_coords.csv``: x, y, radius in px) say which candidates are background (no labelled particle
disc within ``--margin`` px of the box) and which hold a particle (a labelled centre inside the box). The
script reports, per criterion and per image kind (50-frame average, single 2 e/A^2 frame), the area under the
ROC curve of the score for telling the two apart (1 = perfect, 0.5 = chance) and the share of background among
the candidates the criterion ranks best (precision of the top 10 %).

Run on the development half only (choose nothing on the held-out half)::

    python benchmarks/bench_extraction_criteria.py --model RUN/models/coarse.safetensors \
        --names May08_03.05.02 May08_04.32.27 May08_05.31.00
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

DEV = ("May08_03.05.02", "May08_04.32.27", "May08_05.31.00")


def _labels(path: Path) -> np.ndarray:
    with open(path, newline="") as handle:
        return np.array([(float(r["x"]), float(r["y"]), float(r["radius"])) for r in csv.DictReader(handle)])


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    scores = np.concatenate([positive, negative])
    ranks = np.argsort(np.argsort(scores, kind="stable"), kind="stable") + 1.0
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = (sums / counts)[inverse]  # average rank of ties
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def candidate_classes(result, labels: np.ndarray, patch: int, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Masks of background candidates and of candidates holding a labelled particle centre."""
    from nt2c.extraction import box_particle_distance

    boxes = result.candidates
    xy = labels[:, :2]
    radius = float(np.median(labels[:, 2]))
    dist = box_particle_distance(boxes, patch, xy)
    return dist > radius + margin, dist == 0


def main(argv=None) -> int:
    from nt2c.denoiser.inference import denoise_micrograph, load_model
    from nt2c.extraction import extract_noise_patches
    from nt2c.io import read_image

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", type=Path, required=True, help="coarse model of a run on these micrographs"
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data/real/empiar10146"))
    parser.add_argument("--names", nargs="+", default=list(DEV))
    parser.add_argument("--patch-size", type=int, default=64)
    parser.add_argument(
        "--margin", type=float, default=8.0, help="px between a background box and a particle"
    )
    parser.add_argument(
        "--gaussian-px", type=float, default=None, help="enhance by a Gaussian filter of this sigma instead"
    )
    args = parser.parse_args(argv)
    model = load_model(args.model)
    kinds = {"average": "{}.mrc", "frame": "{}_frame.mrc"}
    sign = {"ssim": 1.0, "std": -1.0, "meanvar": -1.0}  # higher = more background-like
    pooled: dict[tuple[str, str], tuple[list, list]] = {}
    for name in args.names:
        labels = _labels(args.data / f"{name}_coords.csv")
        for kind, pattern in kinds.items():
            path = args.data / pattern.format(name)
            if not path.is_file():
                continue
            raw, _ = read_image(path)
            if args.gaussian_px:
                from scipy import ndimage

                enhanced = ndimage.gaussian_filter(raw, args.gaussian_px)
            else:
                enhanced = denoise_micrograph(model, raw, device="cpu", show_progress=False)
            for criterion in sign:
                result = extract_noise_patches(
                    raw,
                    enhanced,
                    patch_size=args.patch_size,
                    criterion=criterion,
                    threshold=-1.0,
                    std_max=1e9,
                    mean_tol=1e9,
                    var_tol=1e9,
                    outlier_sigma=None,
                    allow_empty=True,
                )
                background, particle = candidate_classes(result, labels, args.patch_size, args.margin)
                score = sign[criterion] * result.candidate_scores
                pos, neg = pooled.setdefault((kind, criterion), ([], []))
                pos.append(score[background])
                neg.append(score[particle])
    print("| image | criterion | background / particle candidates | ROC AUC | background share of top 10 % |")
    print("|---|---|---:|---:|---:|")
    for (kind, criterion), (pos, neg) in pooled.items():
        pos, neg = np.concatenate(pos), np.concatenate(neg)
        scores = np.concatenate([pos, neg])
        top = np.argsort(-scores, kind="stable")[: max(1, len(scores) // 10)]
        share = float((top < len(pos)).mean())
        print(f"| {kind} | {criterion} | {len(pos)} / {len(neg)} | {auc(pos, neg):.3f} | {share:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
