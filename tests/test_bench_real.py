"""benchmarks/bench_real.py cannot rot: its functions on a tiny synthetic stand-in of the EMPIAR-10146 set."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_real", REPO / "benchmarks" / "bench_real.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_real"] = module
    spec.loader.exec_module(module)
    return module


def _write_standin(folder: Path, n: int = 4, size: int = 200, radius: float = 14.0) -> None:
    """``n`` micrographs of dark discs in noise, labels as x,y,radius CSV, frames for the first two."""
    from nt2c.io import write_mrc

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        centres = [(x, y) for x in range(30, size - 20, 60) for y in range(30, size - 20, 60)]
        clean = np.zeros((size, size))
        for x, y in centres:
            clean -= 3.0 * (((xx - x) ** 2 + (yy - y) ** 2) <= radius**2)
        name = f"May08_0{i}.00.00"
        write_mrc(folder / f"{name}.mrc", (clean + rng.normal(size=clean.shape)).astype(np.float32))
        rows = "\n".join(f"{x:.2f},{y:.2f},{radius:.2f}" for x, y in centres)
        (folder / f"{name}_coords.csv").write_text("x,y,radius\n" + rows + "\n")
        if i < 2:
            frame = clean + 7.0 * rng.normal(size=clean.shape)
            write_mrc(folder / f"{name}_frame.mrc", frame.astype(np.float32))


def test_split_is_even_and_odd_positions(bench):
    names = [f"m{i}" for i in (3, 1, 0, 2, 4)]
    assert bench.split_names(names) == (["m0", "m2", "m4"], ["m1", "m3"])


def test_documented_split_on_the_real_set(bench, shared_data):
    folder = shared_data / "real" / "empiar10146"
    if not folder.is_dir():
        pytest.skip("empiar10146 is absent from the shared data")
    dev, held = bench.split_names(bench.list_names(folder))
    assert dev == [f"May08_{t}" for t in ("03.05.02", "04.32.27", "05.31.00", "05.57.01", "07.10.35")]
    assert held == [f"May08_{t}" for t in ("03.15.02", "04.36.57", "05.53.51", "06.30.43", "07.30.46")]
    assert not set(dev) & set(held)


def test_reference_without_frame_recovers_the_share(bench):
    rng = np.random.default_rng(1)
    from scipy import ndimage

    signal = ndimage.gaussian_filter(rng.normal(size=(256, 256)), 6.0) * 20
    frame = signal + rng.normal(size=signal.shape) * 7.0
    others = signal + rng.normal(size=signal.shape) * 7.0 / np.sqrt(49)
    average = 3.0 * (49 * others + frame) / 50 + 100.0  # rescaled grey levels, as in the real files
    ref, k = bench.reference_without_frame(average, frame)
    assert k == pytest.approx(3.0 / 50, rel=0.1)
    noise_ref = ref - 3.0 * 49 / 50 * signal
    assert abs(np.corrcoef(noise_ref.ravel(), (frame - signal).ravel())[0, 1]) < 0.02


def test_threshold_is_chosen_on_dev_only(bench):
    counts = {
        "a": [{"threshold": 1.0, "tp": 5, "fp": 5, "fn": 5}, {"threshold": 2.0, "tp": 8, "fp": 1, "fn": 2}],
        "b": [{"threshold": 1.0, "tp": 9, "fp": 0, "fn": 0}, {"threshold": 2.0, "tp": 0, "fp": 0, "fn": 9}],
    }
    assert bench.choose_threshold(counts, ["a"]) == 2.0
    assert bench.choose_threshold(counts, ["b"]) == 1.0


def test_evaluate_and_write_on_a_standin(bench, tmp_path, monkeypatch):
    import torch

    from nt2c.denoiser.inference import save_model
    from nt2c.denoiser.network import UNet

    data = tmp_path / "data"
    data.mkdir()
    _write_standin(data)
    torch.manual_seed(0)
    save_model(UNet(width=4, depth=3), tmp_path / "run" / "models" / "fine.safetensors")
    monkeypatch.setenv("NT2C_TOPAZ", "")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        "nt2c.evaluation.topaz.importlib.util.find_spec",
        lambda name: None if name == "topaz" else real_find_spec(name),
    )
    monkeypatch.setattr("nt2c.evaluation.topaz.shutil.which", lambda name: None)
    calls = []

    def fake_counts(image, mic, exclude, *, diameter, thresholds, cache_file=None):  # the picker is slow
        calls.append((mic.name, tuple(thresholds)))
        return [{"threshold": t, "tp": int(10 * t), "fp": 1, "fn": 1} for t in thresholds]

    monkeypatch.setattr(bench, "picking_counts", fake_counts)
    tiny_n2v = {"steps": 2, "patch_px": 32, "batch_size": 2, "model_config": {"width": 4, "depth": 3}}
    result = bench.evaluate(
        data,
        run=tmp_path / "run",
        methods=["raw", "gaussian", "topaz", "noise2void", "nt2c-fine"],
        device="cpu",
        cache=tmp_path / "cache",
        n2v=tiny_n2v,
        thresholds=(1.0, 2.0),
        log=lambda *_: None,
    )
    assert "topaz" in result["skipped"]
    assert result["dev"] == ["May08_00.00.00", "May08_02.00.00"]
    methods = ["raw", "gaussian", "noise2void", "nt2c-fine"]
    assert [r["method"] for r in result["rows"]][::4] == methods
    # the sweep sees only DEV; HELD-OUT is picked once, at the threshold chosen on DEV
    assert set(result["counts"]["raw"]) == set(result["dev"])
    assert {c for c in calls if c[0] not in result["dev"]} == {(n, (2.0,)) for n in result["held_out"]}
    assert result["thresholds"]["raw"] == 2.0
    assert {r["split"] for r in result["frame_rows"]} == {"DEV", "HELD-OUT"}
    raw = {r["micrograph"]: r for r in result["rows"] if r["method"] == "raw"}
    gauss = {r["micrograph"]: r for r in result["rows"] if r["method"] == "gaussian"}
    assert all(gauss[n]["eq5_dB"] > raw[n]["eq5_dB"] for n in raw)
    text = bench.write_outputs(tmp_path / "out", result, {"date_utc": "test"})
    assert "### HELD-OUT" in text and "### DEV" in text and "topaz" in text
    for name in ("micrographs.csv", "frames.csv", "summary.csv", "summary.md", "thresholds.csv", "meta.json"):
        assert (tmp_path / "out" / name).is_file()
    # a rerun reads the cached outputs
    again = bench.evaluate(
        data,
        run=tmp_path / "run",
        methods=["noise2void"],
        device="cpu",
        cache=tmp_path / "cache",
        n2v=tiny_n2v,
        thresholds=(1.0, 2.0),
        log=lambda *_: None,
    )
    before = [r["eq5_dB"] for r in result["rows"] if r["method"] == "noise2void"]
    assert [r["eq5_dB"] for r in again["rows"]] == before


def test_picking_counts_find_the_discs_and_cache(bench, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    _write_standin(data, n=1)
    mic = bench.load_micrograph(data, "May08_00.00.00")
    exclude = bench.border_mask(mic.image.shape)
    cache = tmp_path / "picks.json"
    first = bench.picking_counts(mic.image, mic, exclude, diameter=28.0, thresholds=(2.0,), cache_file=cache)
    assert first[0]["tp"] >= 5 and first[0]["fn"] <= 4  # 9 discs, the picker finds most
    assert (
        bench.picking_counts(None, mic, exclude, diameter=28.0, thresholds=(2.0,), cache_file=cache) == first
    )
