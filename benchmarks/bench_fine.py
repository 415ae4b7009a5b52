"""Quality of the fine denoiser (issue 7): fine vs coarse vs BM3D (vs Topaz) and the re-weighting ablation.

Usage (after a finished run; the first form also makes it)::

    python benchmarks/bench_fine.py --make-run --run /tmp/quickrun --profile quick   # times `nt2c run` too
    python benchmarks/bench_fine.py --run /tmp/quickrun [--ablation] [--bm3d] [--topaz] [--real-model M]

With ``--make-run``, ``--params P.yaml`` and ``--set STAGE.KEY=VALUE`` go to ``nt2c run``: e.g. coarse
training pairs from idealised physics (``benchmarks/nominal_physics.yaml``), so that the stand-ins' noise
differs more.

What it measures
----------------
1. On the run's "experimental" stand-ins (``RUN/experimental/``, simulated with noise that differs from the
   coarse training pairs): PSNR against the clean image, after the least-squares scale-and-offset fit of
   :func:`nt2c.evaluation.metrics.psnr`, of the raw micrograph, the coarse model, the fine model, and
   optionally BM3D and Topaz-Denoise's pretrained ``unet`` (when ``topaz`` is installed).
2. ``--ablation``: trains the other re-weighting variants' fine models in sub-runs of the run
   (:func:`nt2c.run.pipeline.fine_variant`) and reports their PSNR: the paper's literal fit, and the matched
   fit with GAN noise and with resampled real noise patches (whichever the run did not use itself).
   ``--oracle``: a fine model trained on the stand-ins' true noise (``raw - clean``) instead of transferred
   noise: the ceiling any noise source could reach with these training settings. ``--control``: the coarse
   model trained further on its own simulated pairs with the same settings: the extra training without noise
   transfer.
3. The paper's SNR (Eq. 5) on the real micrograph ``../shared/data/real/Ucsf_stack_1142_DW.mrc`` with boxes on
   its autopicked particles, raw against the fine model (``--real-model``, e.g. from
   ``nt2c run --micrographs .../Ucsf_stack_1142_DW.mrc --params real.yaml``; default: the run's own fine
   model).
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
    from nt2c.denoiser.inference import denoise_micrograph, load_model
    from nt2c.evaluation.baselines import MethodUnavailableError, denoise_with
    from nt2c.evaluation.metrics import psnr
    from nt2c.io import read_image, read_json

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
    mean = {
        k: (float(np.mean([r[k] for r in rows])) if all(r[k] is not None for r in rows) else None)
        for k in keys
    }
    return {
        "per_micrograph": rows,
        "mean_psnr_db": mean,
        "denoise_seconds_total": {k: round(v, 2) for k, v in seconds.items()},
    }


def _ablation(run: Path, profile: str, device: str) -> list[dict]:
    """Train the fine models of the other re-weighting variants (sub-runs RUN/ablation/<method>-<source>/)."""
    from nt2c.io import read_json
    from nt2c.run.pipeline import fine_variant

    own = read_json(run / "pairs" / "summary.json")
    used = (own["method"], own["noise_source"])
    variants = [("paper", used[1]), ("matched", "gan"), ("matched", "patches")]
    out = []
    for method, source in variants:
        if (method, source) == used:
            continue
        t = time.perf_counter()
        model = fine_variant(run, method, noise_source=source, profile=profile, device=device)
        out.append(
            {
                "method": method,
                "noise_source": source,
                "model": str(model),
                "seconds": round(time.perf_counter() - t, 1),
            }
        )
    return out


def _train_on(run: Path, name: str, noisy: np.ndarray, clean: np.ndarray, device: str) -> Path:
    """Train a fine model on given pairs with the run's train-fine settings, in ``RUN/ablation/<name>``."""
    from nt2c.config import stage_config
    from nt2c.denoiser.stages import train_fine_stage
    from nt2c.io import write_mrc
    from nt2c.run.pipeline import _link_stage
    from nt2c.run.rundir import RunDir

    src = RunDir(run)
    sub = RunDir(run / "ablation" / name)
    sub.init_params(src.params())
    for stage in ("simulate", "train-coarse"):
        _link_stage(src, sub, stage)
    pixel = src.params().pixel_size_A
    write_mrc(sub.pairs / "pairs_noisy.mrcs", noisy, pixel_size_A=pixel, overwrite=True)
    write_mrc(sub.pairs / "pairs_clean.mrcs", clean, pixel_size_A=pixel, overwrite=True)
    settings = {
        k: v for k, v in (src.read_stamp("train-fine") or {}).get("settings", {}).items() if k != "device"
    }
    train_fine_stage(sub, stage_config("train-fine", "quick", **settings, device=device), sub.params())
    return sub.models / "fine.safetensors"


def _simulated_crops(run: Path) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Crops of the coarse training pairs at the side and number of the run's own re-weighted pairs."""
    from nt2c.io import read_json, read_mrc
    from nt2c.reweighting import crop_pairs

    own = read_json(run / "pairs" / "summary.json")
    size, n = int(own["patch_px"]), int(own["n_pairs"])
    noisy, _ = read_mrc(run / "simulated" / "pairs_noisy.mrcs")
    clean, _ = read_mrc(run / "simulated" / "pairs_clean.mrcs")
    noisy_crops, clean_crops, _ = crop_pairs(noisy, clean, size, n, seed=0)
    return noisy_crops, clean_crops, size, n


def _oracle(run: Path, device: str) -> Path:
    """Train a fine model on the stand-ins' *true* noise (raw - clean): the ceiling of any noise transfer.

    Pairs: random crops of the simulated clean patches plus random crops of ``exp - exp_clean`` (centred),
    at the side and number of the run's own pairs, trained with the run's own train-fine settings in the
    sub-run ``RUN/ablation/oracle``. Only possible on stand-ins, whose noise-free image is known.
    """
    from nt2c.io import read_image, read_json
    from nt2c.reweighting import crop_pairs

    _, clean_crops, size, n = _simulated_crops(run)
    noise = []
    for entry in read_json(run / "experimental" / "manifest.json")["micrographs"]:
        noise.append(read_image(entry["micrograph"])[0] - read_image(entry["clean"])[0])
    noise = np.stack(noise)
    noise_crops, _, _ = crop_pairs(noise, noise, size, n, seed=1)
    noise_crops -= noise_crops.mean(axis=(1, 2), keepdims=True)
    return _train_on(run, "oracle", clean_crops + noise_crops, clean_crops, device)


def _control(run: Path, device: str) -> Path:
    """Train a "fine" model on the coarse model's own simulated pairs: the extra training, no noise transfer.

    What the fine model gains over this control is due to the transferred noise, not to the longer training.
    """
    noisy_crops, clean_crops, _, _ = _simulated_crops(run)
    return _train_on(run, "control", noisy_crops, clean_crops, device)


def _real_snr(model_path: Path, device: str) -> dict:
    from nt2c.denoiser.inference import denoise_micrograph, load_model
    from nt2c.evaluation.metrics import eq5_regions
    from nt2c.io import read_image, read_star

    data = Path(os.environ.get("NT2C_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    mic, star = data / "real" / "Ucsf_stack_1142_DW.mrc", data / "real" / "Ucsf_stack_1142_DW_autopick.star"
    if not mic.is_file():
        return {"skipped": f"{mic} is absent"}
    raw, _ = read_image(mic)
    table = read_star(star)
    coords = np.stack([table["rlnCoordinateX"], table["rlnCoordinateY"]], 1)
    regions = eq5_regions(raw.shape, coords, box_px=48, max_pairs=200)
    snr_raw = regions.snr(raw)
    result = {
        "micrograph": str(mic),
        "model": str(model_path),
        "pairs": len(regions),
        "box_px": 48,
        "snr_raw_db": snr_raw,
    }
    # the fine model and the coarse model of the same run (its sibling coarse.safetensors)
    for name, path in (("fine", model_path), ("coarse", model_path.with_name("coarse.safetensors"))):
        if path.is_file():
            snr = regions.snr(denoise_micrograph(load_model(path), raw, device=device))
            result[f"snr_{name}_db"], result[f"improvement_{name}_db"] = snr, snr - snr_raw
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="run directory of `nt2c run` on the embedded default")
    parser.add_argument("--profile", default="quick", choices=("smoke", "quick", "full"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--make-run", action="store_true", help="run `nt2c run` first and time it")
    parser.add_argument(
        "--params",
        default=None,
        metavar="P.yaml",
        help="with --make-run: parameters of the coarse training simulation (default: the embedded "
        "example); the stand-ins depart from them (see nt2c.simulation.standins)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="STAGE.KEY=VALUE",
        dest="overrides",
        help="with --make-run: passed to `nt2c run --set` (repeatable)",
    )
    parser.add_argument("--ablation", action="store_true", help="also train a fine model with the other fit")
    parser.add_argument(
        "--oracle",
        action="store_true",
        help="also train a fine model on the stand-ins' true noise (the ceiling of noise transfer)",
    )
    parser.add_argument(
        "--control",
        action="store_true",
        help="also continue the coarse model on its own simulated pairs with the fine settings "
        "(the same extra training without noise transfer)",
    )
    parser.add_argument("--bm3d", action="store_true", help="include BM3D (about 30 s per 1024^2 micrograph)")
    parser.add_argument(
        "--topaz", action="store_true", help="include Topaz-Denoise's pretrained unet if installed"
    )
    parser.add_argument("--real-model", default=None, help="fine model for the real micrograph's Eq. 5 SNR")
    parser.add_argument("--no-real", action="store_true", help="skip the real micrograph")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    run = Path(args.run)
    report: dict = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(),
            "python": platform.python_version(),
            "note": "timings on a shared machine are indicative",
        }
    }
    if args.make_run:
        t = time.perf_counter()
        command = [
            sys.executable,
            "-m",
            "nt2c",
            "run",
            "--out",
            str(run),
            "--profile",
            args.profile,
            "--device",
            args.device,
        ]
        command += ["--params", args.params] if args.params else []
        command += [f"--set={item}" for item in args.overrides]
        proc = subprocess.run(command, check=False)
        report["nt2c_run"] = {
            "profile": args.profile,
            "params": args.params,
            "overrides": args.overrides,
            "wall_seconds": round(time.perf_counter() - t, 1),
            "exit_status": proc.returncode,
        }
        if proc.returncode != 0:
            print(json.dumps(report, indent=2))
            return proc.returncode
    from nt2c.run.report import stage_timings
    from nt2c.run.rundir import RunDir

    report["stage_seconds"] = stage_timings(RunDir(run))
    from nt2c.io import read_json

    own = read_json(run / "pairs" / "summary.json")
    fine_key = f"fine ({own['method']}, {own['noise_source']})"  # the run's own fine model
    models = {"coarse": run / "models" / "coarse.safetensors", fine_key: run / "models" / "fine.safetensors"}
    if args.ablation:
        report["ablation"] = _ablation(run, args.profile, args.device)
        for variant in report["ablation"]:
            models[f"fine ({variant['method']}, {variant['noise_source']})"] = Path(variant["model"])
    if args.oracle:
        t = time.perf_counter()
        models["fine (true noise: oracle)"] = _oracle(run, args.device)
        report["oracle_seconds"] = round(time.perf_counter() - t, 1)
    if args.control:
        t = time.perf_counter()
        models["coarse continued on simulated pairs (control)"] = _control(run, args.device)
        report["control_seconds"] = round(time.perf_counter() - t, 1)
    report["experimental_standins"] = _psnr_table(
        run, models, bm3d=args.bm3d, topaz=args.topaz, device=args.device
    )
    mean = report["experimental_standins"]["mean_psnr_db"]
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
