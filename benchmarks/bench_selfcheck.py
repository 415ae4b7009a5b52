"""Measure whether the self-checks pick the better denoiser where the truth is known.

The self-checks (:mod:`nt2c.evaluation.selfcheck`) rank denoised versions of a micrograph without ground
truth: Stein's estimate of each output's correlation with the clean signal (what ``nt2c run`` decides by) and
the residual test (how closely ``raw - denoised`` matches the spectrum of the noise patches). This script
compares each one's choice with the truth, for every pair of outputs on every micrograph:

* simulated stand-ins of a finished ``nt2c run`` (``--run``): truth = PSNR against the clean image (fitted);
  noise patches = the run's ``RUN/noise/patches.mrcs``; models = every ``RUN/models/*.safetensors`` U-Net
  (coarse, fine, and any variants saved beside them) and, as extra contestants, Gaussian filters;
* real single frames (``--real-run`` with ``--real-dir``): each ``NAME_frame.mrc`` (about 2 e/A^2) is denoised
  and the truth is the correlation with the other 49 frames (the average ``NAME.mrc`` minus the frame's fitted
  share, :func:`nt2c.evaluation.metrics.decorrelated_reference`) after a scale-and-offset fit; the
  noise patches are the run's own when it learnt from the frames, else they are cut from the frame at the
  background boxes the run found on the average (``RUN/noise/patches.csv``);
* independent simulated micrographs (``--simulate PARAMS`` with the models of ``--models-run``): fresh
  micrographs of nt2c's simulator at seeds no run uses (for example at 2 e/A^2, a simulated single frame),
  truth = PSNR against the clean image; noise patches = crops of particle-free micrographs simulated alike.

Run::

    python benchmarks/bench_selfcheck.py --run RUN \
        [--real-run RUN_REAL --real-dir ../shared/data/real/empiar10146] \
        [--simulate PARAMS --models-run RUN_M --n-simulated 4]

It prints, and writes as Markdown and JSON (``--out``), the share of pairs where each self-check agrees with
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

STEIN_PROBES = 4  # as nt2c.run.delivery.STEIN_PROBES


def _models(run: Path) -> dict[str, Path]:
    out = {}
    for path in sorted((run / "models").glob("*.safetensors")):
        if path.stem != "gan":
            out[path.stem] = path
    return out


def _denoisers(models: dict, *, tile: int, gaussians=(1.0, 2.0, 4.0)) -> dict:
    from scipy import ndimage

    from nt2c.denoiser.inference import denoise_micrograph

    def network(model):
        return lambda y: denoise_micrograph(model, y, device="cpu", tile=tile, show_progress=False)

    def gaussian(sigma):
        return lambda y: ndimage.gaussian_filter(np.asarray(y, np.float64), sigma).astype(np.float32)

    out = {name: network(m) for name, m in models.items()}
    out.update({f"gaussian{sigma:g}": gaussian(sigma) for sigma in gaussians})
    return out


def _score(raw, denoisers: dict, noise, truth) -> list[dict]:
    """One row per output: its truth figure and both self-checks."""
    from nt2c.evaluation.selfcheck import residual_mismatch_dB, stein_check

    rows = []
    for name, denoise in denoisers.items():
        out = denoise(raw)
        residual = residual_mismatch_dB(raw, out, noise)
        stein = stein_check(denoise, raw, noise, denoised=out, n_probes=STEIN_PROBES)
        rows.append(
            {
                "method": name,
                "truth": truth(out),
                "stein_score": stein.signal_score,
                "stein_se": stein.score_standard_error,
                "stein_correlation": stein.correlation,
                "mismatch_dB": residual.mismatch_dB,
                "variance_ratio": residual.variance_ratio,
            }
        )
    return rows


def _agreement(rows: list[dict]) -> dict:
    """How often each check orders a pair of outputs of one micrograph as the truth does."""
    checks = {"stein": lambda r: r["stein_score"], "residual": lambda r: -r["mismatch_dB"]}
    keys = ("pairs", "agree", "coarse_fine_pairs", "coarse_fine_agree")
    result = {name: dict.fromkeys(keys, 0) for name in checks}
    by_mic: dict[str, list[dict]] = {}
    for r in rows:
        by_mic.setdefault(r["micrograph"], []).append(r)
    from nt2c.run.delivery import _better

    both = {"coarse_fine_pairs": 0, "coarse_fine_agree": 0}  # the rule nt2c run decides by
    for mic_rows in by_mic.values():
        named = {r["method"]: r for r in mic_rows}
        if {"coarse", "fine"} <= set(named) and named["fine"]["truth"] != named["coarse"]["truth"]:
            fine, coarse = (
                {
                    "score": r["stein_score"],
                    "score_se": r.get("stein_se", 0.0),
                    "residual_dB": r["mismatch_dB"],
                }
                for r in (named["fine"], named["coarse"])
            )
            says_fine = _better(fine, coarse) == "fine"
            both["coarse_fine_pairs"] += 1
            both["coarse_fine_agree"] += says_fine == (named["fine"]["truth"] > named["coarse"]["truth"])
        for a, b in itertools.combinations(mic_rows, 2):
            if a["truth"] == b["truth"]:
                continue
            for name, key in checks.items():
                right = (a["truth"] > b["truth"]) == (key(a) > key(b))
                tally = result[name]
                tally["pairs"] += 1
                tally["agree"] += right
                if {a["method"], b["method"]} == {"coarse", "fine"}:
                    tally["coarse_fine_pairs"] += 1
                    tally["coarse_fine_agree"] += right
    return {**result, "rule (nt2c run)": {"pairs": 0, "agree": 0, **both}}


def simulated(run: Path) -> list[dict]:
    from nt2c.denoiser.inference import load_model
    from nt2c.evaluation.metrics import psnr
    from nt2c.io import read_image, read_json, read_mrc

    noise, _ = read_mrc(run / "noise" / "patches.mrcs")
    denoisers = _denoisers({k: load_model(v) for k, v in _models(run).items()}, tile=512)
    manifest = read_json(run / "experimental" / "manifest.json")
    rows = []
    for entry in manifest["micrographs"]:
        raw, _ = read_image(entry["micrograph"])
        clean, _ = read_image(entry["clean"])
        for row in _score(raw, denoisers, noise, lambda out: psnr(out, clean)):
            name, split = Path(entry["micrograph"]).name, entry.get("split", "learn")
            rows.append({"micrograph": name, "split": split, **row})
    return rows


def real_frames(run: Path, data: Path) -> list[dict]:
    from nt2c.denoiser.inference import load_model
    from nt2c.evaluation.metrics import decorrelated_reference, pearson
    from nt2c.io import read_image, read_mrc

    denoisers = _denoisers({k: load_model(v) for k, v in _models(run).items()}, tile=512)
    own_noise = read_mrc(run / "noise" / "patches.mrcs")[0]
    d = own_noise.shape[-1]
    boxes: dict[str, list[tuple[int, int]]] = {}
    with open(run / "noise" / "patches.csv", newline="") as handle:
        for r in csv.DictReader(handle):
            boxes.setdefault(r["micrograph"], []).append((int(r["row"]), int(r["col"])))
    learnt_from_frames = any(name.endswith("_frame.mrc") for name in boxes)
    rows = []
    for frame_path in sorted(data.glob("*_frame.mrc")):
        average_name = frame_path.name.replace("_frame.mrc", ".mrc")
        frame, _ = read_image(frame_path)
        average, _ = read_image(data / average_name)
        reference, _ = decorrelated_reference(frame, average)  # the other 49 frames: no shared noise
        if learnt_from_frames:
            noise = own_noise
        elif average_name in boxes:
            noise = np.stack([frame[r : r + d, c : c + d] for r, c in boxes[average_name]])
        else:
            print(f"skipping {frame_path.name}: no noise box on {average_name}", file=sys.stderr)
            continue
        for row in _score(frame, denoisers, noise, lambda out: pearson(out, reference)):
            rows.append({"micrograph": frame_path.name, "split": _split(frame_path.name), **row})
    return rows


def _split(name: str) -> str:
    """DEV (even position) or HELD-OUT (odd) among the sorted averages, as in bench_real.py."""
    names = ["May08_03.05.02", "May08_03.15.02", "May08_04.32.27", "May08_04.36.57", "May08_05.31.00"]
    names += ["May08_05.53.51", "May08_05.57.01", "May08_06.30.43", "May08_07.10.35", "May08_07.30.46"]
    stem = name.split("_frame")[0].removesuffix(".mrc")
    return ("dev", "held-out")[names.index(stem) % 2] if stem in names else "?"


def simulated_fresh(params_path: Path, models_run: Path, n: int, *, patch_px: int = 64) -> list[dict]:
    """Fresh simulated micrographs (seeds 900_000 + k) and particle-free ones for their noise patches."""
    from nt2c.config import load_params
    from nt2c.denoiser.inference import load_model
    from nt2c.evaluation.metrics import psnr
    from nt2c.simulation.micrograph import simulate_micrograph

    params = load_params(params_path)
    denoisers = _denoisers({k: load_model(v) for k, v in _models(models_run).items()}, tile=512)
    patches = []
    for k in range(2):
        empty = simulate_micrograph(params, seed=950_000 + k, n_particles=0, device="cpu").noisy
        ny, nx = (s // patch_px for s in empty.shape)
        cut = empty[: ny * patch_px, : nx * patch_px].reshape(ny, patch_px, nx, patch_px)
        patches.append(cut.transpose(0, 2, 1, 3).reshape(-1, patch_px, patch_px))
    noise = np.concatenate(patches)
    rows = []
    for k in range(n):
        mic = simulate_micrograph(params, seed=900_000 + k, device="cpu", allow_fewer=True)
        for row in _score(mic.noisy, denoisers, noise, lambda out: psnr(out, mic.clean)):
            rows.append({"micrograph": f"sim_{k:02d}", "split": "fresh", **row})
    return rows


def _markdown(title: str, rows: list[dict], truth: str) -> str:
    lines = [
        f"### {title}",
        "",
        f"| micrograph | method | {truth} | Stein score | Stein r | residual mismatch (dB) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['micrograph']} ({r['split']}) | {r['method']} | {r['truth']:.4g} | "
            f"{r['stein_score']:.4g} | {r['stein_correlation']:.3f} | {r['mismatch_dB']:.2f} |"
        )
    lines.append("")
    for split in sorted({r["split"] for r in rows}) + ["all"]:
        chosen = [r for r in rows if split in ("all", r["split"])]
        for name, a in _agreement(chosen).items():
            if name.startswith("rule"):
                lines.append(
                    f"- {split}: {name}: right on coarse vs fine {a['coarse_fine_agree']} of "
                    f"{a['coarse_fine_pairs']}."
                )
                continue
            lines.append(
                f"- {split}: {name} check agrees with the truth on {a['agree']} of {a['pairs']} pairs of "
                f"outputs; on coarse vs fine {a['coarse_fine_agree']} of {a['coarse_fine_pairs']}."
            )
    lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="a finished nt2c run on the embedded default (stand-ins)")
    parser.add_argument("--real-run", type=Path, help="a finished nt2c run on the real averages")
    parser.add_argument("--real-dir", type=Path, default=Path("../shared/data/real/empiar10146"))
    parser.add_argument("--simulate", type=Path, help="parameters of fresh simulated micrographs")
    parser.add_argument("--models-run", type=Path, help="the run whose models score the fresh micrographs")
    parser.add_argument("--n-simulated", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/selfcheck"))
    args = parser.parse_args(argv)
    if not (args.run or args.real_run or args.simulate):
        parser.error("give --run, --real-run and/or --simulate")
    if args.simulate and not args.models_run:
        parser.error("--simulate needs --models-run")
    args.out.mkdir(parents=True, exist_ok=True)
    report, summary = [], {}
    start = time.perf_counter()
    if args.run:
        rows = simulated(args.run)
        report.append(_markdown(f"Simulated stand-ins ({args.run})", rows, "PSNR (dB)"))
        summary["simulated"] = {"rows": rows, "agreement": _agreement(rows)}
    if args.real_run:
        rows = real_frames(args.real_run, args.real_dir)
        title = f"Real single frames ({args.real_dir}, models of {args.real_run})"
        report.append(_markdown(title, rows, "r"))
        summary["real_frames"] = {"rows": rows, "agreement": _agreement(rows)}
    if args.simulate:
        rows = simulated_fresh(args.simulate, args.models_run, args.n_simulated)
        title = f"Fresh simulated micrographs ({args.simulate}, models of {args.models_run})"
        report.append(_markdown(title, rows, "PSNR (dB)"))
        summary["fresh_simulated"] = {"rows": rows, "agreement": _agreement(rows)}
    summary["seconds"] = round(time.perf_counter() - start, 1)
    text = "\n".join(report)
    (args.out / "selfcheck.md").write_text(text)
    (args.out / "selfcheck.json").write_text(json.dumps(summary, indent=1, default=float))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
