"""Ablation of the noise-field blend: each patch centred on its own mean (now) or on the mean of all (before).

The quick profile blends 64 px noise patches into 128 px fields
(:func:`nt2c.noise.fields.blend_noise_patches`). Before the third session the blend removed only the mean
of all patches, so each patch's own level (ice thickness, gain where it was cut) printed a window-shaped
bump into the field. This script trains, on a finished run of ``bench_independent.py``, a second fine model
with that earlier blend (same simulation, coarse model, noise patches and settings;
``RUN/ablation/blend-common-mean/``) and scores both fine models against the truth images as
``bench_independent.py`` does (Pearson r, 16 px border cropped; Eq. 5 at the labels).

Run::

    python benchmarks/bench_blend.py --data DATA --run RUN [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_real  # noqa: E402

from nt2c.noise.fields import blend_noise_patches as _CURRENT_BLEND  # noqa: E402


def blend_common_mean(patches, size: int) -> np.ndarray:
    """Blend as before: the patches centred on their common mean only (each keeps its own level)."""
    patches = np.asarray(patches, dtype=np.float32)
    offsets = patches.mean(axis=(1, 2), dtype=np.float64) - patches.mean(dtype=np.float64)
    # the blend is linear: the earlier one is the current one (each patch centred on its own mean) plus each
    # patch's offset from the common mean under the same window
    return _CURRENT_BLEND(patches, size) + _blend_levels(offsets.astype(np.float32), patches.shape[-1], size)


def _blend_levels(levels: np.ndarray, d: int, size: int) -> np.ndarray:
    """Blend constant ``d x d`` patches of the given levels with the blend's windows (no centring)."""
    from nt2c.noise.fields import tiles_per_axis

    per_axis = tiles_per_axis(size, d)
    k, half = per_axis**2, d // 2
    window = np.sin(np.pi * (np.arange(d) + 0.5) / d)
    weight = (window[:, None] * window[None, :]).astype(np.float32)
    canvas_px = (per_axis + 1) * half
    out = np.empty((len(levels) // k, size, size), dtype=np.float32)
    for f in range(len(levels) // k):
        canvas = np.zeros((canvas_px, canvas_px), dtype=np.float32)
        for i in range(per_axis):
            for j in range(per_axis):
                canvas[i * half : i * half + d, j * half : j * half + d] += (
                    weight * levels[f * k + i * per_axis + j]
                )
        out[f] = canvas[half : half + size, half : half + size]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)

    import os
    import shutil

    from nt2c.config import stage_config
    from nt2c.denoiser.inference import denoise_micrograph, load_model
    from nt2c.evaluation.metrics import pearson
    from nt2c.io import read_image
    from nt2c.noise import fields
    from nt2c.run.rundir import RunDir
    from nt2c.run.stages import STAGES

    parent = RunDir(args.run)
    sub = RunDir(args.run / "ablation" / "blend-common-mean")
    if not (sub.models / "fine.safetensors").is_file():
        sub.init_params(parent.params())
        for rel in (
            "simulated",
            "noise",
            "models/coarse.safetensors",
            "models/coarse.json",
            "micrographs.txt",
        ):
            src, dst = parent.path / rel, sub.path / rel
            if src.exists() and not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                (shutil.copytree if src.is_dir() else shutil.copy)(
                    src, dst, **({"copy_function": os.link} if src.is_dir() else {})
                )
        profile = parent.profile() or "quick"
        fields.blend_noise_patches, current = blend_common_mean, fields.blend_noise_patches
        try:
            for name in ("reweight", "train-fine"):
                recorded = dict((parent.read_stamp(name) or {}).get("settings") or {})
                recorded["device"] = args.device
                STAGES[name].load()(sub, stage_config(name, profile, **recorded), parent.params())
        finally:
            fields.blend_noise_patches = current
    names = bench_real.list_names(args.data)
    dev, test = bench_real.split_names(names)
    models = {
        "own mean (now)": parent.models / "fine.safetensors",
        "common mean (before)": sub.models / "fine.safetensors",
    }
    mics = {n: bench_real.load_micrograph(args.data, n) for n in names}
    diameter = bench_real.diameter_px(list(mics.values()))
    box = int(diameter) // 2 * 2
    print("| blend | split | r with truth | Eq. 5 SNR (dB) |\n|---|---|---:|---:|")
    for label, path in models.items():
        model = load_model(path)
        for split, group in (("TEST", test), ("DEV", dev)):
            rs, snrs = [], []
            for n in group:
                out = denoise_micrograph(model, mics[n].image, device=args.device, show_progress=False)
                clean = read_image(args.data / f"{n}_clean.mrc")[0]
                c = 16
                rs.append(pearson(out[c:-c, c:-c], clean[c:-c, c:-c]))
                regions = bench_real.eq5_setup(
                    mics[n], bench_real.excluded_area(mics[n], diameter), box_px=box
                )
                snrs.append(regions.snr(out))
            print(f"| {label} | {split} | {np.mean(rs):.3f} | {np.mean(snrs):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
