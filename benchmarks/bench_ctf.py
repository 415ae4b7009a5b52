"""Check nt2c's defocus fit (``nt2c.calibration.fit_ctf``) against known truth, CTFFIND4 and real data.

1. Simulated micrographs of known defocus and astigmatism (nt2c's simulator), inside and outside the default
   0.5-2.5 um range, at 40, 20 and 2 e/A^2: the error of the mean defocus.
2. The shared CTFFIND4 example (EMPIAR-10204, ``relion_tutorial_*_PS_avrot.txt``): nt2c's 1-D fit
   (:func:`~nt2c.calibration.fit_defocus_1d` on :func:`~nt2c.calibration.normalise_rings` of CTFFIND4's
   astigmatism-corrected rotational average, row 3, 30-5 A, rings weighted by their Fourier pixels) against
   the mean of CTFFIND4's two defoci.
3. The real EMPIAR-10146 pairs: each 50-frame average and its single frame (same field, same defocus, 1/50 of
   the dose, independent noise but for the shared frame) fitted separately; their agreement measures the
   fit on real data without a reference program.

Run::

    python benchmarks/bench_ctf.py [--shared ../shared] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

SIMULATED = [  # (defocus_um, astigmatism angle deg, dose e/A^2)
    (1.2, 30.0, 40.0),
    (2.7, 120.0, 40.0),
    (0.5, 10.0, 40.0),
    (4.0, 60.0, 40.0),
    (5.5, 150.0, 20.0),
    (0.8, 75.0, 2.0),
    (3.5, 100.0, 2.0),
]


def simulated_rows() -> list[dict]:
    from nt2c.calibration import fit_ctf
    from nt2c.config import ExperimentParams
    from nt2c.simulation.micrograph import simulate_micrograph

    rows = []
    for defocus_um, angle_deg, dose in SIMULATED:
        params = ExperimentParams(
            pixel_size_A=1.5, n_particles=80, image_size_px=(1024, 1024), dose_e_per_A2=dose
        )
        mic = simulate_micrograph(
            params,
            seed=3,
            defocus_um=defocus_um,
            astigmatism_angle_deg=angle_deg,
            device="cpu",
            allow_fewer=True,
        )
        start = time.perf_counter()
        est = fit_ctf(
            mic.noisy,
            pixel_size_A=params.pixel_size_A,
            voltage_kV=params.voltage_kV,
            cs_mm=params.cs_mm,
            amplitude_contrast=params.amplitude_contrast,
        )
        truth_A = 0.5 * (mic.defocus_u_A + mic.defocus_v_A)
        rows.append(
            {
                "defocus_um": defocus_um,
                "dose_e_per_A2": dose,
                "fitted_A": round(est.defocus_um * 1e4, 1),
                "truth_A": round(truth_A, 1),
                "error_pct": round(100 * (est.defocus_um * 1e4 / truth_A - 1), 3),
                "score": round(est.score, 3),
                "seconds": round(time.perf_counter() - start, 2),
            }
        )
    return rows


def ctffind_row(shared: Path) -> dict | None:
    from nt2c.calibration import fit_defocus_1d, normalise_rings, read_ctffind4

    stem = shared / "data" / "real" / "relion_tutorial_EMPIAR-10204_20170629_00023_PS"
    if not Path(f"{stem}_avrot.txt").is_file():
        return None
    (reference,) = read_ctffind4(f"{stem}.txt")
    avrot = np.loadtxt(f"{stem}_avrot.txt")
    k = avrot[0]
    band = (k >= 1 / 30) & (k <= 1 / 5)
    optics = {"voltage_kV": 200.0, "cs_mm": 1.4, "amplitude_contrast": 0.1}  # from the file's header
    fitted_A, score = fit_defocus_1d(k[band], normalise_rings(avrot[2])[band], **optics, weights=k[band])
    mean_A = 0.5 * (reference.defocus_u_A + reference.defocus_v_A)
    return {
        "ctffind4_A": round(mean_A, 1),
        "fitted_A": round(fitted_A, 1),
        "error_pct": round(100 * (fitted_A / mean_A - 1), 3),
        "score": round(score, 3),
    }


def real_pair_rows(shared: Path) -> list[dict]:
    from nt2c.calibration import fit_ctf
    from nt2c.io import read_image

    folder = shared / "data" / "real" / "empiar10146"
    optics = {"pixel_size_A": 1.5, "voltage_kV": 300.0, "cs_mm": 0.0, "amplitude_contrast": 0.07}
    rows = []
    for frame in sorted(folder.glob("*_frame.mrc")):
        average = frame.with_name(frame.name.replace("_frame", ""))
        fits = [fit_ctf(read_image(path)[0].astype(np.float64), **optics) for path in (average, frame)]
        avg_A, frame_A = (f.defocus_um * 1e4 for f in fits)
        rows.append(
            {
                "micrograph": average.name,
                "average_A": round(avg_A, 1),
                "average_score": round(fits[0].score, 3),
                "frame_A": round(frame_A, 1),
                "frame_score": round(fits[1].score, 3),
                "difference_pct": round(100 * (frame_A / avg_A - 1), 2),
            }
        )
    return rows


def _table(rows: list[dict]) -> str:
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(r[h]) for h in head) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    result = {"simulated": simulated_rows(), "ctffind4": ctffind_row(args.shared)}
    result["real_pairs"] = real_pair_rows(args.shared) if (args.shared / "data").is_dir() else []
    print("## Simulated micrographs (known defocus)\n\n" + _table(result["simulated"]))
    if result["ctffind4"]:
        print("\n## CTFFIND4 example (EMPIAR-10204)\n\n" + _table([result["ctffind4"]]))
    if result["real_pairs"]:
        print(
            "\n## EMPIAR-10146: average and single frame fitted separately\n\n" + _table(result["real_pairs"])
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
