"""Speed of noise-patch extraction (issue 5): 4096 x 4096 px, d = 320, s = 160 in under 2 s on 2 cores.

Usage::

    python benchmarks/bench_extraction.py [--size 4096] [--repeats 5] [--json out.json]

What it measures
----------------
Wall time of :func:`nt2c.extract_noise_patches` (validation, normalisation, the background test over every
candidate, the raw-statistics guard and the copy of the selected patches out of the raw image), median and
best of ``--repeats`` runs, for each criterion at the paper's settings (d = 320, s = d / 2, N = 4), and for
the SSIM test at s = 40 with an overlap limit and at the reference code's s = 6 (397,000 candidates) with
``max_overlap=0``.

The micrograph is synthetic: Gaussian noise coloured by a 1.5 px Gaussian (detector-like correlation) plus 80
dark discs of radius 40 px; the enhanced image is the noise-free one plus 5 % of the noise smoothed by a 4 px
Gaussian (a good coarse denoiser). The timings depend on the content only through the number of selected
patches copied out.

Prints one JSON document. NumPy and SciPy run these steps on one thread; ``OMP_NUM_THREADS`` etc. are set to 2
to match the target machine. Timings depend on the machine and its load: say which when quoting them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "2")

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402
from scipy import signal as signal_fft  # noqa: E402

from nt2c import extract_noise_patches  # noqa: E402


def synthetic_micrograph(size: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Make a (size, size) float32 raw micrograph and its enhanced copy."""
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.normal(size=(size, size)).astype(np.float32), 1.5) * 4.0
    signal = np.zeros((size, size), np.float32)
    signal[rng.integers(0, size, 80), rng.integers(0, size, 80)] = 1.0
    disc = (np.add.outer(np.arange(-40, 41) ** 2, np.arange(-40, 41) ** 2) <= 40**2).astype(np.float32)
    discs = np.clip(signal_fft.fftconvolve(signal, disc, mode="same"), 0.0, None).astype(np.float32)
    clean = 100.0 - 0.5 * discs
    return clean + noise, clean + 0.05 * ndimage.gaussian_filter(noise, 4.0)


def time_call(fn, repeats: int) -> dict:
    """Median and best wall time of ``repeats`` calls of ``fn``, and the size of its result."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return {
        "median_s": round(float(np.median(times)), 3),
        "best_s": round(min(times), 3),
        "n_candidates": int(result.candidates.shape[0]),
        "n_selected": len(result),
    }


def main(argv=None) -> int:
    """Run the benchmark cases and print the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096, help="micrograph side (px)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    raw, enhanced = synthetic_micrograph(args.size)
    cases = {
        "ssim d=320 s=160 N=4 (paper)": dict(criterion="ssim"),
        "std d=320 s=160 N=4 (reference code)": dict(criterion="std", std_max=5.0),
        "meanvar d=320 s=160 N=4 (GCBD)": dict(criterion="meanvar"),
        "ssim d=320 s=40 max_overlap=0.25": dict(criterion="ssim", step=40, max_overlap=0.25),
        "ssim d=320 s=6 max_overlap=0": dict(criterion="ssim", step=6, max_overlap=0.0),
    }
    report = {
        "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
        "size_px": args.size,
        "results": {},
    }
    for name, options in cases.items():
        repeats = 1 if options.get("step") == 6 else args.repeats
        report["results"][name] = time_call(
            lambda o=options: extract_noise_patches(raw, enhanced, patch_size=320, allow_empty=True, **o),
            repeats,
        )
        print(name, report["results"][name], flush=True)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as handle:
            handle.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
