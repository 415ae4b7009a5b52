"""A package-level switch for progress bars.

``TQDM_DISABLE`` does not silence the notebook widget that ``tqdm.auto`` picks under papermill and nbval, so
nt2c routes every progress bar through :func:`progress`, which honours :func:`set_progress` and the
``NT2C_PROGRESS`` environment variable (``0`` turns bars off).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

__all__ = ["progress", "set_progress", "progress_enabled"]

_enabled: bool | None = None


def set_progress(enabled: bool) -> None:
    """Turn nt2c's progress bars on or off for this process."""
    global _enabled
    _enabled = bool(enabled)


def progress_enabled() -> bool:
    """Whether progress bars are shown."""
    if _enabled is not None:
        return _enabled
    return os.environ.get("NT2C_PROGRESS", "1").lower() not in {"0", "false", "no", "off"}


def progress(iterable: Iterable | None = None, **kwargs):
    """Wrap ``iterable`` in a tqdm bar when progress bars are enabled (same arguments as ``tqdm``)."""
    from tqdm.auto import tqdm

    kwargs.setdefault("disable", not progress_enabled())
    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
