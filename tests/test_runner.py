"""The papermill notebook runner on a tiny series: parameters injected, failures reported, resumable."""

import json

import nbformat
import pytest
import yaml

from nt2c.cli import main
from nt2c.errors import ConfigError
from nt2c.tutorial.runner import list_notebooks, run_notebooks


def _notebook(path, body):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(
        'profile = "quick"\nrun_dir = "x"\nseed = 0', metadata={"tags": ["parameters"]}
    )
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture()
def series(tmp_path):
    folder = tmp_path / "books"
    folder.mkdir()
    _notebook(
        folder / "01_ok.ipynb",
        "import pathlib\npathlib.Path(run_dir).mkdir(parents=True, exist_ok=True)\n"
        "(pathlib.Path(run_dir) / 'seen.txt').write_text(profile)",
    )
    _notebook(folder / "02_fails.ipynb", "raise ValueError('broken on purpose')")
    _notebook(folder / "03_after.ipynb", "print('still runs')")
    (folder / "notes.ipynb").write_text("{}")  # not part of the numbered series
    return folder


def test_series_order_and_only(series):
    assert [b.name for b in list_notebooks(series)] == ["01_ok.ipynb", "02_fails.ipynb", "03_after.ipynb"]
    assert [b.name for b in list_notebooks(series, ["03"])] == ["03_after.ipynb"]
    with pytest.raises(ConfigError, match="matches no notebook"):
        list_notebooks(series, ["09"])


def test_runner_reports_failures_and_continues(series, tmp_path):
    out = tmp_path / "out"
    results = run_notebooks(profile="smoke", out=out, notebooks_dir=series, log=lambda *_: None)
    assert [r.status for r in results] == ["passed", "failed", "passed"]
    assert "broken on purpose" in results[1].error
    assert (out / "run" / "seen.txt").read_text() == "smoke"  # the profile was injected
    executed = nbformat.read(out / "executed" / "01_ok.ipynb", as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)
    summary = json.loads((out / "summary.json").read_text())
    assert {r["notebook"]: r["status"] for r in summary["results"]}["02_fails.ipynb"] == "failed"
    assert "1 failed" in (out / "summary.md").read_text()
    again = run_notebooks(profile="smoke", out=out, notebooks_dir=series, log=lambda *_: None)
    assert [r.status for r in again] == ["skipped", "failed", "skipped"]  # passed ones are not redone


def test_runner_per_parameter_file_and_cli_exit_code(series, tmp_path, capsys):
    files = []
    for name, size in (("setA", 1.0), ("setB", 2.0)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"pixel_size_A": size}))
        files.append(path)
    out = tmp_path / "batch"
    argv = [
        "notebooks",
        "run",
        "--profile",
        "smoke",
        "--out",
        str(out),
        "--notebooks",
        str(series),
        "--only",
        "01",
        "02",
    ]
    for f in files:
        argv += ["--params", str(f)]
    assert main(argv) == 1  # one notebook failed in each set
    text = capsys.readouterr().out
    assert "setA" in text and "setB" in text and "2 passed or skipped, 2 failed" in text
    assert yaml.safe_load((out / "setB" / "run" / "params.yaml").read_text())["pixel_size_A"] == 2.0
    assert (out / "setA" / "executed" / "01_ok.ipynb").is_file()


def test_runner_refuses_bad_parameter_file_before_running(series, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("detector: k9\n")
    with pytest.raises(ConfigError, match="detector"):
        run_notebooks(profile="smoke", out=tmp_path / "o", notebooks_dir=series, params_files=[bad])
    assert not (tmp_path / "o" / "bad").exists()
