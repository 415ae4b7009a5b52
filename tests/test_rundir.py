"""Run directory and pipeline bookkeeping: params, stamps, skip-when-complete."""

import pytest

from nt2c.errors import ConfigError, StageError
from nt2c.run import stages as pipeline
from nt2c.run.rundir import RunDir


def test_init_params_writes_once_and_refuses_changes(tmp_path):
    run = RunDir(tmp_path / "r")
    params = run.init_params({"n_particles": 5})
    assert run.params_path.is_file() and params.n_particles == 5
    assert run.init_params() == params  # existing params are reused
    with pytest.raises(ConfigError, match="n_particles"):
        run.init_params({"n_particles": 6})
    assert run.params().n_particles == 5  # nothing was overwritten


def test_missing_params_is_a_clear_error(tmp_path):
    with pytest.raises(StageError, match="params.yaml is missing"):
        RunDir(tmp_path / "empty").params()


def test_run_dir_must_be_a_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        RunDir(tmp_path / "file")


def test_stamp_and_completeness(run_dir):
    out = run_dir.report / "a.txt"
    out.write_text("hello")
    run_dir.write_stamp("demo", [out], {"steps": 3, "device": "cpu"})
    stamp = run_dir.read_stamp("demo")
    assert stamp["outputs"] == {"report/a.txt": 5}
    assert stamp["nt2c_version"] and stamp["params"]["specimen"] == "builtin"
    assert run_dir.is_complete("demo", {"steps": 3, "device": "cuda"})  # device does not change results
    assert not run_dir.is_complete("demo", {"steps": 4, "device": "cpu"})
    out.write_text("truncated")
    assert not run_dir.is_complete("demo")
    run_dir.invalidate("demo")
    assert run_dir.read_stamp("demo") is None


def test_run_stage_skips_complete_and_runs_requirements(run_dir, monkeypatch):
    calls = []

    def fake(name):
        def stage(run, settings, params):
            calls.append(name)
            path = run.report / f"{name}.txt"
            path.write_text(f"{name} seed {settings.seed}")
            return [path]

        return stage

    for name in ("simulate", "train-coarse"):
        monkeypatch.setattr(pipeline.Stage, "load", lambda self: fake(self.name))
    outputs = pipeline.run_stage("train-coarse", run_dir, profile="smoke")
    assert calls == ["simulate", "train-coarse"]
    assert [p.name for p in outputs] == ["train-coarse.txt"]
    pipeline.run_stage("train-coarse", run_dir, profile="smoke")
    assert calls == ["simulate", "train-coarse"]  # nothing re-ran
    pipeline.run_stage("train-coarse", run_dir, profile="smoke", seed=1)
    assert calls == ["simulate", "train-coarse", "train-coarse"]  # new settings, new run
    status = pipeline.stage_status(run_dir, "smoke")
    assert status["simulate"] and not status["train-gan"]


def test_relative_run_directory_stamps_resolve(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = RunDir("runs/rel")
    run.init_params()
    out = run.report / "a.txt"  # a relative path, as the stages see it
    out.write_text("x")
    run.write_stamp("demo", [out], {"steps": 1})
    assert run.read_stamp("demo")["outputs"] == {"report/a.txt": 1}
    assert run.is_complete("demo", {"steps": 1})
    monkeypatch.chdir(tmp_path / "runs")  # still complete seen from elsewhere
    assert RunDir(tmp_path / "runs" / "rel").is_complete("demo", {"steps": 1})


def test_run_stage_without_requirements_says_what_to_run(run_dir):
    with pytest.raises(StageError, match="nt2c simulate --run"):
        pipeline.run_stage("train-coarse", run_dir, profile="smoke", with_requirements=False)


def test_unknown_stage(run_dir):
    with pytest.raises(StageError, match="unknown stage"):
        pipeline.run_stage("denoise-all", run_dir)


def test_registered_stages_resolve_to_functions():
    for stage in pipeline.STAGES.values():
        assert callable(stage.load()), stage.name
        assert all(req in pipeline.STAGES for req in stage.requires)
