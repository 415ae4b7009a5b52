"""Exceptions raised by nt2c.

Every error a user can cause (a bad parameter, a missing or corrupt file, an empty patch set) is an
:class:`NT2CError`. Its message says what went wrong *and what to do about it*; the command line prints it
without a traceback and exits with status 2.
"""

from __future__ import annotations

__all__ = ["NT2CError", "ConfigError", "InputError", "DataError", "StageError"]


class NT2CError(Exception):
    """Base class of the errors a user can fix."""


class ConfigError(NT2CError, ValueError):
    """A parameter or parameter file is invalid."""


class InputError(NT2CError, ValueError):
    """An input file or array is missing, unreadable or of the wrong shape or content."""


class DataError(NT2CError, RuntimeError):
    """A dataset could not be fetched or verified."""


class StageError(NT2CError, RuntimeError):
    """A pipeline stage cannot run (for example its inputs are missing)."""
