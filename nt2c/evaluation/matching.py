"""Matching coordinate files and reference images to micrographs by name (``--coords``, ``--reference``).

``coords`` and ``reference`` take files, folders (every ``*.star``/``*.csv``, or every image, in it) and glob
patterns. Each file has a *key*: a reference image's key is its file stem; a coordinate file's key is its stem
without a trailing ``_coords``, ``_autopick``, ``_manualpick``, ``_picks`` or ``_particles``. A file belongs
to the micrograph whose stem *equals its key or starts with its key followed by* ``_``; when several keys fit,
the longest wins, and a micrograph is never its own reference. So ``NAME.mrc`` is the reference of
``NAME_frame.mrc`` and ``NAME_coords.csv`` gives the particles of ``NAME.mrc`` and ``NAME_frame.mrc``. Every
micrograph they apply to must find exactly one file (else :class:`~nt2c.errors.InputError` lists the unmatched
names); the one exception keeps the older form working: as many coordinate *files* as micrographs, in the same
order, are paired in that order when their names do not match.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from nt2c.errors import InputError

__all__ = ["COORD_SUFFIXES", "REFERENCE_TYPES", "match_by_name", "assign_files"]

log = logging.getLogger(__name__)

COORD_SUFFIXES = ("_coords", "_autopick", "_manualpick", "_picks", "_particles")
COORD_TYPES = (".star", ".csv")
REFERENCE_TYPES = (".mrc", ".mrcs", ".map", ".tif", ".tiff")


def _expand(items, suffixes: Sequence[str], what: str) -> tuple[list[Path], bool]:
    """Files named by paths, folders and patterns; and whether every item was a plain file."""
    items = [items] if isinstance(items, (str, os.PathLike)) else list(items)
    files: list[Path] = []
    plain = True
    for item in items:
        text = os.path.expanduser(os.fspath(item))
        if glob.has_magic(text):
            plain = False
            found = sorted(Path(m) for m in glob.glob(text) if Path(m).suffix.lower() in suffixes)
            if not found:
                raise InputError(f"{what} pattern {text!r} matches no {'/'.join(suffixes)} file.")
        elif Path(text).is_dir():
            plain = False
            found = sorted(p for p in Path(text).iterdir() if p.is_file() and p.suffix.lower() in suffixes)
            if not found:
                raise InputError(f"{what} folder {text} holds no {'/'.join(suffixes)} file.")
        elif Path(text).is_file():
            found = [Path(text)]
        else:
            raise InputError(f"{what} {text} does not exist; give a file, a folder or a quoted pattern.")
        files += found
    return list(dict.fromkeys(p.resolve() for p in files)), plain


def _coord_key(path: Path) -> str:
    stem = path.stem
    for suffix in COORD_SUFFIXES:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def match_by_name(
    micrographs: Sequence[Path], files: Sequence[Path], *, kind: str = "coords"
) -> dict[Path, Path | None]:
    """Give each micrograph the file whose key fits its name (the rule of the module docstring).

    Parameters
    ----------
    micrographs : sequence of pathlib.Path
    files : sequence of pathlib.Path
        Candidate coordinate files (``kind="coords"``) or reference images (``kind="reference"``).
    kind : {"coords", "reference"}

    Returns
    -------
    dict of pathlib.Path to pathlib.Path or None
        Micrograph -> its file, None when no key fits.

    Raises
    ------
    InputError
        When two candidate files share the key that fits a micrograph.
    """
    key_of = _coord_key if kind == "coords" else (lambda p: p.stem)
    by_key: dict[str, list[Path]] = {}
    for f in files:
        by_key.setdefault(key_of(f), []).append(Path(f))
    out: dict[Path, Path | None] = {}
    for mic in micrographs:
        stem = Path(mic).stem
        own = Path(mic).resolve()
        best: tuple[int, list[Path]] | None = None
        for key, cands in by_key.items():
            cands = [c for c in cands if c.resolve() != own]
            if cands and (stem == key or stem.startswith(key + "_")) and (best is None or len(key) > best[0]):
                best = (len(key), cands)
        if best is not None and len(best[1]) > 1:
            raise InputError(
                f"micrograph {stem} fits several {kind} files: {', '.join(str(c) for c in best[1])}; "
                "keep one."
            )
        out[Path(mic)] = best[1][0] if best is not None else None
    return out


def _unmatched_error(kind: str, missing: Sequence[Path], files: Sequence[Path]) -> InputError:
    flag = "--coords" if kind == "coords" else "--reference"
    keys = sorted({(_coord_key(f) if kind == "coords" else f.stem) for f in files})
    shown = ", ".join(p.stem for p in missing[:5]) + (" ..." if len(missing) > 5 else "")
    return InputError(
        f"{flag}: no {'coordinate file' if kind == 'coords' else 'reference image'} matches micrograph(s) "
        f"{shown} ({len(missing)} of them); names found: {', '.join(keys[:8]) or 'none'}"
        f"{' ...' if len(keys) > 8 else ''}. A file NAME{'_coords.csv' if kind == 'coords' else '.mrc'} "
        "matches NAME.mrc and NAME_*.mrc; rename the files or evaluate only the micrographs that have one."
    )


def assign_files(micrographs: Sequence[Path], given, kind: str) -> dict[Path, Path | None]:
    """Micrograph -> coordinate file or reference image from the user's ``--coords``/``--reference``."""
    if given is None:
        return {m: None for m in micrographs}
    suffixes = COORD_TYPES if kind == "coords" else REFERENCE_TYPES
    files, plain = _expand(given, suffixes, "--coords" if kind == "coords" else "--reference")
    matched = match_by_name(micrographs, files, kind=kind)
    missing = [m for m, f in matched.items() if f is None]
    if missing and kind == "coords" and plain and len(files) == len(micrographs):
        log.info("--coords: names do not match the micrographs; pairing the %d files in order", len(files))
        return dict(zip(micrographs, files))
    if missing:
        raise _unmatched_error(kind, missing, files)
    return matched
