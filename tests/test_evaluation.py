"""evaluate / evaluate_run / `nt2c evaluate` on a tiny synthetic run, the figures, and the real micrograph."""

from __future__ import annotations

import argparse
import csv

import numpy as np
import pytest

from nt2c.errors import InputError, StageError
from nt2c.evaluation.compare import (
    Micrograph,
    evaluate,
    evaluate_run,
    load_micrograph,
    read_coords,
    run_datasets,
)
from nt2c.io import write_mrc, write_star

DIAMETER = 16.0


def _synthetic(seed: int, n: int = 128):
    rng = np.random.default_rng(seed)
    xy = np.array([[30, 30], [90, 40], [40, 95], [100, 100]], float) + rng.integers(-4, 5, size=(4, 2))
    yy, xx = np.mgrid[:n, :n]
    clean = np.full((n, n), 50.0)
    for x, y in xy:
        clean -= 4.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * (DIAMETER / 4) ** 2))
    noisy = clean + rng.normal(scale=1.0, size=clean.shape)
    return noisy.astype(np.float32), clean.astype(np.float32), xy


@pytest.fixture()
def sim_run(run_dir):
    for k in range(2):
        noisy, clean, xy = _synthetic(k)
        stem = run_dir.simulated / f"mic_{k:04d}"
        write_mrc(f"{stem}.mrc", noisy, pixel_size_A=2.0)
        write_mrc(f"{stem}_clean.mrc", clean, pixel_size_A=2.0)
        write_star(f"{stem}_coords.star", {"rlnCoordinateX": xy[:, 0], "rlnCoordinateY": xy[:, 1]})
    return run_dir


def test_run_datasets_reads_the_simulator_names(sim_run):
    data = run_datasets(sim_run)
    assert list(data) == ["simulated"]
    mics = data["simulated"]
    assert [m.name for m in mics] == ["mic_0000", "mic_0001"]
    assert mics[0].clean is not None and mics[0].coords_xy.shape == (4, 2) and mics[0].pixel_size_A == 2.0
    assert len(run_datasets(sim_run, max_micrographs=1)["simulated"]) == 1
    (sim_run.path / "micrographs.txt").write_text(f"{sim_run.simulated / 'mic_0001.mrc'}\n")
    assert [m.name for m in run_datasets(sim_run)["experimental"]] == ["mic_0001"]


def test_evaluate_run_writes_table_and_figures(sim_run):
    result, written = evaluate_run(
        sim_run,
        methods=["raw", "lowpass", "gaussian", "nt2c-fine"],
        particle_diameter_px=DIAMETER,
        device="cpu",
    )
    names = {p.name for p in written}
    assert {
        "evaluation.csv",
        "evaluation.md",
        "evaluation_simulated_whole.png",
        "evaluation_simulated_regions.png",
        "evaluation_simulated_frc.png",
        "picking_simulated.png",
    } <= names
    assert all(p.is_file() and p.stat().st_size > 0 for p in written)
    # the fine model is not trained in this run: skipped, with what to do
    assert "nt2c-fine" in result.skipped and "train-fine" in result.skipped["nt2c-fine"]
    assert result.methods == ["raw", "lowpass", "gaussian"]
    v = result.value
    # filters raise the Eq. 5 SNR and PSNR of a white-noise micrograph; raw is the reference row
    assert v("simulated", "gaussian", "snr_eq5_dB") > v("simulated", "raw", "snr_eq5_dB") + 1
    assert v("simulated", "lowpass", "psnr_dB") > v("simulated", "raw", "psnr_dB") + 3
    assert v("simulated", "gaussian", "ssim") > v("simulated", "raw", "ssim")
    assert v("simulated", "raw", "n_micrographs") == 2 and v("simulated", "raw", "n_regions") == 8
    assert v("simulated", "raw", "frc_unit") == "A"
    assert v("simulated", "gaussian", "f1") == pytest.approx(1.0)
    rows = list(csv.DictReader((sim_run.report / "evaluation.csv").open()))
    assert [r["method"] for r in rows] == ["raw", "lowpass", "gaussian"]
    assert float(rows[2]["snr_eq5_dB"]) == pytest.approx(v("simulated", "gaussian", "snr_eq5_dB"), rel=1e-5)
    md = (sim_run.report / "evaluation.md").read_text()
    assert "| Gaussian |" in md and "nt2c-fine" in md and "PSNR (dB)" in md


def test_evaluate_without_clean_or_coords():
    noisy, _, _ = _synthetic(5)
    result = evaluate(
        {"plain": [Micrograph("m", noisy)]}, particle_diameter_px=DIAMETER, methods=["raw", "gaussian"]
    )
    assert np.isnan(result.value("plain", "raw", "snr_eq5_dB")) and np.isnan(
        result.value("plain", "raw", "psnr_dB")
    )
    assert result.value("plain", "gaussian", "seconds_per_micrograph") >= 0
    assert "PSNR" not in result.to_markdown()


def test_errors(run_dir, tmp_path):
    with pytest.raises(StageError, match="no micrographs"):
        evaluate_run(run_dir, particle_diameter_px=DIAMETER)
    with pytest.raises(InputError, match="unknown denoising method"):
        evaluate([Micrograph("m", np.zeros((32, 32)))], particle_diameter_px=8, methods=["nlm"])
    with pytest.raises(InputError, match="no micrographs"):
        evaluate({}, particle_diameter_px=8)
    star = tmp_path / "x.star"
    write_star(star, {"rlnAngleRot": [1.0]})
    with pytest.raises(InputError, match="rlnCoordinateX"):
        read_coords(star)


def test_evaluate_command(sim_run, capsys):
    from nt2c.commands import COMMANDS
    from nt2c.commands import evaluate as command

    assert COMMANDS["evaluate"] == "evaluate"
    parser = argparse.ArgumentParser()
    command.add_args(parser)
    args = parser.parse_args(
        [
            "--run",
            str(sim_run.path),
            "--methods",
            "raw",
            "gaussian",
            "--particle-diameter-px",
            str(DIAMETER),
            "--no-figures",
            "--no-picking",
        ]
    )
    assert command.main(args) == 0
    out = capsys.readouterr().out
    assert "Estimated SNR" in out and "evaluation.csv" in out
    assert not (sim_run.report / "picking_simulated.png").exists()


def test_figure_functions_run(sim_run):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nt2c.evaluation.metrics import eq5_regions, frc
    from nt2c.evaluation.picking import pick_particles, score_picks, threshold_sweep
    from nt2c.plots.evaluation import (
        plot_comparison,
        plot_eq5_regions,
        plot_frc,
        plot_picking,
        plot_regions,
        plot_threshold_sweep,
    )

    mic = load_micrograph(sim_run.simulated / "mic_0000.mrc")
    regions = eq5_regions(mic.image.shape, mic.coords_xy, box_px=int(DIAMETER))
    images = {"raw": mic.image, "clean": mic.clean}
    picks = pick_particles(mic.clean, particle_diameter_px=DIAMETER)
    score = score_picks(picks.coords_xy, mic.coords_xy, radius_px=DIAMETER / 2)
    figs = [
        plot_comparison(images, regions=regions),
        plot_regions(images, regions),
        plot_eq5_regions(mic.image, regions),
        plot_frc({"raw": frc(mic.image, mic.clean, pixel_size_A=2.0)}),
        plot_picking(
            {"clean": (mic.clean, picks, score)}, truth_xy=mic.coords_xy, particle_diameter_px=DIAMETER
        ),
        plot_threshold_sweep(
            {
                "raw": threshold_sweep(
                    mic.image, mic.coords_xy, particle_diameter_px=DIAMETER, thresholds=[2.0, 3.0]
                )
            }
        ),
    ]
    for fig in figs:
        assert fig.axes
        plt.close(fig)


@pytest.mark.shared_data
def test_real_micrograph_against_autopick(shared_data):
    """The real micrograph with its RELION autopick coordinates: filters raise the Eq. 5 SNR."""
    path = shared_data / "real" / "Ucsf_stack_1142_DW.mrc"
    mic = load_micrograph(path)  # finds Ucsf_stack_1142_DW_autopick.star beside it
    assert mic.image.shape == (927, 959) and mic.coords_xy is not None and len(mic.coords_xy) > 20
    result = evaluate(
        {"real": [mic]}, particle_diameter_px=36, methods=["raw", "gaussian"], mask_contamination=True
    )
    raw, smooth = (result.value("real", m, "snr_eq5_dB") for m in ("raw", "gaussian"))
    assert np.isfinite(raw) and smooth > raw + 0.5
    assert result.value("real", "raw", "n_regions") >= 20  # picks on the ethane blob are left out
    assert 0.3 < result.value("real", "raw", "f1") <= 1.0


def test_run_particle_diameter_comes_from_the_specimen_and_the_run_pixel_size(tmp_path, shared_data):
    from nt2c.config import load_params, save_params
    from nt2c.evaluation.compare import run_particle_diameter_px
    from nt2c.simulation.specimen import load_specimen

    run = tmp_path / "run"
    run.mkdir()
    save_params(load_params(None, pixel_size_A=2.0, specimen_diameter_A=150.0), run / "params.yaml")
    assert run_particle_diameter_px(run) == pytest.approx(75.0)
    assert run_particle_diameter_px(run, pixel_size_A=3.0) == pytest.approx(50.0)
    model = shared_data / "pdb" / "1dpx.pdb"
    (run / "params.yaml").unlink()
    save_params(load_params(None, pixel_size_A=2.0, specimen=str(model)), run / "params.yaml")
    expected = 2 * load_specimen(model).centred().radius_A / 2.0
    assert run_particle_diameter_px(run) == pytest.approx(expected)
    assert 15 < expected < 35  # lysozyme: about 45 A across, 2 A/px
    with pytest.raises(InputError, match="params.yaml is missing"):
        run_particle_diameter_px(tmp_path / "nowhere")
