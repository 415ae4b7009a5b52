"""Dataset manifests and `nt2c fetch`, served from a loopback HTTP server (never the internet)."""

import hashlib
import http.server
import threading
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
    for name in ("EMPIAR-10025", "EMPIAR-10028", "EMPIAR-10077", "SIM1", "SIM2", "SIM3", "SIM4"):
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
