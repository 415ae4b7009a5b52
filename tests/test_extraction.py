"""Noise-patch extraction (paper section 2.2.2): SSIM, criteria, guards, errors, stage, command, figures."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from scipy import ndimage

import nt2c
from nt2c.config import stage_config
from nt2c.errors import InputError
from nt2c.extraction import (
    STATUS_NAMES,
    NoNoisePatchError,
    extract_noise_patches,
    local_patch_ssim,
    normalize_unit,
    ssim_eq3,
)


def _textured(shape=(200, 230), seed=0, sigma=3.0):
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=shape).astype(np.float32)
    return raw, ndimage.gaussian_filter(raw, sigma)


def _box_distance(boxes, d, xy):
    """Distance (px) from each box [r, r + d - 1] x [c, c + d - 1] to the nearest centre (x, y)."""
    r = boxes[:, 0][:, None].astype(float)
    c = boxes[:, 1][:, None].astype(float)
    x, y = xy[:, 0][None], xy[:, 1][None]
    dy = np.maximum(0, np.maximum(r - y, y - (r + d - 1)))
    dx = np.maximum(0, np.maximum(c - x, x - (c + d - 1)))
    return np.hypot(dy, dx).min(axis=1)


# ---- SSIM --------------------------------------------------------------------------------------------------
def test_ssim_agrees_with_scikit_image_uniform_window():
    from skimage.metrics import structural_similarity

    raw, enh = _textured()
    d, n_sub = 66, 4  # local patches of 33 px: skimage needs an odd window, as large as the patch
    result = extract_noise_patches(
        raw, enh, patch_size=d, step=17, n_sub=n_sub, threshold=-1.0, outlier_sigma=None
    )
    unit = normalize_unit(enh)
    worst = 0.0
    for (r, c), score in zip(result.candidates, result.candidate_scores):
        patch = unit[r : r + d, c : c + d]
        local = [patch[a * 33 : (a + 1) * 33, b * 33 : (b + 1) * 33] for a in range(2) for b in range(2)]
        ref = min(
            structural_similarity(
                local[i],
                local[j],
                win_size=33,
                data_range=1.0,
                gaussian_weights=False,
                use_sample_covariance=False,
                K1=0.01,
                K2=0.03,
            )
            for i in range(4)
            for j in range(i + 1, 4)
        )
        worst = max(worst, abs(ref - score))
    assert result.candidates.shape[0] == 8 * 10  # (200 - 66) // 17 + 1 rows, (230 - 66) // 17 + 1 columns
    assert worst < 1e-6
    a, b = unit[:33, :33], unit[40:73, 50:83]
    ref = structural_similarity(
        a, b, win_size=33, data_range=1.0, gaussian_weights=False, use_sample_covariance=False
    )
    assert abs(ssim_eq3(a, b) - ref) < 1e-6
    m = local_patch_ssim(unit[:66, :66], n_sub=4)
    assert m.shape == (4, 4) and np.allclose(np.diag(m), 1.0) and np.allclose(m, m.T)
    assert abs(m[0, 3] - ssim_eq3(unit[:33, :33], unit[33:66, 33:66])) < 1e-12


@pytest.mark.parametrize("criterion", ["std", "meanvar"])
def test_other_criteria_match_direct_computation(criterion):
    raw, enh = _textured(seed=1)
    d, g = 60, 3
    result = extract_noise_patches(
        raw,
        enh,
        patch_size=d,
        step=23,
        n_sub=9,
        criterion=criterion,
        std_max=1e9,
        mean_tol=1e9,
        var_tol=1e9,
        outlier_sigma=None,
    )
    unit = normalize_unit(enh)
    size = d // g
    for (r, c), score in zip(result.candidates, result.candidate_scores):
        patch = unit[r : r + d, c : c + d]
        local = [
            patch[a * size : (a + 1) * size, b * size : (b + 1) * size] for a in range(g) for b in range(g)
        ]
        if criterion == "std":  # reference code: [0, 255] grey levels, largest local std
            ref = max(np.std(255.0 * q) for q in local)
        else:  # GCBD: deviations relative to the tolerances 1e9 * mean(p) and 1e9 * var(p)
            ref = max(
                max(
                    abs(q.mean() - patch.mean()) / (1e9 * patch.mean()),
                    abs(q.var() - patch.var()) / (1e9 * patch.var()),
                )
                for q in local
            )
        assert score == pytest.approx(ref, rel=1e-9, abs=1e-18)


def test_flat_patches_pass_and_a_blob_fails():
    raw, _ = _textured(shape=(128, 128))
    enh = np.zeros((128, 128), np.float32)
    yy, xx = np.mgrid[:128, :128]
    enh[(yy - 96) ** 2 + (xx - 96) ** 2 < 12**2] = 1.0  # a disc in the bottom-right 64 px patch
    result = extract_noise_patches(raw, enh, patch_size=64, step=64, outlier_sigma=None)
    assert {tuple(b) for b in result.boxes} == {(0, 0), (0, 64), (64, 0)}
    assert np.allclose(result.scores, 1.0)
    assert result.candidate_scores[3] < 0.1


# ---- the "done when" tests ---------------------------------------------------------------------------------
def test_simulated_micrographs_precision_and_recall():
    """Clean image as the enhanced one: no patch within a particle radius, half the empty ones found.

    The simulator's clean image carries each particle's CTF fringes; ``margin_px`` keeps out patches that a
    particle's outer edge only grazes (the paper's test on whole local patches lets such slivers through).
    """
    pytest.importorskip("torch")
    from nt2c.simulation import simulate_micrograph, specimen_from_params

    params = nt2c.load_params(pixel_size_A=2.0)
    specimen = specimen_from_params(params)
    radius_px = specimen.radius_A / params.pixel_size_A
    d = 64
    for seed in range(3):
        mic = simulate_micrograph(
            params, specimen=specimen, seed=seed, n_particles=6, image_size_px=512, device="cpu"
        )
        result = extract_noise_patches(
            mic.noisy, mic.clean, patch_size=d, step=32, threshold=0.7, margin_px=16
        )
        assert len(result) > 0
        distance = _box_distance(result.boxes, d, mic.coordinates_px)
        assert (distance >= radius_px).all(), f"seed {seed}: a patch {distance.min():.1f} px from a particle"
        empty = _box_distance(result.candidates, d, mic.coordinates_px) >= radius_px
        recall = (result.status[empty] == 0).mean()
        assert recall >= 0.5, f"seed {seed}: recall {recall:.2f}"
        assert result.patches.shape == (len(result), d, d) and result.patches.dtype == np.float32
        r, c = result.boxes[0]
        np.testing.assert_array_equal(
            result.patches[0], mic.noisy[r : r + d, c : c + d]
        )  # cut from the raw image


def _contaminant_mask(image):
    """Mask the large dark contaminant.

    Rule: Gaussian smoothing (sigma 16 px), then the pixels more than 5 robust sigmas (1.4826 MAD of the
    smoothed image) below its median; the largest connected component of those.
    """
    smooth = ndimage.gaussian_filter(image.astype(np.float64), 16)
    med = np.median(smooth)
    sigma = 1.4826 * np.median(np.abs(smooth - med))
    labels, n = ndimage.label(smooth < med - 5 * sigma)
    sizes = ndimage.sum(np.ones_like(labels), labels, range(1, n + 1))
    return labels == 1 + int(np.argmax(sizes))


def test_real_micrograph_avoids_the_contaminant(shared_data):
    image, _ = nt2c.read_image(shared_data / "real" / "Ucsf_stack_1142_DW.mrc")
    mask = _contaminant_mask(image)
    rows, cols = np.nonzero(mask)
    assert mask.sum() > 0.1 * mask.size and rows.min() == 0 and cols.max() == image.shape[1] - 1  # top right
    enhanced = ndimage.gaussian_filter(image, 4)
    d = 128
    for step, margin in ((64, 0), (32, 16)):
        result = extract_noise_patches(image, enhanced, patch_size=d, step=step, margin_px=margin)
        assert len(result) >= 20
        touching = [bool(mask[r : r + d, c : c + d].any()) for r, c in result.boxes]
        assert not any(touching), f"step {step}: {sum(touching)} patches overlap the contaminant"
        inside = np.array([mask[r : r + d, c : c + d].all() for r, c in result.candidates])
        assert inside.any() and (result.status[inside] != 0).all()


# ---- guards ------------------------------------------------------------------------------------------------
def test_outlier_guard_rejects_a_smooth_dark_region():
    rng = np.random.default_rng(3)
    raw = rng.normal(100.0, 5.0, size=(512, 512)).astype(np.float32)
    raw[:192, :192] -= 40.0  # a dark, featureless region (carbon, contamination)
    enhanced = np.full_like(raw, 1.0)
    enhanced[:192, :192] = 0.0  # flat in the enhanced image too, so the similarity test passes inside it
    result = extract_noise_patches(raw, enhanced, patch_size=64, step=32)
    dark = (result.candidates[:, 0] + 64 <= 192) & (result.candidates[:, 1] + 64 <= 192)
    assert dark.sum() == 25
    assert (result.status[dark] == STATUS_NAMES.index("outlier")).all()
    assert (result.raw_mean[result.status == 0] > 95).all()
    off = extract_noise_patches(raw, enhanced, patch_size=64, step=32, outlier_sigma=None)
    assert (off.status[dark] == 0).all()


def test_exclusion_and_overlap_limit():
    raw, _ = _textured(shape=(256, 256), seed=4)
    enhanced = np.zeros_like(raw)
    coords = np.array([[100.0, 100.0], [30.0, 200.0]])
    result = extract_noise_patches(
        raw, enhanced, patch_size=64, step=16, exclude_coords=coords, exclude_radius_px=20, outlier_sigma=None
    )
    assert result.counts()["excluded"] > 0
    yy, xx = np.mgrid[:256, :256]
    near = np.zeros((256, 256), bool)
    for r, c in coords:
        near |= (yy - r) ** 2 + (xx - c) ** 2 < 20**2
    assert not any(near[r : r + 64, c : c + 64].any() for r, c in result.boxes)
    assert all(
        near[r : r + 64, c : c + 64].any()
        for r, c in result.candidates[result.status == STATUS_NAMES.index("excluded")]
    )
    limited = extract_noise_patches(
        raw, enhanced, patch_size=64, step=16, max_overlap=0.25, outlier_sigma=None
    )
    boxes = limited.boxes
    for i in range(len(boxes)):
        dy = np.clip(64 - np.abs(boxes[i + 1 :, 0] - boxes[i, 0]), 0, None)
        dx = np.clip(64 - np.abs(boxes[i + 1 :, 1] - boxes[i, 1]), 0, None)
        assert (dy * dx / 64**2 <= 0.25).all()
    assert len(boxes) >= 16  # a flat image: at least the non-overlapping 4 x 4 tiling survives


def test_overlap_limit_equals_sequential_greedy():
    from nt2c.extraction.guards import overlap_winners as _nms

    rng = np.random.default_rng(5)
    for _ in range(10):
        nr, nc = rng.integers(3, 15, 2)
        d, s = int(rng.integers(8, 40)), int(rng.integers(2, 30))
        limit = float(rng.choice([0.0, 0.2, 0.5]))
        active = rng.random((nr, nc)) < 0.8
        good = np.round(rng.random((nr, nc)), 1)  # ties: the earlier candidate wins
        keep = _nms(active, good, d=d, s=s, max_overlap=limit)
        order = sorted(zip(*np.nonzero(active)), key=lambda ij: (-good[ij], ij[0] * nc + ij[1]))
        chosen: list[tuple[int, int]] = []
        for i, j in order:
            if all(
                max(0, d - abs(i - a) * s) * max(0, d - abs(j - b) * s) / d**2 <= limit for a, b in chosen
            ):
                chosen.append((i, j))
        expected = np.zeros_like(active)
        for ij in chosen:
            expected[ij] = True
        np.testing.assert_array_equal(keep, expected)


def test_inputs_are_not_modified():
    raw, enh = _textured(seed=6)
    raw.setflags(write=False)
    enh.setflags(write=False)
    before = raw.copy(), enh.copy()
    result = extract_noise_patches(raw, enh, patch_size=50, step=25, threshold=-1.0, max_overlap=0.5)
    np.testing.assert_array_equal(raw, before[0])
    np.testing.assert_array_equal(enh, before[1])
    assert not np.shares_memory(result.patches, raw)


# ---- errors ------------------------------------------------------------------------------------------------
def test_errors_say_what_to_do():
    raw, enh = _textured(shape=(100, 120))
    with pytest.raises(InputError, match="smaller than patch_size=320"):
        extract_noise_patches(raw, enh)
    best = extract_noise_patches(raw, enh, patch_size=64, threshold=-1.0).candidate_scores.max()
    with pytest.raises(NoNoisePatchError, match="Lower --threshold"):  # just missed: relax the threshold
        extract_noise_patches(raw, enh, patch_size=64, threshold=min(1.0, best + 0.01))
    white = np.random.default_rng(9).normal(size=raw.shape)  # a noisy "enhanced" image: SSIM ~ 0 everywhere
    with pytest.raises(NoNoisePatchError, match="train the coarse denoiser longer"):
        extract_noise_patches(raw, white, patch_size=64)
    empty = extract_noise_patches(raw, enh, patch_size=64, threshold=0.999, allow_empty=True)
    assert len(empty) == 0 and empty.patches.shape == (0, 64, 64)
    with pytest.raises(InputError, match="square number"):
        extract_noise_patches(raw, enh, patch_size=64, n_sub=6)
    with pytest.raises(InputError, match="divisible"):
        extract_noise_patches(raw, enh, patch_size=64, n_sub=9)
    with pytest.raises(InputError, match="differ in shape"):
        extract_noise_patches(raw, enh[:, :100], patch_size=64)
    bad = raw.copy()
    bad[3, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        extract_noise_patches(bad, enh, patch_size=64)
    with pytest.raises(InputError, match="criterion"):
        extract_noise_patches(raw, enh, patch_size=64, criterion="bm3d")
    with pytest.raises(InputError, match="margin_px"):
        extract_noise_patches(raw, enh, patch_size=64, margin_px=30)
    with pytest.raises(InputError, match="exclude_radius_px"):
        extract_noise_patches(raw, enh, patch_size=64, exclude_coords=[[1, 1]])


# ---- stage, command line, figures --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """Make a run with two listed micrographs (RUN/micrographs.txt) and an untrained tiny coarse U-Net.

    The stage's plumbing does not need a trained model or the simulator; an untrained U-Net's output is no
    enhanced image, so the plumbing is tested with GCBD's mean/variance test, which works on noisy images.
    """
    torch = pytest.importorskip("torch")
    from nt2c.denoiser.inference import save_model
    from nt2c.denoiser.network import UNet

    root = tmp_path_factory.mktemp("extract")
    run = nt2c.RunDir(root / "run")
    run.init_params()
    paths = []
    for k in range(2):
        raw, _ = _textured(shape=(256, 256), seed=10 + k, sigma=1.0)
        paths.append(nt2c.write_mrc(root / f"mic_000{k}.mrc", raw + 100.0, pixel_size_A=1.5))
    (run.path / "micrographs.txt").write_text("".join(f"{p}\n" for p in paths))
    torch.manual_seed(0)
    weights, _ = save_model(UNet(width=4, depth=2), run.models / "coarse.safetensors")
    run.write_stamp("train-coarse", [weights], {})  # stands for a finished coarse training
    nt2c.run_stage("extract-noise", run, profile="smoke", criterion="meanvar", with_requirements=False)
    return run


def test_stage_writes_the_contract(smoke_run):
    noise = smoke_run.path / "noise"
    stack, pixel_size = nt2c.read_mrc(noise / "patches.mrcs")
    assert stack.ndim == 3 and stack.shape[1:] == (64, 64) and stack.dtype == np.float32
    assert pixel_size == pytest.approx(1.5)  # from the micrographs' headers
    with open(noise / "patches.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == stack.shape[0]
    assert list(rows[0])[:4] == ["micrograph", "row", "col", "score"]
    first = rows[0]
    raw, _ = nt2c.read_image(smoke_run.path.parent / first["micrograph"])
    r, c = int(first["row"]), int(first["col"])
    np.testing.assert_array_equal(stack[0], raw[r : r + 64, c : c + 64])
    assert (noise / "mic_0000_boxes.png").stat().st_size > 1000
    assert smoke_run.is_complete("extract-noise")


def test_command_line(smoke_run, tmp_path, capsys):
    from nt2c.cli import main

    base = ["extract-noise", "--run", str(smoke_run.path), "--profile", "smoke"]
    mic = smoke_run.path.parent / "mic_0001.mrc"
    options = ["--patch-size", "32", "--max-overlap", "0", "--criterion", "meanvar"]
    assert main([*base, "--micrographs", str(mic), *options]) == 0
    stack, _ = nt2c.read_mrc(smoke_run.path / "noise" / "patches.mrcs")
    assert stack.shape[1:] == (32, 32)
    assert main([*base, "--micrographs", str(tmp_path / "nothing*.mrc")]) == 2
    assert "match no file" in capsys.readouterr().err
    assert main([*base, "--patch-size", "512", "--force"]) == 2
    assert "smaller than patch_size=512" in capsys.readouterr().err
    # the smoke coarse model leaves SSIM ~0.1: nothing passes 1.0, nor the fallbacks down to the floor
    assert main([*base, "--threshold", "1.0", "--criterion", "ssim", "--patch-size", "64", "--force"]) == 2
    err = capsys.readouterr().err
    assert "no noise patch found in any micrograph, even after" in err and "threshold 0.30" in err


def test_figures_run():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from nt2c.plots.extraction import plot_boxes, plot_local_ssim, plot_noise_statistics, plot_score_map

    raw, enh = _textured(shape=(256, 256), seed=7, sigma=6.0)
    result = extract_noise_patches(raw, enh, patch_size=64, threshold=-1.0, max_overlap=0.0)
    figs = [
        plot_boxes(raw, result, particles_xy=[[50, 60]], particle_radius_px=10, show_rejected=True),
        plot_local_ssim(normalize_unit(enh), result.boxes[:2], patch_size=64),
        plot_score_map(result),
        plot_noise_statistics(
            {"extracted": result.patches, "white": np.random.default_rng(0).normal(size=(4, 64, 64))},
            pixel_size_A=1.5,
        ),
    ]
    assert all(isinstance(f, Figure) for f in figs)
    for f in figs:
        plt.close(f)


def test_box_particle_distance():
    from nt2c.extraction import box_particle_distance

    boxes = np.array([[0, 0], [100, 100]])
    xy = np.array([[10.0, 5.0], [130.0, 100.0]])  # (x, y): the first lies inside box 0
    dist = box_particle_distance(boxes, 24, xy)
    assert dist[0] == 0.0
    # box 1 spans cols 100..123, rows 100..123; particle (x=130, y=100) is 7 px beyond col 123
    assert dist[1] == pytest.approx(7.0)
    assert np.isinf(box_particle_distance(boxes, 24, np.empty((0, 2)))).all()


def test_relaxations_lower_the_threshold_to_its_floor_then_halve_the_patches():
    from nt2c.extraction.stage import relaxations

    settings = stage_config("extract-noise", "quick", patch_size=128, threshold=0.7, threshold_floor=0.45)
    steps = relaxations(settings)
    assert steps[0] == ("", {k: getattr(settings, k) for k in steps[0][1]})
    described = [what for what, _ in steps[1:]]
    assert described[:3] == ["threshold 0.60", "threshold 0.50", "patch_size 64 px"]
    assert described[3:] == ["threshold 0.60, patch_size 64 px", "threshold 0.50, patch_size 64 px"]
    assert all(options["threshold"] >= 0.45 for _, options in steps)
    assert relaxations(stage_config("extract-noise", "quick", patch_size=128, fallback=False)) == steps[:1]


def test_a_crowded_field_falls_back_and_says_so(run_dir, caplog):
    """Few background patches at the configured settings: the stage relaxes them and records what it did."""
    from nt2c.extraction.stage import extract_noise_stage
    from nt2c.io import read_json, write_mrc

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:256, :256]
    field = np.zeros((256, 256))
    for cy in range(16, 256, 40):  # a particle every 40 px: no empty 128 px square anywhere
        for cx in range(16, 256, 40):
            field -= 3 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 6.0**2))
    raw = (field + rng.normal(0, 1, field.shape)).astype(np.float32)
    path = write_mrc(run_dir.path / "crowded.mrc", raw, pixel_size_A=2.0)
    (run_dir.path / "micrographs.txt").write_text(f"{path}\n")
    import torch

    from nt2c.denoiser.inference import save_model
    from nt2c.denoiser.network import UNet

    torch.manual_seed(0)
    save_model(UNet(width=4, depth=3), run_dir.models / "coarse.safetensors")
    settings = stage_config(
        "extract-noise", "quick", patch_size=128, criterion="std", std_max=1e-6, min_patches=4, device="cpu"
    )
    with pytest.raises(NoNoisePatchError, match="even after 1 relaxation"):
        extract_noise_stage(run_dir, settings, run_dir.params())
    settings = stage_config(
        "extract-noise",
        "quick",
        patch_size=128,
        threshold=0.99,
        threshold_floor=-1.0,
        min_patches=4,
        device="cpu",
    )
    with caplog.at_level("WARNING"):
        outputs = extract_noise_stage(run_dir, settings, run_dir.params())
    record = read_json(run_dir.noise / "extraction.json")
    used = [step for step in record["fallbacks"] if step["used"]]
    assert len(used) == 1 and used[0]["fallback"] != "configured options" and used[0]["patches"] >= 4
    assert record["fallbacks"][0] == {"fallback": "configured options", "patches": 0, "used": False}
    assert "extract-noise fallback" in caplog.text
    assert {p.name for p in outputs} >= {
        "patches.mrcs",
        "patches.csv",
        "extraction.json",
        "crowded_boxes.png",
    }
