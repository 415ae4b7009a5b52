"""Mean-shift picking finds known blobs; scoring counts matches within the radius one-to-one."""

from __future__ import annotations

import numpy as np
import pytest

from nt2c.errors import InputError
from nt2c.evaluation.picking import contamination_mask, pick_particles, picking_heatmap, score_picks

TRUE_XY = np.array([[40, 40], [120, 60], [200, 50], [60, 150], [150, 140], [210, 210], [90, 220]], float)
DIAMETER = 20.0


def _blobs(noise: float, *, bright: bool = False, seed: int = 0) -> np.ndarray:
    yy, xx = np.mgrid[:256, :256]
    img = np.full((256, 256), 100.0)
    for x, y in TRUE_XY:
        img -= np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * (DIAMETER / 4) ** 2))
    if bright:
        img = 200.0 - img
    return img + noise * np.random.default_rng(seed).normal(size=img.shape)


@pytest.mark.parametrize("noise", [0.1, 1.0])
def test_picks_known_blobs_with_f1_one(noise):
    result = pick_particles(_blobs(noise), particle_diameter_px=DIAMETER)
    score = score_picks(result.coords_xy, TRUE_XY, radius_px=DIAMETER / 2)
    assert score["f1"] == 1.0, score
    # and the centres are accurate, not just within the radius
    d = [np.hypot(*(result.coords_xy[p] - TRUE_XY[t])) for p, t in score["matches"]]
    assert max(d) < 3.0
    assert result.heat.shape == (256, 256) and result.kept.sum() == 7


def test_polarity_and_mask():
    bright = _blobs(0.1, bright=True)
    assert (
        score_picks(
            pick_particles(bright, particle_diameter_px=DIAMETER, polarity="bright").coords_xy,
            TRUE_XY,
            radius_px=10,
        )["f1"]
        == 1.0
    )
    # with the wrong polarity the blobs are not found
    wrong = pick_particles(bright, particle_diameter_px=DIAMETER, polarity="dark")
    assert score_picks(wrong.coords_xy, TRUE_XY, radius_px=10)["tp"] == 0
    mask = np.zeros((256, 256), bool)
    mask[:, :128] = True
    kept = pick_particles(_blobs(0.1), particle_diameter_px=DIAMETER, exclude_mask=mask).coords_xy
    assert len(kept) == 4 and (kept[:, 0] > 128).all()


def test_pure_noise_gives_few_picks():
    noise = np.random.default_rng(3).normal(size=(256, 256))
    assert len(pick_particles(noise, particle_diameter_px=DIAMETER).coords_xy) <= 3


def test_heatmap_units_and_errors():
    heat = picking_heatmap(_blobs(1.0), particle_diameter_px=DIAMETER)
    assert abs(float(np.median(heat))) < 0.1
    assert heat[40, 40] > 2.5  # a particle stands out in robust sigmas
    with pytest.raises(InputError, match="polarity"):
        picking_heatmap(_blobs(0.1), particle_diameter_px=DIAMETER, polarity="grey")
    with pytest.raises(InputError, match="particle_diameter_px"):
        pick_particles(_blobs(0.1), particle_diameter_px=1000)


def test_contamination_mask_finds_large_dark_object():
    rng = np.random.default_rng(4)
    img = rng.normal(size=(200, 200))
    yy, xx = np.mgrid[:200, :200]
    img[(xx - 150) ** 2 + (yy - 50) ** 2 < 40**2] -= 20.0
    mask = contamination_mask(img, particle_diameter_px=10)
    assert mask[50, 150] and not mask[150, 50]
    assert not contamination_mask(rng.normal(size=(200, 200)), particle_diameter_px=10).any()


def test_score_picks_counts():
    truth = np.array([[0.0, 0.0], [10.0, 0.0], [50.0, 50.0]])
    picks = np.array([[1.0, 0.0], [9.0, 0.5], [30.0, 30.0], [5.0, 0.0]])
    s = score_picks(picks, truth, radius_px=3.0)
    assert (s["tp"], s["fp"], s["fn"]) == (2, 2, 1)
    assert s["precision"] == pytest.approx(0.5) and s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    # one-to-one: a pick between two particles matches only one of them
    s = score_picks([[5.0, 0.0]], [[3.0, 0.0], [7.0, 0.0]], radius_px=3.0)
    assert s["tp"] == 1 and s["fn"] == 1
    # Hungarian matching maximises matches where greedy nearest-first would not
    s = score_picks([[0.0, 0.0], [2.0, 0.0]], [[1.9, 0.0], [3.5, 0.0]], radius_px=2.0)
    assert s["tp"] == 2
    empty = score_picks(np.empty((0, 2)), truth, radius_px=3.0)
    assert empty["f1"] == 0.0 and empty["fn"] == 3
    with pytest.raises(InputError, match="radius_px"):
        score_picks(picks, truth, radius_px=0)


def test_threshold_sweep():
    from nt2c.evaluation.picking import threshold_sweep

    image = _blobs(1.0)
    sweep = threshold_sweep(image, TRUE_XY, particle_diameter_px=DIAMETER, thresholds=[1.0, 2.5, 50.0])
    assert list(sweep["threshold"]) == [1.0, 2.5, 50.0]
    assert sweep["f1"][1] == 1.0  # the default threshold finds all blobs (as above)
    assert sweep["n_picked"][2] == 0 and sweep["f1"][2] == 0.0  # nothing is 50 sigmas above the background
    # the reused heat map gives the same picks as a fresh call
    direct = pick_particles(image, particle_diameter_px=DIAMETER, threshold=1.0)
    assert sweep["n_picked"][0] == len(direct.coords_xy)
    with pytest.raises(InputError, match="thresholds is empty"):
        threshold_sweep(image, TRUE_XY, particle_diameter_px=DIAMETER, thresholds=[])
