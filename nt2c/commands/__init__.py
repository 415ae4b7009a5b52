"""Subcommands of the ``nt2c`` command line, one module each (see :mod:`nt2c.cli`).

To add a command, write ``nt2c/commands/<module>.py`` with ``HELP``, ``add_args`` and ``main`` and register
it below under its command-line name.
"""

# in the order of the pipeline, as `nt2c --help` lists them
COMMANDS: dict[str, str] = {
    "fetch": "fetch",
    "simulate": "simulate",
    "train-coarse": "train_coarse",
    "extract-noise": "extract_noise",
    "train-gan": "train_gan",
    "sample-noise": "sample_noise",
    "reweight": "reweight",
    "train-fine": "train_fine",
    "denoise": "denoise",
    "evaluate": "evaluate",
    "run": "run",
    "notebooks": "notebooks",
}
