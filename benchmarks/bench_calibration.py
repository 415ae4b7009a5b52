"""Measure whether fine pairs at the data's own noise-to-signal ratio help (re-weighting ``calibrated``).

On a finished ``nt2c run`` of the embedded default (simulated stand-ins with known clean images):

1. the calibration's measurement (``RUN/calibration/signal_noise.json`` of the ``calibrated`` sub-run):
   the stand-ins' noise-to-signal variance ratio estimated from the micrographs and their noise patches,
   against the truth (``raw - clean`` and ``clean``, measured on tiles of the same side);
2. the noise-to-signal ratio the fine pairs carry, ``matched`` (the run's own) against ``calibrated``;
3. PSNR against the clean image (scale-and-offset fit) of the coarse model, the run's fine model and the
   ``calibrated`` fine model (trained on first use in ``RUN/ablation/calibrated-patches/``), per split
   (``learn``: the stand-ins the noise was learnt from; ``heldout``: never seen by any model).

With ``--signal-scale S --work DIR`` it first makes stand-ins whose signal is ``S`` times the nominal one
(known truth for the calibration): each stand-in becomes ``mean + S (clean - mean) + (raw - clean)`` with the
target ``mean + S (clean - mean)`` (same noise; the dependence of shot noise on the signal, a few per cent of
the counts here, is left as it was). It copies RUN (simulation and coarse model kept) to ``DIR``, runs
``nt2c run --micrographs`` on the 4 scaled learnt stand-ins there (noise extraction, matched pairs, fine model
again) and then measures as above; the 2 scaled held-out stand-ins are only scored.

Run::

    python benchmarks/bench_calibration.py --run RUN [--json OUT.json]
    python benchmarks/bench_calibration.py --run RUN --signal-scale 0.5 --work DIR [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def _pair_nsr(run: Path) -> float:
    """Pooled noise-to-signal variance ratio of fine pairs: sum var(noisy - clean) / sum var(clean)."""
    from nt2c.io import read_mrc

    noisy = read_mrc(run / "pairs" / "pairs_noisy.mrcs")[0].astype(np.float64)
    clean = read_mrc(run / "pairs" / "pairs_clean.mrcs")[0].astype(np.float64)
    n = len(noisy)
    return float((noisy - clean).reshape(n, -1).var(1).sum() / clean.reshape(n, -1).var(1).sum())


def _scaled_run(run: Path, work: Path, scale: float, device: str) -> Path:
    """Copy ``run`` to ``work`` with its stand-ins' signal scaled by ``scale`` and run NT2C on them there."""
    import shutil
    import subprocess

    from nt2c.io import read_image, read_json, write_json, write_mrc

    if not (work / "stamps" / "train-fine.json").is_file():
        if work.exists():
            shutil.rmtree(work)
        shutil.copytree(run, work, ignore=shutil.ignore_patterns("ablation", "denoised", "calibration"))
        for name in ("micrographs.txt", "heldout.txt"):
            (work / name).unlink(missing_ok=True)
        for stage in ("extract-noise", "train-gan", "reweight", "train-fine"):  # learnt again from the data
            (work / "stamps" / f"{stage}.json").unlink(missing_ok=True)
        manifest = read_json(run / "experimental" / "manifest.json")
        scaled = work / "scaled"
        entries = []
        for entry in manifest["micrographs"]:
            raw, px = read_image(entry["micrograph"])
            clean, _ = read_image(entry["clean"])
            mean = float(clean.mean())
            target = mean + scale * (clean - mean)
            name = Path(entry["micrograph"]).name
            write_mrc(scaled / name, target + (raw - clean), pixel_size_A=px, overwrite=True)
            write_mrc(scaled / name.replace(".mrc", "_clean.mrc"), target, pixel_size_A=px, overwrite=True)
            entries.append(
                {
                    "micrograph": str(scaled / name),
                    "clean": str(scaled / name.replace(".mrc", "_clean.mrc")),
                    "split": entry.get("split", "learn"),
                }
            )
        write_json(scaled / "manifest.json", {"signal_scale": scale, "micrographs": entries})
        learn = [e["micrograph"] for e in entries if e["split"] == "learn"]
        cmd = ["nt2c", "run", "--out", str(work), "--device", device, "--micrographs", *learn]
        subprocess.run(cmd, check=True)
    return work


def main(argv=None) -> int:
    from nt2c.calibration.signal_noise import tile_variances
    from nt2c.denoiser.inference import denoise_micrograph, load_model
    from nt2c.evaluation.metrics import psnr
    from nt2c.io import read_image, read_json
    from nt2c.run.variants import fine_variant

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--signal-scale", type=float, default=None, help="scale the stand-ins' signal by S")
    parser.add_argument("--work", type=Path, help="run folder for --signal-scale")
    args = parser.parse_args(argv)
    run = args.run
    manifest_path = run / "experimental" / "manifest.json"
    if args.signal_scale is not None:
        if args.work is None:
            parser.error("--signal-scale needs --work DIR")
        run = _scaled_run(args.run, args.work, args.signal_scale, args.device)
        manifest_path = run / "scaled" / "manifest.json"
    calibrated = fine_variant(run, "calibrated", noise_source="patches", device=args.device)
    sub = calibrated.parent.parent
    record = read_json(sub / "calibration" / "signal_noise.json")
    manifest = read_json(manifest_path)
    t = record["tile_px"]
    truth_noise, truth_signal = [], []
    models = {
        "coarse": load_model(run / "models" / "coarse.safetensors"),
        "fine (matched)": load_model(run / "models" / "fine.safetensors"),
        "fine (calibrated)": load_model(calibrated),
    }
    scores: dict[str, dict[str, list[float]]] = {}
    for entry in manifest["micrographs"]:
        raw, _ = read_image(entry["micrograph"])
        clean, _ = read_image(entry["clean"])
        truth_noise.append(tile_variances(raw - clean, t).mean())
        truth_signal.append(tile_variances(clean, t).mean())
        split = entry.get("split", "learn")
        for name, model in models.items():
            out = denoise_micrograph(model, raw, device=args.device, show_progress=False)
            scores.setdefault(name, {}).setdefault(split, []).append(psnr(out, clean))
    report = {
        "signal_scale": args.signal_scale,
        "nsr_estimated": record["noise_to_signal"],
        "nsr_true": float(np.mean(truth_noise) / np.mean(truth_signal)),
        "noise_variance_estimated": record["noise_variance"],
        "noise_variance_true": float(np.mean(truth_noise)),
        "simulated_nsr": record["simulated_noise_to_signal"],
        "pairs_nsr": {"matched": _pair_nsr(run), "calibrated": _pair_nsr(sub)},
        "psnr_dB": {m: {s: float(np.mean(v)) for s, v in by.items()} for m, by in scores.items()},
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
