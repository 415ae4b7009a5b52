"""The user's micrographs of a run: one glob expander and one reader/writer of the run's micrograph lists.

A run lists micrographs in plain text files, one path per line (blank lines and ``#`` comments skipped):

* ``RUN/micrographs.txt`` -- the micrographs the run learns its noise from and denoises ("same micrographs");
* ``RUN/heldout.txt`` -- micrographs of the same acquisition that are only denoised and scored, never learnt
  from ("new micrographs"; the embedded default writes some, a user may add their own).

Paths are written absolute. A relative path read back is relative to the run folder (never to the current
directory), so every stage and command resolves a list to the same files. ``nt2c run`` checks every micrograph
before it starts (:func:`check_micrographs`) and lists only the readable ones; the skipped ones stay in the
list as ``# skipped: PATH (reason)`` comment lines, so that the file says what was left out and why.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from nt2c.errors import InputError
from nt2c.io import atomic_path

__all__ = [
    "LISTS",
    "check_micrographs",
    "check_run_micrographs",
    "expand_micrographs",
    "read_micrograph_list",
    "spread_evenly",
    "write_micrograph_list",
]


def spread_evenly(items: Sequence, n: int) -> list:
    """Return at most ``n`` of ``items``, spread evenly over the list (first and last included), in order."""
    items = list(items)
    if len(items) <= n:
        return items
    step = (len(items) - 1) / (n - 1) if n > 1 else 0
    return [items[round(k * step)] for k in range(n)]


#: The run's micrograph lists: key -> file name in the run folder.
LISTS = {"micrographs": "micrographs.txt", "heldout": "heldout.txt"}


def expand_micrographs(
    micrographs: str | os.PathLike | Sequence[str | os.PathLike], *, base: str | os.PathLike | None = None
) -> list[Path]:
    """Expand paths and glob patterns (``'DIR/*.mrc'``) into a sorted list of absolute file paths.

    Parameters
    ----------
    micrographs : path-like or sequence of path-like
        Paths or glob patterns (``~`` expanded).
    base : path-like, optional
        Folder that relative paths and patterns are relative to (default: the current directory).

    Returns
    -------
    list of pathlib.Path
        Absolute, resolved, sorted, without duplicates.

    Raises
    ------
    InputError
        When nothing is given, a pattern matches nothing, or a path does not exist or is a folder.
    """
    items = [micrographs] if isinstance(micrographs, (str, os.PathLike)) else list(micrographs)
    if not items:
        raise InputError(
            "no micrographs given; pass --micrographs 'DIR/*.mrc' or leave it out for the embedded default."
        )
    root = Path(base).expanduser() if base is not None else Path.cwd()
    found: list[Path] = []
    for item in items:
        text = os.path.expanduser(os.fspath(item))
        if not os.path.isabs(text):
            text = os.fspath(root / text)
        if glob.has_magic(text):
            matches = sorted(m for m in glob.glob(text) if os.path.isfile(m))
            if not matches:
                raise InputError(
                    f"micrographs {os.fspath(item)!r} match no file; check the folder and the pattern "
                    "(quote it so the shell does not expand it)."
                )
            found += [Path(m) for m in matches]
        else:
            path = Path(text)
            if path.is_dir():
                raise InputError(
                    f"micrograph {path} is a folder; give the files, e.g. '{path / '*.mrc'}' (quoted)."
                )
            if not path.is_file():
                raise InputError(f"micrograph {path} does not exist; check the path.")
            found.append(path)
    return sorted({p.resolve() for p in found})


def _list_path(run, which: str) -> Path:
    if which not in LISTS:
        raise ValueError(f"unknown micrograph list {which!r}; lists are {', '.join(LISTS)}")
    return Path(getattr(run, "path", run)) / LISTS[which]


def read_micrograph_list(run, which: str = "micrographs", *, check: bool = True) -> list[Path]:
    """Read the micrographs listed in one of the run's lists (empty when the list is absent).

    Parameters
    ----------
    run : RunDir or path-like
        The run folder; relative paths in the list are relative to it.
    which : {"micrographs", "heldout"}
        ``RUN/micrographs.txt`` or ``RUN/heldout.txt``.
    check : bool
        Raise :class:`~nt2c.errors.InputError` when a listed file does not exist.

    Returns
    -------
    list of pathlib.Path
        Absolute paths, in the order of the list.
    """
    path = _list_path(run, which)
    if not path.is_file():
        return []
    out: list[Path] = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        item = Path(line).expanduser()
        if not item.is_absolute():
            item = path.parent / item
        item = item.resolve()
        if check and not item.is_file():
            raise InputError(f"{path} lists {line}, which does not exist; fix the list and run again.")
        out.append(item)
    return out


def write_micrograph_list(
    run,
    paths: Sequence[str | os.PathLike],
    which: str = "micrographs",
    *,
    skipped: Mapping[str, str] | None = None,
) -> Path:
    """Write one of the run's micrograph lists (absolute paths, one per line); returns its path.

    ``skipped`` (path -> reason) are written as ``# skipped: PATH (reason)`` comments, which readers ignore.
    """
    path = _list_path(run, which)
    lines = [f"{Path(p).expanduser().resolve()}\n" for p in paths]
    for bad, why in (skipped or {}).items():
        reason = " ".join(str(why).split())
        lines.append(f"# skipped: {bad} ({reason})\n")
    with atomic_path(path) as tmp:
        tmp.write_text("".join(lines))
    return path


def check_micrographs(paths: Sequence[str | os.PathLike]) -> tuple[list[Path], dict[str, str]]:
    """Read every micrograph once and sort them into readable ones and unreadable ones.

    Each file is read with :func:`nt2c.io.read_image` (header, data, finite values); a file that fails is
    reported with the reason, never raised, so that one bad file among many does not stop a run.

    Parameters
    ----------
    paths : sequence of path-like
        Micrographs (MRC/TIFF).

    Returns
    -------
    good : list of pathlib.Path
        The readable ones, in the order given.
    bad : dict of str to str
        Unreadable path -> the one-line reason.
    """
    from nt2c.errors import NT2CError
    from nt2c.io import read_image

    good: list[Path] = []
    bad: dict[str, str] = {}
    for item in paths:
        path = Path(item)
        try:
            image, _ = read_image(path)
            if image.ndim != 2:
                raise InputError(f"{path} holds a {image.ndim}-D array; a micrograph is one 2-D image.")
            del image
        except (NT2CError, OSError, ValueError) as exc:
            bad[str(path)] = " ".join(str(exc).split()) or type(exc).__name__
            continue
        good.append(path)
    return good, bad


def check_run_micrographs(run, paths: list[Path]) -> tuple[list[Path], dict[str, str]]:
    """Run :func:`check_micrographs`, skipping files ``RUN/run.json`` knows as readable (same size, mtime)."""
    cache = dict(run.read_info().get("readable_micrographs") or {})
    states = {}
    for p in paths:
        try:
            st = Path(p).stat()
            states[str(p)] = [st.st_size, st.st_mtime_ns]
        except OSError:
            states[str(p)] = None
    unknown = [p for p in paths if states[str(p)] is None or cache.get(str(p)) != states[str(p)]]
    good_new, bad = check_micrographs(unknown)
    good_set = {str(p) for p in good_new} | {str(p) for p in paths if p not in unknown}
    good = [p for p in paths if str(p) in good_set]
    readable = {str(p): states[str(p)] for p in good}
    if readable != cache:
        run.update_info(readable_micrographs=readable)
    return good, bad
