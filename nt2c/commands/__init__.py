"""Subcommands of the ``nt2c`` command line, one module each (see :mod:`nt2c.cli`).

To add a command, write ``nt2c/commands/<module>.py`` with ``HELP``, ``add_args`` and ``main``. A pipeline
stage's command is registered with the stage itself (``command`` of :data:`nt2c.run.stages.STAGES`); the
other commands are listed below.
"""

from nt2c.run.stages import STAGES


def _commands() -> dict[str, str]:
    """Command-line name -> module, in the order of the pipeline (as ``nt2c --help`` lists them)."""
    out = {"fetch": "fetch"}
    for name, stage in STAGES.items():
        out[name] = stage.command
        if name == "train-gan":
            out["sample-noise"] = "sample_noise"  # uses the GAN the stage trained
    out.update({"denoise": "denoise", "evaluate": "evaluate", "run": "run"})
    out["notebooks"] = "notebooks"
    return out


COMMANDS: dict[str, str] = _commands()
