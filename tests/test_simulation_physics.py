"""Physics of the simulator: wavelength, CTF, potentials, ice, detectors (numbers from physics.md)."""

from __future__ import annotations

import numpy as np
import pytest

from nt2c.errors import ConfigError, InputError
from nt2c.simulation import ctf as ctfmod
from nt2c.simulation.detector import DETECTOR_PRESETS, detect, dqe, mtf
from nt2c.simulation.ice import ice_mean_inner_potential_V, structural_noise
from nt2c.simulation.potential import K_V_A2, PENG_A, projected_potential
from nt2c.simulation.specimen import Specimen

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("kv,expected", [(300, 0.019687), (200, 0.025079), (100, 0.037014)])
def test_wavelength(kv, expected):
    assert ctfmod.electron_wavelength_A(kv) == pytest.approx(expected, abs=2e-6)


@pytest.mark.parametrize("kv,expected", [(300, 6.5262e-4), (200, 7.2884e-4), (100, 9.2440e-4)])
def test_interaction_constant(kv, expected):
    assert ctfmod.interaction_constant(kv) == pytest.approx(expected, rel=1e-3)


def test_ctf_origin_and_reference_profile():
    k = np.fft.rfftfreq(256, d=1.0)
    prof = ctfmod.ctf_1d(k, defocus_um=1.5, voltage_kV=300, cs_mm=2.7, amplitude_contrast=0.07)
    assert prof[0] == pytest.approx(-0.07, abs=1e-6)
    assert prof[10] == pytest.approx(-0.99631, abs=2e-4)
    c2 = ctfmod.ctf_2d((256, 256), 1.0, defocus_u_A=15000, envelopes=False)
    assert float(c2[0, 0]) == pytest.approx(-0.07, abs=1e-6)
    assert float(c2[0, 10]) == pytest.approx(-0.99631, abs=2e-4)
    assert float(c2[10, 0]) == pytest.approx(-0.99631, abs=2e-4)  # isotropic without astigmatism


def test_ctf_first_zeros():
    zeros = ctfmod.ctf_zeros(defocus_um=1.5, voltage_kV=300, cs_mm=2.7, amplitude_contrast=0.07, n=5)
    ref = np.array([0.05754, 0.08192, 0.10055, 0.11628, 0.13025])
    np.testing.assert_allclose(zeros, ref, rtol=5e-3)
    # the profile really vanishes there
    assert np.abs(ctfmod.ctf_1d(zeros, defocus_um=1.5)).max() < 1e-9


def test_ctf_astigmatism_and_envelopes():
    c = ctfmod.ctf_2d(
        (128, 128),
        1.0,
        defocus_u_A=20000,
        defocus_v_A=10000,
        astigmatism_angle_deg=0.0,
        envelopes=False,
        rfft=False,
    )
    kx_only = ctfmod.ctf_1d(np.array([5 / 128]), defocus_um=2.0)[0]
    ky_only = ctfmod.ctf_1d(np.array([5 / 128]), defocus_um=1.0)[0]
    assert float(c[0, 5]) == pytest.approx(kx_only, abs=1e-4)  # along x: dfU
    assert float(c[5, 0]) == pytest.approx(ky_only, abs=1e-4)  # along y: dfV
    k = np.linspace(0, 0.5, 200)
    env = ctfmod.ctf_envelope(k, 15000.0, b_factor_A2=50.0)
    assert env[0] == pytest.approx(1.0)
    assert np.all(np.diff(env) <= 1e-12)
    assert env[-1] < np.exp(-50 * 0.25 / 4) + 1e-9


def test_ctf_bad_parameters():
    with pytest.raises(ConfigError):
        ctfmod.electron_wavelength_A(0)
    with pytest.raises(ConfigError):
        ctfmod.ctf_2d((64, 64), -1.0, defocus_u_A=1e4)
    with pytest.raises(ConfigError):
        ctfmod.ctf_zeros(defocus_um=1.0, amplitude_contrast=1.5)


@pytest.mark.parametrize("element,f0", [("H", 25.3), ("C", 120.1), ("N", 106.0), ("O", 95.0), ("S", 247.1)])
def test_plane_integral_of_one_atom(element, f0):
    """sum(V_z) * px^2 = K f(0) within 1 % (physics.md values), for an off-grid atom with a B-factor."""
    spec = Specimen([element], [[0.37, -0.21, 0.0]], [15.0], [1.0])
    img = projected_potential(spec, pixel_size_A=0.7, shape=(48, 48), hydrogens=False)
    integral = img.sum() * 0.7**2
    assert integral == pytest.approx(K_V_A2 * PENG_A[element.upper()].sum(), rel=1e-3)
    assert integral == pytest.approx(f0, rel=0.01)


def test_pixel_averaged_carbon_peak():
    """physics.md oracle: one C atom pixel-averaged on a 0.5 A grid peaks near 150 V A (point: 417)."""
    spec = Specimen(["C"], [[0.0, 0.0, 0.0]], [0.0], [1.0])
    img = projected_potential(spec, pixel_size_A=0.5, shape=(64, 64), hydrogens=False, oversample=4)
    assert 140 < img.max() < 165
    assert img.max() < 417.4  # pixel averaging lowers the point value


def test_solvent_exclusion_lowers_the_integral():
    spec = Specimen(["C", "N", "O"], [[0, 0, 0], [1.5, 0, 0], [0, 1.4, 0]], [20, 20, 20], [1, 1, 1])
    vac = projected_potential(spec, pixel_size_A=1.0, shape=(48, 48), hydrogens=False)
    ice = projected_potential(
        spec, pixel_size_A=1.0, shape=(48, 48), hydrogens=False, solvent_potential_V=4.5
    )
    volume = sum((m / (1.35 * 0.602214076)) for m in (12.011, 14.007, 15.999))
    assert vac.sum() - ice.sum() == pytest.approx(4.5 * volume, rel=1e-3)


def test_ice_mean_inner_potential():
    assert ice_mean_inner_potential_V(0.92) == pytest.approx(4.48, abs=0.01)
    assert ice_mean_inner_potential_V(0.93) == pytest.approx(4.53, abs=0.01)
    assert ice_mean_inner_potential_V(1.0) == pytest.approx(4.87, abs=0.01)


def test_structural_noise_scales_with_thickness_and_is_seeded():
    g = torch.Generator().manual_seed(1)
    a = structural_noise((128, 128), 1.0, thickness_A=300.0, generator=g)
    g = torch.Generator().manual_seed(1)
    b = structural_noise((128, 128), 1.0, thickness_A=1200.0, generator=g)
    assert abs(float(a.mean())) < 1e-3 * float(a.std())
    assert float(b.std()) / float(a.std()) == pytest.approx(2.0, rel=1e-4)  # variance ~ thickness
    g = torch.Generator().manual_seed(1)
    assert torch.equal(a, structural_noise((128, 128), 1.0, thickness_A=300.0, generator=g))


def test_mtf_presets_at_nyquist():
    assert mtf("ideal", 1.0) == 1.0 and dqe("ideal", 1.0) == 1.0
    assert mtf("counting", 1.0) == pytest.approx(2 / np.pi, abs=1e-3)  # 0.637
    assert dqe("counting", 1.0) == pytest.approx(0.405, abs=1e-3)
    assert mtf("k2", 1.0) == pytest.approx(0.514, abs=2e-3)
    assert dqe("k2", 1.0) == pytest.approx(0.225, abs=2e-3)
    assert mtf("falcon3", 1.0) == pytest.approx(0.150, abs=2e-3)
    assert dqe("falcon3", 1.0) == pytest.approx(0.288, abs=2e-3)
    # table rows of physics.md at 1/4, 1/2, 3/4 Nyquist
    np.testing.assert_allclose(mtf("k2", [0.25, 0.5, 0.75]), [0.898, 0.787, 0.656], atol=3e-3)
    np.testing.assert_allclose(dqe("falcon3", [0.25, 0.5, 0.75]), [0.885, 0.788, 0.527], atol=3e-3)
    for name in DETECTOR_PRESETS:
        assert mtf(name, 0.0) == pytest.approx(1.0, abs=1e-3)
        assert 0 < dqe(name, 1.0) <= 1


def _read_star_mtf(path):
    rows = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                rows.append((float(parts[0]), float(parts[1])))
            except ValueError:
                pass
    return np.array(rows)


@pytest.mark.parametrize(
    "preset,fname", [("k3", "mtf_k3_standard_300kV_FL2.star"), ("falcon4", "mtf_falcon4EC_300kV.star")]
)
def test_embedded_mtf_matches_star_files(shared_data, preset, fname):
    path = shared_data.parent / "reference" / "detectors" / fname
    if not path.is_file():
        pytest.skip(f"{path} absent")
    table = _read_star_mtf(path)
    w = 2 * table[:, 0]
    np.testing.assert_allclose(mtf(preset, w), table[:, 1], atol=1e-4)


def test_detect_ideal_is_poisson_and_shaped_noise_has_dqe_variance():
    lam = torch.full((256, 256), 40.0)
    g = torch.Generator().manual_seed(0)
    noisy, clean = detect(lam, detector="ideal", generator=g)
    d = (noisy - clean).numpy()
    assert torch.equal(noisy, torch.round(noisy))
    assert abs(d.mean()) < 0.05 and d.var() == pytest.approx(40.0, rel=0.03)
    noisy, clean = detect(lam, detector="counting", generator=torch.Generator().manual_seed(0))
    d = (noisy - clean).numpy()
    # white part of the noise power: lambda * MTF^2 / DQE = lambda for a counting detector
    assert d.var() == pytest.approx(40.0, rel=0.03)
    assert float(clean.mean()) == pytest.approx(40.0, rel=1e-5)
    with pytest.raises(ConfigError):
        detect(lam, detector="film")


def test_unknown_element_is_an_error():
    with pytest.raises(InputError, match="XX"):
        Specimen(["C", "XX"], [[0, 0, 0], [1, 1, 1]], [0, 0], [1, 1])
