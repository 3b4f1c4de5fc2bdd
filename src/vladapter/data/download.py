"""Download a real dataset's files into the raw layout: resumable, checksum-verified.

Each file is fetched to <name>.part (resumed with an HTTP Range request after a dropped
connection, a kill or any interrupted run), checked against the registered size and
sha256, and only then renamed to its final name. A mismatch deletes that partial file
only and stops with an error: nothing unverified is ever left under the final name, and
files verified before stay. A transfer counts as complete only when its length is known
(Content-Length, chunked encoding's end, or the registered size): a connection closed
early without them is never taken for the whole file. A file without a pinned sha256 is
not fetched unless --allow-unpinned says to accept it unverified; such a file (fetched so,
or already present) is reported UNVERIFIED with its sha256, to pin. Files already present
and matching are skipped.
Archives are then unpacked (listed members only).

A folder under the raw root that this command did not create (the user's own data, or a
link to it) is only read: its files are verified, and what it lacks is an error, never
written into it. --manifest writes the verified files' list (the workflow's output), so
Snakemake never deletes the data folder itself.

Sources: src/vladapter/data/registry.py. --mirror URL (or $VLADAPTER_MIRROR) fetches
<mirror>/<dataset>/<name> instead of the registered URL.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from vladapter.data.registry import NOTES, REGISTRY, RemoteFile
from vladapter.errors import ChecksumError, ConfigError, DataError
from vladapter.utils.io import atomic_path, file_sha256

CHUNK = 1 << 20
MIRROR_ENV = "VLADAPTER_MIRROR"
# what a dropped or stalled connection raises; the download then resumes from the .part file
TRANSIENT = (http.client.HTTPException, ConnectionError, socket.timeout, TimeoutError, urllib.error.URLError)


def _matches(path: Path, spec: RemoteFile) -> bool:
    if spec.size is not None and path.stat().st_size != spec.size:
        return False
    return spec.sha256 is None or file_sha256(path) == spec.sha256


def _fetch_once(url: str, part: Path, timeout: float, bar: tqdm, size: int | None = None) -> bool:
    """Append what the server sends after the bytes already in ``part``; True when complete.

    Complete means the length is known and reached: the response's Content-Length, the
    end of a chunked response (http.client raises when one is cut), or the registered
    ``size``. A response with none of them ends the same whether whole or cut: False.
    """
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # asked past the end: the .part is already complete
            return True
        raise
    with response:
        if offset and response.status != 206:  # the server ignored Range: start over
            offset = 0
        length = response.headers.get("Content-Length")
        chunked = "chunked" in (response.headers.get("Transfer-Encoding") or "").lower()
        expected = offset + int(length) if length is not None else size
        if bar.total is None and expected is not None:
            bar.total = expected
        bar.n = offset
        bar.refresh()
        received = offset
        with open(part, "ab" if offset else "wb") as f:
            while True:
                block = response.read(CHUNK)
                if not block:
                    break
                f.write(block)
                received += len(block)
                bar.update(len(block))
    # http.client does not raise when the peer closes early: compare with the known length
    if expected is not None:
        return received >= expected
    return chunked


def fetch(url: str, dest: Path, size: int | None = None, sha256: str | None = None, retries: int = 5,
          timeout: float = 60.0, backoff: float = 1.0) -> str:
    """Download ``url`` to ``dest`` via ``dest.part`` (resuming it); verify size and sha256.

    Returns the file's sha256. Raises ChecksumError (and deletes the partial file) on a
    mismatch, DataError when the server keeps failing after ``retries`` resumes or never
    says how long the file is (then the partial file stays, to resume from).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if size is not None and part.exists() and part.stat().st_size > size:
        part.unlink()  # longer than the real file: not a prefix of it
    bar = tqdm(total=size, unit="B", unit_scale=True, desc=dest.name, mininterval=0.5)
    try:
        for attempt in range(retries + 1):
            try:
                if _fetch_once(url, part, timeout, bar, size):
                    break
            except urllib.error.HTTPError as e:
                raise DataError(f"HTTP {e.code} {e.reason} for {url}", path=dest,
                                fix="check the URL (or --mirror); the server refused the file") from None
            except TRANSIENT as e:
                if attempt == retries:
                    raise DataError(f"download failed after {retries} resumes ({e})", path=part,
                                    fix="rerun the same command: it resumes from the .part file") from None
            time.sleep(backoff * attempt)
        else:
            raise DataError(f"the transfer never completed ({retries} resumes): the server sent no length "
                            "(Content-Length) and the registry has no size, or the connection kept dropping",
                            path=part, fix="rerun the same command (it resumes from the .part file); if the server "
                                           "never sends a length, pin the file's size in the registry")
    finally:
        bar.close()
    got_size = part.stat().st_size
    digest = file_sha256(part)
    if (size is not None and got_size != size) or (sha256 is not None and digest != sha256):
        part.unlink()
        raise ChecksumError(
            f"downloaded file does not match the registry: size {got_size} (expected {size}), "
            f"sha256 {digest} (expected {sha256}); the partial file was deleted", path=dest,
            fix="check the URL or mirror serves the right file; if the source changed on purpose, update "
                "src/vladapter/data/registry.py")
    os.replace(part, dest)
    return digest


def _safe_member(name: str) -> bool:
    p = PurePosixPath(name)
    return not p.is_absolute() and ".." not in p.parts


def extract(archive: Path, members: dict[str, str], root: Path) -> list[Path]:
    """Unpack ``members`` (member -> path under ``root``; "*" -> everything under that
    folder) from a zip or tar archive; each file is written atomically."""
    written = []
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            entries = [(i.filename, lambda i=i: z.open(i)) for i in z.infolist() if not i.is_dir()]
            written = _unpack(entries, members, root, archive)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            entries = [(m.name, lambda m=m: t.extractfile(m)) for m in t.getmembers() if m.isfile()]
            written = _unpack(entries, members, root, archive)
    else:
        raise DataError("not a zip or tar archive", path=archive, fix="delete it and download again")
    return written


def _unpack(entries, members: dict[str, str], root: Path, archive: Path) -> list[Path]:
    names = {n for n, _ in entries}
    missing = [m for m in members if m != "*" and m not in names]
    if missing:
        raise DataError(f"archive lacks {missing[0]}", path=archive, fix="the archive changed: update the registry")
    written = []
    for name, open_member in tqdm(entries, desc=f"extract {archive.name}", unit="file", mininterval=1.0):
        if name in members:
            target = root / members[name]
        elif "*" in members and _safe_member(name):
            target = root / members["*"] / name
        else:
            continue
        with atomic_path(target, suffix=target.suffix) as tmp, open_member() as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK)
        written.append(target)
    return written


def load_registry(path: str | Path | None) -> dict[str, list[RemoteFile]]:
    """The built-in registry, or one from a JSON file {dataset: [{name, url, size, sha256, extract}]}."""
    if path is None:
        return REGISTRY
    try:
        data = json.loads(Path(path).read_text())
        return {ds: [RemoteFile.from_dict(f) for f in files] for ds, files in data.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(f"cannot read download registry {path}: {e}") from None


OWNED = ".vladapter-download"  # in a folder this command created: it may write there


def origin_of(name: str, registry: dict[str, list[RemoteFile]] | None = None) -> tuple[str, str] | None:
    """(dataset, where the file comes from) of a registered raw file ``name``: its URL, or
    the archive member and the archive's URL; None when no download has it."""
    for dataset, files in (REGISTRY if registry is None else registry).items():
        for spec in files:
            if spec.name == name:
                return dataset, spec.url
            for member, target in spec.extract.items():
                if target == name:
                    return dataset, f"{member} in {spec.url}"
    return None


def made_here(root: Path) -> bool:
    """Whether the folder ``root`` is one this command made (and may write into)."""
    return (Path(root) / OWNED).exists()


def _users_folder(root: Path, files: list[RemoteFile]) -> bool:
    """Whether ``root`` is the user's own data, to be read and never written: a link, or a
    folder this command did not make that holds anything but registered files (and their
    partial downloads)."""
    if root.is_symlink():
        return True
    if not root.is_dir() or (root / OWNED).exists():
        return False
    ours = {n for f in files for n in (f.name, f"{f.name}.part", f".{f.name}.extracted")}
    return any(p.name not in ours for p in root.iterdir())


def download(dataset: str, out: str | Path = "data/raw", only: str | None = None, mirror: str | None = None,
             registry: dict[str, list[RemoteFile]] | None = None, retries: int = 5, timeout: float = 60.0,
             allow_unpinned: bool = False) -> list[dict]:
    """Fetch (and unpack) ``dataset``'s registered files under ``out/<dataset>/``.

    Returns one entry per file: name, path, sha256, status (downloaded | present),
    verified (False for a file without a pinned sha256: one already present, e.g. the
    user's own, or one fetched with ``allow_unpinned``; without it such a file is not
    fetched but a ChecksumError raised). A folder
    ``out/<dataset>`` that this function did not create is the user's: it is checked,
    never written into.
    """
    registry = REGISTRY if registry is None else registry
    if dataset not in registry:
        raise ConfigError(f"no download registered for {dataset!r} (known: {', '.join(registry)})")
    files = [f for f in registry[dataset] if only is None or f.name == only]
    if not files:
        raise ConfigError(f"{dataset} has no file {only!r} (files: {', '.join(f.name for f in registry[dataset])})")
    mirror = mirror or os.environ.get(MIRROR_ENV)
    root = Path(out) / dataset
    users = _users_folder(root, registry[dataset])
    report = []
    for spec in files:
        dest = root / spec.name
        # a marker, so an unpacking cut short is redone on the next run
        marker = root / f".{spec.name}.extracted"
        entry = {"name": spec.name, "path": str(dest), "verified": bool(spec.sha256)}
        if dest.exists() and _matches(dest, spec):
            report.append({**entry, "sha256": spec.sha256 or file_sha256(dest), "status": "present"})
        elif users:
            raise DataError(
                f"{root} is your own folder (or a link to it), not one `vladapter download` made; its "
                f"{spec.name} is {'not the registered file' if dest.exists() else 'missing'}, and vladapter never "
                "writes into your folders", path=dest,
                fix=f"put the registered {spec.name} there yourself, or move the folder away so that "
                    f"`vladapter download {dataset}` fetches into {root}")
        elif not spec.sha256 and not allow_unpinned:
            raise ChecksumError(
                f"no sha256 is pinned for {spec.name} of {dataset}: its download could not be verified",
                path=Path(__file__).with_name("registry.py"),
                fix=f"pin its sha256 in the registry, or run `vladapter download {dataset} --allow-unpinned` to "
                    "fetch it unverified (it prints the sha256, to pin)")
        else:
            root.mkdir(parents=True, exist_ok=True)
            (root / OWNED).touch()  # from now on the folder holds this command's files
            marker.unlink(missing_ok=True)
            url = f"{mirror.rstrip('/')}/{dataset}/{spec.name}" if mirror else spec.url
            digest = fetch(url, dest, spec.size, spec.sha256, retries=retries, timeout=timeout)
            report.append({**entry, "sha256": digest, "status": "downloaded"})
        if spec.extract and not marker.exists():
            if users:
                continue  # the user's folder holds what it holds: unpacked or not, it is read as is
            extract(dest, spec.extract, root)
            marker.touch()
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help=f"dataset to download ({', '.join(REGISTRY)})")
    parser.add_argument("--out", default="data/raw", help="root of the raw layout (default: data/raw)")
    parser.add_argument("--file", dest="only", default=None, help="only this registered file name")
    parser.add_argument("--mirror", default=None,
                        help=f"fetch <mirror>/<dataset>/<name> instead of the registered URLs (or ${MIRROR_ENV})")
    parser.add_argument("--registry", default=None, help="a JSON registry to use instead of the built-in one")
    parser.add_argument("--retries", type=int, default=5, help="resumes after a dropped connection (default: 5)")
    parser.add_argument("--timeout", type=float, default=60.0, help="socket timeout in seconds (default: 60)")
    parser.add_argument("--allow-unpinned", action="store_true",
                        help="accept files the registry pins no sha256 for, unverified (their sha256 is printed)")
    parser.add_argument("--manifest", default=None,
                        help="write the files' list (path, sha256, verified) to this JSON file when all are in place")


def run(args: argparse.Namespace) -> int:
    from vladapter.utils.io import write_json

    registry = load_registry(args.registry)
    entries = download(args.dataset, args.out, args.only, args.mirror, registry, args.retries, args.timeout,
                       allow_unpinned=args.allow_unpinned)
    for entry in entries:
        note = "" if entry["verified"] else "  UNVERIFIED: no pinned sha256 (pin this one in the registry)"
        print(f"{entry['status']:<10} {entry['path']}  sha256={entry['sha256']}{note}")
    if args.manifest:
        write_json(args.manifest, {"dataset": args.dataset, "files": entries})
    if args.dataset in NOTES:
        print(f"note: {NOTES[args.dataset]}")
    return 0
