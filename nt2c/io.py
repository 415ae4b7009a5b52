"""Reading and writing micrographs (MRC, TIFF), particle stacks and RELION STAR tables.

All writers are atomic (a temporary file in the destination folder, then a rename), refuse to overwrite an
existing file unless asked, and never write onto a file given as an input.

One module because every file nt2c reads or writes goes through the same validation and atomic-write
rules; most of its length is the messages that say what a bad file looks like and what to do.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import stat
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from nt2c.errors import InputError

__all__ = [
    "atomic_path",
    "remove_partial_files",
    "describe_file",
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

IMAGE_SUFFIXES = (".mrc", ".mrcs", ".map", ".tif", ".tiff", ".png")


#: Characters of the random part of a temporary file name (the alphabet of :func:`tempfile.mkstemp`).
_TEMP_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"
#: nt2c's temporary files: ``.NAME.XXXXXXXX.part`` (atomic writes, 8 random characters) and
#: ``.NAME.partial`` (a resumable download of ``NAME``, :mod:`nt2c.data`). Nothing else matches.
PARTIAL_FILE_RE = re.compile(r"^\..+\.(?:[a-z0-9_]{8}\.part|partial)$")


def _new_temp_file(folder: Path, name: str) -> tuple[Path, int]:
    """Create an empty ``folder/.NAME.XXXXXXXX.part`` with the mode the umask gives; return (path, mode)."""
    for _ in range(100):
        tmp = folder / f".{name}.{''.join(secrets.choice(_TEMP_CHARS) for _ in range(8))}.part"
        try:
            # mode 0o666 filtered by the process umask (tempfile.mkstemp would force 0o600)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        try:
            mode = stat.S_IMODE(os.fstat(fd).st_mode)
        finally:
            os.close(fd)
        return tmp, mode
    raise FileExistsError(f"cannot create a temporary file beside {folder / name}")  # pragma: no cover


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    The temporary file ``.NAME.XXXXXXXX.part`` is created empty, with the permissions the process umask
    gives a new file (``0o666 & ~umask``, as ``open`` would), so files written through it are as readable
    to the other users of a shared folder as any other new file. A run that is killed mid-write can leave it
    behind; :func:`remove_partial_files` removes such leftovers.

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
    tmp_path, mode = _new_temp_file(path.parent, path.name)
    try:
        yield tmp_path
        # a writer that replaced the file (instead of writing into it) may have set its own mode
        with contextlib.suppress(OSError):
            if stat.S_IMODE(tmp_path.stat().st_mode) != mode:
                os.chmod(tmp_path, mode)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def remove_partial_files(folder: str | os.PathLike, *, keep=(), older_than_s: float = 0.0) -> list[Path]:
    """Delete the temporary files that killed nt2c runs left under ``folder`` (recursively).

    Only nt2c's own temporary-file names are touched: ``.NAME.XXXXXXXX.part`` (an interrupted
    :func:`atomic_path` write; ``XXXXXXXX`` is 8 characters of ``a-z0-9_``) and ``.NAME.partial`` (an
    interrupted download). User files, symbolic links and anything outside ``folder`` are never removed;
    links to folders are not followed.

    Parameters
    ----------
    folder : path-like
        Folder to clean; a missing folder gives an empty list.
    keep : iterable of path-like
        Temporary files to leave in place (for example downloads that are about to be resumed).
    older_than_s : float
        Leave files modified less than this many seconds ago (a process that is still writing them).

    Returns
    -------
    list of pathlib.Path
        The files removed, sorted.
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    kept = {os.path.abspath(p) for p in keep}
    now = time.time()
    removed = []
    for dirpath, _dirs, names in os.walk(root, followlinks=False):
        for name in names:
            if not PARTIAL_FILE_RE.match(name):
                continue
            path = Path(dirpath) / name
            if os.path.abspath(path) in kept:
                continue
            try:
                info = path.lstat()
                if not stat.S_ISREG(info.st_mode) or now - info.st_mtime < older_than_s:
                    continue
                path.unlink()
            except FileNotFoundError:  # removed meanwhile (another process finished it)
                continue
            removed.append(path)
    return sorted(removed)


def write_json(path: str | os.PathLike, obj: Mapping) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")
    return path


def read_json(path: str | os.PathLike) -> dict:
    """Read a JSON file with a clear error when it is missing or corrupt."""
    path = Path(path)
    _require_file(path, "a JSON file")
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


def _require_file(path: Path, what: str, pattern: str | None = None) -> None:
    """Raise :class:`InputError` unless ``path`` is an existing file (a folder gets its own message)."""
    if path.is_dir():
        hint = f"; give the files in it, e.g. '{path / pattern}' (quoted)" if pattern else ""
        raise InputError(f"{path} is a folder, not {what}{hint}.")
    if not path.is_file():
        raise InputError(f"{path} does not exist; check the path.")


#: Leading bytes of file types that are often mistaken for micrographs: (magic, description, what to do).
_PICTURE = "nt2c reads the original MRC or TIFF micrograph, not a picture of it"
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image", _PICTURE),
    (b"\xff\xd8\xff", "a JPEG image", _PICTURE),
    (b"II*\x00", "a TIFF file", "name it .tif or .tiff so that nt2c reads it as TIFF"),
    (b"MM\x00*", "a TIFF file", "name it .tif or .tiff so that nt2c reads it as TIFF"),
    (b"II+\x00", "a BigTIFF file", "name it .tif or .tiff so that nt2c reads it as TIFF"),
    (b"MM\x00+", "a BigTIFF file", "name it .tif or .tiff so that nt2c reads it as TIFF"),
    (b"\x1f\x8b", "gzip-compressed data", "decompress it first (gunzip)"),
    (b"BZh", "bzip2-compressed data", "decompress it first (bunzip2)"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data", "decompress it first (unzstd)"),
    (b"PK\x03\x04", "a ZIP archive", "unpack it first"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file", "convert it to MRC"),
    (b"\x93NUMPY", "a NumPy .npy array", "write it as MRC with nt2c.io.write_mrc"),
)
_SNIFF_BYTES = 4096


def describe_file(path: str | os.PathLike) -> tuple[str, str] | None:
    """Guess, from its first bytes, what a file that is not what its name says holds.

    Recognises empty files, common image, archive and compressed formats by their magic bytes, HTML pages
    and plain text. An MRC header (1024 bytes, mostly binary integers with zero bytes) is never taken for
    any of these.

    Parameters
    ----------
    path : path-like
        An existing file.

    Returns
    -------
    (description, advice) or None
        For example ``("a PNG image", "nt2c reads the original ...")``; None when the first bytes match
        none of the known formats (the file may still be corrupt).
    """
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    if not head:
        return "an empty file (0 bytes)", "copy or download it again"
    for magic, kind, advice in _MAGIC:
        if head.startswith(magic):
            return kind, advice
    if b"\x00" in head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the end of the sample
            return None
        text = head[: exc.start].decode("utf-8")
    printable = sum(ch.isprintable() or ch in "\t\r\n" for ch in text)
    if not text or printable < 0.95 * len(text):
        return None
    start = text.lstrip()[:40].lower()
    if start.startswith(("<!doctype html", "<html", "<?xml", "<head")):
        return "an HTML/XML page", "it is what a failed download saves; download or copy the file again"
    first = text.strip().splitlines()[0][:40] if text.strip() else ""
    return f"text (it starts with {first!r})", "give the MRC file itself, not a list or a note"


def _not_mrc_message(path: Path, kind: str, advice: str) -> str:
    return f"{path} is not an MRC file: it looks like {kind}; {advice}."


def _open_mrc(path: Path):
    import mrcfile

    _require_file(path, "an MRC file", "*.mrc")
    looks = describe_file(path)
    if looks is not None:
        raise InputError(_not_mrc_message(path, *looks))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return mrcfile.mmap(path, mode="r", permissive=True)
    except Exception as exc:  # mrcfile raises ValueError, OSError, ...
        raise InputError(
            f"{path} is not a readable MRC file ({exc}); copy or download it again, or check that it is "
            "an MRC micrograph."
        ) from exc


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
            if path.stat().st_size < 1024:
                raise InputError(
                    f"{path} is not an MRC file: it has {path.stat().st_size} bytes, fewer than the "
                    "1024-byte MRC header; copy or download it again."
                )
            raise InputError(
                f"{path} is not a readable MRC file: its first 1024 bytes are no valid MRC header (or it has "
                "a header but no data: truncated); copy or download it again."
            )
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
    """Read the voxel size (Angstrom) of an MRC header; None when unset."""
    mrc = _open_mrc(Path(path))
    try:
        size = float(mrc.voxel_size.x)
    finally:
        mrc.close()
    return size if size > 0 else None


def read_image(path: str | os.PathLike, *, allow_nan: bool = False) -> tuple[np.ndarray, float | None]:
    """Read a 2-D micrograph from MRC (any mode, e.g. 0 = int8, 2 = float32, 6 = uint16), TIFF or PNG.

    Grey levels are returned as they are stored (8- and 16-bit images rescaled by another program included:
    nt2c normalises every micrograph itself). A PNG with colour channels is read as its luminance when the
    channels differ and as its one grey channel when they are equal; an alpha channel is dropped.

    Returns
    -------
    image : numpy.ndarray, float32, shape (ny, nx)
    pixel_size_A : float or None
        From the MRC header; None for TIFF, PNG or an unset header.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir() or suffix in (".tif", ".tiff", ".png"):
        _require_file(path, "a micrograph file", "*.mrc")
    if suffix == ".png":
        data, pixel_size = _read_png(path), None
    elif suffix in (".tif", ".tiff"):
        import tifffile

        try:
            data = tifffile.imread(path)
        except Exception as exc:
            looks = describe_file(path)
            if looks is not None and "TIFF" not in looks[0]:
                raise InputError(
                    f"{path} is not a TIFF file: it looks like {looks[0]}; {looks[1]}."
                ) from None
            raise InputError(f"{path} is not a readable TIFF file ({exc}); copy it again.") from exc
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
            f"{path} holds an array of shape {data.shape}, not one micrograph; sum or split movie frames "
            "first."
        )
    return validate_image(data, name=str(path), allow_nan=allow_nan), pixel_size


def _read_png(path: Path) -> np.ndarray:
    """Grey levels of a PNG file (8 or 16 bit, grey or colour), as float32."""
    import imageio.v3 as iio

    try:
        data = np.asarray(iio.imread(path))
    except Exception as exc:
        looks = describe_file(path)
        if looks is not None and "PNG" not in looks[0]:
            raise InputError(f"{path} is not a PNG file: it looks like {looks[0]}; {looks[1]}.") from None
        raise InputError(f"{path} is not a readable PNG file ({exc}); copy it again.") from exc
    if data.ndim == 3:  # (ny, nx, channels)
        colour = data[..., :3].astype(np.float32)
        if data.shape[-1] >= 3 and not (
            np.array_equal(colour[..., 0], colour[..., 1]) and np.array_equal(colour[..., 0], colour[..., 2])
        ):
            return colour @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)  # luminance (Rec. 709)
        data = data[..., 0]
    return data.astype(np.float32)


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
    _require_file(path, "a STAR file", "*.star")
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
