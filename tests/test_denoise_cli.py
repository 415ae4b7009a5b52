"""`nt2c denoise`: MRC/TIFF in, MRC (+PNG) out with the voxel size, skips, failures reported, inputs kept."""

import json

import numpy as np
import pytest

from nt2c.cli import main
from nt2c.io import read_mrc, write_mrc


@pytest.fixture()
def micrographs(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "mics"
    folder.mkdir()
    a = write_mrc(folder / "a.mrc", rng.normal(10, 2, (70, 90)).astype(np.float32), pixel_size_A=1.34)
    b = write_mrc(folder / "b.mrc", rng.normal(10, 2, (64, 64)).astype(np.float32), pixel_size_A=2.0)
    return a, b


def test_denoise_writes_mrc_with_voxel_size_and_png(tmp_path, model_path, micrographs, capsys):
    out = tmp_path / "out"
    before = [p.read_bytes() for p in micrographs]
    assert (
        main(
            [
                "denoise",
                "--model",
                str(model_path),
                "-o",
                str(out),
                "--png",
                "--tile",
                "64",
                "--overlap",
                "16",
                *map(str, micrographs),
            ]
        )
        == 0
    )
    data, px = read_mrc(out / "a.mrc")
    assert data.shape == (70, 90) and px == pytest.approx(1.34, abs=1e-3)
    assert read_mrc(out / "b.mrc")[1] == pytest.approx(2.0)
    assert (out / "a.png").stat().st_size > 0
    assert [p.read_bytes() for p in micrographs] == before  # inputs untouched
    assert "2 denoised" in capsys.readouterr().out

    # a second run with the same model and settings skips complete outputs
    mtime = (out / "a.mrc").stat().st_mtime_ns
    same = ["--tile", "64", "--overlap", "16"]
    assert (
        main(["denoise", "--model", str(model_path), "-o", str(out), "--png", *same, *map(str, micrographs)])
        == 0
    )
    assert (out / "a.mrc").stat().st_mtime_ns == mtime
    assert "2 skipped" in capsys.readouterr().out
    # --force redoes them
    cmd = ["denoise", "--model", str(model_path), "-o", str(out), *same]
    assert main([*cmd, "--force", str(micrographs[0])]) == 0
    assert "1 denoised" in capsys.readouterr().out
    # other settings change the result: redone
    assert main(["denoise", "--model", str(model_path), "-o", str(out), str(micrographs[0])]) == 0
    assert "1 denoised" in capsys.readouterr().out
    plain = ["--low-frequency-from-raw-px", "0"]
    assert main(["denoise", "--model", str(model_path), "-o", str(out), *plain, str(micrographs[0])]) == 0
    assert "1 denoised" in capsys.readouterr().out
    record = json.loads((out / ".nt2c" / "a.json").read_text())
    assert record["settings"]["low_frequency_from_raw_px"] == 0


def test_normalization_flag_reaches_the_network(tmp_path, model_path):
    from nt2c.denoiser.inference import denoise_micrograph, load_model

    rng = np.random.default_rng(1)
    image = rng.normal(10, 2, (256, 256)).astype(np.float32)
    image[:100, :100] -= 40  # a dark contaminant: the global std is far above a typical tile's
    src = write_mrc(tmp_path / "c.mrc", image, pixel_size_A=1.0)
    model = load_model(model_path)
    for mode in ("tiles", "global"):
        out = tmp_path / mode
        assert (
            main(["denoise", "--model", str(model_path), "-o", str(out), "--normalization", mode, str(src)])
            == 0
        )
        expected = denoise_micrograph(model, image, normalization=mode, show_progress=False)
        np.testing.assert_allclose(read_mrc(out / "c.mrc")[0], expected, atol=1e-4)
    assert not np.allclose(
        read_mrc(tmp_path / "tiles" / "c.mrc")[0], read_mrc(tmp_path / "global" / "c.mrc")[0]
    )


def test_unreadable_files_are_reported_and_others_done(tmp_path, model_path, micrographs, capsys):
    broken = tmp_path / "mics" / "broken.mrc"
    broken.write_bytes(b"not an mrc file at all")
    missing = tmp_path / "mics" / "missing.mrc"
    out = tmp_path / "out"
    code = main(
        [
            "denoise",
            "--model",
            str(model_path),
            "-o",
            str(out),
            str(broken),
            str(missing),
            str(micrographs[0]),
        ]
    )
    assert code == 2  # bad input: exit status 2, as the README says
    err = capsys.readouterr().err
    assert "broken.mrc" in err and "missing.mrc" in err
    assert "Traceback" not in err
    assert (out / "a.mrc").is_file()


def test_tiff_input_and_wildcards(tmp_path, model_path):
    import tifffile

    src = tmp_path / "tif"
    src.mkdir()
    tifffile.imwrite(src / "t1.tif", np.random.default_rng(1).normal(size=(50, 60)).astype(np.float32))
    tifffile.imwrite(src / "t2.tiff", np.random.default_rng(2).normal(size=(40, 40)).astype(np.float32))
    out = tmp_path / "out"
    assert (
        main(
            [
                "denoise",
                "--model",
                str(model_path),
                "-o",
                str(out),
                "--pixel-size-A",
                "0.9",
                str(src / "t*.tif*"),
            ]
        )
        == 0
    )
    data, px = read_mrc(out / "t1.mrc")
    assert data.shape == (50, 60) and px == pytest.approx(0.9, abs=1e-3)
    assert read_mrc(out / "t2.mrc")[0].shape == (40, 40)


def test_never_overwrites_inputs_or_foreign_files(tmp_path, model_path, micrographs, capsys):
    folder = micrographs[0].parent
    before = micrographs[0].read_bytes()
    assert main(["denoise", "--model", str(model_path), "-o", str(folder), str(micrographs[0])]) == 2
    assert micrographs[0].read_bytes() == before
    assert "overwrite an input" in capsys.readouterr().err
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.mrc").write_text("somebody's notes")
    assert main(["denoise", "--model", str(model_path), "-o", str(out), str(micrographs[0])]) == 2
    assert (out / "a.mrc").read_text() == "somebody's notes"


def test_missing_model_is_a_clear_error(tmp_path, micrographs, capsys):
    assert (
        main(
            [
                "denoise",
                "--model",
                str(tmp_path / "nope.safetensors"),
                "-o",
                str(tmp_path / "o"),
                str(micrographs[0]),
            ]
        )
        == 2
    )
    assert "train" in capsys.readouterr().err


def test_train_coarse_command_runs_stage(run_dir, capsys):
    from nt2c.denoiser import toy_pairs

    noisy, clean = toy_pairs(6, 64, seed=0)
    write_mrc(run_dir.simulated / "pairs_noisy.mrcs", noisy, pixel_size_A=1.0)
    write_mrc(run_dir.simulated / "pairs_clean.mrcs", clean, pixel_size_A=1.0)
    # the simulate stage's stamp would normally exist; mark it done so no simulation runs in this test
    run_dir.write_stamp(
        "simulate", [run_dir.simulated / "pairs_noisy.mrcs", run_dir.simulated / "pairs_clean.mrcs"], {}
    )
    assert (
        main(
            ["train-coarse", "--run", str(run_dir.path), "--profile", "smoke", "--steps", "2", "--width", "4"]
        )
        == 0
    )
    assert (run_dir.models / "coarse.safetensors").is_file()
    assert "coarse.safetensors" in capsys.readouterr().out


def _second_model(tmp_path, *, nan=False):
    import torch

    from nt2c.denoiser.inference import save_model
    from nt2c.denoiser.network import UNet

    torch.manual_seed(1)
    net = UNet(width=4, depth=3)
    if nan:
        with torch.no_grad():
            next(net.parameters()).fill_(float("nan"))
    weights, _ = save_model(net, tmp_path / ("nan" if nan else "other") / "coarse.safetensors")
    return weights


def test_another_model_re_denoises_and_bad_outputs_are_redone(tmp_path, model_path, micrographs, capsys):
    """Each output records the sha256 of its model: a new model redoes it, a cut or wrong-shape file too."""
    from nt2c.run.batch import output_record

    out = tmp_path / "out"
    cmd = ["denoise", "-o", str(out), "--tile", "64", "--overlap", "16", *map(str, micrographs)]
    assert main([*cmd, "--model", str(model_path)]) == 0
    first = read_mrc(out / "a.mrc")[0]
    record = output_record(out / "a.mrc")
    assert record["shape"] == [70, 90] and len(record["model_sha256"]) == 64
    capsys.readouterr()
    other = _second_model(tmp_path)
    assert main([*cmd, "--model", str(other)]) == 0
    assert "2 denoised" in capsys.readouterr().out
    assert not np.allclose(read_mrc(out / "a.mrc")[0], first)
    assert output_record(out / "a.mrc")["model_sha256"] != record["model_sha256"]
    # a cut-short output and a wrong-shape output (same model, same settings) are redone
    data = (out / "a.mrc").read_bytes()
    (out / "a.mrc").write_bytes(data[: len(data) // 2])
    write_mrc(out / "b.mrc", np.zeros((8, 8), np.float32), overwrite=True)
    assert main([*cmd, "--model", str(other)]) == 0
    assert "2 denoised" in capsys.readouterr().out
    assert read_mrc(out / "a.mrc")[0].shape == (70, 90) and read_mrc(out / "b.mrc")[0].shape == (64, 64)


def test_non_finite_output_is_a_failure(tmp_path, micrographs, capsys):
    out = tmp_path / "out"
    nan_model = _second_model(tmp_path, nan=True)
    code = main(["denoise", "--model", str(nan_model), "-o", str(out), str(micrographs[0])])
    assert code == 2
    assert "NaN or infinite" in capsys.readouterr().err
    assert not (out / "a.mrc").exists()


def test_unwritable_output_folder_is_one_line(tmp_path, model_path, micrographs, capsys, monkeypatch):
    import errno
    import pathlib

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    real_mkdir = pathlib.Path.mkdir

    def mkdir(self, *args, **kwargs):  # root ignores the mode bits: refuse as the file system would
        if locked in self.parents:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", mkdir)
    try:
        code = main(["denoise", "--model", str(model_path), "-o", str(locked / "out"), str(micrographs[0])])
    finally:
        locked.chmod(0o700)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "Permission denied" in err and str(locked / "out") in err
