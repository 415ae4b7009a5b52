"""Micrographs from a simulator that is not nt2c's (cryoJAX), with known truth.

cryoJAX projections, an ice slab of varying thickness, structural ice noise, a measured K2 MTF, Poisson counts
and an imperfect gain reference. Run it in its own environment (cryoJAX needs JAX; nt2c does not), so that
nothing of nt2c's simulator is used::

    python -m venv /tmp/cryojax && /tmp/cryojax/bin/pip install cryojax==0.6.0 mrcfile
    /tmp/cryojax/bin/python benchmarks/independent_sim/make_cryojax_micrographs.py --out DIR

The two data sets of ``benchmarks/RESULTS.md``: **A** with the defaults (``--out /work/data/cryojax_sim``),
and **B**, a picking task that nt2c's picker can solve on the truth (F1 0.79 on its DEV half against 0.48
for A): ``--seed 2027 --gain-variation 0.005 --out /work/data/cryojax_sim_b``. In A the smooth 3 % gain error
puts particle-sized blobs into the truth that outweigh the particles' low-frequency contrast; B keeps 0.5 %.

Writes, per micrograph ``mic_NN``: ``mic_NN.mrc`` (float32, gain-normalised grey levels: not counts),
``mic_NN_coords.csv`` (``x,y,radius`` px, x = column; the format of ``../shared/data/real/empiar10146``) and
``mic_NN_clean.mrc`` (the truth: the expected image without shot noise, structural ice and pixel gain errors),
and ``truth.json`` (defocus, astigmatism, ice thickness, dose and the rest, per micrograph).

Image formation (each step independent of nt2c's code):

* **particles**: the 20S proteasome (``3j9i``, the EMPIAR-10025 specimen), projected by cryoJAX (Peng
  scattering factors as a Gaussian mixture) in uniformly random orientations; phase
  ``sigma_e * (1 - solvent) * projection`` with cryoJAX's interaction constant and a solvent-displacement
  factor; non-overlapping random centres;
* **ice**: a slab whose thickness ramps linearly across the field (``--ice-nm`` min and max, a random
  direction) with a smooth random variation (``--thickness-variation``, 5 %) on top; it attenuates the beam
  (``exp(-t / 350 nm)``, inelastic loss with an energy filter) and adds **structural noise**, a Gaussian
  phase field with amorphous ice's ring at 1/3.7 A^-1 and a low-frequency component, its variance
  proportional to the local thickness;
* **optics**: cryoJAX's ``AstigmaticCTF`` (weak phase: ``I = 1 + 2 F^-1[CTF * F[phase]]``) with a
  ``exp(-B k^2 / 4)`` envelope;
* **detector**: Poisson counts at ``--dose`` e/A^2, blurred by the K2 300 kV MTF measured by Gatan
  (``../shared/reference/detectors/mtf_k2_300kV.star``), multiplied by a gain error (2 % per pixel and a
  smooth ``--gain-variation``, 3 % by default), divided by the field's mean count.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[2] / "shared"
SOLVENT = 0.6  # part of the protein's vacuum potential that the displaced water would have carried
MEAN_FREE_PATH_NM = 350.0
ICE_RING_PER_A = 1 / 3.7
BOX_PX = 192


def read_mtf(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(frequency in 1/px, MTF) from a RELION MTF star file."""
    rows = [
        line.split() for line in path.read_text().splitlines() if line.strip() and line.strip()[0].isdigit()
    ]
    table = np.array(rows, dtype=float)
    return table[:, 0], table[:, 1]


def gaussian_field(rng, shape, spectrum_fn, pixel_size_A):
    """Unit-variance Gaussian random field with the radial power spectrum ``spectrum_fn(k)`` (k in 1/A)."""
    ny, nx = shape
    k = np.hypot(np.fft.fftfreq(ny, pixel_size_A)[:, None], np.fft.rfftfreq(nx, pixel_size_A)[None, :])
    white = np.fft.rfft2(rng.normal(size=shape))
    field = np.fft.irfft2(white * np.sqrt(spectrum_fn(k)), s=shape)
    field -= field.mean()
    return field / field.std()


def place_centres(rng, n, size, min_dist, margin):
    centres = []
    for _ in range(20000):
        if len(centres) == n:
            break
        c = rng.uniform(margin, size - margin, 2)
        if all(np.hypot(*(c - o)) >= min_dist for o in centres):
            centres.append(c)
    return np.round(np.array(centres)).astype(int)


def random_quaternion(rng):
    q = rng.normal(size=4)
    return q / np.linalg.norm(q)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=8, help="micrographs")
    ap.add_argument("--size", type=int, default=1024, help="side (px)")
    ap.add_argument("--pixel-size", type=float, default=1.5, help="A/px")
    ap.add_argument("--particles", type=int, default=40, help="per micrograph")
    ap.add_argument("--dose", type=float, default=30.0, help="e/A^2")
    ap.add_argument("--defocus-um", type=float, nargs=2, default=(1.0, 3.0))
    ap.add_argument("--ice-nm", type=float, nargs=2, default=(20.0, 70.0), help="thinnest and thickest")
    ap.add_argument(
        "--ice-phase-std", type=float, default=0.5, help="structural ice phase std (rad) at 40 nm"
    )
    ap.add_argument(
        "--thickness-variation",
        type=float,
        default=0.05,
        help="relative std of the smooth (25 nm scale) ice-thickness variation",
    )
    ap.add_argument(
        "--gain-variation",
        type=float,
        default=0.03,
        help="relative std of the smooth (50 nm scale) gain error; the 2 %% per-pixel error stays",
    )
    ap.add_argument("--b-factor", type=float, default=80.0, help="envelope B (A^2)")
    ap.add_argument("--pdb", type=Path, default=SHARED / "data" / "pdb" / "3j9i.pdb.gz")
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args(argv)

    import cryojax.simulator as cxs
    import equinox as eqx
    import jax.numpy as jnp
    import mrcfile
    from cryojax.constants import interaction_constant_from_kilovolts, wavelength_from_kilovolts
    from cryojax.ndimage import make_frequency_grid

    kv, cs_mm, ac, px, size = 300.0, 2.7, 0.07, args.pixel_size, args.size
    volume = cxs.load_tabulated_volume(args.pdb)
    config = cxs.BasicImageConfig(shape=(BOX_PX, BOX_PX), pixel_size=px, voltage_in_kilovolts=kv)

    @eqx.filter_jit
    def project(volume, wxyz):
        return cxs.make_image_model(volume, config, cxs.QuaternionPose(wxyz=wxyz)).simulate()

    sigma_e = float(interaction_constant_from_kilovolts(kv))
    wavelength = float(wavelength_from_kilovolts(kv))
    grid = make_frequency_grid((size, size), px, outputs_rfftfreqs=True)
    k = np.asarray(jnp.linalg.norm(grid, axis=-1))
    mtf_f, mtf_v = read_mtf(SHARED / "reference" / "detectors" / "mtf_k2_300kV.star")
    mtf = np.interp(k * px, mtf_f, mtf_v)  # k * px: cycles per pixel
    envelope = np.exp(-args.b_factor * k**2 / 4.0)

    def ice_spectrum(kk):
        return np.exp(-(((kk - ICE_RING_PER_A) / 0.05) ** 2)) + 0.5 * np.exp(-((kk / 0.04) ** 2))

    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    truth = {
        "pixel_size_A": px,
        "voltage_kV": kv,
        "cs_mm": cs_mm,
        "amplitude_contrast": ac,
        "micrographs": [],
    }
    truth.update(
        {k_: (list(v) if isinstance(v, tuple) else v) for k_, v in vars(args).items() if k_ != "out"}
    )
    truth["pdb"] = str(args.pdb)
    radius_px = 40  # the proteasome is 150 x 110 A: a 120 A circle
    for i in range(args.n):
        name = f"mic_{i:02d}"
        defocus_A = rng.uniform(*args.defocus_um) * 1e4
        astig_A, astig_deg = rng.uniform(100, 600), rng.uniform(0, 180)
        centres = place_centres(rng, args.particles, size, min_dist=2.6 * radius_px, margin=BOX_PX // 2)
        pad = BOX_PX // 2
        projected = np.zeros((size + 2 * pad, size + 2 * pad))
        for r, c in centres:
            image = np.asarray(project(volume, jnp.asarray(random_quaternion(rng))))
            projected[r : r + BOX_PX, c : c + BOX_PX] += image
        phase_particles = sigma_e * (1 - SOLVENT) * projected[pad:-pad, pad:-pad]
        # ice slab: a thickness ramp in a random direction, a smooth variation, structural noise
        theta = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
        ramp = (np.cos(theta) * (xx - 0.5) + np.sin(theta) * (yy - 0.5)) / np.sqrt(0.5) + 0.5
        t_nm = args.ice_nm[0] + (args.ice_nm[1] - args.ice_nm[0]) * np.clip(ramp, 0, 1)
        smooth = gaussian_field(rng, (size, size), lambda kk: np.exp(-((kk / 0.004) ** 2)), px)
        t_nm = t_nm * (1 + args.thickness_variation * smooth)
        ice = gaussian_field(rng, (size, size), ice_spectrum, px)
        phase_ice = args.ice_phase_std * np.sqrt(t_nm / 40.0) * ice
        ctf = np.asarray(
            cxs.AstigmaticCTF(
                defocus_in_angstroms=defocus_A,
                astigmatism_in_angstroms=astig_A,
                astigmatism_angle=astig_deg,
                spherical_aberration_in_mm=cs_mm,
            )(grid, wavelength, amplitude_contrast_ratio=ac)
        )

        def image_of(phase):
            spectrum = np.fft.rfft2(phase - phase.mean())
            return 1.0 + 2.0 * np.fft.irfft2(ctf * envelope * spectrum, s=(size, size))

        attenuation = np.exp(-t_nm / MEAN_FREE_PATH_NM)
        electrons = args.dose * px**2
        expected = electrons * attenuation * image_of(phase_particles + phase_ice)
        counts = rng.poisson(np.clip(expected, 0, None)).astype(np.float64)
        blurred = np.fft.irfft2(np.fft.rfft2(counts) * mtf, s=(size, size))
        gain_smooth = 1 + args.gain_variation * gaussian_field(
            rng, (size, size), lambda kk: np.exp(-((kk / 0.002) ** 2)), px
        )
        gain = gain_smooth * (1 + 0.02 * rng.normal(size=(size, size)))
        observed = blurred * gain
        clean_expected = electrons * attenuation * image_of(phase_particles)
        clean = np.fft.irfft2(np.fft.rfft2(clean_expected) * mtf, s=(size, size)) * gain_smooth
        scale = float(observed.mean())
        for suffix, array in (("", observed / scale), ("_clean", clean / scale)):
            with mrcfile.new(args.out / f"{name}{suffix}.mrc", overwrite=True) as mrc:
                mrc.set_data(array.astype(np.float32))
                mrc.voxel_size = px
        with open(args.out / f"{name}_coords.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["x", "y", "radius"])
            writer.writerows([[int(c), int(r), radius_px] for r, c in centres])
        noise = observed / scale - clean / scale
        truth["micrographs"].append(
            {
                "name": name,
                "defocus_u_A": defocus_A + astig_A / 2,
                "defocus_v_A": defocus_A - astig_A / 2,
                "astigmatism_angle_deg": astig_deg,
                "ice_nm_min_max": [float(t_nm.min()), float(t_nm.max())],
                "n_particles": len(centres),
                "signal_variance": float((clean / scale).var()),
                "noise_variance": float(noise.var()),
            }
        )
        print(name, f"defocus {defocus_A:.0f} A, {len(centres)} particles", flush=True)
    (args.out / "truth.json").write_text(json.dumps(truth, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
