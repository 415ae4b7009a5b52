"""Reading and writing micrographs (MRC, TIFF), particle stacks and RELION STAR tables.

All writers are atomic (a temporary file in the destination folder, then a rename), refuse to overwrite an
existing file unless asked, and never write onto a file given as an input.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from nt2c.errors import InputError

__all__ = [
    "atomic_path",
    "write_json",
    "read_json",
    "read_mrc",
    "read_mrc_header_pixel_size",
    "read_image",
    "write_mrc",
    "read_star",
    "write_star",
    "validate_image",
]

IMAGE_SUFFIXES = (".mrc", ".mrcs", ".map", ".tif", ".tiff")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    Parameters
    ----------
    path : path-like
        Final destination.
    overwrite : bool
        If False and ``path`` exists, raise :class:`InputError` before anything is written.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(
            f"{path} already exists; nt2c does not overwrite files. Choose another output or delete it."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | os.PathLike, obj: Mapping) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")
    return path


def read_json(path: str | os.PathLike) -> dict:
    """Read a JSON file with a clear error when it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON ({exc}); delete it to let nt2c write it again.") from exc


def _json_default(obj):
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def validate_image(
    image, *, name: str = "image", ndim: int | tuple[int, ...] = 2, allow_nan: bool = False
) -> np.ndarray:
    """Check that ``image`` is a finite real array of the expected rank and return it as float32.

    Parameters
    ----------
    image : array_like
        The array to check.
    name : str
        How the array is called in error messages.
    ndim : int or tuple of int
        Allowed number(s) of dimensions.
    allow_nan : bool
        Accept NaN/Inf values.

    Returns
    -------
    numpy.ndarray
        ``image`` as a float32 array (a view when it already is one).
    """
    arr = np.asarray(image)
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if arr.ndim not in allowed:
        raise InputError(
            f"{name} must have {' or '.join(map(str, allowed))} dimensions, got shape {arr.shape}."
        )
    if arr.size == 0:
        raise InputError(f"{name} is empty (shape {arr.shape}).")
    if np.iscomplexobj(arr) or not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"{name} must hold real numbers, got dtype {arr.dtype}.")
    arr = arr.astype(np.float32, copy=False)
    if not allow_nan and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise InputError(f"{name} contains {bad} NaN or infinite values; clean or crop the image first.")
    return arr


def _open_mrc(path: Path):
    import mrcfile

    if not path.is_file():
        raise InputError(f"{path} does not exist; check the path.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return mrcfile.mmap(path, mode="r", permissive=True)
    except Exception as exc:  # mrcfile raises ValueError, OSError, ...
        raise InputError(f"{path} is not a readable MRC file ({exc}).") from exc


def read_mrc(path: str | os.PathLike, *, allow_nan: bool = False) -> tuple[np.ndarray, float | None]:
    """Read an MRC image or stack.

    Parameters
    ----------
    path : path-like
        ``.mrc``, ``.mrcs`` or ``.map`` file.
    allow_nan : bool
        Accept NaN/Inf values.

    Returns
    -------
    data : numpy.ndarray, float32, shape (ny, nx) or (n, ny, nx)
        A copy of the data (the file is not kept open).
    pixel_size_A : float or None
        The header's voxel size in Angstrom, or None when it is unset (0 or 1 with an empty header).
    """
    path = Path(path)
    mrc = _open_mrc(path)
    try:
        if mrc.data is None:
            raise InputError(f"{path} has an MRC header but no data; the file is truncated or corrupt.")
        expected = (
            int(np.prod(mrc.data.shape)) * mrc.data.dtype.itemsize
            + mrc.header.nbytes
            + mrc.extended_header.nbytes
        )
        if path.stat().st_size < expected:
            raise InputError(
                f"{path} is truncated ({path.stat().st_size} of {expected} bytes); fetch or copy it again."
            )
        data = validate_image(np.array(mrc.data), name=str(path), ndim=(2, 3), allow_nan=allow_nan)
        pixel_size = float(mrc.voxel_size.x)
    finally:
        mrc.close()
    return data, (pixel_size if pixel_size > 0 else None)


def read_mrc_header_pixel_size(path: str | os.PathLike) -> float | None:
    """The voxel size (Angstrom) in an MRC header, or None when unset."""
    mrc = _open_mrc(Path(path))
    try:
        size = float(mrc.voxel_size.x)
    finally:
        mrc.close()
    return size if size > 0 else None


def read_image(path: str | os.PathLike, *, allow_nan: bool = False) -> tuple[np.ndarray, float | None]:
    """Read a 2-D micrograph from MRC or TIFF.

    Returns
    -------
    image : numpy.ndarray, float32, shape (ny, nx)
    pixel_size_A : float or None
        From the MRC header; None for TIFF or an unset header.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        if not path.is_file():
            raise InputError(f"{path} does not exist; check the path.")
        import tifffile

        try:
            data = tifffile.imread(path)
        except Exception as exc:
            raise InputError(f"{path} is not a readable TIFF file ({exc}).") from exc
        pixel_size = None
    elif suffix in (".mrc", ".mrcs", ".map"):
        data, pixel_size = read_mrc(path, allow_nan=True)
    else:
        raise InputError(f"{path}: unknown image type {suffix!r}; nt2c reads {', '.join(IMAGE_SUFFIXES)}.")
    data = np.asarray(data)
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 2:
        raise InputError(
            f"{path} holds an array of shape {data.shape}, not one micrograph; sum or split movie frames first."
        )
    return validate_image(data, name=str(path), allow_nan=allow_nan), pixel_size


def write_mrc(
    path: str | os.PathLike,
    data: np.ndarray,
    *,
    pixel_size_A: float | None = None,
    overwrite: bool = False,
    stack: bool | None = None,
) -> Path:
    """Write a float32 image or stack to MRC atomically, with the voxel size in the header.

    Parameters
    ----------
    path : path-like
        Destination (``.mrc`` for an image, ``.mrcs`` for a stack).
    data : numpy.ndarray, shape (ny, nx) or (n, ny, nx)
    pixel_size_A : float, optional
        Voxel size in Angstrom.
    overwrite : bool
        Replace an existing file.
    stack : bool, optional
        Mark a 3-D array as an image stack (default: True for 3-D data).
    """
    import mrcfile

    path = Path(path)
    arr = validate_image(data, name=f"data for {path.name}", ndim=(2, 3), allow_nan=True)
    with atomic_path(path, overwrite=overwrite) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(np.ascontiguousarray(arr))
            if arr.ndim == 3 and (stack is None or stack):
                mrc.set_image_stack()
            if pixel_size_A:
                mrc.voxel_size = float(pixel_size_A)
            mrc.update_header_stats()
    return path


def read_star(path: str | os.PathLike, block: str | None = None) -> dict[str, np.ndarray]:
    """Read one loop block of a RELION STAR file.

    Parameters
    ----------
    path : path-like
    block : str, optional
        Data block name without ``data_`` (default: the first block holding a loop).

    Returns
    -------
    dict of str to numpy.ndarray
        Column name (without ``_``) to values; numeric columns are float arrays, others strings.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist; check the path.")
    lines = path.read_text().splitlines()
    current = None
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith("data_"):
            current = line[5:]
        elif line.startswith("loop_") and (block is None or current == block):
            columns: list[str] = []
            i += 1
            while i < len(lines) and lines[i].strip().startswith("_"):
                columns.append(lines[i].strip().split()[0][1:])
                i += 1
            rows = []
            while i < len(lines):
                row = lines[i].strip()
                if not row or row.startswith("data_") or row.startswith("loop_") or row.startswith("_"):
                    break
                if not row.startswith("#"):
                    rows.append(row.split())
                i += 1
            if any(len(r) != len(columns) for r in rows):
                raise InputError(
                    f"{path}: rows of block {current!r} do not match its {len(columns)} columns."
                )
            table: dict[str, np.ndarray] = {}
            for j, name in enumerate(columns):
                values = [r[j] for r in rows]
                try:
                    table[name] = np.array(values, dtype=float)
                except ValueError:
                    table[name] = np.array(values, dtype=str)
            return table
        i += 1
    raise InputError(
        f"{path} has no loop block{'' if block is None else f' named {block!r}'}; is it a STAR file?"
    )


def write_star(
    path: str | os.PathLike, columns: Mapping[str, Sequence], *, block: str = "", overwrite: bool = False
) -> Path:
    """Write a table as one loop block of a RELION STAR file, atomically.

    Parameters
    ----------
    path : path-like
    columns : mapping of str to sequence
        Column name (``rlnCoordinateX`` ...) to values; all columns must have the same length.
    block : str
        Data block name (``data_<block>``).
    """
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise InputError(f"STAR columns have different lengths: {sorted(lengths)}.")
    names = list(columns)
    lines = ["", f"data_{block}", "", "loop_"]
    lines += [f"_{name} #{k + 1}" for k, name in enumerate(names)]
    n = lengths.pop() if lengths else 0
    for row in range(n):
        cells = []
        for name in names:
            value = columns[name][row]
            cells.append(f"{value:.6f}" if isinstance(value, (float, np.floating)) else str(value))
        lines.append(" ".join(cells))
    path = Path(path)
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return path
