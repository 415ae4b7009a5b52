"""Resident memory of batch denoising over many micrographs: flat when streaming one file at a time.

Writes ``--n`` synthetic float32 micrographs of ``--size`` x ``--size`` px into a temporary folder (cheap
random data: Gaussian noise on an offset; the memory of denoising does not depend on the content), then runs
:func:`nt2c.commands.denoise.denoise_files` — the loop behind ``nt2c denoise`` — over all of them in this
process and prints the resident set size (``VmRSS`` from ``/proc/self/status``) and the peak so far
(``VmHWM``) after every ``--every`` files. A streaming loop shows a flat RSS after the first file; a loop that
kept its outputs would grow by ``size**2 * 4`` bytes per file (64 MiB at 4096 px).

Without ``--model`` a ``nt2c.UNet(width=--width)`` with seeded random weights is saved and used (the memory
of the loop does not depend on the weights' values). Linux only (reads ``/proc``).

Usage::

    python benchmarks/bench_denoise_memory.py                       # 200 micrographs of 4096 x 4096 px
    python benchmarks/bench_denoise_memory.py --n 20 --size 2048    # small
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _proc_status_MiB(field: str) -> float:
    """Read a ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"{field} not in /proc/self/status (this benchmark needs Linux)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="number of micrographs (default 200)")
    parser.add_argument("--size", type=int, default=4096, help="micrograph side in px (default 4096)")
    parser.add_argument("--every", type=int, default=10, help="print the memory after every N files")
    parser.add_argument("--model", default=None, help="NAME.safetensors (default: random nt2c.UNet)")
    parser.add_argument("--width", type=int, default=32, help="width of the random UNet (default 32)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu or cuda[:N]")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--workdir", default=None, help="folder for the inputs/outputs (default: a temp dir)")
    parser.add_argument("--json", default=None, help="also write the measurements to this JSON file")
    args = parser.parse_args(argv)
    if args.n < 1 or args.size < 64 or args.every < 1:
        parser.error("need --n >= 1, --size >= 64 and --every >= 1")

    import torch

    from nt2c.commands.denoise import denoise_files
    from nt2c.denoiser.inference import load_model, save_model
    from nt2c.denoiser.network import UNet
    from nt2c.device import resolve_device
    from nt2c.io import write_mrc

    torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        tmp = Path(tmp)
        model_path = args.model
        if model_path is None:
            torch.manual_seed(0)
            model_path, _ = save_model(UNet(width=args.width), tmp / "model.safetensors")
        inputs, out = tmp / "in", tmp / "out"
        inputs.mkdir()
        out.mkdir()
        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        for i in range(args.n):  # one image in memory at a time here too
            image = rng.standard_normal((args.size, args.size), dtype=np.float32)
            image += 10.0
            write_mrc(inputs / f"mic_{i:04d}.mrc", image, pixel_size_A=1.0)
        del image
        print(f"wrote {args.n} micrographs of {args.size}x{args.size} px in {time.perf_counter() - t0:.1f} s")
        model = load_model(model_path, device=str(dev))
        files = sorted(inputs.glob("*.mrc"))
        rows: list[dict] = [
            {"files": 0, "rss_MiB": _proc_status_MiB("VmRSS"), "peak_MiB": _proc_status_MiB("VmHWM")}
        ]
        print(f"{'files':>6} {'RSS MiB':>9} {'peak MiB':>9} {'s/file':>7}")
        print(f"{0:>6} {rows[0]['rss_MiB']:9.0f} {rows[0]['peak_MiB']:9.0f}")
        done = 0
        t_last = time.perf_counter()

        def on_file(src: Path, status: str) -> None:
            nonlocal done, t_last
            if status != "denoised":
                raise RuntimeError(f"{src}: {status}")
            done += 1
            if done % args.every == 0 or done == args.n:
                now = time.perf_counter()
                k = done - rows[-1]["files"]
                row = {
                    "files": done,
                    "rss_MiB": _proc_status_MiB("VmRSS"),
                    "peak_MiB": _proc_status_MiB("VmHWM"),
                    "seconds_per_file": (now - t_last) / k,
                }
                t_last = now
                rows.append(row)
                print(
                    f"{done:>6} {row['rss_MiB']:9.0f} {row['peak_MiB']:9.0f} {row['seconds_per_file']:7.2f}"
                )
                sys.stdout.flush()

        denoise_files(model, files, out, device=str(dev), on_file=on_file, verbose=False)
    after_first = [r["rss_MiB"] for r in rows[1:]]
    growth = after_first[-1] - after_first[0] if len(after_first) > 1 else 0.0
    print(
        f"RSS after the first report {after_first[0]:.0f} MiB, after the last {after_first[-1]:.0f} MiB "
        f"(growth {growth:+.0f} MiB over {rows[-1]['files'] - rows[1]['files']} files; one output is "
        f"{args.size**2 * 4 / 2**20:.0f} MiB); peak {rows[-1]['peak_MiB']:.0f} MiB; device {dev}"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"n": args.n, "size": args.size, "device": str(dev), "rows": rows})
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
