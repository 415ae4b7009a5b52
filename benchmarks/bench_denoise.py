"""Speed and peak memory of ``nt2c denoise`` against Topaz-Denoise on one 4096 x 4096 float32 micrograph.

Both programs run as separate processes on the same MRC file, one after the other; each one's wall time and
peak resident memory (``ru_maxrss`` of that child process from ``os.wait4``, which includes the interpreter
and torch) are recorded. Topaz-Denoise (GPL-3.0, PyPI ``topaz-em``) is only ever *run*, never imported:
install it with ``pip install topaz-em`` (the ``benchmark`` extra) or point ``--topaz`` / ``$NT2C_TOPAZ`` at
its program.

* nt2c: ``python -m nt2c denoise --model M -o OUT FILE --device cpu`` with its defaults (tile 512, overlap 64,
  batch 4, 1024 MB activation cap). Without ``--model`` the default architecture (``nt2c.UNet()``) with seeded
  random weights is saved and used: the time does not depend on the weights' values.
* Topaz: ``topaz denoise -o OUT FILE -d -1`` (CPU) with its default pretrained ``unet`` model and default
  patching (``--patch-size 1024 --patch-padding 500``).

CPU time (user + system of the child) is reported too: on a shared machine it is the steadier figure.
Both get ``--threads`` CPU threads (``torch.set_num_threads`` via ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` and
Topaz's ``-j``). With ``--gpu`` (default: when CUDA is available) both are also run on the GPU.

The micrograph is synthetic: shot noise on a smooth random background with blob-like "particles" (the speed
of both programs does not depend on the content); pass ``--input`` to use a real one.

Usage::

    python benchmarks/bench_denoise.py [--model RUN/models/coarse.safetensors] [--topaz /path/to/topaz]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def synthetic_micrograph(size: int, seed: int = 0) -> np.ndarray:
    """Poisson counts (mean ~40/px) of a smooth background with Gaussian blobs, float32 (size, size)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.normal(size=(size, size)), 40) * 40
    blobs = np.zeros((size, size))
    n = size * size // 20000
    blobs[rng.integers(0, size, n), rng.integers(0, size, n)] = 1.0
    blobs = gaussian_filter(blobs, 12) * 2 * np.pi * 144
    expected = np.clip(40.0 * (1 + 0.05 * field - 0.1 * blobs), 1, None)
    return rng.poisson(expected).astype(np.float32)


def run_measured(cmd: list[str], env: dict, timeout_s: float) -> dict:
    """Run ``cmd``; return wall seconds, peak RSS (MB) of the process tree's largest process, exit code."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = start + timeout_s
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.05)
    wall = time.perf_counter() - start
    output = proc.stdout.read() if proc.stdout else ""
    code = os.waitstatus_to_exitcode(status)
    return {
        "command": shlex.join(cmd),
        "seconds": round(wall, 2),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_MB": round(usage.ru_maxrss / 1024, 1),
        "exit_code": code,
        "output_tail": output[-1500:],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=4096, help="micrograph side (px)")
    parser.add_argument("--input", default=None, help="use this MRC micrograph instead of a synthetic one")
    parser.add_argument("--model", default=None, help="nt2c model (default: nt2c.UNet() with random weights)")
    parser.add_argument(
        "--topaz",
        default=None,
        help="the topaz program (default: nt2c.evaluation.baselines.topaz_command(): "
        "$NT2C_TOPAZ, then an installed topaz)",
    )
    parser.add_argument("--no-topaz", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--gpu",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also time on CUDA (default: when available)",
    )
    parser.add_argument(
        "--nt2c-args", default="", help="extra arguments for nt2c denoise, e.g. '--tile 1024'"
    )
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--workdir", default=None, help="where to write the test image and outputs")
    parser.add_argument("--out", default="bench_denoise.json")
    args = parser.parse_args(argv)

    import torch

    from nt2c.denoiser.inference import save_model
    from nt2c.denoiser.network import UNet
    from nt2c.io import write_mrc

    work = Path(args.workdir or tempfile.mkdtemp(prefix="nt2c_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    if args.input:
        image_path = Path(args.input)
    else:
        image_path = work / f"synthetic_{args.size}.mrc"
        if not image_path.is_file():
            write_mrc(image_path, synthetic_micrograph(args.size), pixel_size_A=1.0)
    if args.model:
        model_path = Path(args.model)
    else:
        torch.manual_seed(0)
        model_path, _ = save_model(UNet(), work / "default_random" / "unet.safetensors")

    env = dict(
        os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads), NT2C_PROGRESS="0"
    )
    gpu = torch.cuda.is_available() if args.gpu is None else args.gpu
    results = {}

    def nt2c(device: str):
        out = work / f"nt2c_{device}"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [
            sys.executable,
            "-m",
            "nt2c",
            "denoise",
            "--model",
            str(model_path),
            "-o",
            str(out),
            "--device",
            device,
            *shlex.split(args.nt2c_args),
            str(image_path),
        ]
        results[f"nt2c ({device})"] = run_measured(cmd, env, args.timeout)

    nt2c("cpu")
    if gpu:
        nt2c("cuda")

    topaz = None  # command prefix that runs Topaz's denoise
    if not args.no_topaz:
        if args.topaz:
            topaz = [*shlex.split(args.topaz), "denoise"]
        else:
            from nt2c.evaluation.baselines import topaz_command  # finds the program; never imports topaz

            topaz = topaz_command()
    if topaz:

        def run_topaz(device: str):
            out = work / f"topaz_{device}"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            dev = "-1" if device == "cpu" else "0"
            cmd = [*topaz, "-o", str(out), "-d", dev, "-j", str(args.threads), str(image_path)]
            results[f"topaz unet ({device})"] = run_measured(cmd, env, args.timeout)

        run_topaz("cpu")
        if gpu:
            run_topaz("cuda")
    elif not args.no_topaz:
        print(
            "topaz was not found (pip install topaz-em, or pass --topaz); reporting nt2c alone",
            file=sys.stderr,
        )

    lines = [
        f"{args.size}x{args.size} float32 micrograph, {args.threads} CPU threads",
        "| program | wall time (s) | CPU time (s) | peak RSS (MB) | exit |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | {r['peak_rss_MB']:.0f} | "
            f"{r['exit_code']} |"
        )
    if "nt2c (cpu)" in results and "topaz unet (cpu)" in results:
        ratio = results["topaz unet (cpu)"]["seconds"] / results["nt2c (cpu)"]["seconds"]
        cpu_ratio = results["topaz unet (cpu)"]["cpu_seconds"] / results["nt2c (cpu)"]["cpu_seconds"]
        lines.append(
            f"nt2c is {ratio:.1f}x faster than Topaz on the CPU (wall time; {cpu_ratio:.1f}x in CPU time)"
        )
    table = "\n".join(lines)
    print(table)
    for name, r in results.items():
        if r["exit_code"] != 0:
            print(f"--- {name} failed:\n{r['output_tail']}", file=sys.stderr)
    Path(args.out).write_text(
        json.dumps(
            {
                "table_markdown": table,
                "results": results,
                "image": str(image_path),
                "model": str(model_path),
                "torch": torch.__version__,
            },
            indent=2,
        )
    )
    return 0 if all(r["exit_code"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
