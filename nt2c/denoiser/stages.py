"""The stages ``train-coarse`` and ``train-fine``: the same training on two sets of pairs.

* coarse: pairs simulated from the atomic model (``RUN/simulated/pairs_*.mrcs``), from random weights;
* fine: the re-weighted pairs (simulated signal + the micrographs' real noise, ``RUN/pairs/pairs_*.mrcs``),
  starting from the coarse weights -- fine-tuning: the network already denoises, and now adapts to the real
  noise.

Each writes ``RUN/models/<name>.safetensors`` + ``<name>.json`` (architecture, normalisation, training record)
and ``RUN/report/<name>_curves.json``; checkpoints go to ``RUN/checkpoints/<name>.pt``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from nt2c.denoiser.pairs import load_pairs, read_pair_sources
from nt2c.denoiser.training import TrainResult, _settings_dict, train_denoiser
from nt2c.errors import StageError
from nt2c.io import write_json

__all__ = ["train_coarse_stage", "train_fine_stage"]

log = logging.getLogger(__name__)


def _finish(
    run,
    name: str,
    result: TrainResult,
    cfg: dict,
    pixel_size_A: float | None,
    source: str,
    extra: dict | None = None,
) -> list[Path]:
    """Write the model, its sidecar and the learning curves (rank 0; the others wait and return the paths)."""
    from nt2c.denoiser.inference import save_model
    from nt2c.run import distributed as ddp

    weights, sidecar, curves = (
        run.models / f"{name}.safetensors",
        run.models / f"{name}.json",
        run.report / f"{name}_curves.json",
    )
    if not ddp.is_main():
        ddp.barrier()
        return [weights, sidecar, curves]
    final = result.curves["val"][-1] if result.curves["val"] else {}
    info = {
        "training": {
            "stage": f"train-{name}",
            "source_pairs": source,
            "settings": cfg,
            "pixel_size_A": pixel_size_A,
            "seconds": round(result.seconds, 2),
            "final_val_psnr_dB": final.get("psnr_dB"),
            "input_val_psnr_dB": result.curves.get("input_psnr_dB"),
            **result.info,
            **(extra or {}),
        }
    }
    outputs = [*save_model(result.model, weights, info=info), write_json(curves, result.curves)]
    ddp.barrier()
    return outputs


def train_coarse_stage(run, settings, params) -> list[Path]:
    """Stage ``train-coarse``: train the U-Net on ``RUN/simulated/pairs_{noisy,clean}.mrcs``.

    Writes ``RUN/models/coarse.safetensors`` + ``coarse.json`` and ``RUN/report/coarse_curves.json``;
    checkpoints go to ``RUN/checkpoints/coarse.pt``.
    """
    noisy, clean, pixel_size = load_pairs(run.simulated, stage_hint=f"nt2c simulate --run {run.path}")
    cfg = _settings_dict(settings)
    result = train_denoiser(
        noisy,
        clean,
        settings,
        sources=read_pair_sources(run.simulated, len(noisy)),
        checkpoint_path=run.checkpoints / "coarse.pt",
        desc="train-coarse",
    )
    return _finish(run, "coarse", result, cfg, pixel_size or params.pixel_size_A, "simulated/pairs_*.mrcs")


def train_fine_stage(run, settings, params) -> list[Path]:
    """Stage ``train-fine``: start from ``RUN/models/coarse.safetensors`` and train on ``RUN/pairs/``.

    The architecture is the coarse model's (a ``width``/``first_kernel`` in ``settings`` that differs is
    ignored with a warning). Writes ``RUN/models/fine.safetensors`` + ``fine.json`` and
    ``RUN/report/fine_curves.json``; checkpoints go to ``RUN/checkpoints/fine.pt``.
    """
    from nt2c.denoiser.inference import load_model

    coarse_path = run.models / "coarse.safetensors"
    if not coarse_path.is_file():
        raise StageError(f"{coarse_path} is missing; run `nt2c train-coarse --run {run.path}` first.")
    coarse = load_model(coarse_path)
    arch = coarse.config()
    cfg = _settings_dict(settings)
    if (cfg["width"], cfg["first_kernel"]) != (arch["width"], arch["first_kernel"]):
        log.warning(
            "train-fine: using the coarse model's architecture (width %d, first_kernel %d) instead of "
            "width %d, first_kernel %d",
            arch["width"],
            arch["first_kernel"],
            cfg["width"],
            cfg["first_kernel"],
        )
    noisy, clean, pixel_size = load_pairs(run.pairs, stage_hint=f"nt2c reweight --run {run.path}")
    result = train_denoiser(
        noisy,
        clean,
        settings,
        sources=read_pair_sources(run.pairs, len(noisy)),
        init_state=coarse.state_dict(),
        init_config=arch,
        checkpoint_path=run.checkpoints / "fine.pt",
        desc="train-fine",
    )
    return _finish(
        run,
        "fine",
        result,
        cfg,
        pixel_size or params.pixel_size_A,
        "pairs/pairs_*.mrcs",
        extra={"initialised_from": "models/coarse.safetensors"},
    )
