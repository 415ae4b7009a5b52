"""Simulated datasets on disk, training pairs, the pipeline stage, the CLI and the figures."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from nt2c.cli import main as cli_main
from nt2c.config import load_params, save_params
from nt2c.errors import InputError
from nt2c.io import read_json, read_mrc, read_mrc_header_pixel_size, read_star

pytest.importorskip("torch")


def _small_params(**kw):
    base = dict(image_size_px=192, n_particles=3, specimen_diameter_A=50.0, pixel_size_A=1.2, n_micrographs=2)
    base.update(kw)
    return load_params(base)


def test_simulate_dataset_files(tmp_path):
    from nt2c.simulation import simulate_dataset

    out = tmp_path / "sim"
    written = simulate_dataset(_small_params(), out, seed=4, device="cpu")
    names = sorted(p.name for p in written)
    assert names == sorted(
        f"mic_000{i}{s}" for i in range(2) for s in (".mrc", "_clean.mrc", "_coords.star", ".json")
    )
    noisy, px = read_mrc(out / "mic_0000.mrc")
    clean, _ = read_mrc(out / "mic_0000_clean.mrc")
    assert noisy.shape == clean.shape == (192, 192) and noisy.dtype == np.float32
    assert px == pytest.approx(1.2, abs=1e-4)
    assert read_mrc_header_pixel_size(out / "mic_0000_clean.mrc") == pytest.approx(1.2, abs=1e-4)
    assert clean.mean() == pytest.approx(40 * 1.2**2, rel=0.01)  # counts per pixel
    star = read_star(out / "mic_0000_coords.star")
    meta = read_json(out / "mic_0000.json")
    assert len(star["rlnCoordinateX"]) == meta["n_particles"] == 3
    assert 1.0 <= meta["defocus_um"] <= 2.5
    assert meta["params"]["pixel_size_A"] == 1.2
    assert np.array(meta["rotations"]).shape == (3, 3, 3)
    with pytest.raises(InputError, match="already exist"):
        simulate_dataset(_small_params(), out, seed=4, device="cpu")
    again = tmp_path / "sim2"
    simulate_dataset(_small_params(), again, seed=4, device="cpu")
    np.testing.assert_array_equal(read_mrc(again / "mic_0001.mrc")[0], read_mrc(out / "mic_0001.mrc")[0])


def test_patch_pairs_are_aligned(tmp_path):
    from nt2c.simulation import PatchPairs, cut_patch_pairs, simulate_dataset

    simulate_dataset(_small_params(n_micrographs=1), tmp_path, seed=1, device="cpu")
    noisy, _ = read_mrc(tmp_path / "mic_0000.mrc")
    clean, _ = read_mrc(tmp_path / "mic_0000_clean.mrc")
    pn, pc = cut_patch_pairs([noisy], [clean], n_pairs=8, patch_px=32, seed=0)
    assert pn.shape == pc.shape == (8, 32, 32)
    # each noisy patch is its clean patch plus zero-mean noise: residual variance ~ clean mean (Poisson, k2
    # shaped)
    assert np.corrcoef((pn - pc).ravel(), pc.ravel())[0, 1] < 0.2
    # and each patch really is the same place of both images
    for k in range(8):
        ys, xs = np.nonzero(
            np.all(np.lib.stride_tricks.sliding_window_view(clean, (32, 32)) == pc[k], axis=(2, 3))
        )
        assert len(ys) >= 1
        assert np.array_equal(noisy[ys[0] : ys[0] + 32, xs[0] : xs[0] + 32], pn[k])
    ds = PatchPairs(tmp_path, patch_px=32, length=5, seed=2)
    a, b = ds[3]
    a2, b2 = ds[3]
    assert tuple(a.shape) == (1, 32, 32) and (a == a2).all() and (b == b2).all()
    with pytest.raises(InputError):
        cut_patch_pairs([noisy], [clean], n_pairs=2, patch_px=1000)
    with pytest.raises(InputError):
        PatchPairs(tmp_path / "nothing", patch_px=32)


def test_simulate_stage_smoke(run_dir):
    from nt2c.run.stages import run_stage

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outputs = run_stage("simulate", run_dir, profile="smoke", device="cpu")
    sim = run_dir.path / "simulated"
    for name in (
        "mic_0000.mrc",
        "mic_0000_clean.mrc",
        "mic_0000_coords.star",
        "mic_0000.json",
        "mic_0001.mrc",
        "pairs_noisy.mrcs",
        "pairs_clean.mrcs",
    ):
        assert (sim / name).is_file(), name
    pn, px = read_mrc(sim / "pairs_noisy.mrcs")
    pc, _ = read_mrc(sim / "pairs_clean.mrcs")
    assert pn.shape == pc.shape == (16, 64, 64)
    assert px == pytest.approx(1.0)
    assert read_mrc(sim / "mic_0000.mrc")[0].shape == (256, 256)
    # two training micrographs (4 files each), the pairs with their sources, one test micrograph (4 files)
    assert len(outputs) == 2 * 4 + 3 + 1 * 4
    assert sorted(p.name for p in (run_dir.path / "test").glob("*.mrc")) == [
        "mic_0000.mrc",
        "mic_0000_clean.mrc",
    ]


def test_test_micrographs_are_never_training_micrographs(run_dir):
    """The test set has its own seeds and images, and no training pair is cut from it."""
    import csv

    from nt2c.io import read_json
    from nt2c.run.stages import run_stage

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_stage("simulate", run_dir, profile="smoke", device="cpu")
    sim, test = run_dir.path / "simulated", run_dir.path / "test"
    train_seeds = {read_json(p)["seed"] for p in sim.glob("mic_????.json")}
    test_seeds = {read_json(p)["seed"] for p in test.glob("mic_????.json")}
    assert train_seeds and test_seeds and train_seeds.isdisjoint(test_seeds)
    with open(sim / "pairs_sources.csv", newline="") as handle:
        sources = list(csv.DictReader(handle))
    assert len(sources) == 16 and {r["micrograph"] for r in sources} <= {
        p.name for p in sim.glob("mic_????.mrc")
    }
    pairs, _ = read_mrc(sim / "pairs_noisy.mrcs")
    for row, pair in zip(sources, pairs):  # each pair is the crop its source row names
        mic, _ = read_mrc(sim / row["micrograph"])
        r, c = int(row["row"]), int(row["col"])
        assert np.array_equal(pair, mic[r : r + 64, c : c + 64])
    for t in test.glob("mic_????.mrc"):
        image, _ = read_mrc(t)
        assert not any(np.array_equal(image, read_mrc(m)[0]) for m in sim.glob("mic_????.mrc"))
    assert run_dir.is_complete("simulate")


def test_cli_simulate_out_and_run(tmp_path, capsys):
    params = tmp_path / "p.yaml"
    save_params(_small_params(), params)
    out = tmp_path / "out"
    assert (
        cli_main(
            [
                "simulate",
                "--params",
                str(params),
                "--out",
                str(out),
                "-n",
                "1",
                "--seed",
                "2",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert (out / "params.yaml").is_file() and (out / "mic_0000_clean.mrc").is_file()
    assert not (out / "mic_0001.mrc").exists()
    assert load_params(out / "params.yaml").image_size_px == (192, 192)
    # never overwrite without --force
    assert cli_main(["simulate", "--params", str(params), "--out", str(out), "-n", "1"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (
        cli_main(
            ["simulate", "--params", str(params), "--out", str(out), "-n", "1", "--force", "--device", "cpu"]
        )
        == 0
    )
    # readable errors
    assert (
        cli_main(["simulate", "--params", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "o2")]) == 2
    )
    assert "does not exist" in capsys.readouterr().err
    assert cli_main(["simulate"]) == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("pixel_size_A: -1\n")
    assert cli_main(["simulate", "--params", str(bad), "--out", str(tmp_path / "o3")]) == 2
    assert "pixel_size_A" in capsys.readouterr().err
    run = tmp_path / "run"
    assert (
        cli_main(
            ["simulate", "--run", str(run), "--params", str(params), "--profile", "smoke", "--device", "cpu"]
        )
        == 0
    )
    assert (run / "simulated" / "pairs_clean.mrcs").is_file()


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(["simulate", "--help"])
    assert exc.value.code == 0
    assert "--params" in capsys.readouterr().out


def test_plots_run(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nt2c.plots import simulation as sp
    from nt2c.simulation import build_builtin_specimen, projected_potential, simulate_micrograph

    spec = build_builtin_specimen(diameter_A=40.0, seed=1)
    mic = simulate_micrograph(_small_params(n_particles=2), specimen=spec, seed=0, device="cpu")
    figs = [
        sp.plot_specimen(spec),
        sp.plot_potential(projected_potential(spec, pixel_size_A=1.0), pixel_size_A=1.0),
        sp.plot_ctf(defocus_um=1.5, size_px=128, astigmatism_um=0.1, b_factor_A2=50.0),
        sp.plot_thon_rings(mic.noisy, pixel_size_A=1.2, defocus_um=mic.meta["defocus_um"]),
        sp.plot_clean_noisy({"dose 40": (mic.clean, mic.noisy)}),
        sp.plot_detectors(),
    ]
    for fig in figs:
        assert len(fig.axes) >= 1
        plt.close(fig)
