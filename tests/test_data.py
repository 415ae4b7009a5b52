"""Dataset manifests and `nt2c fetch`, served from a loopback HTTP server (never the internet)."""

import gzip
import hashlib
import http.server
import os
import stat
import threading
import time
from pathlib import Path

import pytest
import yaml

from nt2c.data import available_datasets, fetch, load_manifest
from nt2c.errors import DataError

REPO = Path(__file__).resolve().parent.parent


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder with HTTP Range support, and counts the bytes it sends."""

    sent = 0

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = Path(self.translate_path(self.path))
        if path.is_dir():
            return super().do_GET()
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        header = self.headers.get("Range")
        if header:
            start = int(header.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        # Count before writing: the client may return as soon as the body arrives, before
        # this server thread would get to run a line placed after the write.
        type(self).sent += len(body)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def server(tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    handler = type("Handler", (RangeHandler,), {"sent": 0})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: handler(*a, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}/", handler
    httpd.shutdown()


def _manifest(tmp_path, monkeypatch, base_url, files=None, pattern=None):
    folder = tmp_path / "manifests"
    folder.mkdir(exist_ok=True)
    entry = {
        "name": "TOY",
        "aliases": ["toy1"],
        "title": "toy",
        "specimen": "x",
        "pdb_id": "1abc",
        "params": {"pixel_size_A": 1.5},
        "sources": {"pixel_size_A": "test"},
        "files": {
            "base_url": base_url,
            **({"list": files} if files else {}),
            **({"pattern": pattern} if pattern else {}),
        },
    }
    (folder / "toy.yaml").write_text(yaml.safe_dump(entry))
    monkeypatch.setenv("NT2C_MANIFEST_DIR", str(folder))
    monkeypatch.setenv("NT2C_DATA_DIR", str(tmp_path / "cache"))


def test_repository_manifests_are_complete():
    datasets = available_datasets()
    names = ("EMPIAR-10025", "EMPIAR-10028", "EMPIAR-10077", "EMPIAR-10146", "SIM1", "SIM2", "SIM3", "SIM4")
    for name in names:
        man = datasets[name]
        exp = man.experiment  # the params block is a valid params.yaml
        assert exp.pixel_size_A > 0
        assert man.sources, f"{name} gives no sources"
        assert man.base_url or man.files
    assert {datasets[f"EMPIAR-100{n}"].pdb_id for n in ("25", "28", "77")} == {"1iru", "1i96", "6w6p"}
    assert [datasets[f"SIM{i}"].pdb_id for i in range(1, 5)] == ["2wrj", "1kd1", "5lzf", "1gr5"]
    assert load_manifest("em28").name == "EMPIAR-10028"


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(DataError, match="unknown dataset 'EM99'.*EMPIAR-10025"):
        load_manifest("EM99")


def test_fetch_verifies_checksum(server, tmp_path, monkeypatch):
    folder, url, _ = server
    payload = b"micrograph bytes" * 1000
    (folder / "a.mrc").write_bytes(payload)
    good = hashlib.sha256(payload).hexdigest()
    _manifest(tmp_path, monkeypatch, url, files=[{"name": "a.mrc", "sha256": good, "size": len(payload)}])
    (path,) = fetch("toy1")
    assert path.read_bytes() == payload
    _manifest(tmp_path, monkeypatch, url, files=[{"name": "b.mrc", "sha256": "0" * 64}])
    (folder / "b.mrc").write_bytes(b"other")
    with pytest.raises(DataError, match="does not match its checksum"):
        fetch("TOY")


def test_fetch_pattern_records_hash_and_detects_change(server, tmp_path, monkeypatch):
    folder, url, handler = server
    for i in range(3):
        (folder / f"m{i}.mrc").write_bytes(bytes([i]) * 100)
    (folder / "notes.txt").write_text("skip me")
    _manifest(tmp_path, monkeypatch, url, pattern="*.mrc")
    paths = fetch("TOY", max_files=2)
    assert [p.name for p in paths] == ["m0.mrc", "m1.mrc"]
    recorded = (tmp_path / "cache" / "TOY" / "checksums.txt").read_text()
    assert "m0.mrc" in recorded and "m1.mrc" in recorded
    sent = handler.sent
    fetch("TOY", max_files=2)  # cached: nothing downloaded again
    assert handler.sent == sent
    (tmp_path / "cache" / "TOY" / "m0.mrc").write_bytes(b"tampered")
    (path,) = fetch("TOY", max_files=1)  # a damaged cached copy fails its recorded hash and is fetched again
    assert path.read_bytes() == bytes([0]) * 100


def test_fetch_resumes_a_partial_download(server, tmp_path, monkeypatch):
    folder, url, handler = server
    payload = bytes(range(256)) * 400
    (folder / "big.mrc").write_bytes(payload)
    _manifest(
        tmp_path, monkeypatch, url, files=[{"name": "big.mrc", "sha256": hashlib.sha256(payload).hexdigest()}]
    )
    cache = tmp_path / "cache" / "TOY"
    cache.mkdir(parents=True)
    (cache / ".big.mrc.partial").write_bytes(payload[:60000])  # an earlier, interrupted download
    (path,) = fetch("TOY")
    assert path.read_bytes() == payload
    assert handler.sent == len(payload) - 60000  # only the rest was transferred
    assert not (cache / ".big.mrc.partial").exists()


def test_fetch_from_local_mirror_folder(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "a.mrc").write_bytes(b"abc")
    _manifest(tmp_path, monkeypatch, "https://example.invalid/data/", files=[{"name": "a.mrc"}])
    (path,) = fetch("TOY", mirror=str(mirror))
    assert path.read_bytes() == b"abc"


def test_offline_error_says_how_to_place_files(tmp_path, monkeypatch):
    _manifest(
        tmp_path, monkeypatch, "http://127.0.0.1:9/", files=[{"name": "a.mrc"}]
    )  # port 9: nothing listens
    with pytest.raises(DataError, match="place them in .*NT2C_DATA_MIRROR"):
        fetch("TOY")


# -- confinement to the cache, http(s) only (issue 15) ----------------------------------------------------
def _outside_files(tmp_path):
    """Files under tmp_path that are neither served, nor manifests, nor in the cache."""
    skip = {"served", "manifests", "cache"}
    return sorted(
        p.relative_to(tmp_path)
        for p in tmp_path.rglob("*")
        if p.is_file() and p.relative_to(tmp_path).parts[0] not in skip
    )


@pytest.mark.parametrize(
    "name",
    [
        "../evil.mrc",
        "../../evil.mrc",
        "sub/../../evil.mrc",
        "/tmp/nt2c-evil.mrc",
        "",
        "..",
        ".hidden.mrc",
        "a\\b.mrc",
        "checksums.txt",
        "bad\nname.mrc",
    ],
)
def test_fetch_refuses_manifest_names_outside_the_cache(server, tmp_path, monkeypatch, name):
    folder, url, _ = server
    (folder / "evil.mrc").write_bytes(b"x" * 10)
    _manifest(tmp_path, monkeypatch, url, files=[{"name": name}])
    with pytest.raises(DataError, match="refusing file name"):
        fetch("TOY")
    assert _outside_files(tmp_path) == []
    assert not Path("/tmp/nt2c-evil.mrc").exists()


class ListingHandler(RangeHandler):
    """A folder listing whose links are given by the test (``links``); any other path serves 10 bytes."""

    links: list[str] = []

    def do_GET(self):
        if self.path == "/":
            body = "".join(f'<a href="{h}">{h}</a>\n' for h in self.links).encode()
        else:
            body = b"0123456789"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def listing_server():
    handler = type("Handler", (ListingHandler,), {"links": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", handler
    httpd.shutdown()


def test_fetch_refuses_listing_names_that_decode_to_paths(listing_server, tmp_path, monkeypatch):
    url, handler = listing_server
    handler.links = ["good.mrc", "..%2F..%2Fx.mrc"]
    _manifest(tmp_path, monkeypatch, url, pattern="*.mrc")
    with pytest.raises(DataError, match=r"refusing file name '\.\./\.\./x\.mrc' from the listing"):
        fetch("TOY")
    assert _outside_files(tmp_path) == []
    assert not (tmp_path / "cache" / "TOY" / "good.mrc").exists()  # refused before anything is written


def test_fetch_skips_navigation_links_of_a_listing(listing_server, tmp_path, monkeypatch):
    url, handler = listing_server
    handler.links = ["../", "?C=N;O=D", "sub/", "/", "a%20b.mrc", "http://elsewhere.invalid/other/c.mrc"]
    _manifest(tmp_path, monkeypatch, url, pattern="*")
    paths = fetch("TOY")
    assert [p.name for p in paths] == ["a b.mrc", "c.mrc"]  # c.mrc is fetched from the base URL
    assert all(p.parent == tmp_path / "cache" / "TOY" for p in paths)


@pytest.mark.parametrize(
    "files, match",
    [
        ({"base_url": "file:///etc/"}, "not an http"),
        ({"base_url": "ftp://127.0.0.1:9/"}, "not an http"),
        ({"list": [{"name": "hostname", "url": "file:///etc/hostname"}]}, "not an http"),
    ],
)
def test_fetch_accepts_only_http_urls(tmp_path, monkeypatch, files, match):
    _manifest(tmp_path, monkeypatch, None)
    raw = yaml.safe_load((tmp_path / "manifests" / "toy.yaml").read_text())
    raw["files"] = {"list": [{"name": "hostname"}], **files}
    (tmp_path / "manifests" / "toy.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(DataError, match=match):
        fetch("TOY")
    assert not (tmp_path / "cache" / "TOY" / "hostname").exists()


def test_mirror_must_be_a_folder_or_http_url(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "a.mrc").write_bytes(b"abc")
    _manifest(tmp_path, monkeypatch, "https://example.invalid/data/", files=[{"name": "a.mrc"}])
    for bad in (mirror.as_uri(), "ftp://127.0.0.1:9/", str(tmp_path / "missing")):
        with pytest.raises(DataError, match="neither an existing folder nor an http"):
            fetch("TOY", mirror=bad)


class RedirectHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(302)
        self.send_header("Location", "ftp://127.0.0.1:9/a.mrc")
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_redirects_to_other_schemes_are_not_followed(tmp_path, monkeypatch):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RedirectHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        _manifest(
            tmp_path, monkeypatch, f"http://127.0.0.1:{httpd.server_address[1]}/", files=[{"name": "a.mrc"}]
        )
        with pytest.raises(DataError, match="redirect to a non-http"):
            fetch("TOY")
    finally:
        httpd.shutdown()


# -- checksums: explicit trust on first use, recorded and verified (issue 15) ------------------------------
def test_repository_manifests_say_which_files_are_trusted_on_first_use():
    from nt2c.data import manifest_dir

    for path in sorted(manifest_dir().glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        for entry in raw.get("datasets", [raw]):
            files = entry["files"]
            if files.get("pattern"):
                assert "sha256" in files, f"{path}: say `sha256: null` (trust on first use) or list digests"
            for item in files.get("list", []):
                assert "sha256" in item, f"{path}: {item['name']} needs a sha256 (null: trust on first use)"


def test_manifest_checksums_are_validated(tmp_path, monkeypatch):
    _manifest(tmp_path, monkeypatch, "https://example.invalid/", files=[{"name": "a.mrc", "sha256": "abc"}])
    with pytest.raises(DataError, match="not 64 hexadecimal digits"):
        load_manifest("TOY")


def test_trust_on_first_use_is_reported_recorded_and_checked(server, tmp_path, monkeypatch, caplog):
    folder, url, _ = server
    (folder / "a b.mrc").write_bytes(b"first version")  # EMPIAR-10077 names contain spaces
    (folder / "c.mrc").write_bytes(b"pinned")
    pinned = hashlib.sha256(b"pinned").hexdigest()
    _manifest(
        tmp_path,
        monkeypatch,
        url,
        files=[{"name": "a b.mrc", "sha256": None}, {"name": "c.mrc", "sha256": pinned}],
    )
    with caplog.at_level("WARNING", logger="nt2c.data"):
        fetch("TOY")
    lines = [r.getMessage() for r in caplog.records if "trusted on first use" in r.getMessage()]
    assert len(lines) == 1 and "a b.mrc" in lines[0] and "c.mrc" not in lines[0]
    record = tmp_path / "cache" / "TOY" / "checksums.txt"
    assert f"{hashlib.sha256(b'first version').hexdigest()}  a b.mrc\n" in record.read_text()
    caplog.clear()
    with caplog.at_level("WARNING", logger="nt2c.data"):
        fetch("TOY")  # verified against the record: no new trust
    assert not [r for r in caplog.records if "trusted on first use" in r.getMessage()]
    # the server changes the file and the cached copy is lost: the change is detected, nothing is kept
    (folder / "a b.mrc").write_bytes(b"second version")
    (tmp_path / "cache" / "TOY" / "a b.mrc").unlink()
    with pytest.raises(DataError, match="a b.mrc of TOY .* does not match its checksum .*checksums.txt"):
        fetch("TOY")
    assert not (tmp_path / "cache" / "TOY" / "a b.mrc").exists()
    assert not list((tmp_path / "cache" / "TOY").glob(".*partial"))


def _cif(pdb_id: str, *, atoms: bool = True) -> bytes:
    text = f"data_{pdb_id.upper()}\n#\n_entry.id {pdb_id.upper()}\n#\n"
    if atoms:
        text += (
            "loop_\n_atom_site.group_PDB\n_atom_site.id\n_atom_site.type_symbol\n_atom_site.Cartn_x\n"
            "_atom_site.Cartn_y\n_atom_site.Cartn_z\nATOM 1 C 1.0 2.0 3.0\nATOM 2 N 2.0 2.0 3.0\n#\n"
        )
    return gzip.compress(text.encode(), mtime=0)  # no time stamp: the same bytes on every call


def test_fetch_pdb_checks_the_entry_and_records_its_hash(server, tmp_path, monkeypatch, caplog):
    from nt2c.data import fetch_pdb

    folder, url, _ = server
    monkeypatch.setenv("NT2C_PDB_MIRROR", url)
    cache = tmp_path / "cache"
    (folder / "1abc.cif.gz").write_bytes(_cif("1abc"))
    with caplog.at_level("WARNING", logger="nt2c.data"):
        path = fetch_pdb("1ABC", cache=cache)
    assert path == cache / "pdb" / "1abc.cif.gz" and path.read_bytes() == _cif("1abc")
    assert any("trusted on first use" in r.getMessage() for r in caplog.records)
    assert "1abc.cif.gz" in (cache / "pdb" / "checksums.txt").read_text()
    (folder / "2abc.cif.gz").write_bytes(_cif("1abc"))  # the mirror serves another entry under this name
    with pytest.raises(DataError, match="holds PDB entry 1ABC, not 2ABC"):
        fetch_pdb("2abc", cache=cache)
    (folder / "3abc.cif.gz").write_bytes(b"<html>not found</html>")
    with pytest.raises(DataError, match="not a readable mmCIF"):
        fetch_pdb("3abc", cache=cache)
    (folder / "4abc.cif.gz").write_bytes(_cif("4abc", atoms=False))
    with pytest.raises(DataError, match="no atom coordinates"):
        fetch_pdb("4abc", cache=cache)
    assert sorted(p.name for p in (cache / "pdb").iterdir()) == ["1abc.cif.gz", "checksums.txt"]


def test_simulated_dataset_models_are_checked_as_pdb_entries(server, tmp_path, monkeypatch):
    folder, url, _ = server
    (folder / "1abc.cif.gz").write_bytes(_cif("9xyz"))
    _manifest(tmp_path, monkeypatch, url, files=[{"name": "1abc.cif.gz", "sha256": None}])
    with pytest.raises(DataError, match="holds PDB entry 9XYZ, not 1ABC"):
        fetch("TOY")


def test_check_pdb_file_accepts_a_real_entry(shared_data, tmp_path):
    from nt2c.data import check_pdb_file

    gz = tmp_path / "8zpm.cif.gz"
    gz.write_bytes(gzip.compress((shared_data / "pdb" / "8zpm.cif").read_bytes()))
    check_pdb_file(gz, "8zpm")
    check_pdb_file(shared_data / "pdb" / "8zpm.cif", "8ZPM")
    with pytest.raises(DataError, match="holds PDB entry 8ZPM, not 1IRU"):
        check_pdb_file(gz, "1iru")


# -- file modes and leftovers (issue 15) ------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_fetched_files_get_the_mode_the_umask_gives(server, tmp_path, monkeypatch, umask):
    folder, url, _ = server
    (folder / "a.mrc").write_bytes(b"abc" * 100)
    _manifest(tmp_path, monkeypatch, url, files=[{"name": "a.mrc"}])
    old = os.umask(umask)
    try:
        (path,) = fetch("TOY")
    finally:
        os.umask(old)
    for p in (path, path.parent / "checksums.txt"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask, p


def test_fetch_removes_leftover_temporary_files_and_resumes(server, tmp_path, monkeypatch):
    folder, url, handler = server
    payload = bytes(range(256)) * 40
    (folder / "a.mrc").write_bytes(payload)
    _manifest(tmp_path, monkeypatch, url, files=[{"name": "a.mrc"}])
    cache = tmp_path / "cache" / "TOY"
    cache.mkdir(parents=True)
    stale = [cache / ".checksums.txt.k2j9x0_q.part", cache / ".gone.mrc.partial"]  # killed runs
    mine = [cache / "notes.part", cache / "keep.partial", cache / ".a.mrc.x.part"]  # not nt2c's pattern
    for p in stale + mine:
        p.write_bytes(b"old")
    (cache / ".a.mrc.partial").write_bytes(payload[:1000])  # an interrupted download of a listed file
    long_ago = time.time() - 3600
    for p in cache.iterdir():
        os.utime(p, (long_ago, long_ago))
    (path,) = fetch("TOY")
    assert path.read_bytes() == payload
    assert handler.sent == len(payload) - 1000  # resumed, not restarted
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in mine)


def test_a_broken_transfer_is_not_trusted_and_resumes(server, tmp_path, monkeypatch):
    folder, url, handler = server
    payload = bytes(range(256)) * 64
    (folder / "a.mrc").write_bytes(payload)
    original = handler.do_GET

    def breaking_get(self):  # the first answer promises the whole file and stops half-way
        handler.do_GET = original
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload[: len(payload) // 2])
        self.close_connection = True

    handler.do_GET = breaking_get
    _manifest(tmp_path, monkeypatch, url, files=[{"name": "a.mrc"}])
    with pytest.raises(DataError, match="could not download TOY"):
        fetch("TOY")
    cache = tmp_path / "cache" / "TOY"
    assert not (cache / "a.mrc").exists() and not (cache / "checksums.txt").exists()
    assert (cache / ".a.mrc.partial").stat().st_size == len(payload) // 2
    (path,) = fetch("TOY")
    assert path.read_bytes() == payload


def test_a_partial_longer_than_the_file_is_downloaded_again(server, tmp_path, monkeypatch):
    folder, url, _ = server
    (folder / "a.mrc").write_bytes(b"new and short")
    _manifest(tmp_path, monkeypatch, url, files=[{"name": "a.mrc"}])
    cache = tmp_path / "cache" / "TOY"
    cache.mkdir(parents=True)
    (cache / ".a.mrc.partial").write_bytes(b"an older, longer version of the file")  # the server answers 416
    (path,) = fetch("TOY")
    assert path.read_bytes() == b"new and short"


def test_real_micrograph_for_the_notebooks_comes_from_the_manifest_without_the_development_data(
    tmp_path, monkeypatch, capsys
):
    """Binder or a JupyterHub: no ../shared/data, so notebooks 02 and 03 take EMPIAR-10146's first file."""
    import nt2c.tutorial.notebook as notebook
    from nt2c.io import read_image

    monkeypatch.setattr(notebook, "shared_data_dir", lambda: None)
    monkeypatch.setenv("NT2C_DATA_DIR", str(tmp_path / "cache"))
    empty = tmp_path / "empty_mirror"
    empty.mkdir()
    monkeypatch.setenv("NT2C_DATA_MIRROR", str(empty))
    assert notebook.real_micrograph(fetch=False) is None
    assert "downloads are off" in capsys.readouterr().out
    assert notebook.real_micrograph(fetch=True) is None  # offline: says what to do
    assert "no real micrograph here:" in capsys.readouterr().out
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    first = load_manifest("EMPIAR-10146").files[0].name
    import numpy as np
    from PIL import Image

    grey = (np.random.default_rng(0).random((96, 80)) * 255).astype(np.uint8)
    Image.fromarray(grey).save(mirror / first)
    monkeypatch.setenv("NT2C_DATA_MIRROR", str(mirror))
    found = notebook.real_micrograph(fetch=True)
    assert found.path == tmp_path / "cache" / "EMPIAR-10146" / first and found.pixel_size_A == 1.5
    assert read_image(found.path)[0].shape == (96, 80) and "EMPIAR-10146" in found.source
    monkeypatch.delenv("NT2C_DATA_MIRROR")  # from the cache now, no download
    assert notebook.real_micrograph(fetch=False).path == found.path


def test_real_micrograph_prefers_the_development_data(shared_data):
    from nt2c.tutorial.notebook import real_micrograph

    found = real_micrograph(fetch=False)
    assert found.path == shared_data / "real" / "Ucsf_stack_1142_DW.mrc" and found.pixel_size_A > 0
