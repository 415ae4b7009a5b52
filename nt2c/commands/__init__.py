"""Subcommands of the ``nt2c`` command line, one module each (see :mod:`nt2c.cli`).

To add a command, write ``nt2c/commands/<module>.py`` with ``HELP``, ``add_args`` and ``main`` and register
it below under its command-line name.
"""

COMMANDS: dict[str, str] = {
    "fetch": "fetch",
    "simulate": "simulate",
    "notebooks": "notebooks",
    "reweight": "reweight",
    "run": "run",
}
