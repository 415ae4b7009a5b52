"""Run the whole notebook series in the ``quick`` profile and record the time each notebook takes.

Not part of the test command (it takes tens of minutes on 2 CPU cores): run it on a schedule, or before a
release, to check that the series still runs end to end at the size a student meets (the CI runs ``smoke``).

The notebooks run in order, each in a fresh ``python3`` kernel, through
:func:`nt2c.tutorial.runner.run_notebooks` (what ``nt2c notebooks run --profile quick`` does), sharing
one run folder ``OUT/run`` as in a real session: a notebook finds the stages of the notebooks before it
on disk, so its time is what a student waits for when working through the series in order. Per notebook
the script records the wall-clock time, the CPU time of the kernel (user + system, all threads; a figure
that a busy machine inflates less) and the load average when it started, and writes

* ``OUT/times.md``: a Markdown table, with the machine, the commit and the total;
* ``OUT/times.json``: the same as data;
* ``OUT/executed/NN_name.ipynb`` and ``OUT/summary.{md,json}``: the executed notebooks and the runner's
  summary.

Usage::

    python benchmarks/notebooks_quick.py [--out runs/notebooks_quick] [--profile quick] [--only 01 02]
        [--threads 2] [--device cpu] [--timeout 7200]

On a shared, busy machine raise ``--timeout``: the runner allows one cell 30 minutes in ``quick``, and the GAN
training cell can exceed that when other jobs take most of the CPU.

Exit status 1 when a notebook failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "notebooks", "nt2c"],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _format(record: dict) -> str:
    lines = [
        f"# Notebook series, profile `{record['profile']}`",
        "",
        f"{record['date']} · commit {record['commit']} · {record['machine']} · torch threads "
        f"{record['threads']} · device {record['device']}",
        "",
        "| notebook | status | wall (s) | kernel CPU (s) | load avg at start | error |",
        "|---|---|---:|---:|---:|---|",
    ]
    for r in record["notebooks"]:
        lines.append(
            f"| {r['notebook']} | {r['status']} | {r['seconds']:.0f} | {r['cpu_seconds']:.0f} | "
            f"{r['load_average']:.1f} | {r['error'].replace('|', '/')} |"
        )
    lines += [
        f"| **total** | | **{record['total_seconds']:.0f}** | **{record['total_cpu_seconds']:.0f}** | | |",
        "",
        "Wall time includes the stages a notebook runs itself (in order, each notebook reuses the run folder "
        "of the ones before it) and the kernel start.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/notebooks_quick", help="output folder (default: %(default)s)")
    parser.add_argument("--profile", default="quick", choices=("smoke", "quick", "full"))
    parser.add_argument("--only", nargs="+", metavar="NN", help="notebook numbers to run (default: all)")
    parser.add_argument("--threads", type=int, default=None, help="torch/BLAS threads in the kernels")
    parser.add_argument("--device", default="auto", help="device parameter of the notebooks")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--timeout", type=int, default=None, metavar="S", help="limit for one cell (default: the runner's)"
    )
    args = parser.parse_args(argv)

    os.environ.setdefault("NT2C_PROGRESS", "0")
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("NT2C_NOTEBOOK_DIR", str(REPO / "notebooks"))  # for notebook 00's listing
    shared = REPO.parent / "shared" / "data"
    if shared.is_dir():  # the real-data sections, whatever the kernels' working folder
        os.environ.setdefault("NT2C_SHARED_DATA", str(shared))
    if args.threads:  # inherited by the kernels
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(args.threads)

    from nt2c.tutorial.runner import list_notebooks, run_notebooks

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    books = list_notebooks(REPO / "notebooks", args.only)
    record = {
        "profile": args.profile,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _commit(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}",
        "threads": args.threads or os.environ.get("OMP_NUM_THREADS") or "default",
        "device": args.device,
        "notebooks": [],
    }
    failed = False
    for book in books:
        load = os.getloadavg()[0]
        cpu0 = _children_cpu_s()
        start = time.perf_counter()
        (result,) = run_notebooks(
            profile=args.profile,
            out=out,
            only=[book.name[:2]],
            notebooks_dir=REPO / "notebooks",
            seed=args.seed,
            device=args.device,
            force=True,
            cell_timeout_s=args.timeout,
        )
        row = {
            "notebook": book.name,
            "status": result.status,
            "seconds": round(time.perf_counter() - start, 1),
            "cpu_seconds": round(_children_cpu_s() - cpu0, 1),
            "load_average": round(load, 2),
            "error": result.error,
        }
        failed |= result.status == "failed"
        record["notebooks"].append(row)
        record["total_seconds"] = round(sum(r["seconds"] for r in record["notebooks"]), 1)
        record["total_cpu_seconds"] = round(sum(r["cpu_seconds"] for r in record["notebooks"]), 1)
        (out / "times.json").write_text(json.dumps(record, indent=1) + "\n")
        (out / "times.md").write_text(_format(record))
        print(
            f"{book.name}: {row['status']} in {row['seconds']:.0f} s (kernel CPU {row['cpu_seconds']:.0f} s)"
        )
        sys.stdout.flush()
    print()
    print((out / "times.md").read_text())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
