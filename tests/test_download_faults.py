"""`vladapter download` under faults, against a real HTTP server on a free local port: a
SIGKILL mid-file, a response cut short without Content-Length, a bad sibling, the
user's own folder behind a link, a file without a pinned sha256."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from test_download import serve, sha
from vladapter.data.download import download
from vladapter.data.registry import RemoteFile
from vladapter.errors import ChecksumError, DataError

pytestmark = pytest.mark.faults

REPO = Path(__file__).resolve().parents[1]
DATA = os.urandom(1 << 21)  # 2 MiB: many blocks, so a kill lands mid-file


class Handler(BaseHTTPRequestHandler):
    """Serves server.files with Range support. server.slow: seconds between 64 KiB blocks;
    server.no_length[path]: the next response has no Content-Length and stops halfway;
    server.cut_always: every response does."""

    protocol_version = "HTTP/1.0"  # no length: the body ends where the connection closes

    def log_message(self, *args):
        pass

    def do_GET(self):
        data = self.server.files[self.path]
        byte_range = self.headers.get("Range")
        self.server.requests.append(byte_range)
        start = int(byte_range.split("=")[1].split("-")[0]) if byte_range else 0
        if start >= len(data):
            self.send_response(416)
            self.end_headers()
            return
        self.send_response(206 if byte_range else 200)
        body = data[start:]
        cut = self.server.cut_always or self.server.no_length.pop(self.path, False)
        if cut:
            body = body[: len(body) // 2]
        else:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        for i in range(0, len(body), 1 << 16):
            self.wfile.write(body[i:i + (1 << 16)])
            time.sleep(self.server.slow)


@pytest.fixture()
def server():
    with serve(Handler, files={}, requests=[], slow=0.0, no_length={}, cut_always=False) as httpd:
        yield httpd


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "vladapter.cli", "download", *args]


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}


def test_a_download_killed_mid_file_resumes_from_its_partial_bytes(server, tmp_path):
    server.files["/nlvr2/train.json"] = DATA
    server.slow = 0.05  # ~1.6 s for the whole file
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps({"nlvr2": [{"name": "train.json", "url": "x", "size": len(DATA),
                                               "sha256": sha(DATA)}]}))
    args = cli("nlvr2", "--out", str(tmp_path / "raw"), "--registry", str(registry), "--mirror", server.url)
    part = tmp_path / "raw" / "nlvr2" / "train.json.part"
    proc = subprocess.Popen(args, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not part.exists() or part.stat().st_size < 1 << 18):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = part.stat().st_size
    assert 0 < kept < len(DATA), "killed before or after the transfer"

    server.slow = 0.0
    subprocess.run(args, env=env(), check=True, capture_output=True)
    assert server.requests[-1] == f"bytes={kept}-"  # the rerun asked only for the rest
    assert (tmp_path / "raw" / "nlvr2" / "train.json").read_bytes() == DATA
    assert not part.exists()


def test_a_response_cut_short_without_content_length_is_never_accepted(server, tmp_path):
    server.files["/nlvr2/dev.json"] = DATA
    unpinned = {"nlvr2": [RemoteFile("dev.json", "x")]}  # no size, no sha256: only the transfer can tell
    server.no_length["/nlvr2/dev.json"] = True
    download("nlvr2", tmp_path, mirror=server.url, registry=unpinned, allow_unpinned=True)
    # the length-less first half was not taken for the file: a Range request fetched the rest
    assert server.requests == [None, f"bytes={len(DATA) // 2}-"]
    assert (tmp_path / "nlvr2" / "dev.json").read_bytes() == DATA

    # a server that never says the length (and cuts every response): an error, never the file
    (tmp_path / "nlvr2" / "dev.json").unlink()
    server.cut_always = True
    with pytest.raises(DataError, match="never completed"):
        download("nlvr2", tmp_path, mirror=server.url, registry=unpinned, allow_unpinned=True, retries=1)
    assert not (tmp_path / "nlvr2" / "dev.json").exists()


def test_a_bad_file_never_deletes_its_verified_sibling(server, tmp_path):
    good, bad = DATA[:5000], DATA[5000:9000]
    server.files.update({"/nlvr2/dev.json": good, "/nlvr2/test1.json": bad})
    registry = {"nlvr2": [RemoteFile("dev.json", "x", len(good), sha(good)),
                          RemoteFile("test1.json", "x", len(bad) + 1, sha(bad))]}  # a wrong size
    with pytest.raises(ChecksumError, match="test1.json"):
        download("nlvr2", tmp_path, mirror=server.url, registry=registry)
    assert (tmp_path / "nlvr2" / "dev.json").read_bytes() == good
    registry["nlvr2"][1] = RemoteFile("test1.json", "x", len(bad), sha(bad))
    report = download("nlvr2", tmp_path, mirror=server.url, registry=registry)
    assert [e["status"] for e in report] == ["present", "downloaded"]


def test_the_users_linked_folder_is_read_never_written(server, tmp_path):
    good = DATA[:5000]
    server.files.update({"/nlvr2/dev.json": good, "/nlvr2/test1.json": good})
    mine = tmp_path / "my-nlvr2"
    mine.mkdir()
    (mine / "dev.json").write_bytes(good)
    (mine / "notes.txt").write_text("mine")
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "nlvr2").symlink_to(mine)
    registry = {"nlvr2": [RemoteFile("dev.json", "x", len(good), sha(good)),
                          RemoteFile("test1.json", "x", len(good), sha(good))]}
    before = sorted(p.name for p in mine.iterdir())
    with pytest.raises(DataError, match="your own folder") as err:
        download("nlvr2", tmp_path / "raw", mirror=server.url, registry=registry)
    assert "test1.json" in str(err.value) and "fix:" in str(err.value)
    assert (tmp_path / "raw" / "nlvr2").is_symlink() and sorted(p.name for p in mine.iterdir()) == before
    assert server.requests == []
    # with every file in place it is used as it is, and still not written
    (mine / "test1.json").write_bytes(good)
    assert [e["status"] for e in download("nlvr2", tmp_path / "raw", registry=registry)] == ["present", "present"]
    assert sorted(p.name for p in mine.iterdir()) == sorted(before + ["test1.json"])


def test_a_file_without_a_pinned_sha256_is_not_taken_as_verified(server, tmp_path):
    server.files["/nlvr2/dev.json"] = DATA[:100]
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps({"nlvr2": [{"name": "dev.json", "url": "x", "size": 100}]}))
    args = cli("nlvr2", "--out", str(tmp_path / "raw"), "--registry", str(registry), "--mirror", server.url)
    refused = subprocess.run(args, env=env(), capture_output=True, text=True)
    assert refused.returncode == 2 and "no sha256 is pinned for dev.json" in refused.stderr
    assert "--allow-unpinned" in refused.stderr and "Traceback" not in refused.stderr
    assert server.requests == [] and not (tmp_path / "raw" / "nlvr2" / "dev.json").exists()
    accepted = subprocess.run([*args, "--allow-unpinned", "--manifest", str(tmp_path / "m.json")], env=env(),
                              capture_output=True, text=True, check=True)
    assert "UNVERIFIED: no pinned sha256" in accepted.stdout and sha(DATA[:100]) in accepted.stdout
    assert json.loads((tmp_path / "m.json").read_text())["files"][0]["verified"] is False
    # once present it is used, and still reported as unverified
    again = subprocess.run(args, env=env(), capture_output=True, text=True, check=True)
    assert again.stdout.startswith("present") and "UNVERIFIED" in again.stdout


@pytest.mark.slow
def test_a_failed_job_on_the_users_linked_folder_leaves_it_alone(tmp_path):
    """Under Snakemake: a dataset folder the user linked in is read where it lies, never
    downloaded into; the job that reads it fails (the folder lacks files, no network is
    touched), Snakemake cleans the failed job's outputs, and the link and its files stay."""
    from workflow_helpers import copy_workflow, snakemake

    work = copy_workflow(tmp_path)
    mine = tmp_path / "my-nlvr2"
    mine.mkdir()
    (mine / "dev.json").write_text("{}\n")
    (work / "data" / "raw").mkdir(parents=True)
    (work / "data" / "raw" / "nlvr2").symlink_to(mine)
    proc = snakemake(work, "--configfile=config/paper-image.yaml", "data/prepared/nlvr2/summary.json", check=False)
    assert proc.returncode != 0
    assert "nlvr2" in (work / "logs" / "prepare" / "nlvr2.log").read_text()
    assert not (work / "logs" / "download").exists()  # no download job was planned for it
    assert (work / "data" / "raw" / "nlvr2").is_symlink() and sorted(p.name for p in mine.iterdir()) == ["dev.json"]
    assert not (work / "data" / "raw" / "nlvr2.download.json").exists()
