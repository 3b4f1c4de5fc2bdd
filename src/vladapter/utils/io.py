"""Atomic file output: write to a temporary name beside the target, then rename.

A reader never sees a half-written file under its final name, whatever kills the writer.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=indent)
            f.write("\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[Any]) -> int:
    n = 0
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            for row in rows:
                f.write(json.dumps(row))
                f.write("\n")
                n += 1
    return n


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
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
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

    For outputs that are directories (HF ``save_pretrained`` folders). On an exception the
    temporary directory is removed and ``path`` is left as it was. A previous ``path`` is
    moved aside before the rename and deleted after it, so a complete copy always exists.
    """
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
        os.replace(path, old / path.name)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
