"""Ablation of the noise-field blend: each patch centred on its own mean (now) or on the mean of all (before).

The quick profile blends 64 px noise patches into 128 px fields
(:func:`nt2c.noise.fields.blend_noise_patches`). Before the third session the blend removed only the mean
of all patches, so each patch's own level (ice thickness, gain where it was cut) printed a window-shaped
bump into the field. This script trains, on a finished run of ``bench_independent.py``, a second fine model
with that earlier blend (``centre="all"``; same simulation, coarse model, noise patches and settings;
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
from bench_independent import CROP_PX  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)

    import functools

    from nt2c.denoiser.inference import denoise_micrograph, load_model
    from nt2c.evaluation.metrics import pearson
    from nt2c.io import read_image
    from nt2c.noise import fields
    from nt2c.run.rundir import RunDir

    parent = RunDir(args.run)
    sub_path = args.run / "ablation" / "blend-common-mean"
    if not (sub_path / "models" / "fine.safetensors").is_file():
        sub = bench_real.link_subrun(parent, sub_path)
        current = fields.blend_noise_patches
        fields.blend_noise_patches = functools.partial(current, centre="all")  # the earlier blend
        try:
            bench_real.train_fine_again(parent, sub, device=args.device)
        finally:
            fields.blend_noise_patches = current
    names = bench_real.list_names(args.data)
    dev, test = bench_real.split_names(names)
    models = {
        "own mean (now)": parent.models / "fine.safetensors",
        "common mean (before)": sub_path / "models" / "fine.safetensors",
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
                c = CROP_PX
                rs.append(pearson(out[c:-c, c:-c], clean[c:-c, c:-c]))
                regions = bench_real.eq5_setup(
                    mics[n], bench_real.excluded_area(mics[n], diameter), box_px=box
                )
                snrs.append(regions.snr(out))
            print(f"| {label} | {split} | {np.mean(rs):.3f} | {np.mean(snrs):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
