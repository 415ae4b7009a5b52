"""`nt2c run` end to end in the smoke profile: completes, a second call does no work, a killed run resumes."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest

from nt2c.run import micrographs as mics
from nt2c.run.pipeline import PIPELINE_STAGES, read_micrograph_list, resolve_micrographs, run_pipeline


def _stamp_times(run_path):
    return {p.name: p.stat().st_mtime_ns for p in sorted((run_path / "stamps").glob("*.json"))}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One complete smoke-profile run through the command line (the embedded default)."""
    from nt2c.cli import main

    out = tmp_path_factory.mktemp("nt2c_run") / "run"
    assert main(["run", "--out", str(out), "--profile", "smoke", "--device", "cpu"]) == 0
    return out


def test_run_completes_on_the_embedded_default(smoke_run):
    from nt2c.io import read_json, read_mrc
    from nt2c.run.rundir import RunDir

    run = RunDir(smoke_run)
    for stage in PIPELINE_STAGES:  # the default noise source (resampled patches) needs no GAN
        assert run.is_complete(stage) == (stage != "train-gan"), stage
    micrographs = read_micrograph_list(run)
    heldout = mics.read_micrograph_list(run, "heldout")
    assert len(micrographs) >= 1 and len(heldout) >= 1 and not set(micrographs) & set(heldout)
    assert all(str(m).startswith(str(smoke_run / "experimental")) for m in micrographs + heldout)
    for mic in micrographs + heldout:  # held-out micrographs are denoised too, never learnt from
        raw, _ = read_mrc(mic)
        for folder in ("denoised", "report/fine", "report/coarse"):
            out, _ = read_mrc(smoke_run / folder / mic.name)
            assert out.shape == raw.shape and np.isfinite(out).all()
    learnt = {row["micrograph"] for row in csv.DictReader((run.noise / "patches.csv").open())}
    assert learnt <= {m.name for m in micrographs}  # noise learnt only from the run's own micrographs
    report = read_json(smoke_run / "report" / "report.json")
    assert set(report["seconds_per_stage"]) == set(PIPELINE_STAGES)
    assert all((report["seconds_per_stage"][s] is None) == (s == "train-gan") for s in PIPELINE_STAGES)
    row = report["micrographs"][0]
    assert set(row["psnr_db"]) == {"raw", "coarse", "fine (NT2C)"}  # the stand-ins have clean images
    assert (smoke_run / "report" / row["figure"]).is_file()
    delivered = report["delivered"]
    assert delivered["model"] in ("fine", "coarse") and "self-check" in delivered["reason"]
    assert set(report["selfcheck"]) == {m.name for m in micrographs + heldout} | {"mean"}
    text = (smoke_run / "report" / "report.md").read_text()
    assert text.startswith("# NT2C run report")
    # the calibrate stage ran in the pipeline and the report shows what it found, with its figure
    assert report["calibration"]["micrographs"] == len(micrographs)
    assert "## Calibration" in text and "defocus fitted" in text
    assert (smoke_run / "calibration" / "spectra.png").is_file()


def test_second_invocation_does_no_work(smoke_run):
    before = _stamp_times(smoke_run)
    denoised = {p: p.stat().st_mtime_ns for p in (smoke_run / "denoised").glob("*.mrc")}
    report_time = (smoke_run / "report" / "report.json").stat().st_mtime_ns
    result = run_pipeline(out=smoke_run, profile="smoke", device="cpu")
    assert not result.did_work, (result.stages_run, result.newly_denoised, result.report_written)
    assert _stamp_times(smoke_run) == before
    assert {p: p.stat().st_mtime_ns for p in denoised} == denoised
    assert (smoke_run / "report" / "report.json").stat().st_mtime_ns == report_time


def test_run_killed_in_a_training_stage_resumes(smoke_run, tmp_path):
    """Interrupt train-fine after its first checkpoint, then run again: only train-fine runs, from it."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    from nt2c.config import stage_config

    run_path = tmp_path / "run"
    shutil.copytree(smoke_run, run_path)
    (run_path / "micrographs.txt").write_text((smoke_run / "micrographs.txt").read_text())
    for path in [
        run_path / "stamps" / "train-fine.json",
        *run_path.glob("models/fine*"),
        *run_path.glob("checkpoints/*fine*"),
        *run_path.glob("denoised/*"),
    ]:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    kept = _stamp_times(run_path)
    fine = stage_config("train-fine", "smoke")
    steps = []

    def kill_after_first_checkpoint(optimizer, args, kwargs):
        steps.append(1)
        if len(steps) > fine.checkpoint_every:
            raise KeyboardInterrupt

    handle = register_optimizer_step_post_hook(kill_after_first_checkpoint)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_pipeline(out=run_path, profile="smoke", device="cpu")
    finally:
        handle.remove()
    assert not (run_path / "stamps" / "train-fine.json").exists()
    assert any(run_path.glob("checkpoints/*fine*")), "train-fine left no checkpoint to resume from"

    resumed = []
    handle = register_optimizer_step_post_hook(lambda *a: resumed.append(1))
    try:
        result = run_pipeline(out=run_path, profile="smoke", device="cpu")
    finally:
        handle.remove()
    assert result.stages_run == ["train-fine"]
    assert {k: v for k, v in _stamp_times(run_path).items() if k != "train-fine.json"} == kept
    assert 0 < len(resumed) <= fine.steps - fine.checkpoint_every  # continued, not restarted
    assert result.denoised and all(p.is_file() for p in result.denoised)  # RUN/denoised delivered again


def test_set_overrides_one_stage_setting_and_reruns_only_that_stage(smoke_run, tmp_path, capsys):
    from nt2c.cli import main
    from nt2c.run.rundir import RunDir

    run_path = tmp_path / "run"
    shutil.copytree(smoke_run, run_path)
    kept = {k: v for k, v in _stamp_times(run_path).items() if k != "train-fine.json"}
    argv = [
        "run",
        "--out",
        str(run_path),
        "--profile",
        "smoke",
        "--device",
        "cpu",
        "--set",
        "train-fine.steps=3",
    ]
    assert main(argv) == 0
    assert RunDir(run_path).read_stamp("train-fine")["settings"]["steps"] == 3
    assert {k: v for k, v in _stamp_times(run_path).items() if k != "train-fine.json"} == kept
    assert "[7/7] train-fine: done" in capsys.readouterr().err
    for bad, match in (
        ("train-fine.stepz=3", "stepz"),
        ("fine.steps=3", "unknown stage"),
        ("steps", "STAGE.KEY"),
    ):
        assert main(["run", "--out", str(run_path), "--profile", "smoke", "--set", bad]) == 2
        assert match in capsys.readouterr().err


def test_resolve_micrographs_errors(tmp_path):
    from nt2c.errors import InputError

    with pytest.raises(InputError, match="match(es)? no file"):
        resolve_micrographs(str(tmp_path / "*.mrc"))
    with pytest.raises(InputError, match="does not exist"):
        resolve_micrographs([tmp_path / "missing.mrc"])
    (tmp_path / "b.mrc").write_bytes(b"")
    (tmp_path / "a.mrc").write_bytes(b"")
    assert [p.name for p in resolve_micrographs(str(tmp_path / "*.mrc"))] == ["a.mrc", "b.mrc"]


def test_gain_map_has_the_requested_pixel_and_banding_statistics():
    from nt2c.simulation.standins import Departures, gain_map

    dep = Departures(gain_pixel_std=0.05, gain_column_std=0.02, gain_row_std=0.0)
    g = gain_map((512, 512), dep, seed=3).astype(np.float64)
    assert g.mean() == pytest.approx(1.0, abs=0.01)
    columns = g.mean(axis=0)  # per-pixel errors average out along a column, the banding stays
    assert columns.std() == pytest.approx(0.02, rel=0.2)
    assert g.mean(axis=1).std() < 0.005  # no row banding asked for
    assert (g - columns[None, :]).std() == pytest.approx(0.05, rel=0.05)
    np.testing.assert_array_equal(
        g, gain_map((512, 512), dep, seed=3)
    )  # the same detector for every micrograph
    from nt2c.errors import ConfigError

    with pytest.raises(ConfigError, match="gain_pixel_std"):
        Departures(gain_pixel_std=0.5)


def test_standins_have_more_noise_than_the_coarse_training_simulation(smoke_run):
    """The stand-ins' noise (noisy - clean) exceeds the nominal one; a second call simulates nothing."""
    from nt2c.io import read_image, read_star
    from nt2c.run.rundir import RunDir
    from nt2c.simulation.standins import experimental_entries, simulate_experimental

    run = RunDir(smoke_run)
    entry = experimental_entries(run)[0]
    noisy, _ = read_image(entry["micrograph"])
    clean, _ = read_image(entry["clean"])
    gain, _ = read_image(smoke_run / "experimental" / "gain_map.mrc")
    assert "rlnCoordinateX" in read_star(entry["coords"])
    sim_noisy, _ = read_image(smoke_run / "simulated" / "mic_0000.mrc")
    sim_clean, _ = read_image(smoke_run / "simulated" / "mic_0000_clean.mrc")
    excess = (noisy - clean).std() / (sim_noisy - sim_clean).std()
    assert excess > 1.05  # thicker ice + gain pattern
    # the gain pattern is multiplicative: dividing it out leaves noise uncorrelated with it
    assert abs(np.corrcoef((noisy / gain - clean).ravel(), gain.ravel())[0, 1]) < 0.1
    before = (smoke_run / "experimental" / "manifest.json").stat().st_mtime_ns
    paths = simulate_experimental(run, run.params(), profile="smoke", device="cpu")
    learn = [e["micrograph"] for e in experimental_entries(run) if e.get("split", "learn") == "learn"]
    assert [str(p) for p in paths] == learn  # the held-out ones are listed in RUN/heldout.txt
    assert (smoke_run / "experimental" / "manifest.json").stat().st_mtime_ns == before


def test_fine_variant_trains_the_ablation_in_a_sub_run(smoke_run):
    from nt2c.errors import ConfigError
    from nt2c.io import read_json
    from nt2c.run.pipeline import fine_variant

    own = read_json(smoke_run / "pairs" / "summary.json")
    assert own["noise_source"] == "patches" and own["method"] == "matched"  # the defaults
    assert (
        fine_variant(smoke_run, "matched", profile="smoke", device="cpu")
        == smoke_run / "models" / "fine.safetensors"
    )
    path = fine_variant(smoke_run, "matched", noise_source="gan", profile="smoke", device="cpu")
    assert path == smoke_run / "ablation" / "matched-gan" / "models" / "fine.safetensors" and path.is_file()
    sub = read_json(smoke_run / "ablation" / "matched-gan" / "pairs" / "summary.json")
    assert sub["noise_source"] == "gan" and sub["method"] == "matched"
    assert sub["n_pairs"] == own["n_pairs"] and sub["patch_px"] == own["patch_px"]  # only the source differs
    from nt2c.run.rundir import RunDir

    parent, ablation = RunDir(smoke_run), RunDir(smoke_run / "ablation" / "matched-gan")
    for stage in ("simulate", "train-coarse", "extract-noise", "train-gan"):  # shared, not redone
        assert ablation.read_stamp(stage) == parent.read_stamp(stage), stage
    with pytest.raises(ConfigError, match="noise_source"):
        fine_variant(smoke_run, "matched", noise_source="white", profile="smoke")


# -- provenance with the real stages (see also tests/test_provenance.py) -----------------------------------
def test_set_extraction_setting_reruns_gan_pairs_fine_model_and_denoising(smoke_run, tmp_path):
    """`nt2c run ... --set extract-noise.X=...`: new patches -> new GAN, pairs, fine model and outputs."""
    from nt2c.run.batch import output_record
    from nt2c.run.rundir import RunDir, file_sha256

    run_path = tmp_path / "run"
    shutil.copytree(smoke_run, run_path)
    run = RunDir(run_path)
    fine_before = file_sha256(run.models / "fine.safetensors")
    n_before = len((run.noise / "patches.csv").read_text().splitlines())
    result = run_pipeline(
        out=run_path,
        device="cpu",
        stage_overrides={"extract-noise": {"max_overlap": 0.0}},
        echo=lambda x: None,
    )
    assert len((run.noise / "patches.csv").read_text().splitlines()) < n_before
    assert result.stages_run == ["extract-noise", "calibrate", "reweight", "train-fine"]  # no GAN: patches
    fine_after = file_sha256(run.models / "fine.safetensors")
    assert fine_after != fine_before
    fine_outputs = [p for p in result.newly_denoised if "fine" in p.parts]
    assert len(fine_outputs) == len(result.micrographs) + len(result.heldout)  # every fine output redone
    assert not [p for p in result.newly_denoised if "coarse" in p.parts]  # the coarse model did not change
    for out in fine_outputs:
        assert output_record(out)["model_sha256"] == fine_after
    delivered = run.models / f"{result.delivered}.safetensors"
    for out in result.denoised:  # RUN/denoised: the self-check's choice, with its record
        assert output_record(out)["model_sha256"] == file_sha256(delivered)
    assert run.read_info()["settings"]["extract-noise"]["max_overlap"] == 0.0  # kept for later calls
    assert not run_pipeline(out=run_path, device="cpu", echo=lambda x: None).did_work


def test_bad_micrograph_is_skipped_and_the_repaired_one_taken_in(smoke_run, tmp_path, capsys, monkeypatch):
    from nt2c.cli import main
    from nt2c.errors import InputError
    from nt2c.io import read_json
    from nt2c.run import stages
    from nt2c.run.micrographs import read_micrograph_list
    from nt2c.run.rundir import RunDir

    run_path = tmp_path / "run"
    shutil.copytree(smoke_run, run_path)
    run = RunDir(run_path)
    good = read_micrograph_list(run)
    broken = tmp_path / "broken.mrc"
    broken.write_text("not a micrograph")
    argv = ["run", "--out", str(run_path), "--device", "cpu", "--micrographs", *map(str, good), str(broken)]
    assert main(argv) == 2  # bad input, but the good micrographs are done and the run is not locked
    err = capsys.readouterr().err
    assert sum("broken.mrc" in line for line in err.splitlines() if line.startswith("skipping")) == 1
    assert "Traceback" not in err and "[7/7] train-fine: complete, skipped" in err
    assert read_micrograph_list(run) == good
    assert "# skipped: " in (run_path / "micrographs.txt").read_text()
    assert str(broken.resolve()) in read_json(run_path / "run.json")["skipped_micrographs"]
    report = read_json(run_path / "report" / "report.json")
    learnt = [r for r in report["micrographs"] if r["split"] == "learnt from"]
    assert str(broken.resolve()) in report["skipped_micrographs"] and len(learnt) == len(good)
    assert "unreadable, left out of the run" in (run_path / "report" / "report.md").read_text()
    # the user repairs the file and runs the same command: it joins the run, the noise must be learnt again
    shutil.copyfile(good[0], broken)
    monkeypatch.setattr(stages, "run_stage", lambda *a, **k: [])  # only the bookkeeping, no training here
    main(argv)
    assert read_micrograph_list(run) == sorted([*good, broken.resolve()])
    status = stages.stage_status(run)
    assert status["train-coarse"] and not status["extract-noise"] and not status["train-fine"]
    # none readable: a clear error
    broken.write_text("broken again")
    with pytest.raises(InputError, match="none of the 1 micrographs"):
        run_pipeline(out=run_path, micrographs=[broken], device="cpu", echo=lambda x: None)


def test_no_noise_patch_at_all_delivers_the_coarse_output_and_says_so(smoke_run, tmp_path, capsys):
    """When nothing passes the background test even after the fallbacks, the run still denoises (coarse)."""
    from nt2c.cli import main
    from nt2c.io import read_json
    from nt2c.run.batch import output_record
    from nt2c.run.rundir import file_sha256

    run_path = tmp_path / "run"
    shutil.copytree(smoke_run, run_path)
    never = ["--set", "extract-noise.threshold=1.0", "--set", "extract-noise.threshold_floor=1.0"]
    argv = ["run", "--out", str(run_path), "--device", "cpu", "--set", "extract-noise.criterion=ssim", *never]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "no noise patch could be found" in err and "COARSE" in err
    report = read_json(run_path / "report" / "report.json")
    assert report["delivered"]["model"] == "coarse" and report["delivered"]["no_noise"]
    coarse_sha = file_sha256(run_path / "models" / "coarse.safetensors")
    denoised = sorted((run_path / "denoised").glob("*.mrc"))
    assert denoised and all(output_record(p)["model_sha256"] == coarse_sha for p in denoised)
    assert "No noise could be learnt" in (run_path / "report" / "report.md").read_text()


def test_use_model_decides_what_run_delivers(smoke_run, tmp_path):
    from nt2c.cli import main
    from nt2c.io import read_json

    run_path = tmp_path / "run"
    shutil.copytree(smoke_run, run_path)
    for choice in ("coarse", "fine"):
        assert main(["run", "--out", str(run_path), "--device", "cpu", "--use-model", choice]) == 0
        delivered = read_json(run_path / "report" / "report.json")["delivered"]
        assert delivered["model"] == choice and f"denoise.model = {choice}" in delivered["reason"]


def test_self_check_scores_both_models_and_delivers_fine_only_when_both_tests_agree(smoke_run):
    from nt2c.io import read_json
    from nt2c.run.delivery import _better

    checks = read_json(smoke_run / "report" / "selfcheck.json")
    assert checks, "the self-check scored no micrograph"
    for entry in checks.values():
        assert (
            set(entry["fine"]) == {"score", "score_se", "correlation", "residual_dB"} == set(entry["coarse"])
        )
        assert entry["better"] == _better(entry["fine"], entry["coarse"])
    fine = {"score": 2.0, "score_se": 0.1, "residual_dB": 0.1}
    assert _better(fine, {"score": 1.0, "score_se": 0.1, "residual_dB": 0.2}) == "fine"
    assert _better(fine, {"score": 3.0, "score_se": 0.1, "residual_dB": 0.2}) == "coarse"  # Stein: much worse
    assert _better(fine, {"score": 2.2, "score_se": 0.1, "residual_dB": 0.2}) == "fine"  # within its error
    assert _better(fine, {"score": 1.0, "score_se": 0.1, "residual_dB": 0.05}) == "coarse"  # residual test
    report = (smoke_run / "report" / "report.md").read_text()
    assert "Stein" in report and "| better |" in report


def test_calibrated_variant_measures_the_data_and_says_which_fit_it_used(smoke_run):
    from nt2c.io import read_json
    from nt2c.run.variants import fine_variant

    path = fine_variant(smoke_run, "calibrated", profile="smoke", device="cpu")
    sub = path.parent.parent
    assert sub == smoke_run / "ablation" / "calibrated-patches" and path.is_file()
    record = read_json(sub / "calibration" / "signal_noise.json")
    assert (
        record["tile_px"] == 64 and record["noise_variance"] > 0 and record["simulated_signal_variance"] > 0
    )
    summary = read_json(sub / "pairs" / "summary.json")
    assert summary["method_requested"] == "calibrated"
    if record["noise_to_signal"] is None:  # the smoke stand-ins' signal may not stand out: matched, and why
        assert summary["method"] == "matched" and record["why"]
    else:
        assert summary["method"] == "calibrated" and record["noise_scale"] > 0


def test_calibrate_command_writes_the_table_and_the_figure(smoke_run, capsys):
    from nt2c.cli import main
    from nt2c.io import read_json
    from nt2c.run.rundir import RunDir

    assert main(["calibrate", "--run", str(smoke_run), "--box", "128"]) == 0
    out = capsys.readouterr().out
    assert "defocus fitted" in out and "units:" in out
    folder = smoke_run / "calibration"
    summary = read_json(folder / "calibration.json")
    assert summary["micrographs"] == len(read_micrograph_list(RunDir(smoke_run)))
    assert summary["noise_variance"] > 0 and summary["tile_px"] == 64
    with open(folder / "calibration.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == summary["micrographs"] and {"defocus_u_A", "fit_score", "noise_to_signal"} <= set(
        rows[0]
    )
    assert (folder / "spectra.png").stat().st_size > 0


def test_calibrate_reuses_the_defocus_fits_made_before_the_simulation(smoke_run, tmp_path, monkeypatch):
    """A calibrated-defocus run fits each micrograph once; a changed micrograph is fitted again."""
    import os

    import nt2c.calibration.measure as measure
    from nt2c.cli import main
    from nt2c.run.micrographs import read_micrograph_list
    from nt2c.run.rundir import RunDir

    run_path = tmp_path / "fits"
    shutil.copytree(smoke_run, run_path)
    shutil.rmtree(run_path / "calibration")
    listed = (run_path / "micrographs.txt").read_text()  # the copy's own micrographs: this test touches one
    (run_path / "micrographs.txt").write_text(listed.replace(str(smoke_run), str(run_path)))
    calls = []
    real_fit = measure.fit_ctf
    monkeypatch.setattr(measure, "fit_ctf", lambda image, **kw: calls.append(1) or real_fit(image, **kw))
    measure.fit_run_defoci(RunDir(run_path), box_px=128)  # what simulate's prepare step does
    micrographs = read_micrograph_list(run_path)
    assert all(run_path in m.parents for m in micrographs)
    assert len(calls) == len(micrographs)
    table = (run_path / "calibration" / "defocus.csv").read_bytes()
    calls.clear()
    assert main(["calibrate", "--run", str(run_path), "--box", "128"]) == 0
    assert calls == [] and (run_path / "calibration" / "defocus.csv").read_bytes() == table
    # another box is another fit; a micrograph written again is fitted again, the others are not
    os.utime(
        micrographs[0], ns=(os.stat(micrographs[0]).st_atime_ns, os.stat(micrographs[0]).st_mtime_ns + 1)
    )
    assert main(["calibrate", "--run", str(run_path), "--box", "128", "--force"]) == 0
    assert len(calls) == 1
    # an unreadable cache is ignored: everything is fitted again, the table is the same
    calls.clear()
    (run_path / "calibration" / measure.FIT_CACHE).write_text("{not json")
    assert main(["calibrate", "--run", str(run_path), "--box", "128", "--force"]) == 0
    assert len(calls) == len(micrographs)
    assert (run_path / "calibration" / "defocus.csv").read_bytes() == table


def test_units_are_described():
    from nt2c.calibration.measure import describe_units

    assert describe_units(np.arange(256, dtype=np.uint8).reshape(16, 16)).startswith("8-bit")
    assert describe_units(np.linspace(0, 65535, 4096).round().reshape(64, 64)).startswith("16-bit")
    assert describe_units(np.random.default_rng(0).poisson(3, (64, 64))).startswith("non-negative integers")
    assert describe_units(np.random.default_rng(0).normal(size=(64, 64))).startswith("floating-point")


def test_simulation_can_take_the_calibrated_defoci(smoke_run, tmp_path):
    """`simulate.defocus_source=calibration` simulates at the fitted defoci, fitting them first if needed."""
    from nt2c.cli import main
    from nt2c.io import read_json
    from nt2c.simulation.stage import read_calibrated_defoci

    run_path = tmp_path / "cal"
    shutil.copytree(smoke_run, run_path)
    assert main(["calibrate", "--run", str(run_path), "--box", "128"]) == 0
    table = run_path / "calibration" / "defocus.csv"
    fitted = read_calibrated_defoci(table)
    from nt2c.run.stages import run_stage

    run_stage("simulate", run_path, profile="smoke", device="cpu", defocus_source="calibration")
    meta = read_json(run_path / "simulated" / "mic_0000.json")
    assert meta["defocus_um"] == pytest.approx(fitted[0][0], rel=1e-6)
    assert read_json(run_path / "test" / "mic_0000.json")["defocus_um"] != pytest.approx(fitted[0][0])
    stamp = read_json(run_path / "stamps" / "simulate.json")
    assert str(table) in stamp["inputs"]["files"]
    # no table yet (a new run): simulate fits the defoci first (at the default 512 px box, capped by the size)
    before = table.read_bytes()
    table.unlink()
    run_stage("simulate", run_path, profile="smoke", device="cpu", defocus_source="calibration", force=True)
    assert table.is_file() and read_calibrated_defoci(table)
    # refitting gives the same bytes: the simulation is then up to date (no endless re-simulation)
    assert main(["calibrate", "--run", str(run_path), "--box", "128", "--force"]) == 0
    assert table.read_bytes() == before
    from nt2c.run.stages import stage_status

    assert stage_status(run_path)["simulate"]  # the same defoci: nothing to simulate again
    # without the user's micrographs there is nothing to fit
    table.unlink()
    (run_path / "micrographs.txt").unlink()
    with pytest.raises(Exception, match="micrographs"):
        run_stage(
            "simulate", run_path, profile="smoke", device="cpu", defocus_source="calibration", force=True
        )
