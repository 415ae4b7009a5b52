"""Simulated micrographs: noise, orientations, placement, reproducibility, real models, bad input."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from scipy import stats

from nt2c.config import load_params
from nt2c.errors import ConfigError, InputError, NT2CError
from nt2c.simulation import build_builtin_specimen, read_structure
from nt2c.simulation.ctf import ctf_zeros, radial_power_spectrum
from nt2c.simulation.detector import expected_counts
from nt2c.simulation.micrograph import place_particles, random_rotations, simulate_micrograph

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def small_specimen():
    return build_builtin_specimen(diameter_A=50.0, symmetry="C2", seed=3)


def _params(**kw):
    base = dict(
        image_size_px=256,
        n_particles=6,
        detector="ideal",
        structural_noise=False,
        dose_e_per_A2=40.0,
        pixel_size_A=1.0,
        specimen_diameter_A=50.0,
    )
    base.update(kw)
    return load_params(base)


def test_builtin_specimen_is_protein_like_and_seeded():
    a = build_builtin_specimen(diameter_A=80.0, symmetry="D2", seed=5)
    b = build_builtin_specimen(diameter_A=80.0, symmetry="D2", seed=5)
    c = build_builtin_specimen(diameter_A=80.0, symmetry="D2", seed=6)
    np.testing.assert_array_equal(a.coords_A, b.coords_A)
    assert a.coords_A.shape != c.coords_A.shape or not np.allclose(a.coords_A, c.coords_A)
    comp = a.composition()
    total = sum(comp.values())
    # protein element mix (by atom count): C ~ 63 %, N ~ 17 %, O ~ 19 %, S < 1 %
    assert 0.58 < comp["C"] / total < 0.68
    assert 0.13 < comp["N"] / total < 0.21
    assert 0.15 < comp["O"] / total < 0.23
    assert a.n_atoms % 4 == 0  # four symmetry copies
    assert a.radius_A < 80.0 / 2 + 6
    # mass ~ 14 Da per heavy atom with hydrogens
    assert a.mass_kDa * 1000 / a.n_atoms == pytest.approx(14.1, rel=0.05)


def test_builtin_specimen_by_mass():
    s = build_builtin_specimen(mass_kDa=150.0, seed=1)
    assert s.mass_kDa == pytest.approx(150.0, rel=0.1)


def test_orientations_are_uniform():
    rng = np.random.default_rng(0)
    rots = random_rotations(20000, rng)
    assert np.allclose(np.einsum("nij,nkj->nik", rots, rots), np.eye(3), atol=1e-9)
    assert np.allclose(np.linalg.det(rots), 1.0)
    axis = rots[:, :, 2]  # image of the z axis: uniform on the sphere
    assert stats.kstest(axis[:, 2], "uniform", args=(-1, 2)).pvalue > 0.01
    assert stats.kstest(np.arctan2(axis[:, 1], axis[:, 0]), "uniform", args=(-np.pi, 2 * np.pi)).pvalue > 0.01
    # Haar measure: E[R] = 0 and the rotation angle has density (1 - cos t) / pi
    assert np.abs(rots.mean(0)).max() < 0.02
    angle = np.arccos(np.clip((np.trace(rots, axis1=1, axis2=2) - 1) / 2, -1, 1))
    cdf = lambda t: (t - np.sin(t)) / np.pi  # noqa: E731
    assert stats.kstest(angle, cdf).pvalue > 0.01


def test_particles_never_overlap_and_stay_inside():
    rng = np.random.default_rng(1)
    xy = place_particles(40, 20.0, (400, 500), rng)
    assert xy.shape == (40, 2)
    d = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1)) + np.eye(40) * 1e9
    assert d.min() >= 40.0
    assert (xy[:, 0] >= 20).all() and (xy[:, 0] <= 500 - 21).all()
    assert (xy[:, 1] >= 20).all() and (xy[:, 1] <= 400 - 21).all()
    with pytest.raises(ConfigError, match="n_particles"):
        place_particles(200, 20.0, (200, 200), rng)


def test_noisy_minus_clean_is_pure_poisson(small_specimen):
    mic = simulate_micrograph(_params(), specimen=small_specimen, seed=11, device="cpu")
    d = mic.noisy.astype(np.float64) - mic.clean
    assert np.array_equal(mic.noisy, np.round(mic.noisy))  # counts
    assert abs(d.mean()) < 0.05
    assert d.var() == pytest.approx(mic.clean.mean(), rel=0.03)
    # variance follows the local expected counts: fit d^2 ~ clean
    slope = np.sum(d**2 * mic.clean) / np.sum(mic.clean**2)
    assert slope == pytest.approx(1.0, rel=0.03)
    assert mic.clean.mean() == pytest.approx(40.0, rel=1e-3)
    assert mic.noisy.dtype == np.float32 and mic.clean.dtype == np.float32


def test_structural_noise_and_detector_add_noise_beyond_poisson(small_specimen):
    p = _params(structural_noise=True, ice_thickness_nm=50.0)
    mic = simulate_micrograph(p, specimen=small_specimen, seed=11, device="cpu")
    d = mic.noisy - mic.clean
    assert d.var() > 1.05 * mic.clean.mean()


def test_particles_are_dark_and_coordinates_match(small_specimen):
    mic = simulate_micrograph(_params(dose_e_per_A2=1000.0), specimen=small_specimen, seed=2, device="cpu")
    yy, xx = np.mgrid[:256, :256]
    inside = np.zeros((256, 256), bool)
    for x, y in mic.coordinates_px:
        inside |= (xx - x) ** 2 + (yy - y) ** 2 < (0.6 * small_specimen.radius_A) ** 2
    assert len(mic.coordinates_px) == 6
    assert mic.clean[inside].mean() < mic.clean[~inside].mean()  # underfocus: protein is dark


def test_same_seed_same_images(small_specimen):
    p = _params(structural_noise=True, detector="k2")
    a = simulate_micrograph(p, specimen=small_specimen, seed=5, device="cpu")
    b = simulate_micrograph(p, specimen=small_specimen, seed=5, device="cpu")
    c = simulate_micrograph(p, specimen=small_specimen, seed=6, device="cpu")
    np.testing.assert_array_equal(a.noisy, b.noisy)
    np.testing.assert_array_equal(a.clean, b.clean)
    np.testing.assert_array_equal(a.coordinates_px, b.coordinates_px)
    assert not np.array_equal(a.noisy, c.noisy)


def test_full_phase_grating_agrees_with_weak_phase(small_specimen):
    kw = dict(specimen=small_specimen, seed=3, device="cpu", defocus_um=1.5)
    weak = simulate_micrograph(_params(ice_thickness_nm=0.0), **kw)
    full = simulate_micrograph(_params(ice_thickness_nm=0.0, phase_model="full"), **kw)
    r = np.corrcoef(weak.clean.ravel(), full.clean.ravel())[0, 1]
    assert r > 0.99
    assert full.clean.mean() == pytest.approx(weak.clean.mean(), rel=0.01)


def test_thon_rings_sit_at_the_ctf_zeros():
    """The power spectrum of ice noise imaged through the CTF vanishes at the predicted zeros."""
    p = _params(
        image_size_px=512,
        n_particles=0,
        structural_noise=True,
        dose_e_per_A2=2000.0,
        astigmatism_um=0.0,
        b_factor_A2=0.0,
        ice_thickness_nm=50.0,
    )
    mic = simulate_micrograph(p, seed=1, defocus_um=1.5, device="cpu")
    k, power = radial_power_spectrum(mic.noisy - mic.noisy.mean(), 1.0)
    zeros = ctf_zeros(defocus_um=1.5, n=4)
    for z0, z1 in zip(zeros[:-1], zeros[1:]):
        at_zero = power[np.argmin(np.abs(k - z0))]
        between = power[np.argmin(np.abs(k - 0.5 * (z0 + z1)))]
        assert at_zero < 0.4 * between


def test_real_models_simulate(shared_data):
    for name in ("3j9i.pdb.gz", "2fha.pdb.gz"):
        path = shared_data / "pdb" / name
        if not path.is_file():
            pytest.skip(f"{path} absent")
        spec = read_structure(path)
        if name.startswith("2fha"):
            assert spec.meta["models_used"] == 24  # the 24-mer is one particle
            assert 11 < 2 * spec.radius_A / 10 < 15  # ~12 nm shell
        else:
            assert 600 < spec.mass_kDa < 750  # the 20S proteasome
        p = load_params(image_size_px=512, n_particles=2, pixel_size_A=1.5, detector="k2")
        mic = simulate_micrograph(p, specimen=spec, seed=0, device="cpu")
        assert np.isfinite(mic.noisy).all() and mic.clean.std() > 0
        assert mic.clean.mean() == pytest.approx(40 * 1.5**2, rel=0.01)


def test_bad_inputs(tmp_path, small_specimen):
    with pytest.raises(InputError, match="does not exist"):
        read_structure(tmp_path / "missing.pdb")
    bad = tmp_path / "bad.cif"
    bad.write_text("this is not a structure\n")
    with pytest.raises(InputError):
        read_structure(bad)
    unknown = tmp_path / "u.pdb.gz"
    with gzip.open(unknown, "wt") as fh:
        fh.write(
            "ATOM      1  CA  ALA A   1       0.000   0.000   0.000  1.00 20.00           C\n"
            "HETATM    2  U   URA A   2       3.000   0.000   0.000  1.00 20.00           U\n"
        )
    with pytest.raises(InputError, match="U"):
        read_structure(unknown)
    with pytest.raises(InputError, match="larger than the image"):
        simulate_micrograph(
            _params(image_size_px=64, pixel_size_A=0.5), specimen=small_specimen, device="cpu"
        )
    with pytest.raises(NT2CError, match="pixel_size_A"):
        load_params(pixel_size_A=0.0)
    with pytest.raises(NT2CError, match="dose_e_per_A2"):
        load_params(dose_e_per_A2=-1.0)
    with pytest.raises(ConfigError, match="dose"):
        expected_counts(np.ones((2, 2)), dose_e_per_A2=0.0, pixel_size_A=1.0)
    with pytest.raises(ConfigError, match="pixel_size_A"):
        expected_counts(np.ones((2, 2)), dose_e_per_A2=10.0, pixel_size_A=-1.0)
    with pytest.raises(ConfigError, match="symmetry"):
        build_builtin_specimen(symmetry="X5")


def test_pdb_id_goes_through_the_data_layer(tmp_path, monkeypatch):
    """A 4-character id is fetched by nt2c.data.fetch_pdb (cached file used; offline gives a DataError)."""
    import nt2c.data
    from nt2c.errors import DataError
    from nt2c.simulation.specimen import load_specimen

    model = tmp_path / "1xyz.pdb"
    model.write_text(
        "ATOM      1  N   ALA A   1       0.000   0.000   0.000  1.00 20.00           N\n"
        "ATOM      2  CA  ALA A   1       1.458   0.000   0.000  1.00 20.00           C\n"
        "ATOM      3  SG  CYS A   2       3.000   1.000   0.000  1.00 30.00           S\n"
    )
    monkeypatch.setattr(nt2c.data, "fetch_pdb", lambda pdb_id, **kw: model)
    spec = load_specimen("1xyz")
    assert spec.composition() == {"C": 1, "N": 1, "S": 1}

    def offline(pdb_id, **kw):
        raise DataError(f"could not download PDB entry {pdb_id}; offline?")

    monkeypatch.setattr(nt2c.data, "fetch_pdb", offline)
    with pytest.raises(DataError, match="offline"):
        load_specimen("2abc")


def test_thicker_ice_is_darker():
    """A thickness gradient shows through the amplitude-contrast term: the thicker side loses intensity."""
    p = _params(n_particles=0, ice_thickness_nm=50.0, ice_gradient_nm_per_um=100.0, dose_e_per_A2=1000.0)
    mic = simulate_micrograph(p, seed=0, defocus_um=1.0, device="cpu")
    centre = mic.clean[64:192, 64:192].astype(np.float64)
    gy, gx = np.gradient(centre)
    slope = np.hypot(gx.mean(), gy.mean())  # counts per pixel along the gradient
    # expected |dI/dx| = 2 A sigma V_ice dt/dx * dose * px^2 (weak phase, CTF(0) = -A)
    from nt2c.simulation import ice_mean_inner_potential_V, interaction_constant

    expected = 2 * 0.07 * interaction_constant(300) * ice_mean_inner_potential_V() * 100.0 * 10 / 1e4 * 1000.0
    assert slope == pytest.approx(expected, rel=0.05)
