"""Choose how much of the raw micrograph's longest periods the denoised one keeps (DEV halves only).

``denoise_micrograph`` ends with :func:`nt2c.denoiser.inference.keep_raw_low_frequencies` (periods longer than
``denoise.low_frequency_from_raw_px``, 50 px by default, come from the raw micrograph). This script measures
the variants the default was chosen among, on development data only: each run's models denoise its DEV
micrographs once with the network alone (``low_frequency_from_raw_px=0``), and each variant post-processes
those outputs:

* ``network``: the network's output alone;
* ``P25``, ``P50``, ``P100``: :func:`keep_raw_low_frequencies` at that period (px);
* ``w*P50``, ``w2*P50``: the P = 50 px Gaussian times a Wiener weight ``w = 1 - N / S(k)`` (or ``w^2``),
  ``S(k)`` the raw micrograph's ring power and ``N`` its median ring power at 0.3-0.45 cycles/px (the noise
  level where the signal is negligible).

Data, each optional:

* ``--independent RUN DATA``: a run on micrographs of ``independent_sim/make_cryojax_micrographs.py``;
  DEV = even positions; r with the truth and the best picking F1 over thresholds 0.25 / 0.5 / 1 (pooled);
* ``--real RUN``: a run on the EMPIAR-10146 averages (``--real-dir``); DEV averages: Eq. 5 and the best F1
  over 0.25 / 0.5; DEV frames: r with the 49-frame reference (``bench_real.py``'s boxes, picker, reference);
* ``--standins RUN``: an embedded-default run; its learnt-from stand-ins (``RUN/micrographs.txt``): PSNR
  against the clean image and the picker's F1 at its default threshold, as ``nt2c evaluate`` scores them.

Run::

    python benchmarks/bench_low_frequency.py --independent RUN_B DATA_B --real RUN_REAL --standins RUN_DEFAULT
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_real  # noqa: E402

NOISE_BAND_PER_PX = (0.3, 0.45)
CROP_PX = 16  # as bench_independent.py


def wiener_weighted(raw, denoised, *, period_px: float = 50.0, power: float = 1.0) -> np.ndarray:
    """Return ``denoised + F^-1[w(k)^power exp(-(k P)^2) F[raw - denoised]]`` (``w``: module docstring)."""
    raw = np.asarray(raw, np.float64)
    denoised = np.asarray(denoised, np.float64)
    ny, nx = raw.shape
    spectrum = np.fft.rfft2(raw - raw.mean())
    k = np.hypot(np.fft.fftfreq(ny)[:, None], np.fft.rfftfreq(nx)[None, :])
    side = min(ny, nx)
    ring = np.rint(k * side).astype(int)
    power_k = np.abs(spectrum) ** 2
    ring_power = np.bincount(ring.ravel(), power_k.ravel()) / np.maximum(np.bincount(ring.ravel()), 1)
    lo, hi = (int(f * side) for f in NOISE_BAND_PER_PX)
    noise = float(np.median(ring_power[lo : hi + 1]))
    w = np.clip(1.0 - noise / np.maximum(ring_power, 1e-300), 0.0, 1.0) ** power
    gain = w[ring] * np.exp(-((k * period_px) ** 2))
    low = np.fft.irfft2(np.fft.rfft2(raw - denoised) * gain, s=raw.shape)
    return (denoised + low).astype(np.float32)


def variants() -> dict:
    from nt2c.denoiser.inference import keep_raw_low_frequencies

    out = {"network": lambda raw, den: den}
    for period in (25, 50, 100):
        out[f"P{period}"] = lambda raw, den, p=period: keep_raw_low_frequencies(raw, den, period_px=p)
    out["w*P50"] = lambda raw, den: wiener_weighted(raw, den)
    out["w2*P50"] = lambda raw, den: wiener_weighted(raw, den, power=2.0)
    return out


@functools.lru_cache(maxsize=None)
def _model(run: Path, which: str):
    from nt2c.denoiser.inference import load_model

    return load_model(run / "models" / f"{which}.safetensors")


def _network(run: Path, which: str, image) -> np.ndarray:
    """Return the network's output alone (what every variant post-processes)."""
    from nt2c.denoiser.inference import denoise_micrograph

    return denoise_micrograph(
        _model(run, which), image, device="cpu", show_progress=False, low_frequency_from_raw_px=0
    )


def independent(run: Path, data: Path) -> dict:
    from nt2c.evaluation.datasets import load_micrograph
    from nt2c.evaluation.metrics import pearson
    from nt2c.io import read_image

    names = sorted(p.name[:-4] for p in data.glob("mic_??.mrc"))[::2]  # DEV: even positions
    thresholds = (0.25, 0.5, 1.0)
    results = {}
    for which in ("fine", "coarse"):
        sums = {v: [[], np.zeros((len(thresholds), 3))] for v in variants()}
        for name in names:
            mic = load_micrograph(data / f"{name}.mrc")
            exclude = bench_real.excluded_area(mic, 80.0)
            truth = read_image(data / f"{name}_clean.mrc")[0]
            den = _network(run, which, mic.image)
            for v, f in variants().items():
                out = f(mic.image, den)
                c = CROP_PX
                sums[v][0].append(pearson(out[c:-c, c:-c], truth[c:-c, c:-c]))
                counts = bench_real.picking_counts(out, mic, exclude, diameter=80.0, thresholds=thresholds)
                sums[v][1] += [[r["tp"], r["fp"], r["fn"]] for r in counts]
        results[which] = {
            v: {"r_truth": float(np.mean(r)), "best_f1": max(bench_real.prf(*t)[2] for t in tot)}
            for v, (r, tot) in sums.items()
        }
    return results


def real(run: Path, data: Path) -> dict:
    names = bench_real.list_names(data)
    dev, _ = bench_real.split_names(names)
    mics = {n: bench_real.load_micrograph(data, n) for n in dev}
    diameter = bench_real.diameter_px(list(mics.values()))
    exclude = {n: bench_real.excluded_area(m, diameter) for n, m in mics.items()}
    regions = {n: bench_real.eq5_setup(m, exclude[n], box_px=int(diameter) // 2 * 2) for n, m in mics.items()}
    with_frame = [n for n in dev if mics[n].frame is not None]
    refs = {n: bench_real.reference_without_frame(mics[n].image, mics[n].frame)[0] for n in with_frame}
    results = {}
    for which in ("fine", "coarse"):
        sums = {v: [[], np.zeros((2, 3)), []] for v in variants()}
        for n in dev:
            den = _network(run, which, mics[n].image)
            for v, f in variants().items():
                out = f(mics[n].image, den)
                sums[v][0].append(regions[n].snr(out))
                counts = bench_real.picking_counts(
                    out, mics[n], exclude[n], diameter=diameter, thresholds=(0.25, 0.5)
                )
                sums[v][1] += [[r["tp"], r["fp"], r["fn"]] for r in counts]
        for n in with_frame:
            den = _network(run, which, mics[n].frame)
            for v, f in variants().items():
                out = f(mics[n].frame, den)
                score = bench_real.frame_scores(out, refs[n], mics[n].image, pixel_size_A=1.5)
                sums[v][2].append(score["pearson"])
        results[which] = {
            v: {
                "eq5_dB": float(np.mean(e)),
                "best_f1": max(bench_real.prf(*t)[2] for t in tot),
                "frame_r": float(np.mean(fr)),
            }
            for v, (e, tot, fr) in sums.items()
        }
    return results


def standins(run: Path) -> dict:
    from nt2c.evaluation.compare import run_particle_diameter_px
    from nt2c.evaluation.metrics import psnr
    from nt2c.evaluation.picking import pick_particles, score_picks
    from nt2c.io import read_image, read_star
    from nt2c.run.micrographs import read_micrograph_list

    diameter = run_particle_diameter_px(run)
    results = {}
    for which in ("fine", "coarse"):
        sums = {v: [[], np.zeros(3)] for v in variants()}
        for path in read_micrograph_list(run):
            raw = read_image(path)[0]
            clean = read_image(path.with_name(path.stem + "_clean.mrc"))[0]
            star = read_star(path.with_name(path.stem + "_coords.star"))
            truth = np.stack([star["rlnCoordinateX"], star["rlnCoordinateY"]], 1).astype(float)
            den = _network(run, which, raw)
            for v, f in variants().items():
                out = f(raw, den)
                picks = pick_particles(out, particle_diameter_px=diameter).coords_xy
                s = score_picks(picks, truth, radius_px=diameter / 2.0)
                sums[v][0].append(psnr(out, clean))
                sums[v][1] += [s["tp"], s["fp"], s["fn"]]
        results[which] = {
            v: {"psnr_dB": float(np.mean(p)), "f1": bench_real.prf(*c)[2]} for v, (p, c) in sums.items()
        }
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--independent", nargs=2, type=Path, metavar=("RUN", "DATA"))
    ap.add_argument("--real", type=Path, metavar="RUN")
    ap.add_argument("--real-dir", type=Path, default=bench_real.DEFAULT_DATA)
    ap.add_argument("--standins", type=Path, metavar="RUN")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    result = {}
    if args.independent:
        result["independent"] = independent(*args.independent)
    if args.real:
        result["real"] = real(args.real, args.real_dir)
    if args.standins:
        result["standins"] = standins(args.standins)
    for data, by_model in result.items():
        for which, rows in by_model.items():
            print(f"\n{data}, {which} (DEV)")
            for v, figures in rows.items():
                print(f"  {v:8s} " + "  ".join(f"{k} {x:.3f}" for k, x in figures.items()))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
