"""evaluate / evaluate_run / `nt2c evaluate`: splits, --coords/--reference by name, the figures, real data."""

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
from nt2c.evaluation.datasets import SPLITS, match_by_name
from nt2c.io import write_mrc, write_star
from nt2c.run.micrographs import write_micrograph_list

DIAMETER = 16.0


def _synthetic(seed: int, n: int = 128, noise: float = 1.0):
    rng = np.random.default_rng(seed)
    xy = np.array([[30, 30], [90, 40], [40, 95], [100, 100]], float) + rng.integers(-4, 5, size=(4, 2))
    yy, xx = np.mgrid[:n, :n]
    clean = np.full((n, n), 50.0)
    for x, y in xy:
        clean -= 4.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * (DIAMETER / 4) ** 2))
    noisy = clean + rng.normal(scale=noise, size=clean.shape)
    return noisy.astype(np.float32), clean.astype(np.float32), xy


def _write_sim(folder, stem: str, seed: int):
    noisy, clean, xy = _synthetic(seed)
    folder.mkdir(parents=True, exist_ok=True)
    write_mrc(folder / f"{stem}.mrc", noisy, pixel_size_A=2.0)
    write_mrc(folder / f"{stem}_clean.mrc", clean, pixel_size_A=2.0)
    write_star(folder / f"{stem}_coords.star", {"rlnCoordinateX": xy[:, 0], "rlnCoordinateY": xy[:, 1]})
    return folder / f"{stem}.mrc"


@pytest.fixture()
def sim_run(run_dir):
    """Make a run with every split: RUN/simulated (training), RUN/test, micrographs.txt and heldout.txt."""
    _write_sim(run_dir.simulated, "mic_0000", 0)
    for k in range(2):
        _write_sim(run_dir.path / "test", f"mic_{k:04d}", 10 + k)
    same = _write_sim(run_dir.path / "experimental", "exp_0000", 20)
    new = _write_sim(run_dir.path / "experimental", "exp_0001", 21)
    write_micrograph_list(run_dir, [same], "micrographs")
    write_micrograph_list(run_dir, [new], "heldout")
    return run_dir


def test_run_datasets_score_only_what_no_model_trained_on(sim_run):
    data = run_datasets(sim_run)
    assert list(data) == ["test", "experimental", "heldout"]  # RUN/simulated (training) left out
    assert [m.name for m in data["test"]] == ["mic_0000", "mic_0001"]
    assert [m.name for m in data["experimental"]] == ["exp_0000"]
    assert [m.name for m in data["heldout"]] == ["exp_0001"]
    assert {m.split for m in data["experimental"]} == {"same micrographs (noise learnt from them)"}
    assert {m.split for m in data["heldout"]} == {"new micrographs of the same acquisition"}
    mic = data["test"][0]
    assert mic.clean is not None and mic.coords_xy.shape == (4, 2) and mic.pixel_size_A == 2.0
    # the stand-ins' clean image beside them is used
    assert data["heldout"][0].clean_path.name == "exp_0001_clean.mrc"
    assert len(run_datasets(sim_run, max_micrographs=1)["test"]) == 1
    with_training = run_datasets(sim_run, include_training=True)
    assert [m.split for m in with_training["training"]] == ["training micrographs (in-sample)"]
    # explicit micrographs say where the run used them
    explicit = run_datasets(sim_run, micrographs=[sim_run.simulated / "mic_0000.mrc"])
    assert [m.split for m in explicit["mic_0000"]] == [SPLITS["training"]]


def test_evaluate_run_writes_tables_and_figures_that_name_the_split(sim_run):
    result, written = evaluate_run(
        sim_run,
        methods=["raw", "lowpass", "gaussian", "nt2c-fine"],
        particle_diameter_px=DIAMETER,
        device="cpu",
        max_micrographs=1,
    )
    names = {p.name for p in written}
    assert {
        "evaluation.csv",
        "evaluation.md",
        "evaluation_test_whole.png",
        "evaluation_test_regions.png",
        "evaluation_test_frc.png",
        "picking_test.png",
        "evaluation_heldout_whole.png",
    } <= names
    assert not any("training" in n or "simulated" in n for n in names)
    assert all(p.is_file() and p.stat().st_size > 0 for p in written)
    # the fine model is not trained in this run: skipped, with what to do
    assert "nt2c-fine" in result.skipped and "train-fine" in result.skipped["nt2c-fine"]
    assert result.methods == ["raw", "lowpass", "gaussian"]
    v = result.value
    # filters raise the Eq. 5 SNR and PSNR of a white-noise micrograph; raw is the reference row
    assert v("test", "gaussian", "snr_eq5_dB") > v("test", "raw", "snr_eq5_dB") + 1
    assert v("test", "lowpass", "psnr_dB") > v("test", "raw", "psnr_dB") + 3
    assert v("test", "gaussian", "ssim") > v("test", "raw", "ssim")
    assert v("test", "raw", "n_micrographs") == 1 and v("test", "raw", "n_regions") == 4
    assert v("test", "raw", "frc_unit") == "A"
    assert v("test", "gaussian", "f1") == pytest.approx(1.0)
    rows = list(csv.DictReader((sim_run.report / "evaluation.csv").open()))
    assert [(r["dataset"], r["method"]) for r in rows[:3]] == [
        ("test", m) for m in ("raw", "lowpass", "gaussian")
    ]
    assert {r["dataset"]: r["split"] for r in rows} == {
        "test": SPLITS["test"],
        "experimental": SPLITS["experimental"],
        "heldout": SPLITS["heldout"],
    }
    assert float(rows[2]["snr_eq5_dB"]) == pytest.approx(v("test", "gaussian", "snr_eq5_dB"), rel=1e-5)
    md = (sim_run.report / "evaluation.md").read_text()
    assert "| Gaussian |" in md and "nt2c-fine" in md and "PSNR (dB)" in md
    assert "## heldout: new micrographs of the same acquisition" in md
    assert "- `experimental`: same micrographs (noise learnt from them)" in md
    # every per-micrograph row names its file and split
    assert {r["split"] for r in result.per_micrograph if r["dataset"] == "test"} == {SPLITS["test"]}


def test_read_coords_star_and_csv(tmp_path):
    star = tmp_path / "a.star"
    write_star(star, {"rlnCoordinateX": [1.0, 2.0], "rlnCoordinateY": [3.0, 4.0]})
    np.testing.assert_array_equal(read_coords(star), [[1, 3], [2, 4]])
    with_header = tmp_path / "b_coords.csv"
    with_header.write_text("radius,x,y\n32.6,406.0,32.0\n32.6,320.3,36.3\n")
    np.testing.assert_allclose(read_coords(with_header), [[406.0, 32.0], [320.3, 36.3]])
    bare = tmp_path / "c.csv"
    bare.write_text("5,6,30\n7,8,30\n")
    np.testing.assert_array_equal(read_coords(bare), [[5, 6], [7, 8]])
    bad = tmp_path / "d.csv"
    bad.write_text("x,y\n1,two\n")
    with pytest.raises(InputError, match="not a coordinate CSV"):
        read_coords(bad)
    write_star(tmp_path / "e.star", {"rlnAngleRot": [1.0]})
    with pytest.raises(InputError, match="rlnCoordinateX"):
        read_coords(tmp_path / "e.star")
    with pytest.raises(InputError, match="does not exist"):
        read_coords(tmp_path / "missing.csv")


def test_match_by_name_rule(tmp_path):
    mics = [tmp_path / "A_frame.mrc", tmp_path / "A.mrc", tmp_path / "A1.mrc"]
    refs = [tmp_path / "A.mrc", tmp_path / "A_frame.mrc", tmp_path / "A1.mrc"]
    got = match_by_name(mics, refs, kind="reference")
    # NAME.mrc is the reference of NAME_frame.mrc; never a micrograph's own file; A1 is not A + "_..."
    assert got[mics[0]] == tmp_path / "A.mrc"
    assert got[mics[1]] is None  # A_frame does not fit A (only A_frame_* would)
    assert got[mics[2]] is None
    coords = [tmp_path / "A_coords.csv", tmp_path / "A_frame_autopick.star"]
    got = match_by_name(mics, coords, kind="coords")
    assert got[mics[0]].name == "A_frame_autopick.star"  # the longest key wins
    assert got[mics[1]].name == "A_coords.csv"
    with pytest.raises(InputError, match="several coords files"):
        match_by_name([tmp_path / "B.mrc"], [tmp_path / "B.star", tmp_path / "B_coords.csv"])


@pytest.fixture()
def user_data(tmp_path):
    """Write a user's frames (noisy), averages of the same fields and CSV particles, in three folders."""
    frames, refs, coords = (tmp_path / d for d in ("frames", "averages", "coords"))
    for d in (frames, refs, coords):
        d.mkdir()
    for k, name in enumerate(("F1", "F2")):
        noisy, clean, xy = _synthetic(30 + k, noise=2.0)
        reference = clean + np.random.default_rng(40 + k).normal(scale=0.3, size=clean.shape)
        write_mrc(frames / f"{name}_frame.mrc", noisy, pixel_size_A=1.5)
        write_mrc(refs / f"{name}.mrc", reference.astype(np.float32), pixel_size_A=1.5)
        rows = "".join(f"{x:.2f},{y:.2f},8.0\n" for x, y in xy)
        (coords / f"{name}_coords.csv").write_text("x,y,radius\n" + rows)
    return frames, refs, coords


def test_coords_and_reference_matched_by_name(run_dir, user_data):
    frames, refs, coords = user_data
    result, written = evaluate_run(
        run_dir,
        micrographs=[str(frames / "*_frame.mrc")],
        coords=[coords],
        reference=[refs],
        methods=["raw", "gaussian"],
        particle_diameter_px=DIAMETER,
        figures=True,
    )
    assert result.datasets == ["micrographs"] and result.splits["micrographs"] == SPLITS["external"]
    v = result.value
    # the reference image ranks a smoothing filter above the raw frame; Eq. 5 and picking use the CSV
    # particles
    assert v("micrographs", "gaussian", "ref_pearson") > v("micrographs", "raw", "ref_pearson") + 0.1
    assert np.isfinite(v("micrographs", "raw", "ref_frc_0143")) and v("micrographs", "raw", "frc_unit") == "A"
    assert v("micrographs", "raw", "n_regions") == 8 and v("micrographs", "raw", "n_true") == 8
    assert np.isnan(v("micrographs", "raw", "psnr_dB"))  # no clean image
    assert "evaluation_micrographs_frc_reference.png" in {p.name for p in written}
    md = (run_dir.report / "evaluation.md").read_text()
    assert "r vs reference" in md and "higher-dose reference" in md and "contained its micrograph" not in md
    # files given one by one match by name too
    data = run_datasets(
        run_dir,
        micrographs=[frames / "F2_frame.mrc"],
        coords=[coords / "F1_coords.csv", coords / "F2_coords.csv"],
        reference=[refs / "F2.mrc"],
    )
    mic = data["F2_frame"][0]
    assert mic.coords_path.name == "F2_coords.csv" and mic.reference_path.name == "F2.mrc"


def test_coords_and_reference_errors(run_dir, user_data, tmp_path):
    frames, refs, coords = user_data
    mics = [str(frames / "*_frame.mrc")]
    (refs / "F2.mrc").unlink()
    with pytest.raises(InputError, match=r"--reference: no reference image matches micrograph\(s\) F2_frame"):
        run_datasets(run_dir, micrographs=mics, reference=[refs])
    (coords / "F2_coords.csv").rename(coords / "G2_coords.csv")
    with pytest.raises(InputError, match="--coords: no coordinate file matches micrograph.*F2_frame.*G2"):
        run_datasets(run_dir, micrographs=mics, coords=[coords])
    small = tmp_path / "small"
    small.mkdir()
    write_mrc(small / "F1.mrc", np.zeros((64, 64), np.float32) + np.arange(64), pixel_size_A=1.5)
    with pytest.raises(InputError, match="reference image .* has shape \\(64, 64\\).*must match"):
        run_datasets(run_dir, micrographs=[frames / "F1_frame.mrc"], reference=[small])
    far = tmp_path / "far"
    far.mkdir()
    (far / "F1_coords.csv").write_text("x,y\n5000,6000\n")
    with pytest.raises(InputError, match="none of the 1 particles .* lies inside"):
        run_datasets(run_dir, micrographs=[frames / "F1_frame.mrc"], coords=[far])
    with pytest.raises(InputError, match="matches no"):
        run_datasets(run_dir, micrographs=mics, coords=[str(tmp_path / "nothing" / "*.csv")])


def test_coordinate_files_in_the_given_order_still_pair(run_dir, user_data):
    """The older form: one STAR file per micrograph, in the same order, whatever their names."""
    frames, _, coords = user_data
    stars = []
    for k, name in enumerate(("F1", "F2")):
        xy = read_coords(coords / f"{name}_coords.csv")
        stars.append(
            write_star(
                run_dir.path / f"picks_{k}.star", {"rlnCoordinateX": xy[:, 0], "rlnCoordinateY": xy[:, 1]}
            )
        )
    data = run_datasets(run_dir, micrographs=[frames / "F1_frame.mrc", frames / "F2_frame.mrc"], coords=stars)
    assert [m.coords_path.name for m in data["micrographs"]] == ["picks_0.star", "picks_1.star"]


def test_evaluate_without_clean_or_coords():
    noisy, _, _ = _synthetic(5)
    result = evaluate(
        {"plain": [Micrograph("m", noisy)]}, particle_diameter_px=DIAMETER, methods=["raw", "gaussian"]
    )
    assert np.isnan(result.value("plain", "raw", "snr_eq5_dB")) and np.isnan(
        result.value("plain", "raw", "psnr_dB")
    )
    assert result.value("plain", "gaussian", "seconds_per_micrograph") >= 0
    assert "PSNR" not in result.to_markdown() and "reference" not in result.to_markdown()


def test_errors(run_dir):
    _write_sim(run_dir.simulated, "mic_0000", 0)  # training micrographs only: nothing to score by default
    with pytest.raises(StageError, match="no micrographs to evaluate that its models did not train on"):
        evaluate_run(run_dir, particle_diameter_px=DIAMETER)
    with pytest.raises(InputError, match="unknown denoising method"):
        evaluate([Micrograph("m", np.zeros((32, 32)))], particle_diameter_px=8, methods=["nlm"])
    with pytest.raises(InputError, match="no micrographs"):
        evaluate({}, particle_diameter_px=8)


def test_evaluate_command(sim_run, user_data, capsys):
    from nt2c.commands import COMMANDS
    from nt2c.commands import evaluate as command

    assert COMMANDS["evaluate"] == "evaluate"
    parser = argparse.ArgumentParser()
    command.add_args(parser)
    base = [
        "--run",
        str(sim_run.path),
        "--methods",
        "raw",
        "gaussian",
        "--particle-diameter-px",
        str(DIAMETER),
    ]
    args = parser.parse_args([*base, "--no-figures", "--no-picking", "--include-training"])
    assert command.main(args) == 0
    out = capsys.readouterr().out
    assert "Estimated SNR" in out and "evaluation.csv" in out and "training micrographs (in-sample)" in out
    assert not (sim_run.report / "picking_test.png").exists()
    frames, refs, coords = user_data
    args = parser.parse_args(
        [*base, "--no-figures", "--micrographs", str(frames / "F1_frame.mrc"), "--coords", str(coords)]
        + ["--reference", str(refs / "*.mrc")]
    )
    assert command.main(args) == 0
    assert "r vs reference" in capsys.readouterr().out


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

    mic = load_micrograph(sim_run.path / "test" / "mic_0000.mrc")
    regions = eq5_regions(mic.image.shape, mic.coords_xy, box_px=int(DIAMETER))
    images = {"raw": mic.image, "clean": mic.clean}
    picks = pick_particles(mic.clean, particle_diameter_px=DIAMETER)
    score = score_picks(picks.coords_xy, mic.coords_xy, radius_px=DIAMETER / 2)
    title = "test: " + SPLITS["test"]
    figs = [
        plot_comparison(images, regions=regions, title=title),
        plot_regions(images, regions, title=title),
        plot_eq5_regions(mic.image, regions),
        plot_frc({"raw": frc(mic.image, mic.clean, pixel_size_A=2.0)}, title=title, against="the reference"),
        plot_picking(
            {"clean": (mic.clean, picks, score)},
            truth_xy=mic.coords_xy,
            particle_diameter_px=DIAMETER,
            title=title,
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
    assert figs[0]._suptitle.get_text() == title
    assert figs[3].axes[0].get_ylabel() == "FRC with the reference"
    for fig in figs:
        plt.close(fig)


# ---------------------------------------------------------------------------------------------------------
# Evaluation never scores what the run trained on: asserted on files, seeds and pixel positions
# ---------------------------------------------------------------------------------------------------------
def _find_patch(patch: np.ndarray, image: np.ndarray) -> list[tuple[int, int]]:
    """Top-left corners where ``patch`` is an exact crop of ``image``."""
    p = patch.shape[0]
    hits = []
    for r, c in np.argwhere(image == patch[0, 0]):
        if r + p <= image.shape[0] and c + p <= image.shape[1]:
            if np.array_equal(image[r : r + p, c : c + p], patch):
                hits.append((int(r), int(c)))
    return hits


def test_evaluated_micrographs_never_overlap_the_training_data(tmp_path):
    """Simulate a smoke run as `nt2c run` does, then check what evaluate_run scores against what trained.

    The coarse model's training pairs are cut from RUN/simulated: every pair is located (file and pixel
    position) in those micrographs, and in none of the evaluated ones; no evaluated file is a training file,
    and no evaluated simulation reuses a training seed.
    """
    from nt2c.io import read_json, read_mrc
    from nt2c.run.rundir import RunDir
    from nt2c.run.stages import run_stage
    from nt2c.simulation.standins import simulate_experimental

    run = RunDir(tmp_path / "run")
    run.init_params({"specimen_diameter_A": 60.0, "n_particles": 10})  # small and quick to simulate
    # as `nt2c run` does: the simulate stage (training micrographs + test set), then the stand-ins (it lists
    # the held-out ones in RUN/heldout.txt) and RUN/micrographs.txt
    run_stage("simulate", run, profile="smoke", device="cpu", n_micrographs=2, n_test_micrographs=1)
    standins = simulate_experimental(
        run, run.params(), profile="smoke", n_micrographs=1, n_heldout=1, device="cpu"
    )
    write_micrograph_list(run, standins, "micrographs")

    training = sorted(run.simulated.glob("mic_[0-9][0-9][0-9][0-9].mrc"))
    pairs, _ = read_mrc(run.simulated / "pairs_noisy.mrcs")
    assert training and len(pairs)
    train_images = {p.resolve(): read_mrc(p)[0] for p in training}
    train_seeds = {read_json(p.with_suffix(".json"))["seed"] for p in training}

    result, _ = evaluate_run(
        run, methods=["raw"], particle_diameter_px=DIAMETER, figures=False, picking=False
    )
    evaluated = {r["path"].resolve() for r in result.per_micrograph}
    assert result.datasets == ["test", "experimental", "heldout"]
    assert evaluated and not evaluated & set(train_images)
    for path in evaluated:
        meta = path.with_suffix(".json")
        if meta.is_file():
            assert read_json(meta)["seed"] not in train_seeds, path
    eval_images = {p: read_mrc(p)[0] for p in evaluated}
    for k, patch in enumerate(pairs):
        sources = [p for p, img in train_images.items() if _find_patch(patch, img)]
        assert sources, f"pair {k} was not cut from a training micrograph"
        assert not [p for p, img in eval_images.items() if _find_patch(patch, img)], f"pair {k} is scored"
    # asked for, the training micrographs are scored, and labelled in-sample
    result, _ = evaluate_run(
        run,
        methods=["raw"],
        particle_diameter_px=DIAMETER,
        figures=False,
        picking=False,
        include_training=True,
    )
    rows = [r for r in result.per_micrograph if r["dataset"] == "training"]
    assert {r["path"].resolve() for r in rows} == set(train_images)
    assert {r["split"] for r in rows} == {"training micrographs (in-sample)"}


# ---------------------------------------------------------------------------------------------------------
# Real data
# ---------------------------------------------------------------------------------------------------------
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


@pytest.mark.shared_data
def test_real_frame_against_its_average_with_labelled_particles(shared_data, run_dir, caplog):
    """EMPIAR-10146: one single frame (~2 e/A^2) scored against its 50-frame average and its hand labels.

    The average contains the frame: their shared noise alone correlates them by about 1/sqrt(50) at every
    frequency, so against the plain average smoothing the frame *lowers* its correlation. With the frame's
    share removed from the reference, the raw frame correlates by about 0 and smoothing raises it.
    """
    folder = shared_data / "real" / "empiar10146"
    frame = folder / "May08_03.05.02_frame.mrc"
    if not frame.is_file():
        pytest.skip("the EMPIAR-10146 frame/average pairs are absent")
    name = "May08_03.05.02_frame"
    # the micrographs' own folder: the frame is never its own reference; NAME.mrc is
    data = run_datasets(run_dir, micrographs=[frame], coords=[folder], reference=[folder])
    mic = data[name][0]
    assert (
        mic.reference_path.name == "May08_03.05.02.mrc"
        and mic.coords_path.name == "May08_03.05.02_coords.csv"
    )
    assert mic.image.shape == mic.reference.shape == (1200, 1240) and len(mic.coords_xy) > 100
    assert mic.reference_share is None and "reference-contains-micrograph" in caplog.text
    shared = evaluate(data, particle_diameter_px=64, methods=["raw", "gaussian"], picking=False)
    raw, smooth = (shared.value(name, m, "ref_pearson") for m in ("raw", "gaussian"))
    assert 0.1 < smooth < raw < 0.3  # the shared noise favours the raw frame

    data = run_datasets(
        run_dir, micrographs=[frame], coords=[folder], reference=[folder], reference_contains_micrograph=True
    )
    assert 0 < data[name][0].reference_share
    result = evaluate(data, particle_diameter_px=64, methods=["raw", "gaussian"], picking=False)
    raw, smooth = (result.value(name, m, "ref_pearson") for m in ("raw", "gaussian"))
    assert abs(raw) < 0.05 and smooth > raw + 0.02
    assert "contained its micrograph" in result.to_markdown()
    assert result.value(name, "raw", "n_regions") > 50
    assert result.value(name, "raw", "frc_unit") == "A"
