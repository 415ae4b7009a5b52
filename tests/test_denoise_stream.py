"""Batch denoising: a killed run resumes without redoing finished files, --max-files, sharding over ranks."""

import numpy as np
import pytest

import nt2c.denoiser.inference
from nt2c.cli import main
from nt2c.io import read_mrc, write_mrc

N_FILES = 8


@pytest.fixture()
def folder(tmp_path):
    rng = np.random.default_rng(1)
    mics = tmp_path / "mics"
    mics.mkdir()
    for i in range(N_FILES):
        write_mrc(mics / f"mic_{i:02d}.mrc", rng.normal(5, 1, (64, 72)).astype(np.float32), pixel_size_A=1.5)
    return mics


@pytest.fixture()
def counter(monkeypatch):
    """Count calls of denoise_micrograph; ``counter.kill_at = k`` makes call k raise KeyboardInterrupt."""
    real = nt2c.denoiser.inference.denoise_micrograph

    class Counter:
        calls = 0
        kill_at = None

    def counting(*args, **kwargs):
        Counter.calls += 1
        if Counter.calls == Counter.kill_at:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(nt2c.denoiser.inference, "denoise_micrograph", counting)
    return Counter


def _run(model_path, out, folder, *extra):
    return main(
        [
            "denoise",
            "--model",
            str(model_path),
            "-o",
            str(out),
            "--device",
            "cpu",
            "--tile",
            "64",
            "--overlap",
            "16",
            *extra,
            str(folder / "*.mrc"),
        ]
    )


def test_killed_run_resumes_without_redoing_done_files(tmp_path, model_path, folder, counter):
    out = tmp_path / "out"
    counter.kill_at = 5  # killed while the 5th file is being denoised
    assert _run(model_path, out, folder) == 130
    done = sorted(p.name for p in out.iterdir() if p.name != ".nt2c")  # .nt2c: the provenance records
    assert done == [
        f"mic_{i:02d}.mrc" for i in range(4)
    ]  # four complete outputs, no partial or temporary file
    mtimes = {name: (out / name).stat().st_mtime_ns for name in done}

    counter.calls, counter.kill_at = 0, None
    assert _run(model_path, out, folder) == 0
    assert counter.calls == N_FILES - 4  # only the missing files were denoised
    assert {name: (out / name).stat().st_mtime_ns for name in done} == mtimes
    assert sorted(p.name for p in out.iterdir() if p.name != ".nt2c") == [
        f"mic_{i:02d}.mrc" for i in range(N_FILES)
    ]
    for i in range(N_FILES):
        data, px = read_mrc(out / f"mic_{i:02d}.mrc")
        assert data.shape == (64, 72) and np.isfinite(data).all() and px == pytest.approx(1.5)


def test_max_files_stops_and_the_next_run_continues(tmp_path, model_path, folder, counter, capsys):
    out = tmp_path / "out"
    assert _run(model_path, out, folder, "--max-files", "3") == 0
    assert counter.calls == 3 and len(list(out.glob("*.mrc"))) == 3
    assert "run the same command again" in capsys.readouterr().out
    assert _run(model_path, out, folder, "--max-files", "3") == 0
    assert counter.calls == 6 and len(list(out.glob("*.mrc"))) == 6
    assert _run(model_path, out, folder, "--max-files", "0") == 2  # InputError: bad parameter


def test_ranks_take_round_robin_shares(tmp_path, model_path, folder, counter, monkeypatch):
    """Under torchrun (WORLD_SIZE/RANK/LOCAL_RANK set) rank r denoises files r, r+N, ... (no group needed)."""
    out = tmp_path / "out"
    monkeypatch.setenv("WORLD_SIZE", "3")
    shares = []
    for rank in range(3):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        before = {p.name for p in out.glob("*.mrc")}
        assert _run(model_path, out, folder) == 0
        shares.append(sorted({p.name for p in out.glob("*.mrc")} - before))
    assert shares == [
        ["mic_00.mrc", "mic_03.mrc", "mic_06.mrc"],
        ["mic_01.mrc", "mic_04.mrc", "mic_07.mrc"],
        ["mic_02.mrc", "mic_05.mrc"],
    ]
    assert counter.calls == N_FILES
