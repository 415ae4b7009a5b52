"""NT2C on micrographs from a simulator that is not nt2c's (cryoJAX; issue 14), scored against their truth.

Data: ``benchmarks/independent_sim/make_cryojax_micrographs.py --out DATA`` (run in a cryoJAX environment;
its docstring gives the options of data sets A and B):
8 micrographs ``mic_NN.mrc`` of the 20S proteasome with an ice thickness ramp, structural ice, the K2 MTF and
gain errors, their labels ``mic_NN_coords.csv`` and truth ``mic_NN_clean.mrc`` (the expected image without
shot noise, structural ice or pixel gain errors).

NT2C is run as a user would run it, on all 8 micrographs, with what a user knows
(``benchmarks/independent_cryojax.yaml``: nominal defocus range, guessed ice)::

    nt2c run --params benchmarks/independent_cryojax.yaml --micrographs 'DATA/mic_??.mrc' \
        --out RUN --profile quick

(``--make-run`` does it). Split as in ``bench_real.py``: DEV = even positions of the sorted names, TEST = odd;
the one setting chosen, each method's picker threshold, is chosen on DEV. No NT2C setting was chosen on these
micrographs (nothing of the generator was tuned on the TEST half either).

Per method and split: Pearson r with the truth (16 px border cropped), Eq. 5 SNR at the labelled particles
and picking F1 (``bench_real.py``'s boxes, picker and matching), the picker on the truth images themselves
(the best a denoiser could give it), and per frequency band the output's power against the raw micrograph's
and its correlation with the truth (:func:`band_agreement`: where a denoiser helps or hurts). With
``--calibration`` it also scores ``nt2c calibrate --run RUN`` against the generator's truth (defocus per
micrograph).

Run::

    python benchmarks/bench_independent.py --data DATA --run RUN [--make-run] [--topaz-cmd CMD] [--out DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_real  # noqa: E402

REPO = HERE.parent
PARAMS = HERE / "independent_cryojax.yaml"
METHODS = ("raw", "gaussian", "topaz", "nt2c-coarse", "nt2c-fine", "nt2c-fine-calibrated")
CROP_PX = 16


def truth_correlation(data: Path, cache: Path, methods, names) -> list[dict]:
    """Pearson r of each cached output (``cache/METHOD/avg_NAME.npy``) with ``NAME_clean.mrc``."""
    from nt2c.evaluation.metrics import pearson
    from nt2c.io import read_image

    rows = []
    for name in names:
        clean = read_image(data / f"{name}_clean.mrc")[0][CROP_PX:-CROP_PX, CROP_PX:-CROP_PX]
        for method in methods:
            path = cache / method / f"avg_{name}.npy"
            if path.is_file():
                out = np.load(path)[CROP_PX:-CROP_PX, CROP_PX:-CROP_PX]
                rows.append({"micrograph": name, "method": method, "r_truth": pearson(out, clean)})
    return rows


#: Frequency bands (cycles/px) of :func:`band_agreement`: particle scale (80 px here) to Nyquist.
BANDS_PER_PX = (0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.5)


def band_agreement(data: Path, cache: Path, methods, names) -> dict[str, dict[str, list[float]]]:
    """Compare each output with the raw micrograph and the truth per frequency band, pooled over ``names``.

    Per band: the output's power over the raw micrograph's, and its correlation with the truth (both images
    standardised; the real part of the cross-spectrum summed over the band). Says *where* in frequency a
    denoiser agrees with the truth: the picker works at the particle scale (0.005-0.02 cycles/px here);
    Eq. 5 and r are dominated by the strongest bands.

    Returns
    -------
    dict
        ``{method: {"power_vs_raw": [...], "r_truth": [...]}}``, one value per band of :data:`BANDS_PER_PX`.
    """
    from nt2c.io import read_image

    edges = np.asarray(BANDS_PER_PX)
    sums: dict[str, np.ndarray] = {m: np.zeros((4, len(edges) - 1)) for m in ("raw", *methods)}

    def spectrum(image):
        image = image[CROP_PX:-CROP_PX, CROP_PX:-CROP_PX].astype(np.float64)
        return np.fft.rfft2((image - image.mean()) / image.std())

    for name in names:
        truth = spectrum(read_image(data / f"{name}_clean.mrc")[0])
        ny, nx = truth.shape[0], 2 * (truth.shape[1] - 1)
        k = np.hypot(np.fft.fftfreq(ny)[:, None], np.fft.rfftfreq(nx)[None, :])
        bands = [(k >= lo) & (k < hi) for lo, hi in zip(edges[:-1], edges[1:])]
        raw_power = None
        for method in ("raw", *methods):
            path = cache / method / f"avg_{name}.npy"
            if not path.is_file():
                continue
            out = spectrum(np.load(path))
            power = np.array([(np.abs(out[b]) ** 2).sum() for b in bands])
            raw_power = power if method == "raw" else raw_power
            cross = np.array([np.real(out[b] * np.conj(truth[b])).sum() for b in bands])
            truth_power = np.array([(np.abs(truth[b]) ** 2).sum() for b in bands])
            sums[method] += np.stack([power, raw_power, cross, np.sqrt(power * truth_power)])
    return {
        m: {
            "power_vs_raw": [round(float(v), 2) for v in s[0] / s[1]],
            "r_truth": [round(float(v), 2) for v in s[2] / s[3]],
        }
        for m, s in sums.items()
        if s[1].all()
    }


def truth_picking(data: Path, dev: list[str], held_out: list[str]) -> dict:
    """Score the picker on the noise-free truth images: the best any denoiser could give it.

    Threshold chosen on DEV as for the methods; returns ``{"threshold", "DEV", "TEST"}`` (F1 pooled).
    """
    from nt2c.io import read_image

    mics = {n: bench_real.load_micrograph(data, n) for n in dev + held_out}
    diameter = bench_real.diameter_px(list(mics.values()))
    counts = {}
    for name, mic in mics.items():
        clean = read_image(data / f"{name}_clean.mrc")[0]
        counts[name] = bench_real.picking_counts(
            clean, mic, bench_real.excluded_area(mic, diameter), diameter=diameter
        )
    threshold = bench_real.choose_threshold(counts, dev)
    out = {"threshold": threshold}
    for split, names in (("DEV", dev), ("TEST", held_out)):
        rows = [next(c for c in counts[n] if c["threshold"] == threshold) for n in names]
        out[split] = bench_real.prf(*(sum(r[k] for r in rows) for k in ("tp", "fp", "fn")))[2]
    return out


def calibration_rows(data: Path, run: Path) -> list[dict]:
    truth = {m["name"]: m for m in json.loads((data / "truth.json").read_text())["micrographs"]}
    rows = []
    with open(run / "calibration" / "calibration.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            name = Path(row["micrograph"]).stem
            t = truth[name]
            fitted = 0.5 * (float(row["defocus_u_A"]) + float(row["defocus_v_A"]))
            true = 0.5 * (t["defocus_u_A"] + t["defocus_v_A"])
            rows.append(
                {
                    "micrograph": name,
                    "fitted_A": round(fitted),
                    "truth_A": round(true),
                    "error_pct": round(100 * (fitted / true - 1), 2),
                }
            )
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--make-run", action="store_true")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--set", action="append", default=[], metavar="STAGE.KEY=VALUE", help="for --make-run")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "independent")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--topaz-cmd", help="sets NT2C_TOPAZ, e.g. 'V/bin/python -m topaz.commands.denoise'")
    ap.add_argument(
        "--calibration", action="store_true", help="also score RUN/calibration against truth.json"
    )
    args = ap.parse_args(argv)
    if args.topaz_cmd:
        import os

        os.environ["NT2C_TOPAZ"] = args.topaz_cmd
    meta = {"data": str(args.data), "run": str(args.run), "profile": args.profile}
    if args.make_run:
        cmd = ["nt2c", "run", "--params", str(PARAMS), "--micrographs", str(args.data / "mic_??.mrc")]
        cmd += ["--out", str(args.run), "--profile", args.profile, "--device", args.device]
        cmd += [a for s in args.set for a in ("--set", s)]
        print("+", " ".join(cmd), flush=True)
        start = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=REPO)
        meta["run_seconds"] = round(time.perf_counter() - start, 1)
    cache = args.run / "bench_independent_cache"
    methods = [m for m in args.methods.split(",") if m]
    result = bench_real.evaluate(
        args.data,
        run=args.run,
        methods=methods,
        device=args.device,
        cache=cache,
        parts=("micrographs", "picking"),
    )
    names = result["dev"] + result["held_out"]
    corr = truth_correlation(args.data, cache, methods, names)
    split_of = {n: ("DEV" if n in result["dev"] else "TEST") for n in names}
    summary = []
    for split in ("TEST", "DEV"):
        for m in (m for m in methods if m not in result["skipped"]):
            rs = [r for r in result["rows"] if split_of[r["micrograph"]] == split and r["method"] == m]
            cs = [r["r_truth"] for r in corr if split_of[r["micrograph"]] == split and r["method"] == m]
            _, _, f1 = bench_real.prf(*(sum(r[k] for r in rs) for k in ("tp", "fp", "fn")))
            summary.append(
                {
                    "split": split,
                    "method": m,
                    "r_truth": round(float(np.mean(cs)), 3),
                    "eq5_dB": round(float(np.mean([r["eq5_dB"] for r in rs])), 2),
                    "f1": round(f1, 3),
                    "threshold": result["thresholds"][m],
                }
            )
    upper = truth_picking(args.data, result["dev"], result["held_out"])
    bands = {
        split: band_agreement(args.data, cache, methods, [n for n in names if split_of[n] == split])
        for split in ("TEST", "DEV")
    }
    lines = []
    for split in ("TEST", "DEV"):
        names_split = [n for n in names if split_of[n] == split]
        lines += [
            f"### {split} ({', '.join(names_split)})",
            "",
            "| method | r with truth | Eq. 5 SNR (dB) | picking F1 | threshold (chosen on DEV) |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {s['method']} | {s['r_truth']:.3f} | {s['eq5_dB']:.2f} | {s['f1']:.3f} | {s['threshold']} |"
            for s in summary
            if s["split"] == split
        ]
        lines += [
            "",
            f"The picker on the noise-free truth images (the best any denoiser could give it): F1 "
            f"{upper[split]:.3f} at threshold {upper['threshold']} (chosen on DEV).",
            "",
            "Per frequency band (cycles/px): power over the raw micrograph's / correlation with the truth.",
            "",
            "| method | "
            + " | ".join(f"{a:g}-{b:g}" for a, b in zip(BANDS_PER_PX[:-1], BANDS_PER_PX[1:]))
            + " |",
            "|---|" + "---:|" * (len(BANDS_PER_PX) - 1),
        ]
        lines += [
            f"| {m} | "
            + " | ".join(f"{p:g} / {r:.2f}" for p, r in zip(v["power_vs_raw"], v["r_truth"]))
            + " |"
            for m, v in bands[split].items()
        ]
        lines.append("")
    if result["skipped"]:
        lines.append("Left out: " + "; ".join(f"{m} ({s})" for m, s in result["skipped"].items()))
    if args.calibration and (args.run / "calibration" / "calibration.csv").is_file():
        rows = calibration_rows(args.data, args.run)
        lines += [
            "",
            "Defocus fitted by `nt2c calibrate` against the generator's truth:",
            "",
            "| micrograph | fitted (A) | truth (A) | error % |",
            "|---|---:|---:|---:|",
        ]
        lines += [
            f"| {r['micrograph']} | {r['fitted_A']} | {r['truth_A']} | {r['error_pct']} |" for r in rows
        ]
        meta["calibration"] = rows
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.md").write_text(text)
    (args.out / "summary.json").write_text(
        json.dumps(
            {
                **meta,
                "summary": summary,
                "truth_picking": upper,
                "bands_per_px": list(BANDS_PER_PX),
                "bands": bands,
                "rows": result["rows"],
                "r_truth": corr,
                "status": result["status"],
            },
            indent=1,
            default=str,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
