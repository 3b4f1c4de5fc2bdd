"""Resumable, atomic writing of one HDF5 file of per-id arrays (frames and features).

Completed ids go into small shard files under ``.<name>.parts/`` beside the output, each
shard written to a temporary name and renamed, so killing the writer at any moment loses
at most the ids not yet flushed, and never leaves a half file anywhere it will be read.
``finish()`` merges the ids of an existing output file and all shards into a temporary
file and renames it onto the output; only then are the shards removed. A rerun skips
every id found in the output file or in a shard (``done``).

The root attributes describe how the content was made (sampler, backbone, config, the
backbone weights' content hash); shards left by a run with other attributes are
discarded, never merged, and an existing output with other attributes is an error
(``--overwrite`` replaces it).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import resource
import shutil
from pathlib import Path

import h5py
import numpy as np

from vladapter.errors import ConfigError, DataError
from vladapter.utils.io import STORAGE_ERRNOS, atomic_path, write_json

SIGNATURE = "signature"


def _signature(attrs: dict) -> str:
    return json.dumps(attrs, sort_keys=True)


def root_ids(f: h5py.File) -> list[str]:
    """Names of the datasets at the root of ``f`` (the ids; groups such as ``pooled/`` excluded)."""
    return [k for k in f.keys() if f.get(k, getclass=True) is h5py.Dataset]


def _copy_all(src: h5py.File, dst: h5py.File) -> None:
    for name in src.keys():
        obj = src[name]
        if isinstance(obj, h5py.Group):
            group = dst.require_group(name)
            for sub in obj.keys():
                if sub not in group:
                    obj.copy(obj[sub], group, name=sub)
        elif name not in dst:
            src.copy(obj, dst, name=name)


class ResumableH5Writer:
    """Collects ``add()``-ed arrays into shards; ``finish()`` publishes the final file.

    attrs:       root attributes (JSON-able values; dicts are stored as JSON strings)
    flush_every: ids per shard: the most work a kill can lose
    overwrite:   ignore (and finally replace) an existing output and its shards
    """

    def __init__(self, path: str | Path, attrs: dict, flush_every: int = 256, overwrite: bool = False):
        self.path = Path(path)
        self.attrs = dict(attrs)
        self.flush_every = max(1, int(flush_every))
        self.parts = self.path.parent / f".{self.path.name}.parts"
        self._buffer: list[tuple[str, np.ndarray, dict, dict]] = []
        self.n_added = 0
        signature = _signature(self.attrs)
        if overwrite and self.parts.exists():
            shutil.rmtree(self.parts)
        self._keep_existing = self.path.exists() and not overwrite
        self.done: set[str] = set()
        if self._keep_existing:
            with self._open(self.path) as f:
                if f.attrs.get(SIGNATURE) != signature:
                    raise ConfigError(
                        f"{self.path} was made with other settings ({f.attrs.get(SIGNATURE)}) than this run "
                        f"({signature}); rerun with --overwrite to replace it, or write to another path")
                self.done.update(root_ids(f))
        meta = self.parts / "attrs.json"
        if meta.exists() and json.loads(meta.read_text()).get(SIGNATURE) != signature:
            # our own work files, of another producer (settings, backbone weights): never merged
            print(f"discarding the unfinished run in {self.parts}: it was made with other settings or "
                  "weights than this run", flush=True)
            shutil.rmtree(self.parts)
        if not meta.exists():
            self.parts.mkdir(parents=True, exist_ok=True)
            write_json(meta, {SIGNATURE: signature})
        for shard in self._shards():
            with self._open(shard) as f:
                self.done.update(root_ids(f))

    @staticmethod
    def _open(path: Path) -> h5py.File:
        try:
            return h5py.File(path, "r")
        except OSError as e:
            raise DataError(f"cannot read HDF5 file ({e})", path=path,
                            fix="delete it (and its .parts folder) and rerun") from None

    def _shards(self) -> list[Path]:
        return sorted(self.parts.glob("shard-*.h5"))

    def add(self, id_: str, data: np.ndarray, attrs: dict | None = None, extra: dict | None = None) -> None:
        """Queue ``data`` as dataset ``id_`` (with dataset ``attrs``) and each ``extra[group]`` as
        ``group/id_``; flushes a shard every ``flush_every`` ids."""
        if "/" in id_:
            raise DataError("ids must not contain '/'", record=id_, fix="rename the file")
        self._buffer.append((id_, np.asarray(data), attrs or {}, extra or {}))
        self.n_added += 1
        if len(self._buffer) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Write the queued ids as one shard (atomically)."""
        if not self._buffer:
            return
        last = self._shards()[-1:] if self.parts.exists() else []
        n = int(re.search(r"(\d+)", last[0].name).group(1)) + 1 if last else 0
        shard = self.parts / f"shard-{n:06d}.h5"
        # built in memory, written with plain file writes: a full disk is then an OSError
        # (atomic_path turns it into a DataError and removes the temporary file), where HDF5
        # writing to a full disk crashes the process and leaves the temporary file behind
        image = io.BytesIO()
        with h5py.File(image, "w") as f:
            for id_, data, attrs, extra in self._buffer:
                _create(f, id_, data, attrs)
                for group, array in extra.items():
                    _create(f.require_group(group), id_, np.asarray(array), {})
        _check_space(shard, image.getbuffer().nbytes)
        with atomic_path(shard) as tmp:
            tmp.write_bytes(image.getbuffer())
        self.done.update(id_ for id_, *_ in self._buffer)
        self._buffer.clear()

    def finish(self) -> int:
        """Publish the output file (existing ids + every shard); returns the number of ids in it."""
        self.flush()
        shards = self._shards()
        if self._keep_existing and not shards:
            shutil.rmtree(self.parts, ignore_errors=True)
            return len(self.done)
        sources = ([self.path] if self._keep_existing else []) + shards
        _check_space(self.path, sum(p.stat().st_size for p in sources) + (64 << 10))  # + HDF5's own structures
        with atomic_path(self.path, suffix=".h5.tmp") as tmp, _write_errors(self.path):
            with h5py.File(tmp, "w") as dst:
                for key, value in self.attrs.items():
                    dst.attrs[key] = json.dumps(value) if isinstance(value, dict) else value
                dst.attrs[SIGNATURE] = _signature(self.attrs)
                for source in sources:
                    with self._open(source) as src:
                        _copy_all(src, dst)
                n = len(root_ids(dst))
        shutil.rmtree(self.parts, ignore_errors=True)
        return n


# what HDF5 says (it loses errno) when the file system refuses a write
_STORAGE_MESSAGES = ("No space left", "Disk quota exceeded", "File too large", "Read-only file system",
                     "Permission denied")


def _check_space(path: Path, need: int) -> None:
    """Refuse a write of about ``need`` bytes that cannot fit (free disk space, the process's
    file-size limit) before HDF5 starts it: HDF5 handles a failed write badly (the process
    crashes), so a full disk must be found first."""
    free = shutil.disk_usage(path.parent).free
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    room = free if limit == resource.RLIM_INFINITY else min(free, limit)
    if need > room:
        what = f"{free / 2**20:.1f} MiB free" + ("" if room == free else f", file-size limit {limit / 2**20:.1f} MiB")
        raise DataError(f"not enough space to write {need / 2**20:.1f} MiB ({what})", path=path,
                        fix="free space on that disk (or write elsewhere) and rerun: completed ids are kept")


@contextlib.contextmanager
def _write_errors(path: Path):
    """A write the file system refuses (full disk, file-size limit) as a DataError naming ``path``;
    the temporary file is removed by ``atomic_path`` and the completed shards are kept."""
    try:
        yield
    except OSError as e:
        reason = next((m for m in _STORAGE_MESSAGES if m in str(e)), None)
        if reason is None and e.errno not in STORAGE_ERRNOS:
            raise
        raise DataError(f"cannot write HDF5 ({reason or e.strerror})", path=path,
                        fix="free space on that disk (or write elsewhere) and rerun: completed ids are kept") from None


def _create(group: h5py.Group, name: str, data: np.ndarray, attrs: dict) -> None:
    # one chunk per id: a reader always wants the whole array of one id
    ds = group.create_dataset(name, data=data, chunks=data.shape if data.size else None)
    for key, value in attrs.items():
        ds.attrs[key] = value
