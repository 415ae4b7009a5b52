"""Speed of the micrograph simulator (issue 3's two figures), on CPU and, when available, on the GPU.

Cases:

* ``small``: 1024 x 1024 px at 1 A/px with 20 copies of the built-in specimen (default parameters: K2
  detector, 30 nm ice with structural noise). Target: under 5 s on 2 CPU cores.
* ``large``: 4096 x 4096 px at 1 A/px with 200 copies of the 20S proteasome 3j9i (~700 kDa). Target: under 60
  s on 2 CPU cores. The model is read from ``--pdb`` or ``../shared/data/pdb/3j9i.pdb.gz``; without it a
  built-in specimen of the same mass (700 kDa, D7) stands in (said in the output).

"cold" includes building/reading the specimen and the first-call set-up; "warm" is a second micrograph with
the same specimen (what a dataset of many micrographs costs per micrograph). Wall-clock times; the process CPU
time (all threads) is printed too, which helps to read figures taken on a busy machine.

Usage::

    python benchmarks/bench_simulate.py [--threads 2] [--cases small large] [--pdb 3j9i.pdb.gz] [--json
    out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from nt2c.config import load_params
from nt2c.simulation import build_builtin_specimen, read_structure, simulate_micrograph

REPO = Path(__file__).resolve().parent.parent


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _specimen(case: str, pdb: str | None):
    if case == "small":
        return build_builtin_specimen(diameter_A=120.0), "builtin 120 A"
    path = Path(pdb) if pdb else REPO.parent / "shared" / "data" / "pdb" / "3j9i.pdb.gz"
    if path.is_file():
        return read_structure(path), f"{path.name}"
    return build_builtin_specimen(mass_kDa=700.0, symmetry="D7"), "builtin 700 kDa D7 (3j9i absent)"


def run_case(case: str, device: str, pdb: str | None) -> dict:
    """Time one case on one device: a cold micrograph (specimen included) and a warm one."""
    size, n = (1024, 20) if case == "small" else (4096, 200)
    params = load_params(image_size_px=size, n_particles=n, pixel_size_A=1.0)
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    spec, name = _specimen(case, pdb)
    mic = simulate_micrograph(params, specimen=spec, seed=0, device=device)
    _sync(device)
    cold, cold_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    simulate_micrograph(params, specimen=spec, seed=1, device=device)
    _sync(device)
    warm, warm_cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "case": case,
        "device": device,
        "image_px": size,
        "particles": len(mic.coordinates_px),
        "specimen": name,
        "atoms_per_particle": spec.n_atoms,
        "mass_kDa": round(spec.mass_kDa, 1),
        "cold_s": round(cold, 2),
        "cold_cpu_s": round(cold_cpu, 2),
        "warm_s": round(warm, 2),
        "warm_cpu_s": round(warm_cpu, 2),
    }


def main() -> None:
    """Parse the options, run the cases, print (and optionally save) the figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--cases", nargs="+", default=["small", "large"], choices=["small", "large"])
    ap.add_argument("--pdb", default=None, help="path of 3j9i (default ../shared/data/pdb/3j9i.pdb.gz)")
    ap.add_argument("--cpu", action=argparse.BooleanOptionalAction, default=True, help="time the CPU")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    devices = (["cpu"] if args.cpu else []) + (["cuda"] if torch.cuda.is_available() else [])
    results = {"host": platform.node(), "torch": torch.__version__, "threads": args.threads, "runs": []}
    if torch.cuda.is_available():
        results["gpu"] = torch.cuda.get_device_name(0)
    for device in devices:
        for case in args.cases:
            r = run_case(case, device, args.pdb)
            results["runs"].append(r)
            print(
                f"{case:5s} {device:4s} {r['image_px']}^2 px, {r['particles']} x {r['specimen']} "
                f"({r['atoms_per_particle']} atoms): cold {r['cold_s']:.2f} s (CPU {r['cold_cpu_s']:.2f} s), "
                f"warm {r['warm_s']:.2f} s (CPU {r['warm_cpu_s']:.2f} s)",
                flush=True,
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
