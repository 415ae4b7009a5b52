"""The command line: help for every subcommand, readable errors with exit status 2."""

import subprocess
import sys

import pytest

from nt2c.cli import build_parser, main
from nt2c.commands import COMMANDS


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for name in COMMANDS:
        assert name in text


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as info:
        main([name, "--help"])
    assert info.value.code == 0
    assert "usage: nt2c" in capsys.readouterr().out


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["no-such-command"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["notebooks", "run", "--profile", "turbo"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_user_errors_are_one_line_messages(capsys):
    assert main(["fetch", "EM99"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nt2c fetch: error: unknown dataset 'EM99'") and "Traceback" not in err


def test_console_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "nt2c", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.startswith("nt2c ")


def test_parser_builds_without_heavy_imports():
    code = "import sys; from nt2c.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False", (
        "a command module imports torch at import time; import it in main()"
    )


def test_parser_object():
    assert build_parser().prog == "nt2c"


@pytest.mark.parametrize(
    "name", ["simulate", "train-coarse", "extract-noise", "calibrate", "train-gan", "reweight", "train-fine"]
)
def test_stage_commands_on_a_bad_run_folder_exit_2_with_one_line(name, tmp_path, capsys):
    not_a_folder = tmp_path / "run"
    not_a_folder.write_text("a file")
    assert main([name, "--run", str(not_a_folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"nt2c {name}: error: ") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_read_only_file_system_errors_are_one_line(monkeypatch, capsys):
    import errno

    import nt2c.commands.run as run_command

    def refuse(args):
        raise OSError(errno.EROFS, "Read-only file system", "/mnt/ro/run")

    monkeypatch.setattr(run_command, "main", refuse)
    assert main(["run", "--out", "/mnt/ro/run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nt2c run: error: cannot use /mnt/ro/run: Read-only file system;")
    assert len(err.strip().splitlines()) == 1
