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

import json
import re
import shutil
from pathlib import Path

import h5py
import numpy as np

from vladapter.errors import ConfigError, DataError
from vladapter.utils.io import atomic_path, write_json

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
        with atomic_path(self.parts / f"shard-{n:06d}.h5") as tmp:
            with h5py.File(tmp, "w") as f:
                for id_, data, attrs, extra in self._buffer:
                    _create(f, id_, data, attrs)
                    for group, array in extra.items():
                        _create(f.require_group(group), id_, np.asarray(array), {})
        self.done.update(id_ for id_, *_ in self._buffer)
        self._buffer.clear()

    def finish(self) -> int:
        """Publish the output file (existing ids + every shard); returns the number of ids in it."""
        self.flush()
        shards = self._shards()
        if self._keep_existing and not shards:
            shutil.rmtree(self.parts, ignore_errors=True)
            return len(self.done)
        with atomic_path(self.path, suffix=".h5.tmp") as tmp:
            with h5py.File(tmp, "w") as dst:
                for key, value in self.attrs.items():
                    dst.attrs[key] = json.dumps(value) if isinstance(value, dict) else value
                dst.attrs[SIGNATURE] = _signature(self.attrs)
                sources = ([self.path] if self._keep_existing else []) + shards
                for source in sources:
                    with self._open(source) as src:
                        _copy_all(src, dst)
                n = len(root_ids(dst))
        shutil.rmtree(self.parts, ignore_errors=True)
        return n


def _create(group: h5py.Group, name: str, data: np.ndarray, attrs: dict) -> None:
    # one chunk per id: a reader always wants the whole array of one id
    ds = group.create_dataset(name, data=data, chunks=data.shape if data.size else None)
    for key, value in attrs.items():
        ds.attrs[key] = value
