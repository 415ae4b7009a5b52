"""Simulated datasets on disk, aligned (noisy, clean) training patches, and the pipeline stage ``simulate``.

Per micrograph ``NAME`` the files are ``NAME.mrc`` (noisy, counts/px, float32, voxel size in the header),
``NAME_clean.mrc`` (the clean target in the same units), ``NAME_coords.star`` (``rlnCoordinateX/Y`` in pixels)
and ``NAME.json`` (the parameters used and what was drawn: defocus, astigmatism angle, orientations, seed).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nt2c.config import ExperimentParams, SimulateConfig, load_params
from nt2c.errors import InputError, StageError
from nt2c.io import read_mrc, write_json, write_mrc, write_star
from nt2c.progress import progress
from nt2c.simulation.micrograph import Micrograph, simulate_micrograph, specimen_from_params

__all__ = [
    "micrograph_seed",
    "write_micrograph",
    "simulate_dataset",
    "cut_patch_pairs",
    "PatchPairs",
    "simulate_stage",
]


#: Offset of the test set's dataset seed: its micrographs never share a seed with the training ones.
TEST_SEED_OFFSET = 2_000_003


def micrograph_seed(seed: int, index: int) -> int:
    """Derive the seed of micrograph ``index`` of a dataset seeded with ``seed`` (independent streams)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def write_micrograph(
    mic: Micrograph, out_dir: str | os.PathLike, name: str, *, overwrite: bool = False
) -> list[Path]:
    """Write ``NAME.mrc``, ``NAME_clean.mrc``, ``NAME_coords.star`` and ``NAME.json`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [
        out / f"{name}.mrc",
        out / f"{name}_clean.mrc",
        out / f"{name}_coords.star",
        out / f"{name}.json",
    ]
    if not overwrite:
        existing = [str(p) for p in paths if p.exists()]
        if existing:
            raise InputError(
                f"{', '.join(existing)} already exist(s); choose another folder or pass --force."
            )
    write_mrc(paths[0], mic.noisy, pixel_size_A=mic.pixel_size_A, overwrite=overwrite)
    write_mrc(paths[1], mic.clean, pixel_size_A=mic.pixel_size_A, overwrite=overwrite)
    write_star(
        paths[2],
        {
            "rlnCoordinateX": [float(x) for x in mic.coordinates_px[:, 0]],
            "rlnCoordinateY": [float(y) for y in mic.coordinates_px[:, 1]],
        },
        block="",
        overwrite=overwrite,
    )
    meta = dict(mic.meta)
    meta["name"] = name
    meta["units"] = "counts per pixel (expected electrons, gain-normalised)"
    meta["rotations"] = np.round(mic.rotations, 6).tolist()
    write_json(paths[3], meta)
    return paths


def simulate_dataset(
    params: ExperimentParams | dict | str | os.PathLike | None,
    out_dir: str | os.PathLike,
    *,
    n_micrographs: int | None = None,
    seed: int = 0,
    image_size_px=None,
    prefix: str = "mic_",
    overwrite: bool = False,
    allow_fewer: bool = False,
    defoci=None,
    device="auto",
) -> list[Path]:
    """Simulate ``n_micrographs`` micrographs into ``out_dir`` (``mic_0000.mrc``, ...).

    Parameters
    ----------
    params : ExperimentParams, dict, path or None
    out_dir : path-like
    n_micrographs : int, optional
        Default ``params.n_micrographs``.
    seed : int
        Dataset seed; micrograph ``i`` uses :func:`micrograph_seed` (seed, i).
    image_size_px : int or (ny, nx), optional
        Override ``params.image_size_px``.
    overwrite : bool
        Replace existing files (else an error names them).
    allow_fewer : bool
        Place as many particles as fit when ``n_particles`` do not.
    defoci : sequence of (float, float), optional
        ``(defocus_um, astigmatism_angle_deg)`` per micrograph, used in turn (cycled), e.g. the defoci fitted
        to the user's micrographs (:func:`read_calibrated_defoci`); default: drawn from ``params.defocus_um``.

    Returns
    -------
    list of pathlib.Path
        All files written, four per micrograph.
    """
    params = load_params(params) if not isinstance(params, ExperimentParams) else params
    n = params.n_micrographs if n_micrographs is None else int(n_micrographs)
    if n < 1:
        raise InputError(f"n_micrographs = {n}: must be at least 1.")
    spec = specimen_from_params(params)
    written: list[Path] = []
    for i in progress(range(n), desc="simulate", total=n):
        defocus_um, angle_deg = (None, None) if not defoci else defoci[i % len(defoci)]
        mic = simulate_micrograph(
            params,
            specimen=spec,
            seed=micrograph_seed(seed, i),
            image_size_px=image_size_px,
            allow_fewer=allow_fewer,
            defocus_um=defocus_um,
            astigmatism_angle_deg=angle_deg,
            device=device,
        )
        mic.meta["dataset_seed"] = int(seed)
        mic.meta["index"] = i
        written += write_micrograph(mic, out_dir, f"{prefix}{i:04d}", overwrite=overwrite)
    return written


def _as_stack(images) -> list[np.ndarray]:
    out = []
    for im in images:
        if isinstance(im, (str, os.PathLike)):
            im = read_mrc(im)[0]
        out.append(np.asarray(im, dtype=np.float32))
    return out


def cut_patch_pairs(
    noisy: Sequence,
    clean: Sequence,
    *,
    n_pairs: int,
    patch_px: int,
    seed: int = 0,
    return_sources: bool = False,
):
    """Cut aligned (noisy, clean) patches at random positions of random micrographs.

    Parameters
    ----------
    noisy, clean : sequence of (ny, nx) arrays or MRC paths
        Matching micrographs.
    n_pairs : int
    patch_px : int
        Patch side (px).
    seed : int
    return_sources : bool
        Also return where each pair was cut.

    Returns
    -------
    noisy_patches, clean_patches : numpy.ndarray, float32, shape (n_pairs, patch_px, patch_px)
    sources : numpy.ndarray, int64, shape (n_pairs, 3)
        Only with ``return_sources``: micrograph index, top row and left column (px) of each pair.
    """
    noisy, clean = _as_stack(noisy), _as_stack(clean)
    if not noisy or len(noisy) != len(clean):
        raise InputError(
            f"need matching, non-empty lists of noisy and clean micrographs (got {len(noisy)} and "
            f"{len(clean)})."
        )
    for a, b in zip(noisy, clean):
        if a.shape != b.shape:
            raise InputError(f"a noisy micrograph {a.shape} and its clean target {b.shape} differ in shape.")
        if min(a.shape) < patch_px:
            raise InputError(
                f"patch_px = {patch_px} is larger than a micrograph {a.shape}; use smaller patches."
            )
    if n_pairs < 1:
        raise InputError(f"n_pairs = {n_pairs}: must be at least 1.")
    rng = np.random.default_rng(seed)
    out_n = np.empty((n_pairs, patch_px, patch_px), dtype=np.float32)
    out_c = np.empty_like(out_n)
    sources = np.empty((n_pairs, 3), dtype=np.int64)
    for k in range(n_pairs):
        m = int(rng.integers(len(noisy)))
        ny, nx = noisy[m].shape
        y = int(rng.integers(0, ny - patch_px + 1))
        x = int(rng.integers(0, nx - patch_px + 1))
        out_n[k] = noisy[m][y : y + patch_px, x : x + patch_px]
        out_c[k] = clean[m][y : y + patch_px, x : x + patch_px]
        sources[k] = (m, y, x)
    return (out_n, out_c, sources) if return_sources else (out_n, out_c)


class PatchPairs:
    """Aligned (noisy, clean) patches drawn on the fly from simulated micrographs (torch map-style).

    Item ``i`` is a pair of float32 tensors of shape (1, patch_px, patch_px) cut at a position fixed by
    ``(seed, i)``, so an index always returns the same pair.

    Parameters
    ----------
    folder : path-like
        Folder with ``NAME.mrc`` / ``NAME_clean.mrc`` pairs (as written by :func:`simulate_dataset`).
    patch_px : int
    length : int
        Number of pairs the dataset exposes.
    seed : int
    """

    def __init__(self, folder: str | os.PathLike, *, patch_px: int, length: int = 1024, seed: int = 0):
        folder = Path(folder)
        cleans = sorted(folder.glob("*_clean.mrc"))
        pairs = [(c.with_name(c.name.replace("_clean.mrc", ".mrc")), c) for c in cleans]
        pairs = [(n, c) for n, c in pairs if n.exists()]
        if not pairs:
            raise InputError(f"{folder} holds no NAME.mrc / NAME_clean.mrc pairs; run `nt2c simulate` first.")
        self.noisy = [read_mrc(n)[0] for n, _ in pairs]
        self.clean = [read_mrc(c)[0] for _, c in pairs]
        if min(min(im.shape) for im in self.noisy) < patch_px:
            raise InputError(f"patch_px = {patch_px} is larger than the micrographs in {folder}.")
        self.patch_px, self.length, self.seed = int(patch_px), int(length), int(seed)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        import torch

        if not 0 <= index < self.length:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, int(index)])
        m = int(rng.integers(len(self.noisy)))
        ny, nx = self.noisy[m].shape
        y = int(rng.integers(0, ny - self.patch_px + 1))
        x = int(rng.integers(0, nx - self.patch_px + 1))
        sl = (slice(y, y + self.patch_px), slice(x, x + self.patch_px))
        return (
            torch.from_numpy(self.noisy[m][sl].copy())[None],
            torch.from_numpy(self.clean[m][sl].copy())[None],
        )


def read_calibrated_defoci(path: str | os.PathLike) -> list[tuple[float, float]]:
    """Read the defoci fitted to the user's micrographs (``RUN/calibration/defocus.csv``).

    Returns
    -------
    list of (float, float)
        ``(mean defocus in um, astigmatism angle in deg)`` of each micrograph whose fit did not end at the
        edge of the search range.
    """
    import csv

    path = Path(path)
    if not path.is_file():
        raise StageError(
            f"{path} is missing: `simulate.defocus_source = calibration` needs the fitted defoci; give the "
            "run its micrographs (`nt2c run --micrographs ...`), which fits them before simulating."
        )
    out = []
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("at_search_edge") == "True" or row.get("fit_error"):
                continue
            mean_A = 0.5 * (float(row["defocus_u_A"]) + float(row["defocus_v_A"]))
            out.append((mean_A * 1e-4, float(row["astigmatism_angle_deg"])))
    if not out:
        raise StageError(
            f"{path} holds no usable defocus (every fit ended at the edge of the search range): use "
            "`simulate.defocus_source = params`."
        )
    return out


def prepare_simulate(run, settings: SimulateConfig) -> None:
    """Before ``simulate`` (and before its inputs are stamped): fit the defoci it will read, if needed.

    With ``settings.defocus_source = "calibration"`` and no ``RUN/calibration/defocus.csv`` yet, fit the
    run's micrographs (:func:`nt2c.calibration.measure.fit_run_defoci`; a second or two each) with the
    calibrate stage's settings, so that the stage later writes the same table.
    """
    from nt2c.calibration.measure import DEFOCUS_TABLE, fit_run_defoci
    from nt2c.run.micrographs import read_micrograph_list

    if settings.defocus_source != "calibration" or (run.path / "calibration" / DEFOCUS_TABLE).is_file():
        return

    if not read_micrograph_list(run, check=False):
        raise StageError(
            "`simulate.defocus_source = calibration` fits the defoci of your micrographs, but the run has "
            "none: give them with `nt2c run --micrographs ...` (or use `simulate.defocus_source = params`)."
        )
    from nt2c.config import stage_config

    calibrate = stage_config("calibrate", run.profile() or "quick", **run.explicit_settings("calibrate"))
    fit_run_defoci(run, box_px=calibrate.box_px)  # as the calibrate stage will: the same bytes


def simulate_stage(run, settings: SimulateConfig, params: ExperimentParams) -> list[Path]:
    """Pipeline stage ``simulate``: training micrographs and pairs, and a separate test set.

    Writes into ``RUN/simulated/`` ``mic_0000.mrc``, ``mic_0000_clean.mrc``, ``mic_0000_coords.star``,
    ``mic_0000.json``, ... and ``pairs_noisy.mrcs`` / ``pairs_clean.mrcs`` (``settings.n_pairs`` aligned
    patches of ``settings.pair_patch_px``) with ``pairs_sources.csv`` (where each pair was cut), and into
    ``RUN/test/`` ``settings.n_test_micrographs`` more micrographs of their own seeds that no model trains on
    (what ``nt2c evaluate`` scores). ``settings.n_micrographs`` and ``settings.image_size_px`` override the
    parameters when set (profiles); particles that do not fit a smaller image are left out. With
    ``settings.defocus_source = "calibration"`` the training micrographs take, in turn, the defoci that
    were fitted to the user's micrographs (:func:`read_calibrated_defoci`, ``RUN/calibration/defocus.csv``,
    fitted first by :func:`prepare_simulate` when missing) instead of drawing them from ``params.defocus_um``;
    the test set keeps drawing from the range.
    """
    from nt2c.denoiser.pairs import write_pair_sources

    out = run.simulated
    n = settings.n_micrographs or params.n_micrographs
    size = settings.image_size_px or params.image_size_px
    if min(size) < settings.pair_patch_px:
        raise StageError(
            f"pair_patch_px = {settings.pair_patch_px} exceeds the micrograph size {list(size)}; "
            "lower pair_patch_px or raise image_size_px."
        )
    test = run.path / "test"
    for old in [*out.glob("mic_*"), *test.glob("mic_*")]:  # a re-run replaces the previous sets entirely
        old.unlink()
    common = dict(image_size_px=size, overwrite=True, allow_fewer=True, device=settings.device)
    defoci = None
    if settings.defocus_source == "calibration":
        from nt2c.calibration.measure import DEFOCUS_TABLE

        defoci = read_calibrated_defoci(run.path / "calibration" / DEFOCUS_TABLE)
    written = simulate_dataset(params, out, n_micrographs=n, seed=settings.seed, defoci=defoci, **common)
    noisy = [p for p in written if p.suffix == ".mrc" and not p.name.endswith("_clean.mrc")]
    clean = [p.with_name(p.stem + "_clean.mrc") for p in noisy]
    pn, pc, sources = cut_patch_pairs(
        noisy,
        clean,
        n_pairs=settings.n_pairs,
        patch_px=settings.pair_patch_px,
        seed=settings.seed,
        return_sources=True,
    )
    pairs = [
        write_mrc(out / "pairs_noisy.mrcs", pn, pixel_size_A=params.pixel_size_A, overwrite=True),
        write_mrc(out / "pairs_clean.mrcs", pc, pixel_size_A=params.pixel_size_A, overwrite=True),
        write_pair_sources(out / "pairs_sources.csv", sources, [p.name for p in noisy]),
    ]
    if settings.n_test_micrographs:
        test_seed = settings.seed + TEST_SEED_OFFSET
        written += simulate_dataset(
            params, test, n_micrographs=settings.n_test_micrographs, seed=test_seed, **common
        )
    return written + pairs
