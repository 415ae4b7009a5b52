"""The U-Net denoiser: its network, its training pairs and training, the two stages and inference.

Notebooks ``02_coarse_denoiser`` and ``06_fine_denoiser`` walk through it.

* :mod:`.network` -- :class:`UNet` (paper section 2.1.2, Fig. 2);
* :mod:`.pairs` -- training pairs: normalisation, augmentation, a validation split that shares no pixel;
* :mod:`.training` -- :func:`training_step` (Eq. 1) and :func:`train_denoiser`, the loop around it;
* :mod:`.stages` -- the stages ``train-coarse`` (simulated pairs) and ``train-fine`` (from the coarse
  weights);
* :mod:`.inference` -- model files (safetensors + JSON sidecar) and :func:`denoise_micrograph`.
"""

from nt2c.denoiser.inference import denoise_micrograph, load_model, read_model_info, save_model
from nt2c.denoiser.network import UNet, build_model
from nt2c.denoiser.pairs import augment_pair, load_pairs, normalize_pair, split_by_source, toy_pairs
from nt2c.denoiser.stages import train_coarse_stage, train_fine_stage
from nt2c.denoiser.training import TrainResult, lr_at, train_denoiser, training_step, validation_psnr_dB

__all__ = [
    "UNet",
    "build_model",
    "augment_pair",
    "load_pairs",
    "normalize_pair",
    "split_by_source",
    "toy_pairs",
    "train_coarse_stage",
    "train_fine_stage",
    "TrainResult",
    "lr_at",
    "train_denoiser",
    "training_step",
    "validation_psnr_dB",
    "load_model",
    "save_model",
    "read_model_info",
    "denoise_micrograph",
]
