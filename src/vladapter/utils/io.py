"""Atomic file output: write to a temporary name beside the target, then rename.

A reader never sees a half-written file under its final name, whatever kills the writer.
Outputs get the modes an ordinary ``open()`` / ``mkdir()`` would give them (the umask's),
not the private 0600/0700 of the temporary names, so others in a shared project folder can
read results. A folder that cannot be written, or a full disk, is a DataError naming the
path; text input that is not UTF-8 is a DataError naming the file and line.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

# errors of the place written to, not of the program: the user fixes them (exit 2)
STORAGE_ERRNOS = {
    errno.EACCES: ("permission denied", "make the folder writable, or write somewhere else"),
    errno.EPERM: ("operation not permitted", "make the folder writable, or write somewhere else"),
    errno.EROFS: ("read-only file system", "write somewhere else"),
    errno.ENOSPC: ("no space left on the device", "free space on that disk (or write elsewhere) and rerun: "
                                                  "completed work is kept"),
    errno.EDQUOT: ("disk quota exceeded", "free space (or write elsewhere) and rerun: completed work is kept"),
    errno.EFBIG: ("file too large for this file system or process limit (ulimit -f)",
                  "raise the limit or write elsewhere, then rerun: completed work is kept"),
}


def storage_error(e: OSError, path: str | os.PathLike | None = None):
    """The DataError a user can act on for an OSError of writing ``path`` (None if it is not
    one of STORAGE_ERRNOS, i.e. not the storage's fault)."""
    from vladapter.errors import DataError

    if e.errno not in STORAGE_ERRNOS:
        return None
    what, fix = STORAGE_ERRNOS[e.errno]
    return DataError(f"cannot write: {what}", path=e.filename or path, fix=fix)


@contextlib.contextmanager
def storage_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn a storage OSError (read-only folder, full disk) inside the block into a DataError."""
    try:
        yield
    except OSError as e:
        error = storage_error(e, path)
        if error is None:
            raise
        raise error from None


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes (read in chunks)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _make_parent(path: Path) -> None:
    with storage_errors(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)


def ensure_writable(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and check a file can be written in it; else a DataError
    naming it. For commands that would compute for long before their first write."""
    folder = Path(folder)
    with storage_errors(folder):
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    return folder


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched. The file
    gets mode 0666 less the umask; a read-only folder or a full disk raises DataError.
    """
    path = Path(path)
    _make_parent(path)
    with storage_errors(path.parent):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        with storage_errors(path):
            yield tmp_path
            if tmp_path.exists():  # the writer may have replaced it: set the mode of what is there
                os.chmod(tmp_path, 0o666 & ~_umask())
            os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=indent)
            f.write("\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[Any]) -> int:
    n = 0
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row))
                f.write("\n")
                n += 1
    return n


NOT_UTF8_FIX = "save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 FILE > FILE.utf8`), or fix that line"


def utf8_lines(path: str | os.PathLike) -> Iterator[tuple[int, str | None, str | None]]:
    """(line number, text, None) for each line of ``path`` decoded as UTF-8, or
    (line number, None, what is wrong) for a line that is not UTF-8: the caller decides
    whether that stops the read or skips the line."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                yield lineno, raw.decode("utf-8"), None
            except UnicodeDecodeError as e:
                yield lineno, None, f"not UTF-8 text (byte {raw[e.start:e.start + 1]!r} at column {e.start + 1})"


def read_utf8(path: str | os.PathLike) -> str:
    """The whole file decoded as UTF-8; otherwise a DataError naming file, line and byte."""
    from vladapter.errors import DataError

    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(f"not UTF-8 text (byte {data[e.start:e.start + 1]!r} at column {column})", path=path,
                        record=f"line {line}", fix=NOT_UTF8_FIX) from None


def save_safetensors(tensors: dict, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` (name -> torch tensor) and ``metadata`` to ``path`` as safetensors,
    atomically; the same tensors and metadata always give the same bytes."""
    from safetensors.torch import save_file

    _write_safetensors(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def save_model_safetensors(model, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """``safetensors.torch.save_model`` (tied weights stored once, named in the metadata) to
    ``path``, atomically; the same parameters and metadata always give the same bytes."""
    from safetensors.torch import save_model

    _write_safetensors(path, lambda tmp: save_model(model, str(tmp), metadata=metadata))


def _write_safetensors(path: str | os.PathLike, write) -> None:
    """Let ``write(tmp)`` write a safetensors file, then publish it at ``path`` with the
    header's metadata sorted. safetensors writes the metadata in hash-map order, which
    varies from call to call: without this DVC would see a change after every identical
    retrain."""
    import shutil

    with atomic_path(path, suffix=".safetensors") as tmp:
        unsorted = tmp.with_name(tmp.name + ".unsorted")
        try:
            write(unsorted)
            with open(unsorted, "rb") as src, open(tmp, "wb") as dst:
                header = json.loads(src.read(int.from_bytes(src.read(8), "little")))
                if "__metadata__" in header:  # first, as safetensors writes it
                    header = {"__metadata__": dict(sorted(header.pop("__metadata__").items())), **header}
                text = json.dumps(header, separators=(",", ":")).encode()
                text += b" " * (-len(text) % 8)  # the format pads the header to 8 bytes
                dst.write(len(text).to_bytes(8, "little") + text)
                shutil.copyfileobj(src, dst)  # the tensor data, unchanged
        finally:
            unsorted.unlink(missing_ok=True)


def read_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    """Yield the objects of a JSON-lines file; a bad line raises DataError naming it."""
    from vladapter.errors import DataError

    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path=path, fix="check the path or run the stage that writes it")
    for lineno, line, problem in utf8_lines(path):
        if problem is not None:
            raise DataError(problem, path=path, record=f"line {lineno}", fix=NOT_UTF8_FIX)
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"invalid JSON ({e.msg})", path=path, record=f"line {lineno}",
                            fix="repair or remove the line") from None


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary directory next to ``path``; on success it replaces ``path``.

    For outputs that are directories (HF ``save_pretrained`` folders, a prepared dataset's
    files). On an exception (Ctrl-C included) the temporary directory is removed and
    ``path`` is left as it was. A previous ``path`` is moved aside before the rename and
    deleted after it, so a complete copy always exists; Ctrl-C or a termination signal
    during the swap takes effect after it. The folder gets mode 0777 less the
    umask. A read-only folder or a full disk is a DataError naming the file under ``path``
    (not its temporary twin).
    """
    import shutil

    path = Path(path)
    _make_parent(path)
    with storage_errors(path.parent):
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        where = path
        if e.filename and Path(e.filename).is_relative_to(tmp):
            where = path / Path(e.filename).relative_to(tmp)
        e.filename = None
        error = storage_error(e, where)
        if error is None:
            raise
        raise error from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.chmod(tmp, 0o777 & ~_umask())
    with signals_deferred():  # the swap and the old copy's removal: nothing left half done
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def signals_deferred(signals=("SIGINT", "SIGTERM")) -> Iterator[None]:
    """Hold back Ctrl-C and termination signals while the block runs (a few renames that
    must happen together); one that arrived is handled when it ends. Only the main thread
    can do this; elsewhere the block runs as it is."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple[int, object]] = []
    previous = {}
    for name in signals:
        number = getattr(signal, name)
        if signal.getsignal(number) is not None:  # None: a handler not set from Python, left alone
            previous[number] = signal.signal(number, lambda signum, frame: caught.append((signum, frame)))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for signum, frame in caught[:1]:
            handler = previous[signum]
            if callable(handler):
                handler(signum, frame)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)
