"""`vladapter download` against a real HTTP server on 127.0.0.1 serving fixture files."""

from __future__ import annotations

import hashlib
import json
import threading
import zipfile
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from vladapter.cli import main
from vladapter.data.download import OWNED, download, fetch
from vladapter.data.registry import REGISTRY, RemoteFile
from vladapter.errors import ChecksumError, ConfigError


class RangeHandler(BaseHTTPRequestHandler):
    """Serves server.files[path] with Range support; server.drop_after[path] = n makes the
    first response for that path stop after n bytes (the connection is closed)."""

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        data = self.server.files.get(self.path)
        self.server.requests.append((self.path, self.headers.get("Range")))
        if data is None:
            self.send_error(404)
            return
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        cut = self.server.drop_after.pop(self.path, None)
        self.wfile.write(body if cut is None else body[:cut])
        if cut is not None:
            self.close_connection = True


@contextmanager
def serve(handler: type[BaseHTTPRequestHandler], **state):
    """A local HTTP server on a free port (port 0), ``state`` as its attributes, ``url`` set."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    for name, value in state.items():
        setattr(httpd, name, value)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture()
def server():
    with serve(RangeHandler, files={}, drop_after={}, requests=[]) as httpd:
        yield httpd


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture()
def dev_json(real_fixtures) -> bytes:
    return (real_fixtures / "nlvr2" / "dev.json").read_bytes()


def test_good_download_verifies_and_renames(server, tmp_path, dev_json):
    server.files["/nlvr2/dev.json"] = dev_json
    registry = {"nlvr2": [RemoteFile("dev.json", "http://unused.invalid/dev.json", len(dev_json), sha(dev_json))]}
    report = download("nlvr2", tmp_path, mirror=server.url, registry=registry)
    dest = tmp_path / "nlvr2" / "dev.json"
    assert dest.read_bytes() == dev_json
    assert report == [{"name": "dev.json", "path": str(dest), "sha256": sha(dev_json), "status": "downloaded",
                       "verified": True}]
    assert not (tmp_path / "nlvr2" / "dev.json.part").exists()
    # a second run finds the verified file and fetches nothing
    n = len(server.requests)
    assert download("nlvr2", tmp_path, mirror=server.url, registry=registry)[0]["status"] == "present"
    assert len(server.requests) == n


def test_interrupted_download_resumes_with_range(server, tmp_path, dev_json):
    server.files["/how2qa/x.csv"] = dev_json
    server.drop_after["/how2qa/x.csv"] = 50_000  # first response dies after 50 kB
    dest = tmp_path / "x.csv"
    digest = fetch(f"{server.url}/how2qa/x.csv", dest, size=len(dev_json), sha256=sha(dev_json), backoff=0)
    assert digest == sha(dev_json) and dest.read_bytes() == dev_json
    assert server.requests == [("/how2qa/x.csv", None), ("/how2qa/x.csv", "bytes=50000-")]


def test_part_file_of_an_earlier_run_is_resumed(server, tmp_path, dev_json):
    server.files["/nlvr2/dev.json"] = dev_json
    (tmp_path / "nlvr2").mkdir()
    (tmp_path / "nlvr2" / "dev.json.part").write_bytes(dev_json[:1234])
    registry = {"nlvr2": [RemoteFile("dev.json", "x", len(dev_json), sha(dev_json))]}
    download("nlvr2", tmp_path, mirror=server.url, registry=registry)
    assert (tmp_path / "nlvr2" / "dev.json").read_bytes() == dev_json
    assert server.requests == [("/nlvr2/dev.json", "bytes=1234-")]


def test_checksum_mismatch_keeps_nothing(server, tmp_path, dev_json):
    server.files["/nlvr2/dev.json"] = dev_json
    registry = {"nlvr2": [RemoteFile("dev.json", "x", None, "0" * 64)]}
    with pytest.raises(ChecksumError) as err:
        download("nlvr2", tmp_path, mirror=server.url, registry=registry)
    assert "sha256" in str(err.value) and "0" * 64 in str(err.value) and "fix:" in str(err.value)
    # neither dev.json nor dev.json.part (only the mark that the folder is the download's)
    assert [p.name for p in (tmp_path / "nlvr2").iterdir()] == [OWNED]


def test_cli_mismatch_exits_2_with_message(server, tmp_path, dev_json, capsys, monkeypatch):
    server.files["/nlvr2/dev.json"] = dev_json
    reg = tmp_path / "registry.json"
    reg.write_text(json.dumps({"nlvr2": [{"name": "dev.json", "url": "x", "size": len(dev_json) + 1}]}))
    monkeypatch.setenv("VLADAPTER_MIRROR", server.url)
    rc = main(["download", "nlvr2", "--out", str(tmp_path / "raw"), "--registry", str(reg), "--allow-unpinned"])
    assert rc == 2
    assert "does not match the registry" in capsys.readouterr().err
    assert not (tmp_path / "raw" / "nlvr2" / "dev.json").exists()


def test_archive_members_are_extracted(server, tmp_path, real_fixtures):
    member = (real_fixtures / "gqa" / "allennlp_questions1.json").read_bytes()
    zpath = tmp_path / "q.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        z.writestr("testdev_balanced_questions.json", member)
        z.writestr("images/n1.jpg", b"jpg")
    data = zpath.read_bytes()
    server.files["/gqa/questions.zip"] = data
    registry = {"gqa": [RemoteFile("questions.zip", "x", len(data), sha(data),
                                   {"testdev_balanced_questions.json": "testdev_balanced_questions.json", "*": ""})]}
    download("gqa", tmp_path / "raw", mirror=server.url, registry=registry)
    assert (tmp_path / "raw" / "gqa" / "testdev_balanced_questions.json").read_bytes() == member
    assert (tmp_path / "raw" / "gqa" / "images" / "n1.jpg").read_bytes() == b"jpg"


def test_unknown_dataset_and_file_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="known:"):
        download("imagenet", tmp_path)
    with pytest.raises(ConfigError, match="dev.json"):
        download("nlvr2", tmp_path, only="nope.json")


def test_registry_covers_every_dataset():
    assert set(REGISTRY) == {"coco", "vqav2", "gqa", "nlvr2", "tvqa", "how2qa", "tvc", "yc2c"}
    for files in REGISTRY.values():
        for f in files:
            assert f.url.startswith("http") and f.name and (f.sha256 is None or len(f.sha256) == 64)


def test_every_registry_entry_is_pinned_or_listed_unpinned_with_a_reason(repo):
    import re

    text = (repo / "docs" / "data.md").read_text()
    table = text.split("### Pinned and unpinned downloads", 1)[1]
    listed = {(m.group(1), m.group(2)): m.group(3).strip()
              for m in re.finditer(r"^\| (\w+) \| `([^`]+)` \| ([^|]*) \|$", table, re.M)}
    unpinned = {(d, f.name) for d, files in REGISTRY.items() for f in files if not f.sha256}
    assert unpinned == set(listed), "docs/data.md's unpinned table and the registry disagree"
    assert all(listed.values()), "every unpinned file needs a reason"
    pinned = {(d, f.name): f for d, files in REGISTRY.items() for f in files if f.sha256}
    assert pinned[("coco", "train2014.zip")].size == 13_510_573_713
    assert all(f.size for f in pinned.values())
    assert all("/master/" not in f.url for f in REGISTRY["nlvr2"])
