"""Train a finished run's pairs and fine model again with the current code, keeping everything before them.

For benchmark runs made before a change to the re-weighting or the fine training: the simulation, the coarse
model and the noise patches are kept as they are; ``reweight`` and ``train-fine`` run again with the
settings their stamps recorded and are stamped anew. The cached benchmark outputs of the fine models
(``RUN/bench_real_cache/nt2c-fine*``, ``RUN/bench_independent_cache/nt2c-fine*``) and the re-weighting
variants (``RUN/ablation/bench-*``) are removed, so the benchmarks score the new models.

Run::

    python benchmarks/retrain_fine.py --run RUN [--device cpu]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_real import train_fine_again  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)

    from nt2c.run.rundir import RunDir

    run = RunDir(args.run)
    for name, seconds in train_fine_again(run, run, device=args.device, stamp=True).items():
        print(f"{name}: {seconds:.1f} s")
    for cache in ("bench_real_cache", "bench_independent_cache"):
        for folder in (run.path / cache).glob("nt2c-fine*"):
            shutil.rmtree(folder)
    for folder in (run.path / "ablation").glob("bench-*"):
        shutil.rmtree(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
