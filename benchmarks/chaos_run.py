"""Kill `nt2c run` at random moments, resume it, and check the result equals an uninterrupted run's.

One uninterrupted reference run, then N trials; each trial starts ``nt2c run --profile smoke`` in a fresh run
folder, kills it after a random delay (seeded, uniform in 0.5 s .. 0.9 x the reference run's time; when it
finished before the kill, a fresh folder and a shorter delay; SIGINT or SIGKILL, alternating from a seeded
start), runs the same command again until it exits 0, and compares with the reference:

* models: every ``RUN/models/*.safetensors`` (tensors, exactly);
* data: ``RUN/noise/patches.mrcs``, ``RUN/pairs/*.mrcs``, ``RUN/simulated/pairs_*.mrcs`` (arrays, exactly);
* outputs: ``RUN/denoised/*.mrc`` and ``RUN/report/coarse/*.mrc`` (arrays, exactly);
* no temporary ``*.part`` file left in the run folder, every stage complete.

Prints N, the seeds, the kill moments and signals, and the verdict; exits 1 on any difference.

Usage::

    python benchmarks/chaos_run.py --n 6 --seed 0 [--work DIR] [--device cpu] [--keep]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

COMPARED = (
    "models/*.safetensors",
    "noise/patches.mrcs",
    "pairs/*.mrcs",
    "simulated/pairs_*.mrcs",
    "denoised/*.mrc",
    "report/coarse/*.mrc",
)


def _command(out: Path, args) -> list[str]:
    return [
        sys.executable,
        "-m",
        "nt2c",
        "run",
        "--out",
        str(out),
        "--profile",
        args.profile,
        "--device",
        args.device,
        "--seed",
        str(args.run_seed),
    ]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("NT2C_PROGRESS", "0")
    env.setdefault("MPLBACKEND", "Agg")
    return env


def _run_to_completion(out: Path, args, log) -> float:
    start = time.perf_counter()
    for attempt in range(3):
        proc = subprocess.run(_command(out, args), env=_env(), capture_output=True, text=True)
        log.write(proc.stdout + proc.stderr)
        if proc.returncode == 0:
            return time.perf_counter() - start
        print(f"    attempt {attempt + 1} exited {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
    raise SystemExit(f"nt2c run in {out} did not complete; see {log.name}")


def _kill_at(out: Path, args, delay_s: float, sig: int, log) -> str:
    """Start the run, send ``sig`` after ``delay_s`` seconds; return what happened."""
    proc = subprocess.Popen(
        _command(out, args),
        env=_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        proc.wait(timeout=delay_s)
        return f"finished before the kill (exit {proc.returncode})"
    except subprocess.TimeoutExpired:
        pass
    os.kill(proc.pid, sig)
    try:
        code = proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        code = proc.wait()
        return "did not stop on SIGINT within 120 s; killed"
    return f"killed (exit {code})"


def _load(path: Path):
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        return load_file(str(path))
    import mrcfile

    with mrcfile.open(path, permissive=True) as mrc:
        return {"data": np.array(mrc.data)}


def _compare(ref: Path, run: Path) -> list[str]:
    problems = []
    for pattern in COMPARED:
        ref_files = sorted(p.relative_to(ref) for p in ref.glob(pattern))
        run_files = sorted(p.relative_to(run) for p in run.glob(pattern))
        if ref_files != run_files:
            problems.append(
                f"{pattern}: files {[str(p) for p in run_files]} != {[str(p) for p in ref_files]}"
            )
            continue
        for rel in ref_files:
            a, b = _load(ref / rel), _load(run / rel)
            if a.keys() != b.keys():
                problems.append(f"{rel}: other tensors")
                continue
            for key in a:
                if a[key].shape != b[key].shape or not np.array_equal(a[key], b[key], equal_nan=True):
                    diff = (
                        float(np.nanmax(np.abs(a[key].astype(np.float64) - b[key])))
                        if a[key].shape == b[key].shape
                        else "shape"
                    )
                    problems.append(f"{rel}[{key}]: differs (max abs diff {diff})")
    leftovers = [str(p.relative_to(run)) for p in run.rglob("*.part")]
    if leftovers:
        problems.append(f"temporary files left: {leftovers}")
    from nt2c.run.rundir import RunDir
    from nt2c.run.stages import stage_status

    status = stage_status(RunDir(run))
    if not all(status.values()):
        problems.append(f"incomplete stages: {[k for k, v in status.items() if not v]}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=6, help="number of kill-and-resume trials (default 6)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments and signals")
    parser.add_argument("--run-seed", type=int, default=0, help="--seed of nt2c run (default 0)")
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--work", default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the run folders")
    args = parser.parse_args(argv)

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="nt2c_chaos_"))
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    log = open(work / "chaos.log", "a")
    print(f"chaos_run: N={args.n}, seed={args.seed}, nt2c run --seed {args.run_seed}, profile {args.profile}")
    print(f"working in {work} (log: {log.name})")
    ref = work / "reference"
    if ref.exists():
        shutil.rmtree(ref)
    ref_seconds = _run_to_completion(ref, args, log)
    print(f"reference run: {ref_seconds:.1f} s")

    signals = [signal.SIGINT, signal.SIGKILL]
    first = rng.randrange(2)
    failures = 0
    for trial in range(args.n):
        out = work / f"trial_{trial}"
        if out.exists():
            shutil.rmtree(out)
        delay = rng.uniform(0.5, 0.9 * ref_seconds)
        sig = signals[(first + trial) % 2]
        what = _kill_at(out, args, delay, sig, log)
        while what.startswith("finished") and delay > 1.0:  # the machine got faster: kill earlier
            shutil.rmtree(out)
            delay = rng.uniform(0.5, delay / 2)
            what = _kill_at(out, args, delay, sig, log)
        resumed = _run_to_completion(out, args, log)
        problems = _compare(ref, out)
        verdict = "equal" if not problems else "DIFFERENT"
        print(
            f"trial {trial}: {signal.Signals(sig).name} at {delay:.1f} s -> {what}; "
            f"resumed in {resumed:.1f} s; {verdict}"
        )
        for line in problems:
            print(f"    {line}")
        failures += bool(problems)
        if not args.keep and not problems:
            shutil.rmtree(out)
    print(
        f"verdict: {args.n - failures}/{args.n} interrupted runs equal the uninterrupted one "
        f"(seed {args.seed})" + ("" if not failures else f"; {failures} DIFFERENT")
    )
    log.close()
    if not args.keep and not failures and not args.work:
        shutil.rmtree(work)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
