"""Subcommands of the ``nt2c`` command line, one module each (see :mod:`nt2c.cli`).

To add a command, write ``nt2c/commands/<module>.py`` with ``HELP``, ``add_args`` and ``main`` and register
it below under its command-line name.
"""

COMMANDS: dict[str, str] = {
    "train-gan": "train_gan",
    "sample-noise": "sample_noise",
    "fetch": "fetch",
    "simulate": "simulate",
    "notebooks": "notebooks",
    "reweight": "reweight",
    "run": "run",
    "evaluate": "evaluate",
    "train-coarse": "train_coarse",
    "train-fine": "train_fine",
    "denoise": "denoise",
    "extract-noise": "extract_noise",
}
