"""Typed, validated configuration shared by notebooks, the command line and papermill.

Two kinds of settings:

* :class:`ExperimentParams` -- the acquisition of the user's data, one flat YAML mapping whose keys are
  pinned (``pixel_size_A, voltage_kV, cs_mm, amplitude_contrast, defocus_um, astigmatism_um, dose_e_per_A2,
  detector, ice_thickness_nm, structural_noise, image_size_px, specimen, n_particles`` and a few more with
  defaults). It is what ``RUN/params.yaml`` holds.
* one model per pipeline stage (:class:`SimulateConfig`, :class:`CoarseTrainConfig`, ...), whose defaults
  depend on the run *profile*: ``smoke`` (seconds per stage, for tests and CI), ``quick`` (the default:
  the default architectures, short training, whole pipeline well under 20 minutes on 2 CPU cores) and
  ``full`` (paper scale, meant for a GPU). Profiles change sizes and lengths, never the algorithm.

:func:`stage_config` builds a stage model for a profile with overrides; every bad value raises
:class:`~nt2c.errors.ConfigError` naming the key, the value and what is allowed.

One module because every setting of every stage, with its unit, bounds and profile defaults, is meant
to be read in one place (notebooks, the CLI and papermill share these models); most of its length is the
field descriptions.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from nt2c.errors import ConfigError, InputError

log = logging.getLogger(__name__)

__all__ = [
    "PROFILES",
    "DETECTORS",
    "ExperimentParams",
    "SimulateConfig",
    "CoarseTrainConfig",
    "ExtractConfig",
    "CalibrateConfig",
    "GanConfig",
    "ReweightConfig",
    "FineTrainConfig",
    "DenoiseConfig",
    "STAGE_MODELS",  # noqa: F822 (module __getattr__: from the registry nt2c.run.stages.STAGES)
    "stage_config",
    "parse_stage_overrides",
    "load_params",
    "save_params",
    "defaulted_params",
    "format_validation_error",
]

Profile = Literal["smoke", "quick", "full"]
PROFILES: tuple[str, ...] = ("smoke", "quick", "full")
DETECTORS: tuple[str, ...] = ("ideal", "counting", "k2", "k3", "falcon3", "falcon4")
_PDB_ID = re.compile(r"^[0-9][A-Za-z0-9]{3}$")
_EXPONENT_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


class _Model(BaseModel):
    """Strict base: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python (YAML/JSON-ready) copy of the settings."""
        return self.model_dump(mode="json")


class ExperimentParams(_Model):
    """Acquisition parameters of an experiment (the pinned keys of ``params.yaml``).

    Units are in the names: Angstrom (``_A``), kilovolt, millimetre, micrometre, nanometre, electrons per
    square Angstrom. Defocus is underfocus-positive (CTFFIND convention).
    """

    pixel_size_A: float = Field(1.0, gt=0, le=50, description="pixel size (A/px)")
    voltage_kV: float = Field(300.0, ge=60, le=1000, description="acceleration voltage (kV)")
    cs_mm: float = Field(2.7, ge=0, le=10, description="spherical aberration (mm)")
    amplitude_contrast: float = Field(0.07, ge=0, lt=1, description="amplitude contrast ratio A")
    defocus_um: tuple[float, float] = Field(
        (1.0, 2.5), description="[min, max] underfocus (um), drawn uniformly per micrograph"
    )
    astigmatism_um: float = Field(0.05, ge=0, le=5, description="defocus difference dfU - dfV (um)")
    dose_e_per_A2: float = Field(40.0, gt=0, le=10000, description="total electron dose (e/A^2)")
    detector: Literal["ideal", "counting", "k2", "k3", "falcon3", "falcon4"] = Field(
        "k2", description="detector MTF/DQE preset"
    )
    ice_thickness_nm: float = Field(30.0, ge=0, le=500, description="vitreous ice thickness (nm)")
    structural_noise: bool = Field(True, description="add structural ice noise (Gaussian random field)")
    image_size_px: tuple[int, int] = Field((1024, 1024), description="[ny, nx] of each micrograph (px)")
    specimen: str = Field("builtin", description="'builtin', a .pdb/.cif(.gz) path, or a 4-character PDB id")
    n_particles: int = Field(30, ge=0, le=100000, description="particles per micrograph")
    n_micrographs: int = Field(4, ge=1, le=100000, description="micrographs to simulate")
    b_factor_A2: float = Field(20.0, ge=0, le=1000, description="CTF B-factor envelope (A^2)")
    phase_shift_deg: float = Field(0.0, ge=-360, le=360, description="phase-plate phase shift (deg)")
    specimen_diameter_A: float = Field(
        120.0, gt=10, le=2000, description="diameter of the built-in specimen (A); ignored for a PDB file"
    )
    # simulation-only keys (defaults keep older params.yaml files valid)
    specimen_symmetry: str = Field(
        "C1",
        pattern=r"^([CcDd][1-9][0-9]?|[TOItoi])$",
        description="point group of the built-in specimen (C1, D7, O, I)",
    )
    specimen_seed: int = Field(0, ge=0, description="seed of the built-in specimen (its atoms)")
    phase_model: Literal["weak", "full"] = Field(
        "weak", description="weak-phase approximation or the full phase grating exp(i sigma V)"
    )
    hydrogens: bool = Field(True, description="add implicit hydrogens to models that do not list them")
    ice_gradient_nm_per_um: float = Field(
        0.0, ge=-100, le=100, description="slow ice-thickness gradient (nm per um)"
    )
    carbon_thickness_nm: float = Field(
        0.0, ge=0, le=100, description="continuous carbon support film (nm), 0 = none"
    )

    @field_validator("defocus_um", mode="before")
    @classmethod
    def _defocus_pair(cls, value):
        if isinstance(value, (int, float)):
            return (float(value), float(value))
        return value

    @field_validator("defocus_um")
    @classmethod
    def _defocus_range(cls, value):
        low, high = value
        if not (0 < low <= high <= 20):
            raise ValueError("needs 0 < min <= max <= 20 (underfocus in micrometres, e.g. [1.0, 2.5])")
        return value

    @field_validator("image_size_px", mode="before")
    @classmethod
    def _size_pair(cls, value):
        if isinstance(value, int):
            return (value, value)
        return value

    @field_validator("image_size_px")
    @classmethod
    def _size_range(cls, value):
        if min(value) < 64 or max(value) > 16384:
            raise ValueError("each side must be between 64 and 16384 pixels, e.g. [1024, 1024]")
        return value

    @field_validator("specimen")
    @classmethod
    def _specimen_kind(cls, value: str):
        value = value.strip()
        if value == "builtin" or _PDB_ID.match(value):
            return value
        lowered = value.lower()
        if lowered.endswith((".pdb", ".cif", ".ent", ".mmcif", ".pdb.gz", ".cif.gz", ".ent.gz", ".mmcif.gz")):
            return value
        raise ValueError(
            "must be 'builtin', a path ending in .pdb/.cif (optionally .gz) or a 4-character PDB id"
        )

    @property
    def wavelength_A(self) -> float:
        """Relativistic electron wavelength (Angstrom) at ``voltage_kV``."""
        from nt2c.simulation.ctf import electron_wavelength_A

        return electron_wavelength_A(self.voltage_kV)


class _StageModel(_Model):
    """Settings common to every stage."""

    seed: int = Field(0, ge=0, description="random seed")
    device: str = Field("auto", description="'auto', 'cpu', 'cuda' or 'cuda:N'")

    @field_validator("device")
    @classmethod
    def _device_name(cls, value: str):
        if value == "auto" or value == "cpu" or re.fullmatch(r"cuda(:\d+)?", value):
            return value
        raise ValueError("must be 'auto', 'cpu', 'cuda' or 'cuda:N'")


class SimulateConfig(_StageModel):
    """Stage ``simulate``: micrographs and training pairs from the experiment parameters."""

    n_micrographs: int | None = Field(None, ge=1, description="override params.yaml's n_micrographs")
    image_size_px: tuple[int, int] | None = Field(None, description="override params.yaml's image_size_px")
    pair_patch_px: int = Field(256, ge=32, le=2048, description="side of the training patch pairs (px)")
    n_pairs: int = Field(
        512, ge=2, description="(noisy, clean) training pairs cut from the simulated micrographs"
    )
    n_test_micrographs: int = Field(
        2,
        ge=0,
        le=1000,
        description="micrographs of a separate test set (RUN/test/, own seeds, never trained on)",
    )
    defocus_source: Literal["params", "calibration"] = Field(
        "params",
        description="defocus of the training micrographs: drawn from params.defocus_um, or the defoci fitted "
        "to your micrographs (RUN/calibration/defocus.csv, fitted before simulating)",
    )


class _TrainModel(_StageModel):
    patch_px: int = Field(128, ge=32, le=1024, description="training crop side (px, multiple of 32)")
    batch_size: int = Field(8, ge=1, le=1024)
    steps: int = Field(2000, ge=1, description="optimiser steps")
    lr: float = Field(1e-3, gt=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0)
    val_fraction: float = Field(0.1, gt=0, lt=0.9, description="share of pairs held out for validation")
    checkpoint_every: int = Field(200, ge=1, description="steps between checkpoints")
    width: int = Field(32, ge=4, le=256, description="U-Net channels of the first level")
    first_kernel: int = Field(3, ge=1, le=15, description="kernel size of the first convolution (odd)")
    mixed_precision: bool = Field(True, description="use autocast on CUDA")

    @field_validator("patch_px")
    @classmethod
    def _multiple_of_32(cls, value: int):
        if value % 32:
            raise ValueError("must be a multiple of 32 (the U-Net pools five times)")
        return value

    @field_validator("first_kernel")
    @classmethod
    def _odd(cls, value: int):
        if value % 2 == 0:
            raise ValueError("must be odd")
        return value


class CoarseTrainConfig(_TrainModel):
    """Stage ``train-coarse``: the U-Net on simulated (noisy, clean) pairs."""


class ExtractConfig(_StageModel):
    """Stage ``extract-noise``: patch-similarity guided background patches (paper section 2.2.2)."""

    patch_size: int = Field(320, ge=16, le=4096, description="d: side of the candidate patches (px)")
    step: int | None = Field(None, ge=1, description="s: stride between candidates (default d/2)")
    n_sub: int = Field(4, ge=2, le=64, description="N: local patches per candidate (a square number)")
    threshold: float = Field(
        0.7, ge=-1, le=1, description="thre: minimum pairwise SSIM of a background patch"
    )
    criterion: Literal["ssim", "std", "meanvar"] = Field("ssim", description="background test")
    std_max: float = Field(1.0, gt=0, description="'std' criterion: max local std, grey levels of [0, 255]")
    mean_tol: float = Field(0.1, gt=0, description="'meanvar' criterion: relative tolerance on local means")
    var_tol: float = Field(
        0.25, gt=0, description="'meanvar' criterion: relative tolerance on local variances"
    )
    clip_percentile: float = Field(
        0.0, ge=0, lt=50, description="normalise the enhanced image by these percentiles (0 = min-max, paper)"
    )
    min_patches: int = Field(
        16, ge=1, description="fewer patches than this over all micrographs: try the fallbacks (see fallback)"
    )
    fallback: bool = Field(
        True,
        description="relax the threshold (down to threshold_floor), then halve the patch size (to 64 px)",
    )
    threshold_floor: float = Field(0.3, ge=-1, le=1, description="lowest SSIM threshold a fallback uses")
    margin_px: int = Field(
        0, ge=0, le=1024, description="test the patch grown by this margin (px); 0 = paper"
    )
    outlier_sigma: float | None = Field(
        6.0, gt=0, description="raw-statistics outlier guard (robust sigmas); None = off"
    )
    max_overlap: float | None = Field(
        None, ge=0, lt=1, description="max shared area fraction between patches; None = any"
    )
    micrographs: tuple[str, ...] | None = Field(
        None,
        description="micrograph paths/globs (default: RUN/micrographs.txt, else RUN/simulated/mic_????.mrc)",
    )

    @field_validator("n_sub")
    @classmethod
    def _square(cls, value: int):
        root = round(value**0.5)
        if root * root != value:
            raise ValueError("must be a square number (4, 9, 16, ...)")
        return value


class GanConfig(_StageModel):
    """Stage ``train-gan``: the WGAN-GP noise synthesizer (paper section 2.1.2)."""

    patch_px: Literal[64, 128, 256] = Field(64, description="side of generated noise patches (px)")
    latent_dim: int = Field(100, ge=1, le=4096)
    width: int = Field(64, ge=4, le=1024, description="channels of the critic's first layer")
    batch_size: int = Field(32, ge=2, le=1024)
    iterations: int = Field(2000, ge=1, description="generator iterations")
    n_critic: int = Field(5, ge=1, le=50)
    gp_lambda: float = Field(10.0, ge=0)
    lr: float = Field(1e-4, gt=0, lt=1)
    beta1: float = Field(0.5, ge=0, lt=1)
    beta2: float = Field(0.9, ge=0, lt=1)
    checkpoint_every: int = Field(200, ge=1)
    augment: bool = Field(True, description="random 90-degree rotations and flips (assume isotropic noise)")
    holdout_fraction: float = Field(
        0.2, ge=0, lt=1, description="share of patches held out for the fidelity report"
    )
    n_eval: int = Field(256, ge=8, le=100000, description="patches per set in the fidelity report")
    spatial_latent: bool = Field(
        False, description="latent_dim values per (d/16)^2 grid cell instead of one vector (not in the paper)"
    )


class CalibrateConfig(_StageModel):
    """Stage ``calibrate``: the micrographs measured against the simulation (``RUN/calibration/``)."""

    ctffind: str | None = Field(
        None,
        description="a CTFFIND4 output text file, one line per micrograph of the run, listed beside the fits",
    )
    relion: str | None = Field(None, description="RELION micrographs_ctf.star, listed beside the fits")
    box_px: int = Field(512, ge=64, le=4096, description="tile side of the power spectra (px)")


class ReweightConfig(_StageModel):
    """Stage ``reweight``: contrast-guided re-weighting (paper section 2.2.3)."""

    method: Literal["paper", "matched", "calibrated"] = Field(
        "matched",
        description="coefficient fit: 'matched' (the simulator's noise-to-signal ratio), 'calibrated' (the "
        "user's micrographs' own ratio, measured from their noise patches) or 'paper' (Eq. 4 literally)",
    )
    n_pairs: int = Field(512, ge=2)
    noise_source: Literal["gan", "patches"] = Field(
        "patches",
        description="noise V transferred onto the clean patches: 'patches' (random crops of the extracted "
        "noise patches, rotated and flipped; the default, chosen by measurement) or 'gan' (the paper: "
        "samples of the trained GAN)",
    )
    patch_px: int | None = Field(
        None,
        ge=32,
        le=1024,
        description="side of the pairs (px); None: the GAN's patch side; larger: GAN patches blended into "
        "larger noise fields (nt2c.noise.fields.blend_noise_patches)",
    )


class FineTrainConfig(_TrainModel):
    """Stage ``train-fine``: the U-Net initialised from the coarse one, on re-weighted pairs."""


#: Default of ``denoise.low_frequency_from_raw_px``: periods longer than about 50 px come from the raw
#: micrograph (:func:`nt2c.denoiser.inference.keep_raw_low_frequencies`). Chosen on the DEV halves of the
#: independent simulator (data set B) and of the real EMPIAR-10146 averages and frames
#: (``benchmarks/RESULTS.md``).
LOW_FREQUENCY_FROM_RAW_PX = 50.0


class DenoiseConfig(_StageModel):
    """Whole-micrograph inference."""

    tile: int = Field(512, ge=64, le=8192, description="tile side (px)")
    overlap: int = Field(64, ge=0, le=2048, description="overlap between tiles (px)")
    batch_size: int = Field(4, ge=1, le=256)
    normalization: Literal["tiles", "global"] = Field(
        "tiles", description="z-score by the median statistics of 128 px tiles, or of the whole micrograph"
    )
    low_frequency_from_raw_px: float = Field(
        LOW_FREQUENCY_FROM_RAW_PX,
        ge=0,
        le=1e6,
        description="periods longer than about this (px) are taken from the raw micrograph, where shot noise "
        "is weak and networks trained on small patches lose them; 0: the network's output everywhere",
    )
    model: Literal["auto", "fine", "coarse"] = Field(
        "auto",
        description="what nt2c run delivers in RUN/denoised: the model Stein's self-check finds better "
        "(auto), or always the fine or the coarse one",
    )

    @model_validator(mode="after")
    def _overlap_fits(self):
        if 2 * self.overlap >= self.tile:
            raise ValueError(f"overlap={self.overlap} must be less than half of tile={self.tile}")
        return self


def _stage_models() -> dict[str, type[_StageModel]]:
    """Stage name -> settings model, from the one registry of stages (:data:`nt2c.run.stages.STAGES`)."""
    from nt2c.run.stages import STAGES  # lazy: the registry imports the models of this module

    return {**{name: stage.config for name, stage in STAGES.items()}, "denoise": DenoiseConfig}


def __getattr__(name: str):
    # STAGE_MODELS: every pipeline stage's settings model (from nt2c.run.stages.STAGES) plus "denoise"
    if name == "STAGE_MODELS":
        return _stage_models()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Profile defaults, stage by stage. Only sizes and lengths differ between profiles.
_PROFILE_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "smoke": {
        "simulate": {
            "n_micrographs": 2,
            "image_size_px": (256, 256),
            "pair_patch_px": 64,
            "n_pairs": 16,
            "n_test_micrographs": 1,
        },
        "train-coarse": {"patch_px": 64, "batch_size": 4, "steps": 4, "width": 8, "checkpoint_every": 2},
        # the smoke coarse model (a few steps) leaves SSIM ~0 everywhere: accept every candidate (plumbing)
        "extract-noise": {"patch_size": 64, "threshold": -1.0},
        "train-gan": {
            "patch_px": 64,
            "batch_size": 4,
            "iterations": 3,
            "width": 8,
            "checkpoint_every": 2,
            "n_eval": 32,
        },
        "reweight": {"n_pairs": 16},
        "train-fine": {"patch_px": 64, "batch_size": 4, "steps": 4, "width": 8, "checkpoint_every": 2},
        "denoise": {"tile": 128, "overlap": 16},
    },
    "quick": {
        "simulate": {"pair_patch_px": 256, "n_pairs": 256},
        "train-coarse": {"patch_px": 128, "batch_size": 8, "steps": 300, "checkpoint_every": 100},
        "extract-noise": {
            "patch_size": 64
        },  # 30 particles of 124 px leave few empty 128 px patches in 1024 px
        "train-gan": {
            "patch_px": 64,
            "batch_size": 16,
            "iterations": 300,
            "width": 8,
            "lr": 1e-3,
            "checkpoint_every": 50,
        },
        # 128 px pairs (noise patches blended): the fine model sees the context the coarse one trained on
        "reweight": {"n_pairs": 1024, "patch_px": 128},  # 64 MB per stack
        "train-fine": {"patch_px": 128, "batch_size": 16, "steps": 300, "lr": 3e-4, "checkpoint_every": 100},
        "denoise": {"tile": 512, "overlap": 64},
    },
    "full": {
        "simulate": {"pair_patch_px": 320, "n_pairs": 8192, "n_test_micrographs": 4},
        "train-coarse": {
            "patch_px": 256,
            "batch_size": 32,
            "steps": 20000,
            "width": 48,
            "checkpoint_every": 1000,
        },
        "extract-noise": {"patch_size": 320},
        "train-gan": {"patch_px": 128, "batch_size": 64, "iterations": 10000, "checkpoint_every": 1000},
        "reweight": {"n_pairs": 8192, "patch_px": 128},  # crops of the 320 px patches, 512 MB per stack
        "train-fine": {
            "patch_px": 128,
            "batch_size": 32,
            "steps": 10000,
            "lr": 3e-4,
            "width": 48,
            "checkpoint_every": 1000,
        },
        "denoise": {"tile": 1024, "overlap": 96, "batch_size": 8},
    },
}


def format_validation_error(exc: ValidationError, *, source: str = "parameters") -> str:
    """Turn a pydantic error into lines ``key = value: what is allowed``."""
    lines = [f"invalid {source}:"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        value = err.get("input")
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see the parameter list in the README)"
        lines.append(f"  {key} = {value!r}: {msg}")
    return "\n".join(lines)


def _validate(model: type[_Model], data: dict[str, Any], source: str):
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source=source)) from None


def stage_config(stage: str, profile: str = "quick", /, **overrides: Any):
    """Build the validated settings of ``stage`` for ``profile``, with ``overrides`` applied.

    Parameters
    ----------
    stage : str
        One of :data:`STAGE_MODELS` (``"simulate"``, ``"train-coarse"``, ...).
    profile : {"smoke", "quick", "full"}
    **overrides
        Field values replacing the profile's defaults; ``None`` values are ignored.

    Examples
    --------
    >>> stage_config("train-coarse", "smoke", steps=10).steps
    10
    """
    models = _stage_models()
    if stage not in models:
        raise ConfigError(f"unknown stage {stage!r}; stages are {', '.join(models)}.")
    if profile not in PROFILES:
        raise ConfigError(f"profile = {profile!r}: unknown profile; use one of {', '.join(PROFILES)}.")
    data = dict(_PROFILE_DEFAULTS[profile].get(stage, {}))
    data.update({k: v for k, v in overrides.items() if v is not None})
    return _validate(models[stage], data, f"{stage} settings (profile {profile})")


def parse_stage_overrides(items, profile: str = "quick") -> dict[str, dict[str, Any]]:
    """Parse ``STAGE.KEY=VALUE`` strings (``nt2c run --set``) into per-stage setting overrides.

    Parameters
    ----------
    items : iterable of str
        For example ``["extract-noise.threshold=0.5", "train-fine.steps=900"]``. Values are read as YAML
        scalars or lists (``0.5``, ``900``, ``true``, ``gan``, ``[1, 2]``).
    profile : str
        The profile the overrides will be applied to; each stage's settings are validated against it.

    Returns
    -------
    dict of str to dict
        ``{stage: {key: value}}``, ready for ``run_pipeline(stage_overrides=...)``.

    Raises
    ------
    ConfigError
        An item is not ``STAGE.KEY=VALUE``, names an unknown stage or key, or gives an invalid value.

    Examples
    --------
    >>> parse_stage_overrides(["train-fine.steps=900", "reweight.noise_source=gan"])
    {'train-fine': {'steps': 900}, 'reweight': {'noise_source': 'gan'}}
    """
    models = _stage_models()
    overrides: dict[str, dict[str, Any]] = {}
    for item in items:
        target, sep, text = str(item).partition("=")
        stage, dot, key = target.strip().rpartition(".")
        if not sep or not dot or not stage or not key:
            raise ConfigError(
                f"--set {item!r}: expected STAGE.KEY=VALUE, for example extract-noise.threshold=0.5 or "
                "train-fine.steps=900."
            )
        if stage not in models:
            raise ConfigError(f"--set {item!r}: unknown stage {stage!r}; stages are {', '.join(models)}.")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: {text!r} is not a readable value ({exc}).") from None
        if isinstance(value, str) and _EXPONENT_NUMBER.match(value):
            value = float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string
        fields = sorted(f for f in models[stage].model_fields if f not in ("device", "seed"))
        if key in ("device", "seed"):
            raise ConfigError(f"--set {item!r}: {key} is the same for every stage; use --{key}.")
        if key not in fields:
            raise ConfigError(
                f"--set {item!r}: {stage} has no setting {key!r}; its settings are {', '.join(fields)}."
            )
        overrides.setdefault(stage, {})[key] = value
    for stage, values in overrides.items():
        stage_config(stage, profile, **values)  # unknown keys and bad values fail here, naming them
    return overrides


def load_params(
    source: str | os.PathLike | dict | ExperimentParams | None = None, **overrides: Any
) -> ExperimentParams:
    """Read and validate experiment parameters.

    Parameters
    ----------
    source : path-like, dict, ExperimentParams or None
        A YAML file, a mapping, parameters to copy, or None for the defaults (the embedded example).
    **overrides
        Keys replacing those of ``source``.

    Returns
    -------
    ExperimentParams
    """
    name = "parameters"
    if source is None:
        data: dict[str, Any] = {}
    elif isinstance(source, ExperimentParams):
        data = source.to_dict()
    elif isinstance(source, dict):
        data = dict(source)
    else:
        path = Path(source)
        name = str(path)
        if not path.is_file():
            raise InputError(
                f"parameter file {path} does not exist; write one (see data_manifests/ for examples)."
            )
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(
                f"{path} is not a text (YAML) file; give the params.yaml of your data."
            ) from None
        if data is None:
            raise ConfigError(
                f"{path} is empty; write the acquisition parameters of your micrographs in it "
                "(pixel_size_A, voltage_kV, cs_mm, defocus_um, dose_e_per_A2, ...; see data_manifests/ for "
                "examples), or leave --params out to use the embedded example."
            )
        if not isinstance(data, dict):
            raise ConfigError(
                f"{path} must hold one flat mapping of keys to values, got {type(data).__name__}."
            )
    data.update({k: v for k, v in overrides.items() if v is not None})
    params = _validate(ExperimentParams, data, name)
    if source is not None and not isinstance(source, (dict, ExperimentParams)):
        filled = defaulted_params(params)
        if filled:
            log.warning(
                "%s does not give %s; using the defaults %s",
                name,
                ", ".join(filled),
                ", ".join(f"{k}={v!r}" for k, v in filled.items()),
            )
    return params


def defaulted_params(params: ExperimentParams) -> dict[str, Any]:
    """Return the keys of ``params`` that were not given and hold their default (key -> default)."""
    given = params.model_fields_set
    return {k: v for k, v in params.to_dict().items() if k not in given}


def save_params(params: ExperimentParams, path: str | os.PathLike, *, overwrite: bool = True) -> Path:
    """Write parameters as a flat YAML mapping (atomically)."""
    from nt2c.io import atomic_path

    path = Path(path)
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(yaml.safe_dump(params.to_dict(), sort_keys=False))
    return path
