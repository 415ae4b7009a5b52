"""Datasets: manifests in ``data_manifests/``, a local cache, and ``nt2c fetch``.

Each dataset is described by one YAML manifest: the specimen, its acquisition parameters (the pinned
:class:`~nt2c.config.ExperimentParams` keys, so a manifest's ``params`` block is a valid ``params.yaml``), the
PDB id the paper simulated for it, where the files live (a base URL and a list of files, or a glob pattern
over the server's folder listing) and, per file, its SHA-256 (``sha256:``; absent or ``null`` means
trust on first use) and size where known. Every number names its source.

Downloads go into a cache folder (``$NT2C_DATA_DIR``, else the OS cache folder ``nt2c``), over http(s) only,
and only to plain file names inside it (names from a manifest or a server listing that would lead elsewhere
are refused). A download that breaks off is resumed from its partial file ``.NAME.partial`` on the next call
(HTTP Range requests). A file is checked against the manifest's SHA-256 when it lists one; otherwise it is
trusted on first use: the hash of the first complete download is recorded in ``<dataset>/checksums.txt``,
reported in one log line, and verified on later calls. PDB models are also checked to parse as mmCIF with
the requested entry ID (the RCSB publishes no checksums). ``$NT2C_DATA_MIRROR`` (or ``mirror=``) replaces
the manifests' base URL by another http(s) URL or a local folder.

One module because manifests, the cache, the resumable downloader and its checks share the one rule
that matters here, that nothing is written outside the cache or trusted without saying so; a third of it is
that checking and its error messages.
"""

from __future__ import annotations

import fnmatch
import hashlib
import html.parser
import http.client
import logging
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nt2c.config import ExperimentParams, load_params
from nt2c.errors import DataError

__all__ = [
    "Manifest",
    "ManifestFile",
    "available_datasets",
    "cache_dir",
    "check_pdb_file",
    "fetch",
    "fetch_pdb",
    "load_manifest",
    "manifest_dir",
]

_CHUNK = 1 << 20
RCSB_DOWNLOAD_URL = "https://files.rcsb.org/download"

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Return the data cache: ``$NT2C_DATA_DIR`` when set, else the OS cache folder for nt2c."""
    env = os.environ.get("NT2C_DATA_DIR")
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("nt2c"))


def manifest_dir() -> Path:
    """Folder of the dataset manifests (``$NT2C_MANIFEST_DIR`` or the package's ``data_manifests``)."""
    env = os.environ.get("NT2C_MANIFEST_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    for cand in (here / "data" / "manifests", here.parent / "data_manifests"):
        if cand.is_dir():
            return cand
    raise DataError("cannot find the data_manifests folder; set NT2C_MANIFEST_DIR to it.")


@dataclass(frozen=True)
class ManifestFile:
    """One file of a dataset.

    ``sha256`` is the published SHA-256 (hexadecimal) the download must match; None means the file is
    trusted on first use (its hash is recorded in the cache and checked on later fetches). ``size`` is in
    bytes; ``url`` (http(s)) overrides ``base_url/name``.
    """

    name: str
    sha256: str | None = None
    size: int | None = None
    url: str | None = None


@dataclass
class Manifest:
    """A dataset manifest (see the module docstring)."""

    name: str
    title: str
    aliases: list[str]
    specimen: str
    pdb_id: str | None
    params: dict[str, Any]
    sources: dict[str, str]
    base_url: str | None
    files: list[ManifestFile] = field(default_factory=list)
    pattern: str | None = None
    pattern_sha256: dict[str, str] = field(default_factory=dict)
    notes: str = ""
    citation: str = ""
    path: Path | None = None

    @property
    def experiment(self) -> ExperimentParams:
        """The acquisition parameters, validated (usable as ``params.yaml``)."""
        return load_params(self.params)


def _manifest_from_dict(raw: dict, path: Path) -> Manifest:
    try:
        files = raw.get("files", {}) or {}
        listed = []
        for f in files.get("list", []) or []:
            f = dict(f)
            f["sha256"] = _check_sha256(f.get("sha256"), where=f"manifest {path}, file {f.get('name')!r}")
            listed.append(ManifestFile(**f))
        by_name = files.get("sha256") or {}
        if not isinstance(by_name, dict):
            raise DataError(
                f"manifest {path}: files.sha256 must map file names to SHA-256 digests, or be null "
                "(trust on first use)."
            )
        pattern_sha256 = {
            str(n): _check_sha256(h, where=f"manifest {path}, file {n!r}")
            for n, h in by_name.items()
            if h is not None
        }
        return Manifest(
            name=raw["name"],
            title=raw.get("title", ""),
            aliases=[str(a) for a in raw.get("aliases", [])],
            specimen=raw.get("specimen", ""),
            pdb_id=raw.get("pdb_id"),
            params=raw.get("params", {}),
            sources=raw.get("sources", {}),
            base_url=files.get("base_url"),
            files=listed,
            pattern=files.get("pattern"),
            pattern_sha256=pattern_sha256,
            notes=raw.get("notes", ""),
            citation=raw.get("citation", ""),
            path=path,
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise DataError(
            f"manifest {path} lacks a required entry ({exc}); compare it with the others."
        ) from None


def _all_manifests() -> dict[str, Manifest]:
    """Every manifest; a file holds one dataset, or several under ``datasets:``."""
    manifests = {}
    for path in sorted(manifest_dir().glob("*.yaml")):
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise DataError(f"manifest {path} is not valid YAML: {exc}") from None
        for entry in raw.get("datasets", [raw]):
            man = _manifest_from_dict(entry, path)
            manifests[man.name] = man
    return manifests


def available_datasets() -> dict[str, Manifest]:
    """Every dataset with a manifest, by name."""
    return _all_manifests()


def load_manifest(name: str) -> Manifest:
    """Return the manifest of dataset ``name`` (or one of its aliases, case-insensitive)."""
    manifests = _all_manifests()
    wanted = name.strip().lower()
    for man in manifests.values():
        if wanted == man.name.lower() or wanted in (a.lower() for a in man.aliases):
            return man
    known = ", ".join(
        f"{m.name} ({'/'.join(m.aliases)})" if m.aliases else m.name for m in manifests.values()
    )
    raise DataError(f"unknown dataset {name!r}; known datasets: {known}.")


# -- names, sources, checksums ------------------------------------------------------------------------------
_RESERVED_NAMES = {"checksums.txt"}
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_PDB_FILE_RE = re.compile(r"^([1-9][0-9a-z]{3})\.cif(\.gz)?$", re.IGNORECASE)


def _safe_name(name: object, *, where: str) -> str:
    """``name`` if it is a plain file name that stays inside the cache folder; else a :class:`DataError`."""
    problem = None
    if not isinstance(name, str) or not name:
        problem = "is empty" if name in ("", None) else "is not a string"
    elif "/" in name or "\\" in name:
        problem = "contains a path separator"
    elif name in (".", ".."):
        problem = "is a relative folder name"
    elif name.startswith("."):
        problem = "starts with '.' (hidden files and nt2c's temporary files)"
    elif any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        problem = "contains a control character"
    elif name in _RESERVED_NAMES:
        problem = "is the name of nt2c's checksum record"
    elif os.path.isabs(name) or Path(name).drive:
        problem = "is an absolute path"
    if problem:
        raise DataError(
            f"refusing file name {name!r} from {where}: it {problem}. A dataset file must be a plain file "
            "name inside the cache folder; fix the manifest or use another mirror."
        )
    return name


def _confine(folder: Path, name: str, *, where: str) -> Path:
    """``folder / name`` for a safe ``name``, checked to resolve to a direct child of ``folder``."""
    root = folder.resolve()
    target = root / _safe_name(name, where=where)
    if target.parent != root or Path(os.path.normpath(target)) != target:
        raise DataError(f"refusing file name {name!r} from {where}: it leads outside the cache {root}.")
    return target


def _check_sha256(value: object, *, where: str) -> str | None:
    if value is None:
        return None
    text = str(value).strip().lower().removeprefix("sha256:")
    if not _SHA256_RE.match(text):
        raise DataError(
            f"{where}: sha256 {value!r} is not 64 hexadecimal digits; correct it or set it to null."
        )
    return text


def _http_url(url: str, *, what: str) -> str:
    scheme = urllib.parse.urlparse(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise DataError(
            f"{what} {url!r} is not an http(s) URL; nt2c downloads only over HTTP(S). To use files on disk, "
            "pass their folder as --mirror (or NT2C_DATA_MIRROR / NT2C_PDB_MIRROR)."
        )
    return url


@dataclass(frozen=True)
class _Source:
    """Where files come from: an http(s) base URL or a local folder (a user's mirror)."""

    url: str | None = None
    folder: Path | None = None

    def describe(self, name: str) -> str:
        return str(self.folder / name) if self.folder is not None else _join(self.url, name)


def _mirror_source(mirror: str, *, what: str) -> _Source:
    """Interpret a user's mirror: an existing local folder (a plain path) or an http(s) URL."""
    folder = Path(mirror).expanduser()
    if folder.is_dir():
        return _Source(folder=folder.resolve())
    if urllib.parse.urlparse(mirror).scheme.lower() in ("http", "https"):
        return _Source(url=mirror)
    raise DataError(
        f"{what} {mirror!r} is neither an existing folder nor an http(s) URL; give the folder that holds the "
        "files (a plain path, not file://) or an http(s) URL."
    )


class _HTTPOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to http(s) URLs (urllib would also follow them to ftp://)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlparse(newurl).scheme.lower() not in ("http", "https"):
            raise urllib.error.HTTPError(
                newurl, code, f"redirect to a non-http(s) URL {newurl!r}", headers, fp
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_HTTPOnlyRedirects)


def _urlopen(url: str, *, headers: dict[str, str] | None = None, timeout_s: float = 60.0):
    _http_url(url, what="URL")
    request = urllib.request.Request(url, headers={"User-Agent": "nt2c", **(headers or {})})
    return _OPENER.open(request, timeout=timeout_s)


# -- downloading -----------------------------------------------------------------------------------------
def _partial_path(target: Path) -> Path:
    """Return the resumable download of ``target``: ``.NAME.partial`` beside it."""
    return target.with_name(f".{target.name}.partial")


def _download(url: str, partial: Path, *, timeout_s: float = 60.0) -> None:
    """Download ``url`` into ``partial``, continuing an existing partial file with an HTTP Range request."""
    have = partial.stat().st_size if partial.exists() else 0
    try:
        response = _urlopen(url, headers={"Range": f"bytes={have}-"} if have else None, timeout_s=timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            # nothing left to send: complete when the server's length ("bytes */N") is what we have
            match = re.fullmatch(r"bytes \*/(\d+)", (exc.headers or {}).get("Content-Range", "").strip())
            if match and int(match.group(1)) == have:
                return
            partial.unlink()  # longer than the file, or the length is unknown: start again
            return _download(url, partial, timeout_s=timeout_s)
        raise
    with response:
        resumed = bool(have) and response.status == 206
        if resumed:
            match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != have:  # another range than asked for: start again
                response.close()
                partial.unlink()
                return _download(url, partial, timeout_s=timeout_s)
        total = response.headers.get("Content-Length")
        from nt2c.progress import progress

        bar = progress(
            total=int(total) + (have if resumed else 0) if total else None,
            unit="B",
            unit_scale=True,
            desc=partial.name[1 : -len(".partial")],
            initial=have if resumed else 0,
        )
        if have and not resumed:
            log.info("%s: the server does not resume downloads; downloading it again from the start", url)
        written = 0
        try:
            with open(partial, "ab" if resumed else "wb") as handle:
                while chunk := response.read(_CHUNK):
                    handle.write(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
        finally:
            bar.close()
        if total and written != int(total):
            raise OSError(f"the transfer broke off after {written} of {total} bytes (run it again to resume)")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_pdb_file(path: str | os.PathLike, pdb_id: str) -> None:
    """Check that ``path`` is a PDB mmCIF entry (gzipped or not) whose ID is ``pdb_id``.

    The file must parse as mmCIF (gemmi), its ``_entry.id`` (or its data block name) must be ``pdb_id``
    (case-insensitive) and it must hold atom coordinates (``_atom_site.Cartn_x``). The RCSB publishes no
    checksum for its download files, so this is what nt2c can verify of a first download.

    Raises
    ------
    DataError
        When any of these checks fails.
    """
    import gzip

    import gemmi

    path = Path(path)
    label = path.name.removesuffix(".partial").lstrip(".")
    try:
        raw = path.read_bytes()
        text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode("utf-8")
        doc = gemmi.cif.read_string(text)
        block = doc[0]
    except (OSError, EOFError, ValueError, RuntimeError, IndexError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(
            f"{label} is not a readable mmCIF file ({reason}); the download of PDB entry {pdb_id} is damaged "
            "or not an mmCIF file."
        ) from None
    entry = (block.find_value("_entry.id") or block.name or "").strip().strip("'\"")
    if entry.upper() != pdb_id.upper():
        raise DataError(
            f"{label} holds PDB entry {entry or '(no _entry.id)'}, not {pdb_id.upper()}; the server or "
            "mirror sent another file."
        )
    if not len(block.find_values("_atom_site.Cartn_x")):
        raise DataError(f"{label} (PDB entry {pdb_id.upper()}) has no atom coordinates (_atom_site).")


def _recorded_hashes(folder: Path) -> dict[str, str]:
    """Read the ``checksums.txt`` record of a cache folder: name -> SHA-256 (``sha256sum`` format)."""
    path = folder / "checksums.txt"
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        digest, sep, name = line[:64], line[64:66], line[66:]
        if sep in ("  ", " *") and _SHA256_RE.match(digest) and name:
            out[name] = digest
    return out


def _record_hash(folder: Path, name: str, digest: str) -> None:
    from nt2c.io import atomic_path

    hashes = _recorded_hashes(folder)
    hashes[name] = digest
    with atomic_path(folder / "checksums.txt") as tmp:
        tmp.write_text("".join(f"{h}  {n}\n" for n, h in sorted(hashes.items())))


def _fetch_file(
    entry: ManifestFile,
    folder: Path,
    *,
    url: str | None = None,
    local: Path | None = None,
    where: str,
    label: str,
    timeout_s: float = 60.0,
) -> tuple[Path, bool]:
    """Get one file from ``url`` (http(s)) or ``local`` (a mirror's file) into ``folder`` and verify it.

    Returns
    -------
    (path, trusted_on_first_use)
    """
    target = _confine(folder, entry.name, where=where)
    partial = _partial_path(target)
    recorded = _recorded_hashes(folder).get(entry.name)
    known = entry.sha256 or recorded
    source_of_hash = "the manifest" if entry.sha256 else f"{folder / 'checksums.txt'} (recorded on first use)"
    pdb = _PDB_FILE_RE.match(entry.name)
    if target.is_file():
        digest = _sha256(target)
        if known is None:  # placed by hand, or cached before checksums were recorded: trust it now
            if pdb:
                check_pdb_file(target, pdb.group(1))
            _record_hash(folder, entry.name, digest)
            return target, True
        if digest == known:
            return target, False
        log.warning("%s does not match its checksum in %s; fetching it again", target, source_of_hash)
    origin = str(local) if local is not None else _http_url(str(url), what=f"{where}: URL")
    for attempt in range(2):
        resumed = partial.exists() and partial.stat().st_size > 0
        try:
            if local is not None:
                if not local.is_file():
                    raise DataError(
                        f"{local} does not exist; the mirror folder lacks {entry.name} of {label}."
                    )
                shutil.copyfile(local, partial)
            else:
                _download(url, partial, timeout_s=timeout_s)
        except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException) as exc:
            raise _Offline(origin, exc) from None
        problem = None
        size = partial.stat().st_size
        digest = _sha256(partial)
        if entry.size is not None and size != entry.size:
            problem = f"has {size} bytes, the manifest says {entry.size}"
        elif known and digest != known:
            problem = (
                f"does not match its checksum (SHA-256 {digest}, expected {known} from {source_of_hash})"
            )
        if problem:
            partial.unlink()
            if resumed and attempt == 0:  # the kept partial download may be stale: start over once
                log.info("%s %s after resuming; downloading it again from the start", entry.name, problem)
                continue
            advice = (
                f"fetch again, and if the change is expected delete its line in {folder / 'checksums.txt'}"
                if recorded and not entry.sha256
                else "fetch again, or report it if it persists"
            )
            raise DataError(
                f"{entry.name} of {label} from {origin} {problem}; the download was discarded. The server "
                f"changed the file or the transfer was damaged: {advice}."
            )
        if pdb:
            try:
                check_pdb_file(partial, pdb.group(1))
            except DataError:
                partial.unlink()
                raise
        os.replace(partial, target)
        if not known:
            _record_hash(folder, entry.name, digest)
        return target, not known
    raise AssertionError("unreachable")  # pragma: no cover


class _Offline(Exception):
    def __init__(self, where: str, exc: BaseException):
        super().__init__(where, exc)
        self.where, self.exc = where, exc


class _LinkParser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.links.append(href)


def _list_remote(source: _Source, pattern: str) -> list[str]:
    """Names in the source folder (a local folder or an HTTP listing) matching the glob ``pattern``.

    Names are URL-decoded; navigation links (``../``, sort links, sub-folders) are skipped, and a matching
    name that is not a plain file name (``..%2F..%2Fx.mrc``) raises :class:`DataError`.
    """
    if source.folder is not None:
        names = {p.name for p in source.folder.iterdir() if p.is_file()}
        where = f"the folder {source.folder}"
    else:
        with _urlopen(source.url) as resp:
            parser = _LinkParser()
            parser.feed(resp.read().decode("utf-8", "replace"))
        where = f"the listing of {source.url}"
        names = set()
        for href in parser.links:
            link_path = urllib.parse.urlparse(href).path
            if not link_path or link_path.endswith("/"):
                continue  # sort links (?C=N;O=D), the parent folder and sub-folders
            names.add(urllib.parse.unquote(link_path.rsplit("/", 1)[-1]))
        names -= {"", ".", ".."}
    matched = sorted(n for n in names if fnmatch.fnmatchcase(n, pattern))
    return [_safe_name(n, where=where) for n in matched]


def _join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + urllib.parse.quote(name)


def _trusted_line(label: str, names: list[str], record: Path) -> str:
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return (
        f"{label}: trusted on first use (no published checksum): {shown}; their SHA-256 is recorded in "
        f"{record} and checked on every later fetch."
    )


def fetch(
    dataset: str,
    *,
    max_files: int | None = None,
    mirror: str | None = None,
    cache: str | os.PathLike | None = None,
) -> list[Path]:
    """Download (or find in the cache) the files of ``dataset`` and verify them.

    Every file is checked against the manifest's SHA-256 when it lists one. A file without one is trusted on
    first use: its hash is recorded in ``CACHE/<dataset>/checksums.txt`` (one ``WARNING`` log line names
    these files) and checked on every later call; a cached copy that no longer matches is fetched again, and a
    download that does not match is refused. PDB model files (``XXXX.cif.gz``) must also parse as mmCIF with
    entry ID ``XXXX`` (:func:`check_pdb_file`). Leftover temporary files of killed runs in the dataset's cache
    folder are removed; partial downloads of the dataset's files are kept and resumed.

    Parameters
    ----------
    dataset : str
        Dataset name or alias (``EMPIAR-10025``, ``EM25``, ``SIM1``, ...).
    max_files : int, optional
        Fetch only the first ``max_files`` files (micrograph datasets are large).
    mirror : str, optional
        An http(s) URL or an existing local folder replacing the manifest's base URL (default
        ``$NT2C_DATA_MIRROR``).
    cache : path-like, optional
        Cache folder (default :func:`cache_dir`).

    Returns
    -------
    list of pathlib.Path
        The local files, in manifest order.

    Raises
    ------
    DataError
        Offline, unsafe file names or URLs (only http(s) is downloaded), or a file that fails its checksum.
    """
    from nt2c.io import remove_partial_files

    if max_files is not None and max_files < 1:
        raise DataError(f"max_files={max_files}: must be at least 1.")
    man = load_manifest(dataset)
    where = f"manifest {man.path}"
    mirror = mirror or os.environ.get("NT2C_DATA_MIRROR") or None
    if mirror:
        source = _mirror_source(mirror, what="mirror")
    elif man.base_url:
        source = _Source(url=_http_url(man.base_url, what=f"{where}: base_url"))
    else:
        source = None
    if source is None and not all(f.url for f in man.files):
        raise DataError(
            f"dataset {man.name} has no download location in {man.path}; place its files by hand."
        )
    folder = Path(cache or cache_dir()).expanduser() / man.name
    folder.mkdir(parents=True, exist_ok=True)
    files = list(man.files)
    try:
        if not files and man.pattern:
            if source is None:
                raise DataError(f"dataset {man.name} has a pattern but no base_url in {man.path}.")
            files = [
                ManifestFile(name=n, sha256=man.pattern_sha256.get(n))
                for n in _list_remote(source, man.pattern)
            ]
            if not files:
                raise DataError(f"no file matching {man.pattern!r} at {source.describe('')}.")
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise DataError(_offline_message(man, source.describe(""), folder, exc)) from None
    targets = [_confine(folder, f.name, where=where) for f in files]
    # a restart: drop the temporaries of killed runs, keep the partial downloads of this dataset's files
    for path in remove_partial_files(folder, keep=[_partial_path(t) for t in targets], older_than_s=60.0):
        log.info("removed the leftover temporary file %s", path)
    if max_files is not None:
        files = files[:max_files]
    paths, trusted = [], []
    for entry in files:
        if entry.url and not mirror:
            origin = {"url": _http_url(entry.url, what=f"{where}: url of {entry.name}")}
        elif source.folder is not None:
            origin = {"local": source.folder / entry.name}
        else:
            origin = {"url": _join(source.url, entry.name)}
        try:
            path, tofu = _fetch_file(entry, folder, where=where, label=man.name, **origin)
        except _Offline as off:
            raise DataError(_offline_message(man, off.where, folder, off.exc)) from None
        paths.append(path)
        if tofu:
            trusted.append(entry.name)
    if trusted:
        log.warning(_trusted_line(man.name, trusted, folder / "checksums.txt"))
    return paths


def _offline_message(man: Manifest, where: str, folder: Path, exc: BaseException) -> str:
    return (
        f"could not download {man.name} from {where} ({exc}). If this machine is offline, download the "
        f"files elsewhere (see {man.path}) and place them in {folder}, or point NT2C_DATA_MIRROR at a folder "
        "or URL that has them; nt2c then verifies and uses them."
    )


def fetch_pdb(pdb_id: str, *, cache: str | os.PathLike | None = None, mirror: str | None = None) -> Path:
    """Download the mmCIF model ``pdb_id`` from the RCSB (cached); returns the local ``.cif.gz`` path.

    A new download must parse as mmCIF with entry ID ``pdb_id`` and hold atom coordinates
    (:func:`check_pdb_file`); the RCSB publishes no checksums, so its SHA-256 is recorded on first use in
    ``CACHE/pdb/checksums.txt`` (logged once) and a cached copy that no longer matches is downloaded again.

    Parameters
    ----------
    pdb_id : str
        4-character PDB id (``"2wrj"``).
    cache : path-like, optional
        Cache folder (default :func:`cache_dir`); the file goes to ``CACHE/pdb/<id>.cif.gz``.
    mirror : str, optional
        An http(s) URL or a local folder holding ``<id>.cif.gz`` (default ``$NT2C_PDB_MIRROR``, else
        ``https://files.rcsb.org/download``).
    """
    from nt2c.io import remove_partial_files

    pdb_id = pdb_id.strip().lower()
    if len(pdb_id) != 4 or not pdb_id.isalnum() or not pdb_id.isascii():
        raise DataError(f"{pdb_id!r} is not a 4-character PDB id.")
    folder = Path(cache or cache_dir()).expanduser() / "pdb"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{pdb_id}.cif.gz"
    mirror = mirror or os.environ.get("NT2C_PDB_MIRROR") or None
    source = _mirror_source(mirror, what="PDB mirror") if mirror else _Source(url=RCSB_DOWNLOAD_URL)
    remove_partial_files(folder, keep=list(folder.glob(".*.partial")), older_than_s=60.0)
    if source.folder is not None:
        origin = {"local": source.folder / name}
    else:  # the RCSB serves upper-case names: <ID>.cif.gz is cached as <id>.cif.gz
        origin = {"url": _join(source.url, f"{pdb_id.upper()}.cif.gz" if "rcsb" in source.url else name)}
    try:
        path, tofu = _fetch_file(ManifestFile(name=name), folder, where="the PDB", label=pdb_id, **origin)
    except _Offline as off:
        raise DataError(
            f"could not download PDB entry {pdb_id} from {off.where} ({off.exc}). Offline? Download "
            f"{pdb_id.upper()}.cif.gz by hand and pass its path as `specimen`, or place it at "
            f"{folder / name}."
        ) from None
    if tofu:
        log.warning(_trusted_line(f"PDB {pdb_id}", [name], folder / "checksums.txt"))
    return path
