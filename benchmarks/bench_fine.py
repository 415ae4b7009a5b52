"""Quality of the fine denoiser (issue 7's check): fine vs coarse vs BM3D (vs Topaz) and the re-weighting ablation.

Usage (after a finished run; the first form also makes it)::

    python benchmarks/bench_fine.py --make-run --run /tmp/quickrun --profile quick   # times `nt2c run` too
    python benchmarks/bench_fine.py --run /tmp/quickrun [--ablation] [--bm3d] [--topaz] [--real-model M]

What it measures
----------------
1. On the run's "experimental" stand-ins (``RUN/experimental/``, simulated with noise that differs from the coarse
   training pairs): PSNR against the clean image, after the least-squares scale-and-offset fit of
   :func:`nt2c.metrics.psnr`, of the raw micrograph, the coarse model, the fine model, and optionally BM3D and
   Topaz-Denoise's pretrained ``unet`` (when ``topaz`` is installed).
2. ``--ablation``: trains a second fine model on pairs re-weighted with the *other* coefficient method (``paper``
   if the run used ``matched``) in a scratch copy of the run, and reports its PSNR: coarse only, fine with the
   paper's literal fit, fine with the matched variant.
3. The paper's SNR (Eq. 5) on the real micrograph ``../shared/data/real/Ucsf_stack_1142_DW.mrc`` with boxes on its
   autopicked particles, raw against the fine model (``--real-model``, e.g. from
   ``nt2c run --micrographs .../Ucsf_stack_1142_DW.mrc --params real.yaml``; default: the run's own fine model).
4. ``--make-run``: the wall time of ``nt2c run --profile PROFILE`` itself.

Prints one JSON document (and writes it to ``--json`` when given). Timings depend on the machine: say which.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _psnr_table(run: Path, models: dict[str, Path], *, bm3d: bool, topaz: bool, device: str) -> dict:
    from nt2c.baselines import MethodUnavailableError, denoise_with
    from nt2c.inference import denoise_micrograph, load_model
    from nt2c.io import read_image, read_json
    from nt2c.metrics import psnr

    manifest = read_json(run / "experimental" / "manifest.json")
    loaded = {name: load_model(path) for name, path in models.items()}
    rows, seconds = [], {}
    for entry in manifest["micrographs"]:
        raw, _ = read_image(entry["micrograph"])
        clean, _ = read_image(entry["clean"])
        row = {"micrograph": Path(entry["micrograph"]).name, "raw": psnr(raw, clean)}
        for name, model in loaded.items():
            t = time.perf_counter()
            out = denoise_micrograph(model, raw, device=device)
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t
            row[name] = psnr(out, clean)
        for method, wanted in (("bm3d", bm3d), ("topaz", topaz)):
            if not wanted:
                continue
            t = time.perf_counter()
            try:
                out = denoise_with(method, raw, device=device)
            except MethodUnavailableError as exc:
                row[method] = None
                row[f"{method}_unavailable"] = str(exc)
                continue
            seconds[method] = seconds.get(method, 0.0) + time.perf_counter() - t
            row[method] = psnr(out, clean)
        rows.append(row)
    keys = [k for k in rows[0] if k != "micrograph" and not k.endswith("_unavailable")]
    mean = {k: (float(np.mean([r[k] for r in rows])) if all(r[k] is not None for r in rows) else None) for k in keys}
    return {"per_micrograph": rows, "mean_psnr_db": mean,
            "denoise_seconds_total": {k: round(v, 2) for k, v in seconds.items()}}


def _ablation(run: Path, profile: str, device: str) -> dict:
    """Fine model trained on pairs from the other coefficient method (sub-run RUN/ablation/<method>/)."""
    from nt2c.io import read_json
    from nt2c.workflow import fine_variant

    used = read_json(run / "pairs" / "summary.json")["method"]
    other = "paper" if used == "matched" else "matched"
    t = time.perf_counter()
    model = fine_variant(run, other, profile=profile, device=device)
    return {"method": other, "model": str(model), "used_method": used, "seconds": round(time.perf_counter() - t, 1)}


def _real_snr(model_path: Path, device: str) -> dict:
    from nt2c.inference import denoise_micrograph, load_model
    from nt2c.io import read_image, read_star
    from nt2c.metrics import eq5_regions

    data = Path(os.environ.get("NT2C_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    mic, star = data / "real" / "Ucsf_stack_1142_DW.mrc", data / "real" / "Ucsf_stack_1142_DW_autopick.star"
    if not mic.is_file():
        return {"skipped": f"{mic} is absent"}
    raw, _ = read_image(mic)
    table = read_star(star)
    coords = np.stack([table["rlnCoordinateX"], table["rlnCoordinateY"]], 1)
    regions = eq5_regions(raw.shape, coords, box_px=48, max_pairs=200)
    out = denoise_micrograph(load_model(model_path), raw, device=device)
    snr_raw, snr_fine = regions.snr(raw), regions.snr(out)
    return {"micrograph": str(mic), "model": str(model_path), "pairs": len(regions), "box_px": 48,
            "snr_raw_db": snr_raw, "snr_fine_db": snr_fine, "improvement_db": snr_fine - snr_raw}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="run directory of `nt2c run` on the embedded default")
    parser.add_argument("--profile", default="quick", choices=("smoke", "quick", "full"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--make-run", action="store_true", help="run `nt2c run` first and time it")
    parser.add_argument("--ablation", action="store_true", help="also train a fine model with the other fit")
    parser.add_argument("--bm3d", action="store_true", help="include BM3D (about 30 s per 1024^2 micrograph)")
    parser.add_argument("--topaz", action="store_true", help="include Topaz-Denoise's pretrained unet if installed")
    parser.add_argument("--real-model", default=None, help="fine model for the real micrograph's Eq. 5 SNR")
    parser.add_argument("--no-real", action="store_true", help="skip the real micrograph")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    run = Path(args.run)
    report: dict = {"machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                                "cuda": torch.cuda.is_available(), "python": platform.python_version(),
                                "note": "timings on a shared machine are indicative"}}
    if args.make_run:
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "nt2c", "run", "--out", str(run), "--profile", args.profile,
                               "--device", args.device], check=False)
        report["nt2c_run"] = {"profile": args.profile, "wall_seconds": round(time.perf_counter() - t, 1),
                              "exit_status": proc.returncode}
        if proc.returncode != 0:
            print(json.dumps(report, indent=2))
            return proc.returncode
    from nt2c.workflow import stage_timings
    from nt2c.rundir import RunDir

    report["stage_seconds"] = stage_timings(RunDir(run))
    models = {"coarse": run / "models" / "coarse.safetensors", "fine": run / "models" / "fine.safetensors"}
    if args.ablation:
        abl = _ablation(run, args.profile, args.device)
        report["ablation"] = abl
        models[f"fine ({abl['method']})"] = Path(abl["model"])
        models[f"fine ({abl['used_method']})"] = models.pop("fine")
    report["experimental_standins"] = _psnr_table(run, models, bm3d=args.bm3d, topaz=args.topaz, device=args.device)
    mean = report["experimental_standins"]["mean_psnr_db"]
    fine_key = next(k for k in mean if k.startswith("fine") and "paper" not in k)
    report["fine_minus_coarse_db"] = mean[fine_key] - mean["coarse"]
    if not args.no_real:
        real_model = Path(args.real_model) if args.real_model else models[fine_key]
        report["real_micrograph_eq5"] = _real_snr(real_model, args.device)
    text = json.dumps(report, indent=2, default=float)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
