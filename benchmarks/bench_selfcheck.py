"""Measure whether the residual self-check picks the better denoiser where the truth is known.

The self-check (:mod:`nt2c.evaluation.selfcheck`) ranks denoised versions of a micrograph without ground
truth, by how closely the residual ``raw - denoised`` matches the spectrum of the run's extracted noise
patches. This script compares its choice with the truth, for every pair of models on every micrograph:

* simulated stand-ins of a finished ``nt2c run`` (``--run``): truth = PSNR against the clean image (fitted);
  noise patches = the run's ``RUN/noise/patches.mrcs``; models = every ``RUN/models/*.safetensors`` U-Net
  (coarse, fine, and any variants saved beside them) and, as extra contestants, Gaussian filters;
* real single frames (``--real-run`` with ``--real-dir``): each ``NAME_frame.mrc`` (about 2 e/A^2) is denoised
  and the truth is the correlation with the other 49 frames (the average ``NAME.mrc`` minus the frame's fitted
  share, :func:`nt2c.evaluation.metrics.decorrelated_reference`) after a scale-and-offset fit; the
  noise patches are cut from the frame at the background boxes the real run found on the average
  (``RUN/noise/patches.csv``).

Run::

    python benchmarks/bench_selfcheck.py --run RUN \
        [--real-run RUN_REAL --real-dir ../shared/data/real/empiar10146]

It prints, and writes as Markdown and JSON (``--out``), the share of pairs where the self-check agrees with
the truth, for coarse-vs-fine pairs and for all pairs.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np


def _models(run: Path) -> dict[str, Path]:
    out = {}
    for path in sorted((run / "models").glob("*.safetensors")):
        if path.stem != "gan":
            out[path.stem] = path
    return out


def _outputs(raw: np.ndarray, models: dict, *, tile: int, gaussians=(1.0, 2.0, 4.0)) -> dict[str, np.ndarray]:
    from scipy import ndimage

    from nt2c.denoiser.inference import denoise_micrograph

    outs = {
        name: denoise_micrograph(m, raw, device="cpu", tile=tile, show_progress=False)
        for name, m in models.items()
    }
    for sigma in gaussians:
        outs[f"gaussian{sigma:g}"] = ndimage.gaussian_filter(raw.astype(np.float64), sigma).astype(np.float32)
    return outs


def _agreement(rows: list[dict], higher_is_better: str) -> dict:
    pairs, agree, cf_pairs, cf_agree = 0, 0, 0, 0
    by_mic: dict[str, list[dict]] = {}
    for r in rows:
        by_mic.setdefault(r["micrograph"], []).append(r)
    for mic_rows in by_mic.values():
        for a, b in itertools.combinations(mic_rows, 2):
            if a[higher_is_better] == b[higher_is_better]:
                continue
            truth_a = a[higher_is_better] > b[higher_is_better]
            check_a = a["mismatch_dB"] < b["mismatch_dB"]
            pairs += 1
            agree += truth_a == check_a
            if {a["method"], b["method"]} == {"coarse", "fine"}:
                cf_pairs += 1
                cf_agree += truth_a == check_a
    return {"pairs": pairs, "agree": agree, "coarse_fine_pairs": cf_pairs, "coarse_fine_agree": cf_agree}


def simulated(run: Path) -> tuple[list[dict], dict]:
    from nt2c.denoiser.inference import load_model
    from nt2c.evaluation.metrics import psnr
    from nt2c.evaluation.selfcheck import residual_mismatch_dB
    from nt2c.io import read_image, read_json, read_mrc

    noise, _ = read_mrc(run / "noise" / "patches.mrcs")
    models = {k: load_model(v) for k, v in _models(run).items()}
    manifest = read_json(run / "experimental" / "manifest.json")
    rows = []
    for entry in manifest["micrographs"]:
        raw, _ = read_image(entry["micrograph"])
        clean, _ = read_image(entry["clean"])
        for name, out in _outputs(raw, models, tile=512).items():
            check = residual_mismatch_dB(raw, out, noise)
            rows.append(
                {
                    "micrograph": Path(entry["micrograph"]).name,
                    "split": entry.get("split", "learn"),
                    "method": name,
                    "psnr_dB": psnr(out, clean),
                    "mismatch_dB": check.mismatch_dB,
                    "variance_ratio": check.variance_ratio,
                }
            )
    return rows, _agreement(rows, "psnr_dB")


def real_frames(run: Path, data: Path) -> tuple[list[dict], dict]:
    from nt2c.denoiser.inference import load_model
    from nt2c.evaluation.metrics import decorrelated_reference, pearson
    from nt2c.evaluation.selfcheck import residual_mismatch_dB
    from nt2c.io import read_image, read_mrc

    models = {k: load_model(v) for k, v in _models(run).items()}
    d = read_mrc(run / "noise" / "patches.mrcs")[0].shape[-1]
    boxes: dict[str, list[tuple[int, int]]] = {}
    with open(run / "noise" / "patches.csv", newline="") as handle:
        for r in csv.DictReader(handle):
            boxes.setdefault(r["micrograph"], []).append((int(r["row"]), int(r["col"])))
    rows = []
    for frame_path in sorted(data.glob("*_frame.mrc")):
        average_name = frame_path.name.replace("_frame.mrc", ".mrc")
        if average_name not in boxes:
            print(
                f"skipping {frame_path.name}: the real run found no noise box on {average_name}",
                file=sys.stderr,
            )
            continue
        frame, _ = read_image(frame_path)
        average, _ = read_image(data / average_name)
        reference, _ = decorrelated_reference(frame, average)  # the other 49 frames: no shared noise
        noise = np.stack([frame[r : r + d, c : c + d] for r, c in boxes[average_name]])
        for name, out in _outputs(frame, models, tile=512).items():
            check = residual_mismatch_dB(frame, out, noise)
            rows.append(
                {
                    "micrograph": frame_path.name,
                    "split": "frame",
                    "method": name,
                    "correlation": pearson(out, reference),
                    "mismatch_dB": check.mismatch_dB,
                    "variance_ratio": check.variance_ratio,
                }
            )
    return rows, _agreement(rows, "correlation")


def _markdown(title: str, rows: list[dict], agreement: dict, truth: str) -> str:
    lines = [
        f"### {title}",
        "",
        f"| micrograph | method | {truth} | residual mismatch (dB) | variance ratio |",
    ]
    lines.append("|---|---|---:|---:|---:|")
    for r in rows:
        lines.append(
            f"| {r['micrograph']} ({r['split']}) | {r['method']} | {r[truth]:.4g} | {r['mismatch_dB']:.2f} | "
            f"{r['variance_ratio']:.3f} |"
        )
    a = agreement
    lines += [
        "",
        f"Self-check agrees with the truth on {a['agree']} of {a['pairs']} pairs of methods; "
        f"on coarse vs fine {a['coarse_fine_agree']} of {a['coarse_fine_pairs']}.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="a finished nt2c run on the embedded default (stand-ins)")
    parser.add_argument("--real-run", type=Path, help="a finished nt2c run on the real averages")
    parser.add_argument("--real-dir", type=Path, default=Path("../shared/data/real/empiar10146"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/selfcheck"))
    args = parser.parse_args(argv)
    if not args.run and not args.real_run:
        parser.error("give --run and/or --real-run")
    args.out.mkdir(parents=True, exist_ok=True)
    report, summary = [], {}
    start = time.perf_counter()
    if args.run:
        rows, agreement = simulated(args.run)
        report.append(_markdown(f"Simulated stand-ins ({args.run})", rows, agreement, "psnr_dB"))
        summary["simulated"] = {"rows": rows, "agreement": agreement}
    if args.real_run:
        rows, agreement = real_frames(args.real_run, args.real_dir)
        report.append(_markdown(f"Real single frames ({args.real_dir})", rows, agreement, "correlation"))
        summary["real_frames"] = {"rows": rows, "agreement": agreement}
    summary["seconds"] = round(time.perf_counter() - start, 1)
    text = "\n".join(report)
    (args.out / "selfcheck.md").write_text(text)
    (args.out / "selfcheck.json").write_text(json.dumps(summary, indent=1, default=float))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
