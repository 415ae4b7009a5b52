"""`nt2c run` finishes on the data sets that stopped it: a crowded field and a single low-dose frame.

Both are simulated by nt2c's own simulator and run through the command line in the smoke profile, with
the extraction's real threshold (0.7, the quick and full profiles' value; the smoke profile's -1 would accept
every candidate and never need a fallback). They test that the run degrades gracefully and says what it did,
not the quality of the result.
"""

import numpy as np
import pytest
import yaml

from nt2c.cli import main
from nt2c.config import ExperimentParams
from nt2c.io import read_image, read_json, write_mrc
from nt2c.simulation.micrograph import simulate_micrograph


def _micrograph(folder, name, *, dose_e_per_A2, n_particles, size_px):
    params = ExperimentParams(
        pixel_size_A=1.5,
        dose_e_per_A2=dose_e_per_A2,
        n_particles=n_particles,
        image_size_px=(size_px, size_px),
        specimen_diameter_A=60.0,
    )
    mic = simulate_micrograph(params, seed=5, device="cpu", allow_fewer=True)
    path = write_mrc(folder / f"{name}.mrc", mic.noisy, pixel_size_A=1.5)
    params_path = folder / f"{name}.yaml"
    params_path.write_text(yaml.safe_dump(params.model_dump(mode="json")))
    return path, params_path, len(mic.coordinates_px)


def _run(tmp_path, micrograph, params, *settings):
    out = tmp_path / "run"
    argv = ["run", "--params", str(params), "--micrographs", str(micrograph), "--out", str(out)]
    argv += ["--profile", "smoke", "--device", "cpu", "--set", "extract-noise.threshold=0.7"]
    for setting in settings:
        argv += ["--set", setting]
    assert main(argv) == 0
    denoised, _ = read_image(out / "denoised" / micrograph.name)
    raw, _ = read_image(micrograph)
    assert denoised.shape == raw.shape and np.isfinite(denoised).all()
    return out, (out / "report" / "report.md").read_text()


def test_a_crowded_field_relaxes_the_extraction_trains_the_gan_and_denoises(tmp_path, caplog):
    """Several hundred particles per 1024^2 px: few candidates pass; the threshold is relaxed to its floor."""
    mic, params, placed = _micrograph(tmp_path, "crowded", dose_e_per_A2=40.0, n_particles=400, size_px=1024)
    assert placed >= 300
    with caplog.at_level("WARNING"):
        out, report = _run(
            tmp_path, mic, params, "extract-noise.threshold_floor=0.0", "reweight.noise_source=gan"
        )
    record = read_json(out / "noise" / "extraction.json")
    assert record["fallbacks"][0]["fallback"] == "configured options"
    used = [step for step in record["fallbacks"] if step["used"]]
    assert len(used) == 1 and used[0]["fallback"].startswith("threshold ") and used[0]["patches"] > 0
    assert "extract-noise fallback" in caplog.text
    assert "fallbacks tried: configured options:" in report
    assert (out / "models" / "gan.safetensors").is_file() and (out / "models" / "fine.safetensors").is_file()
    assert "## What RUN/denoised holds" in report


@pytest.mark.parametrize("dose_e_per_A2", [2.0])
def test_a_single_low_dose_frame_delivers_the_coarse_output_and_names_the_fallbacks(tmp_path, dose_e_per_A2):
    """2 e/A^2: nothing passes the background test even at the floor; the coarse output is delivered."""
    mic, params, _ = _micrograph(tmp_path, "frame", dose_e_per_A2=dose_e_per_A2, n_particles=60, size_px=512)
    out, report = _run(tmp_path, mic, params)
    assert "The **coarse** model's output: no noise patches" in report
    assert "fallbacks tried: configured options: 0; threshold 0.60: 0;" in report
    assert "threshold 0.30: 0" in report
    assert read_json(out / "run.json")["delivered_model"] == "coarse"
