"""Stage ``calibrate``: measure a run's micrographs against the simulation and write ``RUN/calibration/``.

It runs in ``nt2c run`` after ``extract-noise`` (it needs the noise patches), alone as ``nt2c calibrate --run
RUN``, and is resumable like the other stages.

What a user wants to know before trusting simulated training data, per micrograph and for the run:

* the **defocus** of each micrograph, fitted to its Thon rings (:func:`nt2c.calibration.ctf_fit.fit_ctf`) or
  read from CTFFIND4 / RELION files, against the range ``params.defocus_um`` the simulation draws from;
* the **noise level** and the **noise-to-signal ratio** in the micrographs' own units, from the extracted
  noise patches (:func:`nt2c.calibration.signal_noise.measure_signal_noise`), against the simulator's;
* the **units**: counts (non-negative integers), 8/16-bit rescaled grey levels, or floats.

Files: ``RUN/calibration/calibration.csv`` (one row per micrograph), ``calibration.json`` (the run's summary),
``defocus_fits.json`` (each micrograph's fit, kept so that it is not fitted again while the file and the
settings are unchanged) and ``spectra.png`` (radial power spectra: the micrograph, its noise, its signal =
micrograph - noise, and the simulated signal at the simulator's ratio and at the measured one). The measured
ratio is what the re-weighting method ``calibrated`` builds the fine pairs at (``--set
reweight.method=calibrated``); the fitted defoci are what ``--set simulate.defocus_source=calibration``
simulates at.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from nt2c.calibration.ctf_fit import DEFOCUS_RANGE_UM, CtfEstimate, fit_ctf, read_ctffind4, read_relion_ctf
from nt2c.calibration.signal_noise import measure_signal_noise, tile_variances
from nt2c.errors import InputError

__all__ = [
    "calibrate_run",
    "calibrate_stage",
    "fit_run_defoci",
    "DEFOCUS_TABLE",
    "describe_calibration",
    "describe_units",
    "simulated_signal_noise",
    "SIGNAL_NOISE_MICROGRAPHS",
]


#: At most this many micrographs (spread over the run's list) measure the signal and noise variance: enough
#: for the estimate, and bounded memory for runs of thousands of micrographs.
SIGNAL_NOISE_MICROGRAPHS = 16


def describe_units(image) -> str:
    """Say what the grey levels look like: counts, rescaled 8/16-bit levels, or floats."""
    a = np.asarray(image)
    integral = np.issubdtype(a.dtype, np.integer) or bool(np.all(np.mod(a[:64, :64], 1) == 0))
    lo, hi = float(a.min()), float(a.max())
    if integral and lo >= 0 and hi <= 255 and hi - lo > 100:
        return "8-bit grey levels (rescaled: not counts)"
    if integral and lo >= 0 and hi <= 65535 and hi - lo > 1000:
        return "16-bit grey levels (rescaled: not counts)"
    if integral and lo >= 0:
        return f"non-negative integers (counts?; mean {a.mean():.3g} per pixel)"
    return f"floating-point values (mean {a.mean():.4g}, std {a.std():.4g}; gain-normalised or processed)"


#: The defoci alone (``RUN/calibration/defocus.csv``): what ``simulate.defocus_source=calibration`` reads. It
#: depends on the micrographs only, so fitting them again (a new noise extraction) leaves it byte-identical
#: and the simulation is not redone.
DEFOCUS_TABLE = "defocus.csv"
DEFOCUS_COLUMNS = (
    "micrograph",
    "defocus_u_A",
    "defocus_v_A",
    "astigmatism_angle_deg",
    "fit_score",
    "at_search_edge",
    "fit_error",
)


def _defocus_row(image, name: str, *, pixel_size_A: float, params, box_px: int) -> dict:
    """One micrograph's CTF fit as a table row; ``fit_error`` says why when it cannot be fitted."""
    box = min(box_px, 1 << int(np.log2(min(image.shape))))
    try:
        fit = fit_ctf(
            image,
            pixel_size_A=pixel_size_A,
            voltage_kV=params.voltage_kV,
            cs_mm=params.cs_mm,
            amplitude_contrast=params.amplitude_contrast,
            box_px=box,
        )
    except InputError as exc:  # e.g. a pixel size too coarse for the 30-5 A band: say so, go on
        return {"micrograph": name, "fit_error": " ".join(str(exc).split())}
    return {
        "micrograph": name,
        "defocus_u_A": round(fit.defocus_u_A, 1),
        "defocus_v_A": round(fit.defocus_v_A, 1),
        "astigmatism_angle_deg": round(fit.astigmatism_angle_deg, 1),
        "fit_score": round(fit.score, 4),
        "in_params_range": params.defocus_um[0] <= fit.defocus_um <= params.defocus_um[1],
        # a fit pinned at the edge of the search range found no ring pattern inside it
        "at_search_edge": min(fit.defocus_v_A, fit.defocus_u_A) <= DEFOCUS_RANGE_UM[0] * 1e4 * 1.01
        or max(fit.defocus_u_A, fit.defocus_v_A) >= DEFOCUS_RANGE_UM[1] * 1e4 * 0.99,
    }


#: Each micrograph's CTF fit, keyed by what it depends on (:func:`_fit_key`): a calibrated-defocus run fits
#: its micrographs once, before the simulation, and the ``calibrate`` stage reuses those fits.
FIT_CACHE = "defocus_fits.json"


def _fit_key(path, *, pixel_size_A: float, params, box_px: int) -> str:
    """Return what a fit depends on: the file (path, size, modification time), pixel, optics and box."""
    path = Path(path).resolve()
    state = path.stat()
    return json.dumps(
        [
            str(path),
            state.st_size,
            state.st_mtime_ns,
            float(pixel_size_A),
            float(params.voltage_kV),
            float(params.cs_mm),
            float(params.amplitude_contrast),
            [float(d) for d in params.defocus_um],
            int(box_px),
        ]
    )


class _FitCache:
    """``RUN/calibration/defocus_fits.json``: fits already made, by :func:`_fit_key`.

    A cache that cannot be read (a partial write, an older format) is ignored: the fits are made again.
    """

    def __init__(self, run):
        self.path = run.path / "calibration" / FIT_CACHE
        self.fits: dict[str, dict] = {}
        if self.path.is_file():
            try:
                fits = json.loads(self.path.read_text())
            except (OSError, ValueError):
                fits = None
            if isinstance(fits, dict):
                self.fits = {k: v for k, v in fits.items() if isinstance(v, dict)}
        self.used: dict[str, dict] = {}

    def row(self, path, image_of, name: str, *, pixel_size_A: float, params, box_px: int) -> dict:
        """Return the fit of ``path`` (cached, else made on ``image_of()``) as a table row named ``name``."""
        key = _fit_key(path, pixel_size_A=pixel_size_A, params=params, box_px=box_px)
        row = self.fits.get(key)
        if row is None:
            row = _defocus_row(image_of(), name, pixel_size_A=pixel_size_A, params=params, box_px=box_px)
        self.used[key] = dict(row, micrograph=name)
        return dict(row, micrograph=name)

    def save(self) -> None:
        """Write the fits used this time (fits of micrographs no longer in the run are dropped)."""
        from nt2c.io import write_json

        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, self.used)


def _header_pixel_size(path) -> float | None:
    """Return the pixel size (Angstrom) of an MRC header, as :func:`nt2c.io.read_image` does; else None."""
    from nt2c.io import read_mrc_header_pixel_size

    return (
        read_mrc_header_pixel_size(path) if Path(path).suffix.lower() in (".mrc", ".mrcs", ".map") else None
    )


def _fit_rows(run, paths, names, *, params, box_px: int, images: dict | None = None) -> list[dict]:
    """Return one CTF-fit row per micrograph (cached fits reused, new ones made and kept).

    ``images`` (name -> array) are micrographs already read; the others are read only when they must be
    fitted.
    """
    from nt2c.io import read_image

    images = images or {}
    cache = _FitCache(run)
    rows = [
        cache.row(
            path,
            lambda path=path, name=name: images[name] if name in images else read_image(path)[0],
            name,
            pixel_size_A=_header_pixel_size(path) or params.pixel_size_A,
            params=params,
            box_px=box_px,
        )
        for path, name in zip(paths, names)
    ]
    cache.save()
    return rows


def fit_run_defoci(run, *, box_px: int = 512) -> Path:
    """Fit every micrograph of the run and write ``RUN/calibration/defocus.csv`` (the defoci alone).

    What the simulation needs before the rest of the calibration can run (that needs the noise patches,
    which need a coarse model trained on the simulation): ``simulate.defocus_source=calibration`` calls it
    when the table is missing. The fits are kept in ``defocus_fits.json`` for the ``calibrate`` stage.

    Returns
    -------
    pathlib.Path
        The table.
    """
    from nt2c.extraction.stage import list_micrographs

    paths = list_micrographs(run)
    rows = _fit_rows(run, paths, [Path(p).name for p in paths], params=run.params(), box_px=box_px)
    out = run.path / "calibration"
    out.mkdir(parents=True, exist_ok=True)
    _write_defocus_table(out / DEFOCUS_TABLE, rows)
    return out / DEFOCUS_TABLE


def _write_defocus_table(path: Path, rows: list[dict]) -> None:
    """Write the :data:`DEFOCUS_COLUMNS` of ``rows``: the same fits give the same bytes."""
    _write_rows(path, [{k: r[k] for k in DEFOCUS_COLUMNS if k in r} for r in rows])


def describe_calibration(summary: dict) -> str:
    """Say in a few lines what the calibration found (``calibration.json``)."""
    lines = [f"{summary['micrographs']} micrographs; units: {summary['units']}"]
    fitted = summary.get("defocus_um_fitted")
    lo, hi = summary["defocus_um_params"]
    if fitted:
        lines.append(
            f"defocus fitted {fitted[0]}-{fitted[1]} um (params.yaml: {lo}-{hi} um; "
            f"{summary['outside_params_range']} outside; {summary['fits_at_search_edge']} fits at the edge "
            "of the 0.3-6 um search range, i.e. no ring pattern found)"
        )
    if summary.get("fits_failed"):
        lines.append(
            f"{summary['fits_failed']} micrographs could not be fitted (see calibration.csv, fit_error)"
        )
    nsr = summary.get("noise_to_signal")
    if nsr is not None:
        sim = summary.get("simulated_noise_to_signal")
        lines.append(
            f"noise-to-signal variance ratio {nsr:.3g} (the simulator's: "
            f"{'n/a' if sim is None else f'{sim:.3g}'}); noise variance {summary['noise_variance']:.4g}"
        )
    else:
        why = summary.get("why_no_noise_to_signal", "the signal does not stand out of the noise")
        lines.append(f"noise-to-signal ratio: not measurable ({why})")
    return "\n".join(lines)


def _given(ctffind: str | None, relion: str | None, names: list[str]) -> dict[str, CtfEstimate]:
    if relion:
        return read_relion_ctf(relion)
    if ctffind:
        estimates = read_ctffind4(ctffind)
        if len(estimates) == 1 and len(names) == 1:
            return {names[0]: estimates[0]}
        if len(estimates) != len(names):
            raise InputError(
                f"{ctffind} holds {len(estimates)} estimates for {len(names)} micrographs; give one CTFFIND4 "
                "file per run of that many micrographs, in the order of RUN/micrographs.txt."
            )
        return dict(zip(names, estimates))
    return {}


def calibrate_run(run, *, ctffind: str | None = None, relion: str | None = None, box_px: int = 512) -> dict:
    """Measure the run's micrographs (see the module docstring) and write ``RUN/calibration/``.

    Parameters
    ----------
    run : RunDir
    ctffind, relion : str, optional
        A CTFFIND4 output text file (one line per micrograph, in the run's order) or RELION's
        ``micrographs_ctf.star``: their defoci are listed beside the fitted ones.
    box_px : int
        Tile side of the power spectra (px).

    Returns
    -------
    dict
        The summary written to ``calibration.json``.
    """
    from nt2c.extraction.stage import list_micrographs
    from nt2c.io import read_image, read_mrc, write_json
    from nt2c.run.micrographs import spread_evenly

    params = run.params()
    paths = list_micrographs(run)
    names = [Path(p).name for p in paths]
    given = _given(ctffind, relion, names)
    sampled = set(spread_evenly(names, SIGNAL_NOISE_MICROGRAPHS))  # the first micrograph included
    images = {name: read_image(path)[0] for path, name in zip(paths, names) if name in sampled}
    units = describe_units(images[names[0]])
    rows = _fit_rows(run, paths, names, params=params, box_px=box_px, images=images)
    for row in rows:
        name = row["micrograph"]
        if name in given:
            row["given_defocus_u_A"] = round(given[name].defocus_u_A, 1)
            row["given_defocus_v_A"] = round(given[name].defocus_v_A, 1)
    patches_path = run.noise / "patches.mrcs"
    summary: dict = {
        "micrographs": len(paths),
        "units": units,
        "defocus_um_params": list(params.defocus_um),
    }
    fitted = [r for r in rows if "fit_error" not in r]
    means_um = [0.5 * (r["defocus_u_A"] + r["defocus_v_A"]) * 1e-4 for r in fitted]
    summary["defocus_um_fitted"] = [round(min(means_um), 3), round(max(means_um), 3)] if fitted else None
    summary["outside_params_range"] = sum(not r["in_params_range"] for r in fitted)
    summary["fits_at_search_edge"] = sum(r["at_search_edge"] for r in fitted)
    summary["fits_failed"] = len(rows) - len(fitted)
    noise = None
    if patches_path.is_file():
        noise = read_mrc(patches_path)[0]
        noise = noise[None] if noise.ndim == 2 else noise
        measured = measure_signal_noise(list(images.values()), noise, names=list(images))
        for row in rows:
            row["noise_to_signal"] = measured.per_micrograph.get(row["micrograph"])
        summary.update(
            tile_px=measured.tile_px,
            noise_variance=measured.noise_variance,
            signal_variance=measured.signal_variance,
            noise_to_signal=measured.nsr,
            noise_level_ratio=round(measured.noise_level_ratio, 4),
            simulated_noise_to_signal=simulated_signal_noise(run, measured.tile_px)[1],
        )
        if measured.nsr is None:
            summary["why_no_noise_to_signal"] = measured.why_not_measurable()
    else:
        summary["noise_to_signal"] = None
        summary["why_no_noise_to_signal"] = f"{patches_path} is missing: run `nt2c extract-noise` first"
    out = run.path / "calibration"
    out.mkdir(parents=True, exist_ok=True)
    _write_rows(out / "calibration.csv", rows)
    _write_defocus_table(out / DEFOCUS_TABLE, rows)
    write_json(out / "calibration.json", summary)
    if noise is not None:
        _spectra_figure(
            out / "spectra.png", run, next(iter(images.values())), noise, summary, params.pixel_size_A
        )
    return summary


def calibrate_stage(run, settings, params) -> list[Path]:
    """Pipeline stage ``calibrate``: :func:`calibrate_run` with :class:`~nt2c.config.CalibrateConfig`.

    Returns
    -------
    list of pathlib.Path
        ``RUN/calibration/calibration.csv``, ``defocus.csv``, ``calibration.json`` and ``spectra.png``.
    """
    calibrate_run(run, ctffind=settings.ctffind, relion=settings.relion, box_px=settings.box_px)
    out = run.path / "calibration"
    files = ("calibration.csv", DEFOCUS_TABLE, "calibration.json", "spectra.png")
    return [out / name for name in files if (out / name).is_file()]


def simulated_signal_noise(run, tile_px: int) -> tuple[float | None, float | None]:
    """Signal variance and noise-to-signal ratio of the run's simulated micrographs, on ``tile_px`` tiles.

    Measured on ``RUN/simulated/mic_????_clean.mrc`` (signal) and ``mic_????.mrc`` minus it (noise), alike to
    :func:`nt2c.calibration.signal_noise.measure_signal_noise` on the user's micrographs.

    Returns
    -------
    signal_variance : float or None
        Mean within-tile variance of the clean micrographs (simulator units squared); None without any.
    noise_to_signal : float or None
        Noise variance over signal variance; None without a noisy micrograph beside a clean one.
    """
    from nt2c.io import read_image

    signal, noise = [], []
    for clean_path in sorted(run.simulated.glob("mic_????_clean.mrc")):
        clean = read_image(clean_path)[0]
        signal.append(tile_variances(clean, tile_px).mean())
        noisy_path = clean_path.with_name(clean_path.name.replace("_clean", ""))
        if noisy_path.is_file():
            noise.append(tile_variances(read_image(noisy_path)[0] - clean, tile_px).mean())
    if not signal:
        return None, None
    s2 = float(np.mean(signal))
    return s2, (float(np.mean(noise)) / s2 if noise and s2 > 0 else None)


def _write_rows(path: Path, rows: list[dict]) -> None:
    from nt2c.io import atomic_path

    columns = list(dict.fromkeys(k for row in rows for k in row))
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)


def _spectra_figure(path: Path, run, image, noise, summary: dict, pixel_size_A: float) -> None:
    """Radial power spectra: the micrograph, its noise, its signal, and the simulated signal before/after."""
    import matplotlib.pyplot as plt

    from nt2c.io import atomic_path, read_image
    from nt2c.noise.fidelity import radial_psd
    from nt2c.simulation.ctf import radial_power_spectrum

    t = noise.shape[-1]
    k_mic, p_mic = radial_power_spectrum(image, pixel_size_A, n_bins=t // 2)
    f_noise, p_noise = radial_psd(noise)
    k_noise = f_noise / pixel_size_A
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.semilogy(k_mic, p_mic, label="micrograph", color="k")
    ax.semilogy(k_noise, p_noise, label="its noise (background patches)", color="tab:grey")
    signal = p_mic - np.interp(k_mic, k_noise, p_noise)
    ax.semilogy(
        k_mic, np.where(signal > 0, signal, np.nan), label="its signal (micrograph - noise)", color="tab:blue"
    )
    clean_paths = sorted(run.simulated.glob("mic_????_clean.mrc"))
    s2_data = summary.get("signal_variance")
    nsr_sim = summary.get("simulated_noise_to_signal")
    if clean_paths and s2_data and s2_data > 0 and nsr_sim:
        clean = read_image(clean_paths[0])[0]
        k_sim, p_sim = radial_power_spectrum(clean, pixel_size_A, n_bins=t // 2)
        s2_sim = tile_variances(clean, t).mean()
        before = summary["noise_variance"] / (nsr_sim * s2_sim)  # the simulator's ratio to the data's noise
        after = s2_data / s2_sim  # the measured signal variance
        ax.semilogy(
            k_sim, p_sim * before, "--", color="tab:orange", label="simulated signal, simulator's ratio"
        )
        ax.semilogy(k_sim, p_sim * after, "--", color="tab:green", label="simulated signal, calibrated")
    ax.set_xlabel("spatial frequency (1/A)")
    ax.set_ylabel("power (micrograph units^2)")
    ax.set_title("Power spectra: the data against the simulation")
    ax.legend(fontsize=7)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=90)
    finally:
        plt.close(fig)
