"""The U-Net denoiser: its network, its training (coarse and fine stages) and whole-micrograph inference.

Notebooks ``02_coarse_denoiser`` and ``06_fine_denoiser`` walk through it.

* :mod:`.network` -- :class:`UNet` (paper section 2.1.2, Fig. 2);
* :mod:`.training` -- supervised training on (noisy, clean) pairs; stages ``train-coarse`` and ``train-fine``;
* :mod:`.inference` -- model files (safetensors + JSON sidecar) and :func:`denoise_micrograph`.
"""

from nt2c.denoiser.inference import denoise_micrograph, load_model, read_model_info, save_model
from nt2c.denoiser.network import UNet, build_model
from nt2c.denoiser.training import TrainResult, train_denoiser

__all__ = [
    "UNet",
    "build_model",
    "TrainResult",
    "train_denoiser",
    "load_model",
    "save_model",
    "read_model_info",
    "denoise_micrograph",
]
