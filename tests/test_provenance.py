"""Provenance of a run: stamps record their inputs, changed inputs re-run everything downstream.

The run keeps its profile and explicit settings; one registry of stages; micrograph lists relative to the run;
parameter files that are empty or incomplete. (The real smoke pipeline: tests/test_workflow.py.)
"""

from __future__ import annotations

import numpy as np
import pytest

from nt2c.errors import ConfigError, StageError
from nt2c.run import stages
from nt2c.run.rundir import RunDir, file_sha256


# -- the registry --------------------------------------------------------------------------------------------
def test_one_registry_of_stages():
    from nt2c.commands import COMMANDS
    from nt2c.config import STAGE_MODELS
    from nt2c.run.pipeline import PIPELINE_STAGES

    assert PIPELINE_STAGES == tuple(stages.STAGES)
    assert list(STAGE_MODELS) == [*stages.STAGES, "denoise"]
    for name, stage in stages.STAGES.items():
        assert STAGE_MODELS[name] is stage.config
        assert COMMANDS[name] == stage.command
        assert callable(stage.load())


def test_reweight_needs_the_gan_only_for_gan_noise():
    from nt2c.config import stage_config

    reweight = stages.STAGES["reweight"]
    assert "train-gan" not in reweight.needs(stage_config("reweight", "smoke"))  # default: patches
    assert "train-gan" in reweight.needs(stage_config("reweight", "smoke", noise_source="gan"))
    assert "train-gan" in reweight.needs({"noise_source": "gan"})  # a stamp's settings


# -- stages replaced by fakes: fast checks of the bookkeeping -----------------------------------------------
@pytest.fixture()
def fake_stages(run_dir, monkeypatch):
    """Every stage writes ``RUN/report/<stage>.txt`` from its settings and the files it reads."""
    calls = []
    content = {}

    def fake(name):
        def stage(run, settings, params):
            calls.append(name)
            text = content.get(name, f"{name} seed {settings.seed}")
            for req in stages.STAGES[name].needs(settings):
                text += "|" + (run.report / f"{req}.txt").read_text()
            path = run.report / f"{name}.txt"
            path.write_text(text)
            return [path]

        return stage

    monkeypatch.setattr(stages.Stage, "load", lambda self: fake(self.name))
    return run_dir, calls, content


def test_changed_upstream_reruns_everything_downstream(fake_stages):
    run, calls, content = fake_stages
    stages.run_stage("train-fine", run, profile="smoke")
    assert calls == ["simulate", "train-coarse", "extract-noise", "reweight", "train-fine"]
    calls.clear()
    stages.run_stage("train-fine", run, profile="smoke")
    assert calls == []
    # extract-noise re-runs with a new setting and writes other patches: reweight and train-fine are stale
    stages.run_stage("extract-noise", run, profile="smoke", threshold=0.5)
    assert calls == ["extract-noise"]
    assert stages.stage_status(run) == {
        "simulate": True,
        "train-coarse": True,
        "extract-noise": True,
        "calibrate": False,
        "train-gan": False,
        "reweight": False,
        "train-fine": False,
    }
    calls.clear()
    stages.run_stage("train-fine", run, profile="smoke")
    assert calls == ["reweight", "train-fine"]
    # a stage re-run that writes the same bytes (a deterministic resume) leaves the stages after it complete
    calls.clear()
    stages.run_stage("train-coarse", run, profile="smoke", force=True)
    stages.run_stage("train-fine", run, profile="smoke")
    assert calls == ["train-coarse"]
    # the stamp records what it consumed
    stamp = run.read_stamp("train-fine")
    assert stamp["inputs"]["stage:reweight"] == run.stamp_digest("reweight")
    assert stamp["sha256"]["report/train-fine.txt"] == file_sha256(run.report / "train-fine.txt")


def test_gan_noise_makes_reweight_depend_on_train_gan(fake_stages):
    run, calls, _ = fake_stages
    stages.run_stage("reweight", run, profile="smoke")
    assert "train-gan" not in calls
    calls.clear()
    stages.run_stage("reweight", run, profile="smoke", noise_source="gan")
    assert calls == ["train-gan", "reweight"]
    assert "stage:train-gan" in run.read_stamp("reweight")["inputs"]


def test_explicit_settings_are_kept_for_later_calls(fake_stages):
    run, calls, _ = fake_stages
    stages.run_stage("train-coarse", run, profile="smoke", steps=6)
    assert run.read_stamp("train-coarse")["settings"]["steps"] == 6
    calls.clear()
    stages.run_stage("train-coarse", run)  # no settings: the run's profile and the recorded steps
    stages.run_stage("train-fine", run)
    assert "train-coarse" not in calls
    assert run.read_stamp("train-coarse")["settings"]["steps"] == 6
    assert run.read_info()["settings"]["train-coarse"] == {"steps": 6}


def test_another_profile_is_refused_unless_asked_for(fake_stages):
    run, calls, _ = fake_stages
    stages.run_stage("simulate", run, profile="smoke")
    assert run.read_info()["profile"] == "smoke"
    with pytest.raises(ConfigError, match="--change-profile"):
        stages.run_stage("simulate", run, profile="quick")
    stages.run_stage("simulate", run, profile="quick", change_profile=True)
    assert run.profile() == "quick" and calls == ["simulate", "simulate"]


def test_a_changed_micrograph_reruns_extract_noise(fake_stages, tmp_path):
    from nt2c.io import write_mrc
    from nt2c.run.micrographs import write_micrograph_list

    run, calls, _ = fake_stages
    mic = write_mrc(tmp_path / "m.mrc", np.zeros((64, 64), np.float32))
    write_micrograph_list(run, [mic])
    stages.run_stage("extract-noise", run, profile="smoke")
    calls.clear()
    stages.run_stage("extract-noise", run, profile="smoke")
    assert calls == []
    write_mrc(mic, np.ones((64, 80), np.float32), overwrite=True)  # the user replaced the file
    stages.run_stage("extract-noise", run, profile="smoke")
    assert calls == ["extract-noise"]


def test_a_copied_micrograph_is_the_same_input_a_same_size_edit_is_not(fake_stages, tmp_path):
    """Restored from a backup or a data folder provisioned again: new time, same content, nothing re-runs."""
    import os

    from nt2c.io import write_mrc
    from nt2c.run.micrographs import write_micrograph_list

    run, calls, _ = fake_stages
    mic = write_mrc(tmp_path / "m.mrc", np.zeros((64, 64), np.float32))
    write_micrograph_list(run, [mic])
    stages.run_stage("extract-noise", run, profile="smoke")
    calls.clear()
    st = mic.stat()
    os.utime(mic, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: same bytes
    stages.run_stage("extract-noise", run, profile="smoke")
    assert calls == []
    write_mrc(mic, np.full((64, 64), 2.0, np.float32), overwrite=True)  # same size, other pixels
    stages.run_stage("extract-noise", run, profile="smoke")
    assert calls == ["extract-noise"]


def test_restarting_a_stage_removes_its_partial_files(fake_stages):
    run, _, _ = fake_stages
    stray = run.models / ".coarse.safetensors.abcd1234.part"
    stray.write_bytes(b"cut short")
    mine = run.models / "notes.txt"
    mine.write_text("kept")
    stages.run_stage("train-coarse", run, profile="smoke")
    assert not stray.exists() and mine.read_text() == "kept"


def test_requirement_without_requirements_is_an_error(fake_stages):
    run, _, _ = fake_stages
    with pytest.raises(StageError, match="needs stage simulate first: run `nt2c simulate --run"):
        stages.run_stage("reweight", run, profile="smoke", with_requirements=False)


# -- micrograph lists and parameters -----------------------------------------------------------------------
def test_micrograph_list_is_relative_to_the_run(tmp_path, monkeypatch):
    from nt2c.run.pipeline import read_micrograph_list

    run = RunDir(tmp_path / "runs" / "r")
    (tmp_path / "runs" / "data").mkdir()
    (tmp_path / "runs" / "data" / "a.mrc").write_bytes(b"")
    (run.path / "micrographs.txt").write_text("# comment\n../data/a.mrc\n")
    monkeypatch.chdir(tmp_path)
    assert read_micrograph_list(run) == [(tmp_path / "runs" / "data" / "a.mrc").resolve()]


def test_empty_params_file_is_refused(tmp_path, capsys):
    from nt2c.cli import main
    from nt2c.config import load_params

    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        load_params(empty)
    assert main(["run", "--params", str(empty), "--out", str(tmp_path / "run"), "--profile", "smoke"]) == 2
    err = capsys.readouterr().err
    assert "is empty" in err and "Traceback" not in err


def test_missing_params_keys_are_named_with_their_defaults(tmp_path, caplog):
    from nt2c.config import defaulted_params, load_params

    path = tmp_path / "p.yaml"
    path.write_text("voltage_kV: 200\ncs_mm: 2.7\n")
    with caplog.at_level("WARNING"):
        params = load_params(path)
    assert "pixel_size_A=1.0" in caplog.text and "voltage_kV" not in caplog.text.split("using")[0]
    filled = defaulted_params(params)
    assert filled["pixel_size_A"] == 1.0 and "voltage_kV" not in filled and "cs_mm" not in filled


def test_train_coarse_command_settings_survive_nt2c_run_stages(fake_stages, capsys):
    """`nt2c train-coarse --run R --steps 6`, then the pipeline's stages: the 6 steps are kept."""
    from nt2c.cli import main

    run, calls, _ = fake_stages
    for name in stages.PIPELINE_STAGES:
        stages.run_stage(name, run, profile="smoke", seed=0, device="cpu")
    calls.clear()
    assert main(["train-coarse", "--run", str(run.path), "--steps", "6"]) == 0  # the run's profile: smoke
    assert calls == ["train-coarse"]
    calls.clear()
    for name in stages.PIPELINE_STAGES:  # what `nt2c run --out R` does
        stages.run_stage(name, run, profile="smoke", seed=0, device="cpu")
    assert calls == ["extract-noise", "calibrate", "train-gan", "reweight", "train-fine"]  # new coarse model
    assert run.read_stamp("train-coarse")["settings"]["steps"] == 6
    capsys.readouterr()
    assert main(["run", "--out", str(run.path), "--profile", "quick"]) == 2
    assert "--change-profile" in capsys.readouterr().err
    assert main(["train-fine", "--run", str(run.path), "--profile", "quick"]) == 2


def test_a_list_edited_by_the_user_is_what_the_next_run_uses(run_dir, tmp_path):
    from nt2c.io import write_mrc
    from nt2c.run.micrographs import read_micrograph_list
    from nt2c.run.pipeline import _set_micrographs

    a = write_mrc(tmp_path / "a.mrc", np.ones((64, 64), np.float32))
    b = write_mrc(tmp_path / "b.mrc", np.ones((64, 64), np.float32))
    kw = dict(profile="smoke", seed=0, device="cpu", echo=lambda line: None)
    assert _set_micrographs(run_dir, run_dir.params(), [str(a), str(b)], **kw) == ([a, b], {})
    (run_dir.path / "micrographs.txt").write_text(f"{b}\n")
    assert _set_micrographs(run_dir, run_dir.params(), None, **kw) == ([b], {})
    assert _set_micrographs(run_dir, run_dir.params(), None, **kw) == ([b], {})
    assert read_micrograph_list(run_dir) == [b]


def test_a_run_made_before_run_json_keeps_the_profile_its_stamps_show(fake_stages):
    run, calls, _ = fake_stages
    stages.run_stage("train-coarse", run, profile="full")
    run.info_path.unlink()  # as an nt2c without run.json left it
    with pytest.raises(ConfigError, match="made with profile 'full'"):
        stages.run_stage("train-coarse", run, profile="quick")
    assert run.bind_profile() == "full"
