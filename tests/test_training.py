"""Denoiser training: normalisation, aligned augmentation, loss decrease, exact resume, the two stages."""

import json

import numpy as np
import pytest
import torch

from nt2c.config import stage_config
from nt2c.denoiser import (
    augment_pair,
    lr_at,
    normalize_pair,
    split_by_source,
    toy_pairs,
    train_coarse_stage,
    train_denoiser,
    train_fine_stage,
    validation_psnr_dB,
)
from nt2c.errors import InputError, StageError
from nt2c.io import write_mrc


def _settings(**kw):
    base = dict(steps=6, checkpoint_every=2, width=4, batch_size=2, patch_px=32)
    base.update(kw)
    return stage_config("train-coarse", "smoke", **base)


def test_normalize_pair_uses_noisy_statistics_for_both():
    noisy = np.array([[[1.0, 3.0], [5.0, 7.0]]])
    clean = noisy + 10.0
    xn, yn = normalize_pair(noisy, clean)
    assert abs(xn.mean()) < 1e-6 and abs(xn.std() - 1) < 1e-6
    np.testing.assert_allclose(yn - xn, 10.0 / noisy.std(), rtol=1e-6)  # same affine map, not its own z-score


@pytest.mark.parametrize("transform", range(8))
def test_augmentation_keeps_pairs_aligned_and_never_swaps(transform):
    rng = np.random.default_rng(transform)
    clean = rng.normal(size=(6, 6))
    noisy = clean + 100.0  # distinguishable: noisy is always the +100 one
    n, c = augment_pair(noisy, clean, transform)
    np.testing.assert_allclose(n - c, 100.0)
    assert n.shape == c.shape


def test_all_eight_transforms_differ():
    img = np.arange(16.0).reshape(4, 4)
    outs = {augment_pair(img, img, t)[0].tobytes() for t in range(8)}
    assert len(outs) == 8


def test_learning_rate_schedule_warms_up_and_decays():
    lrs = [lr_at(s, 100, 1e-3) for s in range(100)]
    assert lrs[0] < lrs[4] == pytest.approx(1e-3)
    assert lrs[-1] < 0.1e-3 and all(a >= b for a, b in zip(lrs[5:], lrs[6:]))


def test_validation_psnr_is_the_evaluation_psnr():
    from nt2c.evaluation.metrics import psnr

    rng = np.random.default_rng(0)
    t = rng.normal(size=(2, 16, 16))
    noise = rng.normal(size=t.shape)
    values = validation_psnr_dB(3 * (t + 0.1 * noise) + 5, t)  # scale and offset do not count: fitted first
    assert values == pytest.approx([psnr(3 * (a + 0.1 * e) + 5, a) for a, e in zip(t, noise)])
    assert values.mean() > validation_psnr_dB(t + noise, t).mean()


def test_validation_pairs_come_from_micrographs_no_training_pair_comes_from():
    rng = np.random.default_rng(1)
    sources = np.stack([rng.integers(0, 4, 200), rng.integers(0, 200, 200), rng.integers(0, 200, 200)], 1)
    train, val, how = split_by_source(sources, 200, 0.25, patch_px=64, seed=0)
    assert set(sources[train, 0]).isdisjoint(sources[val, 0]) and len(set(sources[val, 0])) == 1
    assert len(train) + len(np.flatnonzero(np.isin(sources[:, 0], sources[val, 0]))) == 200
    assert "held-out micrograph" in how


def test_validation_pairs_of_one_micrograph_share_no_pixel_with_training_pairs():
    rng = np.random.default_rng(2)
    sources = np.stack([np.zeros(300, int), rng.integers(0, 400, 300), rng.integers(0, 400, 300)], 1)
    train, val, _ = split_by_source(sources, 300, 0.2, patch_px=64, seed=0, margin_px=32)
    assert len(train) and len(val)
    right_edge_of_training = (sources[train, 2] + 64).max()
    assert sources[val, 2].min() >= right_edge_of_training + 32  # a gap of at least the margin


def test_training_on_a_fixed_batch_lowers_the_loss():
    noisy, clean = toy_pairs(2, 32, seed=3, noise_std=0.05)
    # a one-pair training set of one fixed crop (patch = pair size, batch of that pair; only its flips vary)
    settings = _settings(steps=20, checkpoint_every=20, batch_size=1, lr=1e-2, val_fraction=0.5)
    losses = []
    train_denoiser(noisy, clean, settings, on_step=lambda step, loss: losses.append(loss))
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3])


def test_validation_psnr_improves_over_input(tmp_path):
    noisy, clean = toy_pairs(8, 32, seed=1, noise_std=1.0)
    res = train_denoiser(noisy, clean, _settings(steps=12, checkpoint_every=6, lr=1e-2))
    assert [v["step"] for v in res.curves["val"]] == [6, 12]
    assert res.curves["val"][-1]["psnr_dB"] > res.curves["input_psnr_dB"]


class _Killed(Exception):
    pass


def test_killed_training_resumes_to_identical_weights(tmp_path):
    noisy, clean = toy_pairs(10, 48, seed=2)
    settings = _settings(steps=7, checkpoint_every=3)
    reference = train_denoiser(noisy, clean, settings).model.state_dict()

    ckpt = tmp_path / "ckpt.pt"

    def kill(step, loss):
        if step == 5:  # after the checkpoint of step 3
            raise _Killed

    with pytest.raises(_Killed):
        train_denoiser(noisy, clean, settings, checkpoint_path=ckpt, on_step=kill)
    assert ckpt.is_file()
    resumed = train_denoiser(noisy, clean, settings, checkpoint_path=ckpt)
    assert resumed.resumed_from == 3
    assert not ckpt.exists()  # removed once training ended
    for key, value in reference.items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_checkpoint_of_other_settings_is_not_resumed(tmp_path):
    noisy, clean = toy_pairs(6, 32, seed=2)
    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(_Killed):
        train_denoiser(
            noisy,
            clean,
            _settings(steps=4),
            checkpoint_path=ckpt,
            on_step=lambda s, _loss: (_ for _ in ()).throw(_Killed) if s == 3 else None,
        )
    res = train_denoiser(noisy, clean, _settings(steps=4, lr=5e-4), checkpoint_path=ckpt)
    assert res.resumed_from == 0


def test_bad_training_inputs():
    noisy, clean = toy_pairs(4, 32)
    with pytest.raises(InputError, match="same shape"):
        train_denoiser(noisy, clean[:, :16], _settings())
    bad = noisy.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        train_denoiser(bad, clean, _settings())
    with pytest.raises(InputError, match="at least 2"):
        train_denoiser(noisy[:1], clean[:1], _settings())
    with pytest.raises(InputError, match="too small"):
        train_denoiser(noisy[:, :16, :16], clean[:, :16, :16], _settings())


def _write_pairs(folder, n=8, size=64, seed=0):
    noisy, clean = toy_pairs(n, size, seed=seed)
    write_mrc(folder / "pairs_noisy.mrcs", noisy, pixel_size_A=1.5, overwrite=True)
    write_mrc(folder / "pairs_clean.mrcs", clean, pixel_size_A=1.5, overwrite=True)


def test_coarse_and_fine_stages_write_their_artefacts(run_dir):
    from nt2c.denoiser.inference import load_model

    params = run_dir.params()
    with pytest.raises(StageError, match="nt2c simulate"):
        train_coarse_stage(run_dir, stage_config("train-coarse", "smoke"), params)
    _write_pairs(run_dir.simulated)
    outputs = train_coarse_stage(run_dir, stage_config("train-coarse", "smoke"), params)
    names = sorted(p.name for p in outputs)
    assert names == ["coarse.json", "coarse.safetensors", "coarse_curves.json"]
    info = json.loads((run_dir.models / "coarse.json").read_text())
    assert info["model"]["width"] == 8 and info["normalization"]["input"] == "zscore"
    assert info["training"]["pixel_size_A"] == 1.5
    curves = json.loads((run_dir.report / "coarse_curves.json").read_text())
    assert len(curves["train"]) == 4 and curves["val"]
    assert not (run_dir.checkpoints / "coarse.pt").exists()

    with pytest.raises(StageError, match="nt2c reweight"):
        train_fine_stage(run_dir, stage_config("train-fine", "smoke"), params)
    _write_pairs(run_dir.pairs, seed=1)
    coarse = load_model(run_dir.models / "coarse.safetensors")
    outputs = train_fine_stage(run_dir, stage_config("train-fine", "smoke"), params)
    assert sorted(p.name for p in outputs) == ["fine.json", "fine.safetensors", "fine_curves.json"]
    fine = load_model(run_dir.models / "fine.safetensors")
    assert fine.config() == coarse.config()
    # initialised from the coarse weights: after 4 small steps they are still close, unlike a fresh init
    diff = [
        float((a - b).abs().max()) for a, b in zip(fine.state_dict().values(), coarse.state_dict().values())
    ]
    assert max(diff) < 0.1
    assert json.loads((run_dir.models / "fine.json").read_text())["training"]["initialised_from"]
