"""The ``nt2c`` command line: one entry point, one subcommand per stage.

Each subcommand is a module of :mod:`nt2c.commands` with ``HELP`` (one line), ``add_args(parser)`` and
``main(args) -> int``. Errors a user can fix print one readable message and exit with status 2.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import sys

from nt2c import __version__
from nt2c.errors import NT2CError

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every registered subcommand."""
    from nt2c.commands import COMMANDS

    parser = argparse.ArgumentParser(
        prog="nt2c",
        description="Noise-Transfer2Clean: learn the real noise of cryo-EM micrographs and train a denoiser "
        "with it.",
        epilog="Run `nt2c COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"nt2c {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what each stage does")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"nt2c.commands.{module_name}")
        cmd = sub.add_parser(name, help=module.HELP, description=getattr(module, "DESCRIPTION", module.HELP))
        module.add_args(cmd)
        cmd.set_defaults(_main=module.main)
    return parser


#: Errors of the file system a user fixes (permissions, a full or read-only disk): one line, exit status 2.
_USER_OS_ERRORS = {
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOSPC,
    errno.EDQUOT,
    errno.ENAMETOOLONG,
    errno.ENOTDIR,
    errno.EISDIR,
}


def _os_error_message(exc: OSError) -> str:
    """One line naming the file and saying what to do."""
    where = exc.filename if exc.filename is not None else "a file"
    what = exc.strerror or str(exc)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = "choose a folder you can write to (or read from), or fix its permissions"
    elif exc.errno in (errno.ENOSPC, errno.EDQUOT):
        advice = "free some space or choose another folder"
    elif exc.errno in (errno.ENOTDIR, errno.EISDIR):
        advice = "check which of the paths are files and which are folders"
    else:
        advice = "use a shorter path"
    return f"cannot use {where}: {what}; {advice}."


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args._main(args) or 0)
    except NT2CError as exc:
        print(f"nt2c {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in _USER_OS_ERRORS:
            raise
        print(f"nt2c {args.command}: error: {_os_error_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nt2c {args.command}: interrupted; run the same command again to resume.", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
