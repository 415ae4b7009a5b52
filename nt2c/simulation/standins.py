"""The embedded default's "experimental" micrographs: simulated stand-ins for a user's real data.

``nt2c run`` without ``--micrographs`` needs micrographs whose noise the coarse training pairs do *not*
already describe, or NT2C's noise transfer has nothing to learn. The stand-ins are simulated from the same
specimen, defocus range, dose and CTF as the coarse training data (``RUN/params.yaml``), with these
departures:

* **thicker ice** (``ice_thickness_factor`` x the nominal thickness, default 2): more structural noise of the
  ice, with its own spectrum (:func:`nt2c.simulation.ice.structural_noise`);
* **structural noise** switched on, whatever ``params.structural_noise`` says;
* **the detector** ``Departures.detector`` (default K2): a departure only when ``params.detector`` is another
  one -- with the default parameters (``detector: k2``) the stand-ins have the training data's detector;
* **a gain non-uniformity** (an imperfect gain reference): the recorded counts are multiplied by a fixed
  pattern ``g(y, x) = 1 + s_px n(y, x) + s_col c(x) + s_row r(y)`` with independent standard normal ``n``,
  ``c``, ``r`` (per-pixel gain errors and the column/row banding of CMOS read-out), the *same* map for every
  micrograph of the run, as a detector's gain reference is.

They are still nt2c's own simulator: they test the plumbing and the behaviour where the truth is known, not
whether the method works on real noise (for that, see ``benchmarks/bench_real.py``).

Two sets of the same acquisition: the micrographs NT2C learns its noise from (listed in
``RUN/micrographs.txt``) and ``n_heldout`` more that are only denoised and scored (``RUN/heldout.txt``): "same
micrographs" and "new micrographs of the same acquisition" in the evaluation tables.

The clean image of each stand-in is the simulator's noise-free target (specimen signal through CTF and MTF, no
shot noise, no structural noise, no gain pattern): what a perfect denoiser returns. Files, in
``RUN/experimental/``: ``exp_NNNN.mrc`` (noisy, counts/px), ``exp_NNNN_clean.mrc``, ``exp_NNNN_coords.star``,
``exp_NNNN.json`` (what was drawn), ``gain_map.mrc`` and ``manifest.json`` (settings and file list, each entry
with its ``split``; a call with the same settings finds it and simulates nothing).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from nt2c.config import ExperimentParams, stage_config
from nt2c.errors import ConfigError
from nt2c.io import read_json, write_json, write_mrc, write_star

__all__ = ["Departures", "gain_map", "simulate_experimental", "experimental_entries"]

_SEED_OFFSET = 1_000_003  # stand-ins never reuse the seeds of the coarse training simulation


@dataclass(frozen=True)
class Departures:
    """How the stand-ins differ from the nominal simulation (see the module docstring).

    Attributes
    ----------
    ice_thickness_factor : float
        Ice thickness relative to ``params.ice_thickness_nm``.
    detector : str
        Detector preset of the stand-ins.
    gain_pixel_std : float
        Relative standard deviation of the per-pixel gain errors.
    gain_column_std, gain_row_std : float
        Relative standard deviations of the column and row gain banding.
    """

    ice_thickness_factor: float = 2.0
    detector: str = "k2"
    gain_pixel_std: float = 0.05
    gain_column_std: float = 0.015
    gain_row_std: float = 0.015

    def __post_init__(self):
        if not self.ice_thickness_factor >= 0:
            raise ConfigError(f"ice_thickness_factor={self.ice_thickness_factor}: must be >= 0.")
        for name in ("gain_pixel_std", "gain_column_std", "gain_row_std"):
            value = getattr(self, name)
            if not 0 <= value < 0.3:
                raise ConfigError(f"{name}={value}: must be in [0, 0.3) (a relative gain error).")


def gain_map(shape: tuple[int, int], departures: Departures = Departures(), *, seed: int = 0) -> np.ndarray:
    """Draw the multiplicative gain pattern ``g = 1 + s_px n + s_col c(x) + s_row r(y)``.

    Parameters
    ----------
    shape : (int, int)
        (ny, nx) in pixels.
    departures : Departures
    seed : int

    Returns
    -------
    numpy.ndarray, float32, shape (ny, nx)
        Mean ~1; clipped below at 0.5 (a dead-ish pixel, never a negative gain).
    """
    ny, nx = int(shape[0]), int(shape[1])
    rng = np.random.default_rng(seed)
    g = (
        1.0
        + departures.gain_pixel_std * rng.standard_normal((ny, nx))
        + departures.gain_column_std * rng.standard_normal(nx)[None, :]
        + departures.gain_row_std * rng.standard_normal(ny)[:, None]
    )
    return np.clip(g, 0.5, None).astype(np.float32)


def experimental_entries(run) -> list[dict]:
    """Read the stand-ins of ``run`` from ``RUN/experimental/manifest.json`` (empty when there are none).

    Each entry has ``micrograph``, ``clean``, ``coords`` and ``meta`` (absolute paths).
    """
    path = Path(run.path if hasattr(run, "path") else run) / "experimental" / "manifest.json"
    return read_json(path).get("micrographs", []) if path.is_file() else []


def simulate_experimental(
    run,
    params: ExperimentParams,
    *,
    profile: str = "quick",
    seed: int = 0,
    n_micrographs: int | None = None,
    n_heldout: int | None = None,
    departures: Departures = Departures(),
    device: str = "auto",
) -> list[Path]:
    """Simulate the "experimental" stand-ins into ``RUN/experimental/`` (skipped when already there).

    Parameters
    ----------
    run : RunDir
    params : ExperimentParams
        The nominal acquisition parameters (those of the coarse training simulation).
    profile : {"smoke", "quick", "full"}
        Gives the micrograph size (the ``simulate`` stage's ``image_size_px`` for the profile, else
        ``params.image_size_px``) and the default count.
    seed : int
        Seeds the micrographs (offset from the coarse simulation's seeds) and the gain map.
    n_micrographs : int, optional
        Default: as many as the profile simulates for the coarse training (their background patches are what
        the GAN learns from).
    n_heldout : int, optional
        Held-out stand-ins of the same acquisition, only denoised and scored (listed in ``RUN/heldout.txt``).
        Default: half as many, at least one.
    departures : Departures
        How the stand-ins depart from the nominal simulation.
    device : str

    Returns
    -------
    list of pathlib.Path
        The noisy stand-ins the run learns from (absolute paths); the held-out ones are in
        ``RUN/heldout.txt``.
    """
    from nt2c.simulation.micrograph import simulate_micrograph, specimen_from_params

    sim = stage_config("simulate", profile)
    size = tuple(sim.image_size_px or params.image_size_px)
    count = n_micrographs or sim.n_micrographs or params.n_micrographs
    if count < 1:
        raise ConfigError(f"n_micrographs={n_micrographs}: simulate at least one stand-in.")
    held = max(1, count // 2) if n_heldout is None else int(n_heldout)
    if held < 0:
        raise ConfigError(f"n_heldout={n_heldout}: must be >= 0.")
    folder = Path(run.path) / "experimental"
    folder.mkdir(parents=True, exist_ok=True)
    settings = {
        "params": params.to_dict(),
        "image_size_px": list(size),
        "n_micrographs": int(count),
        "n_heldout": int(held),
        "seed": int(seed),
        "departures": asdict(departures),
    }
    manifest_path = folder / "manifest.json"
    if manifest_path.is_file():
        manifest = read_json(manifest_path)
        entries = manifest.get("micrographs", [])
        if manifest.get("settings") == settings and all(
            Path(e[k]).is_file() for e in entries for k in ("micrograph", "clean", "coords")
        ):
            return _list_splits(run, entries)

    nominal = params.model_copy(
        update={
            "ice_thickness_nm": params.ice_thickness_nm * departures.ice_thickness_factor,
            "detector": departures.detector,
            "structural_noise": True,
            "image_size_px": size,
        }
    )
    specimen = specimen_from_params(nominal)
    gain = gain_map(size, departures, seed=seed + _SEED_OFFSET)
    write_mrc(folder / "gain_map.mrc", gain, overwrite=True)
    from nt2c.progress import progress

    entries = []
    for k in progress(range(count + held), desc="stand-ins", unit="mic"):
        mic = simulate_micrograph(
            nominal, specimen=specimen, seed=seed + _SEED_OFFSET + 1 + k, allow_fewer=True, device=device
        )
        noisy = mic.noisy * gain
        stem = folder / f"exp_{k:04d}"
        paths = {
            "micrograph": write_mrc(
                stem.with_suffix(".mrc"), noisy, pixel_size_A=mic.pixel_size_A, overwrite=True
            ),
            "clean": write_mrc(
                stem.with_name(stem.name + "_clean.mrc"),
                mic.clean,
                pixel_size_A=mic.pixel_size_A,
                overwrite=True,
            ),
            "coords": write_star(
                stem.with_name(stem.name + "_coords.star"),
                {
                    "rlnCoordinateX": [float(x) for x in mic.coordinates_px[:, 0]],
                    "rlnCoordinateY": [float(y) for y in mic.coordinates_px[:, 1]],
                },
                overwrite=True,
            ),
            "meta": write_json(
                stem.with_name(stem.name + ".json"),
                {**mic.meta, "departures": asdict(departures), "gain_map": "gain_map.mrc"},
            ),
        }
        entry = {k2: str(Path(v).resolve()) for k2, v in paths.items()}
        entries.append({**entry, "split": "learn" if k < count else "heldout"})
    write_json(manifest_path, {"settings": settings, "micrographs": entries})
    return _list_splits(run, entries)


def _list_splits(run, entries: list[dict]) -> list[Path]:
    """Write ``RUN/heldout.txt``; return the stand-ins the run learns from."""
    from nt2c.run.micrographs import write_micrograph_list

    learn = [Path(e["micrograph"]) for e in entries if e.get("split", "learn") == "learn"]
    heldout = [Path(e["micrograph"]) for e in entries if e.get("split") == "heldout"]
    write_micrograph_list(run, heldout, "heldout")
    return learn
