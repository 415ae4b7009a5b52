"""The calibration's noise-to-signal measurement and its noise-level check on finished runs, side by side.

For each run: :func:`nt2c.calibration.measure_signal_noise` on the run's micrographs (at most
``SIGNAL_NOISE_MICROGRAPHS``, spread over the list, as the ``calibrate`` stage samples them) and its noise
patches: noise and signal variance, the ratio of the micrographs' power to the patches' at 0.3-0.45
cycles/px (1 when the patches carry the micrographs' noise level), and the noise-to-signal ratio or why it
is not measurable. Reads the runs only (no stage runs, so stale stamps do not matter).

Run::

    python benchmarks/bench_noise_level.py RUN [RUN ...]
"""

from __future__ import annotations

import sys
from pathlib import Path


def measure(run_path: Path) -> dict:
    from nt2c.calibration.measure import SIGNAL_NOISE_MICROGRAPHS
    from nt2c.calibration.signal_noise import measure_signal_noise
    from nt2c.io import read_image, read_mrc
    from nt2c.run.micrographs import read_micrograph_list, spread_evenly
    from nt2c.run.rundir import RunDir

    run = RunDir(run_path)
    paths = spread_evenly(read_micrograph_list(run), SIGNAL_NOISE_MICROGRAPHS)
    noise = read_mrc(run.noise / "patches.mrcs")[0]
    noise = noise[None] if noise.ndim == 2 else noise
    m = measure_signal_noise([read_image(p)[0] for p in paths], noise)
    return {
        "run": run_path.name,
        "micrographs": len(paths),
        "patches": len(noise),
        "noise_level_ratio": round(m.noise_level_ratio, 3),
        "noise_variance": f"{m.noise_variance:.4g}",
        "signal_variance": f"{m.signal_variance:.4g} +- {m.standard_error:.3g}",
        "noise_to_signal": "not measurable" if m.nsr is None else round(m.nsr, 2),
    }


def main(argv=None) -> int:
    runs = [Path(a) for a in (sys.argv[1:] if argv is None else argv)]
    if not runs:
        print(__doc__)
        return 2
    rows = [measure(r) for r in runs]
    head = list(rows[0])
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(str(r[h]) for h in head) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
