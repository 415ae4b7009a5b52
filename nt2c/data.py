"""Datasets: manifests in ``data_manifests/``, a local cache, and ``nt2c fetch``.

Each dataset is described by one YAML manifest: the specimen, its acquisition parameters (the pinned
:class:`~nt2c.config.ExperimentParams` keys, so a manifest's ``params`` block is a valid ``params.yaml``), the
PDB id the paper simulated for it, where the files live (a base URL and a list of files, or a glob pattern over
the server's folder listing) and, where known, sizes and SHA-256 checksums. Every number names its source.

Downloads go through :mod:`pooch` into a cache folder (``$NT2C_DATA_DIR``, else the OS cache folder
``nt2c``). A download that breaks off is resumed from its partial file on the next call (HTTP Range
requests). Checksums are verified when the manifest gives them; otherwise the hash of the first complete
download is recorded in the cache (``<dataset>/checksums.txt``) and verified on later calls.
``$NT2C_DATA_MIRROR`` (or ``mirror=``) replaces the manifests' base URL by another URL or a local folder.
"""

from __future__ import annotations

import fnmatch
import hashlib
import html.parser
import os
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
    "fetch",
    "fetch_pdb",
    "load_manifest",
    "manifest_dir",
]

_CHUNK = 1 << 20


def cache_dir() -> Path:
    """The data cache: ``$NT2C_DATA_DIR`` when set, else the OS cache folder for nt2c."""
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
    """One file of a dataset."""

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
        return Manifest(
            name=raw["name"],
            title=raw.get("title", ""),
            aliases=[str(a) for a in raw.get("aliases", [])],
            specimen=raw.get("specimen", ""),
            pdb_id=raw.get("pdb_id"),
            params=raw.get("params", {}),
            sources=raw.get("sources", {}),
            base_url=files.get("base_url"),
            files=[ManifestFile(**f) for f in files.get("list", [])],
            pattern=files.get("pattern"),
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
    """The manifest of dataset ``name`` (or one of its aliases, case-insensitive)."""
    manifests = _all_manifests()
    wanted = name.strip().lower()
    for man in manifests.values():
        if wanted == man.name.lower() or wanted in (a.lower() for a in man.aliases):
            return man
    known = ", ".join(
        f"{m.name} ({'/'.join(m.aliases)})" if m.aliases else m.name for m in manifests.values()
    )
    raise DataError(f"unknown dataset {name!r}; known datasets: {known}.")


# -- downloading -----------------------------------------------------------------------------------------
class ResumableDownloader:
    """A pooch downloader that keeps partial downloads and resumes them with HTTP Range requests.

    The partial file lives beside the cached file (``<name>.partial``) so that an interrupted download
    continues on the next call; local folders and ``file://`` URLs are copied.
    """

    def __init__(self, partial_path: Path, *, timeout_s: float = 60.0, progressbar: bool = False):
        self.partial_path = partial_path
        self.timeout_s = timeout_s
        self.progressbar = progressbar

    def __call__(self, url: str, output_file, pooch_obj=None, check_only: bool = False):
        if check_only:
            return True
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme in ("", "file"):
            shutil.copyfile(urllib.request.url2pathname(parsed.path), output_file)
            return None
        self.partial_path.parent.mkdir(parents=True, exist_ok=True)
        have = self.partial_path.stat().st_size if self.partial_path.exists() else 0
        request = urllib.request.Request(url, headers={"User-Agent": "nt2c"})
        if have:
            request.add_header("Range", f"bytes={have}-")
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout_s)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:  # already complete
                shutil.copyfile(self.partial_path, output_file)
                self.partial_path.unlink()
                return None
            raise
        with response:
            mode = "ab" if have and response.status == 206 else "wb"
            total = response.headers.get("Content-Length")
            from nt2c.progress import progress

            bar = progress(
                total=int(total) + (have if mode == "ab" else 0) if total else None,
                unit="B",
                unit_scale=True,
                desc=Path(parsed.path).name,
                initial=have if mode == "ab" else 0,
            )
            with open(self.partial_path, mode) as handle:
                while chunk := response.read(_CHUNK):
                    handle.write(chunk)
                    bar.update(len(chunk))
            bar.close()
        shutil.copyfile(self.partial_path, output_file)
        self.partial_path.unlink()
        return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class _LinkParser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.links.append(href)


def _list_remote(base: str, pattern: str) -> list[str]:
    """Names in the folder ``base`` (a local folder or an HTTP listing) matching the glob ``pattern``."""
    parsed = urllib.parse.urlparse(base)
    if parsed.scheme in ("", "file"):
        folder = Path(urllib.request.url2pathname(parsed.path))
        return sorted(p.name for p in folder.iterdir() if fnmatch.fnmatch(p.name, pattern))
    with urllib.request.urlopen(
        urllib.request.Request(base, headers={"User-Agent": "nt2c"}), timeout=60
    ) as resp:
        parser = _LinkParser()
        parser.feed(resp.read().decode("utf-8", "replace"))
    names = {urllib.parse.unquote(Path(urllib.parse.urlparse(h).path).name) for h in parser.links}
    return sorted(n for n in names if fnmatch.fnmatch(n, pattern))


def _join(base: str, name: str) -> str:
    parsed = urllib.parse.urlparse(base)
    if parsed.scheme in ("", "file"):
        return (Path(urllib.request.url2pathname(parsed.path)) / name).as_uri()
    return base.rstrip("/") + "/" + urllib.parse.quote(name)


def _recorded_hashes(folder: Path) -> dict[str, str]:
    path = folder / "checksums.txt"
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            out[parts[1]] = parts[0]
    return out


def _record_hash(folder: Path, name: str, digest: str) -> None:
    hashes = _recorded_hashes(folder)
    hashes[name] = digest
    (folder / "checksums.txt").write_text("".join(f"{h}  {n}\n" for n, h in sorted(hashes.items())))


def fetch(
    dataset: str,
    *,
    max_files: int | None = None,
    mirror: str | None = None,
    cache: str | os.PathLike | None = None,
) -> list[Path]:
    """Download (or find in the cache) the files of ``dataset`` and verify them.

    Parameters
    ----------
    dataset : str
        Dataset name or alias (``EMPIAR-10025``, ``EM25``, ``SIM1``, ...).
    max_files : int, optional
        Fetch only the first ``max_files`` files (micrograph datasets are large).
    mirror : str, optional
        URL or local folder replacing the manifest's base URL (default ``$NT2C_DATA_MIRROR``).
    cache : path-like, optional
        Cache folder (default :func:`cache_dir`).

    Returns
    -------
    list of pathlib.Path
        The local files, in manifest order.
    """
    import pooch

    pooch.get_logger().setLevel("WARNING")
    man = load_manifest(dataset)
    base = mirror or os.environ.get("NT2C_DATA_MIRROR") or man.base_url
    if not base and not any(f.url for f in man.files):
        raise DataError(
            f"dataset {man.name} has no download location in {man.path}; place its files by hand."
        )
    folder = Path(cache or cache_dir()) / man.name
    folder.mkdir(parents=True, exist_ok=True)
    files = list(man.files)
    try:
        if not files and man.pattern:
            files = [ManifestFile(name=n) for n in _list_remote(base, man.pattern)]
            if not files:
                raise DataError(f"no file matching {man.pattern!r} at {base}.")
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise DataError(_offline_message(man, base, folder, exc)) from None
    if max_files is not None:
        files = files[:max_files]
    recorded = _recorded_hashes(folder)
    paths = []
    for entry in files:
        url = (
            entry.url
            if (entry.url and not mirror and not os.environ.get("NT2C_DATA_MIRROR"))
            else _join(base, entry.name)
        )
        known = entry.sha256 or recorded.get(entry.name)
        target = folder / entry.name
        downloader = ResumableDownloader(folder / f".{entry.name}.partial")
        try:
            path = Path(
                pooch.retrieve(
                    url,
                    known_hash=f"sha256:{known}" if known else None,
                    fname=entry.name,
                    path=folder,
                    downloader=downloader,
                    progressbar=False,
                )
            )
        except ValueError as exc:  # pooch: hash mismatch
            raise DataError(
                f"{entry.name} of {man.name} does not match its checksum ({exc}). The cached copy at {target} is "
                "damaged or the server changed it; delete it and fetch again."
            ) from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise DataError(_offline_message(man, url, folder, exc)) from None
        if entry.size is not None and path.stat().st_size != entry.size:
            raise DataError(
                f"{path} has {path.stat().st_size} bytes, the manifest says {entry.size}; delete it and fetch again."
            )
        if not known:
            _record_hash(folder, entry.name, _sha256(path))
        paths.append(path)
    return paths


def _offline_message(man: Manifest, where: str, folder: Path, exc: BaseException) -> str:
    return (
        f"could not download {man.name} from {where} ({exc}). If this machine is offline, download the files "
        f"elsewhere (see {man.path}) and place them in {folder}, or point NT2C_DATA_MIRROR at a folder or URL "
        "that has them; nt2c then verifies and uses them."
    )


def fetch_pdb(pdb_id: str, *, cache: str | os.PathLike | None = None, mirror: str | None = None) -> Path:
    """Download the mmCIF model ``pdb_id`` from the RCSB (cached); returns the local ``.cif.gz`` path."""
    import pooch

    pooch.get_logger().setLevel("WARNING")
    pdb_id = pdb_id.strip().lower()
    if len(pdb_id) != 4 or not pdb_id.isalnum():
        raise DataError(f"{pdb_id!r} is not a 4-character PDB id.")
    folder = Path(cache or cache_dir()) / "pdb"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{pdb_id}.cif.gz"
    base = mirror or os.environ.get("NT2C_PDB_MIRROR") or "https://files.rcsb.org/download"
    url = _join(base, f"{pdb_id.upper()}.cif.gz") if "rcsb" in base else _join(base, name)
    try:
        return Path(
            pooch.retrieve(
                url,
                known_hash=None,
                fname=name,
                path=folder,
                downloader=ResumableDownloader(folder / f".{name}.partial"),
                progressbar=False,
            )
        )
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise DataError(
            f"could not download PDB entry {pdb_id} from {url} ({exc}). Offline? Download {pdb_id.upper()}.cif.gz "
            f"by hand and pass its path as `specimen`, or place it at {folder / name}."
        ) from None
