"""Quality of the coarse U-Net against a Gaussian filter and BM3D on held-out simulated micrographs.

What it does (all on the CPU unless ``--device`` says otherwise):

1. simulates ``--train-micrographs`` micrographs with the default experiment parameters (the embedded
   example) and cuts ``--pairs`` aligned (noisy, clean) crops of ``--pair-px`` pixels from them, as the
   ``simulate`` stage does; simulates ``--test-micrographs`` more with other seeds as the held-out set;
2. trains the coarse U-Net with the ``train-coarse`` settings of ``--profile`` (default ``quick``);
   ``--variants`` also trains architecture variants (width, first kernel, depth) for a fixed number of steps
   ``--variant-steps`` to compare quality per compute;
3. denoises the held-out micrographs with each model (:func:`nt2c.denoise_micrograph`), a Gaussian filter
   (the best of several sigmas *on the test set itself*, which favours the baseline) and BM3D
   (:func:`nt2c.evaluation.baselines.bm3d_denoise`, noise level estimated from the image), and reports PSNR
   against the clean image after a least-squares scale-and-offset fit (:func:`nt2c.evaluation.metrics.psnr`).

Usage::

    python benchmarks/bench_quality.py                       # quick-profile model vs Gaussian vs BM3D
    python benchmarks/bench_quality.py --variants --no-bm3d  # architecture comparison

It prints a Markdown table and writes the figures to ``--out`` (JSON). Timings depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

VARIANTS = {
    "w16-k3-d5": {"width": 16, "first_kernel": 3, "depth": 5},
    "w32-k3-d5": {"width": 32, "first_kernel": 3, "depth": 5},
    "w48-k3-d5": {"width": 48, "first_kernel": 3, "depth": 5},
    "w32-k11-d5": {"width": 32, "first_kernel": 11, "depth": 5},
    "w32-k3-d4": {"width": 32, "first_kernel": 3, "depth": 4},
}


def simulate_set(seeds, size_px: int, cache: Path | None):
    """(noisy, clean) float32 micrographs simulated with the default parameters, cached as .npz."""
    from nt2c.simulation.micrograph import simulate_micrograph

    out = []
    for seed in seeds:
        path = cache / f"mic_{seed}_{size_px}.npz" if cache else None
        if path is not None and path.is_file():
            data = np.load(path)
            out.append((data["noisy"], data["clean"]))
            continue
        mic = simulate_micrograph(seed=int(seed), image_size_px=size_px, device="cpu")
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, noisy=mic.noisy, clean=mic.clean)
        out.append((mic.noisy, mic.clean))
    return out


def cut_pairs(mics, n: int, side: int, seed: int):
    rng = np.random.default_rng(seed)
    noisy, clean = [], []
    for k in range(n):
        nz, cl = mics[k % len(mics)]
        y = int(rng.integers(0, nz.shape[0] - side + 1))
        x = int(rng.integers(0, nz.shape[1] - side + 1))
        noisy.append(nz[y : y + side, x : x + side])
        clean.append(cl[y : y + side, x : x + side])
    return np.stack(noisy), np.stack(clean)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="quick", choices=("smoke", "quick", "full"))
    parser.add_argument("--train-micrographs", type=int, default=4)
    parser.add_argument("--test-micrographs", type=int, default=2)
    parser.add_argument("--size-px", type=int, default=1024, help="micrograph side (px)")
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--pair-px", type=int, default=256)
    parser.add_argument("--variants", action="store_true", help="also train the architecture variants")
    parser.add_argument("--variant-steps", type=int, default=150)
    parser.add_argument(
        "--variant-names",
        default=",".join(VARIANTS),
        help="comma-separated subset of: " + ", ".join(VARIANTS),
    )
    parser.add_argument("--no-main", action="store_true", help="skip the profile's default model")
    parser.add_argument("--no-bm3d", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", default="/tmp/nt2c_bench_cache", help="folder for simulated micrographs")
    parser.add_argument("--out", default="bench_quality.json")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from nt2c.config import stage_config
    from nt2c.denoiser.inference import denoise_micrograph
    from nt2c.denoiser.training import train_denoiser
    from nt2c.evaluation import baselines, metrics
    from nt2c.progress import set_progress

    set_progress(False)
    cache = Path(args.cache) if args.cache else None
    t0 = time.perf_counter()
    train = simulate_set(range(args.train_micrographs), args.size_px, cache)
    test = simulate_set(range(1000, 1000 + args.test_micrographs), args.size_px, cache)
    noisy, clean = cut_pairs(train, args.pairs, args.pair_px, seed=0)
    print(
        f"simulated {len(train)}+{len(test)} micrographs of {args.size_px}^2 px, {len(noisy)} pairs "
        f"({time.perf_counter() - t0:.0f} s)",
        flush=True,
    )

    def score(fn):
        start = time.perf_counter()
        values = [metrics.psnr(fn(nz), cl, fit=True) for nz, cl in test]
        return (
            float(np.mean(values)),
            [round(v, 3) for v in values],
            (time.perf_counter() - start) / len(test),
        )

    rows = {}
    trainings = {}

    def report():
        lines = [
            "| method | PSNR (dB, fitted) | per micrograph | s per micrograph | train s | kMAC/px |",
            "|---|---|---|---|---|---|",
        ]
        for name, (mean, values, secs) in rows.items():
            tr = trainings.get(name, {})
            extra = f"{tr['train_seconds']} | {tr['macs_per_px'] / 1e3:.1f}" if tr else " | "
            lines.append(
                f"| {name} | {mean:.2f} | {', '.join(f'{v:.2f}' for v in values)} | {secs:.1f} | {extra} |"
            )
        table = "\n".join(lines)
        Path(args.out).write_text(
            json.dumps(
                {
                    "argv": sys.argv[1:],
                    "table_markdown": table,
                    "rows": {
                        k: {"psnr_dB": v[0], "per_micrograph_dB": v[1], "seconds_per_micrograph": v[2]}
                        for k, v in rows.items()
                    },
                    "training": trainings,
                    "torch_threads": torch.get_num_threads(),
                },
                indent=2,
            )
        )
        return table

    def add(name, row):
        rows[name] = row
        print(f"{name}: {row[0]:.2f} dB {row[1]} ({row[2]:.1f} s per micrograph)", flush=True)
        report()

    add("raw", score(lambda im: im))
    sigmas = (1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0)
    best = max(
        ((s,) + score(lambda im, s=s: baselines.gaussian_filter(im, sigma_px=s)) for s in sigmas),
        key=lambda r: r[1],
    )
    add(f"gaussian (best sigma {best[0]:g} px)", best[1:])
    if not args.no_bm3d:
        add("bm3d", score(baselines.bm3d_denoise))

    jobs = []
    if not args.no_main:
        jobs.append(
            (
                f"nt2c coarse ({args.profile} profile)",
                stage_config("train-coarse", args.profile, device=args.device),
                None,
            )
        )
    if args.variants:
        chosen = [v.strip() for v in args.variant_names.split(",") if v.strip()]
        unknown = [v for v in chosen if v not in VARIANTS]
        if unknown:
            parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
        for name in chosen:
            arch = VARIANTS[name]
            settings = stage_config(
                "train-coarse",
                args.profile,
                device=args.device,
                steps=args.variant_steps,
                width=arch["width"],
                first_kernel=arch["first_kernel"],
            )
            jobs.append((f"{name}, {args.variant_steps} steps", settings, {"arch": "nt2c.UNet", **arch}))
    for name, settings, arch in jobs:
        cpu0 = time.process_time()
        result = train_denoiser(noisy, clean, settings, init_config=arch, desc=name)
        cpu = time.process_time() - cpu0
        model = result.model
        row = score(lambda im, m=model: denoise_micrograph(m, im, device=args.device, show_progress=False))
        trainings[name] = {
            "train_seconds": round(result.seconds, 1),
            "train_cpu_seconds": round(cpu, 1),
            "macs_per_px": model.macs_per_pixel(),
            "params": int(sum(p.numel() for p in model.parameters())),
            "settings": settings.to_dict(),
            "final_val_psnr_dB": result.curves["val"][-1]["psnr_dB"],
        }
        print(f"{name}: trained in {result.seconds:.0f} s wall, {cpu:.0f} s CPU", flush=True)
        add(name, row)
    print(report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
