"""FeatureStore: features by id from one feature HDF5, for training and evaluation.

Safe in DataLoader workers: the HDF5 handle is opened lazily, one per process, and reopened
after a fork or when the store is unpickled in a spawned worker (h5py handles must never
be shared across processes). Image grids are adaptive-max-pooled to ``n_tokens`` (a square
number: 16 = 4x4, 36 = 6x6 as in the paper); video clips become ``n_tokens`` frame tokens:
adaptive max-pool over time when longer, zero-padding with a mask when shorter.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from vladapter.errors import ConfigError, DataError


@contextlib.contextmanager
def _one_thread():
    """Run small torch ops single-threaded: spreading a read's few-microsecond ops over an
    OpenMP team costs more than it saves (6x fewer reads/s on 2 threads in
    benchmarks/feature_reads.py). DataLoader workers already run with one thread."""
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def adaptive_max_pool_1d(x: np.ndarray, n_out: int) -> np.ndarray:
    """Max over adaptive bins of axis 0 (torch's boundaries): ``(n, D) -> float32 (n_out, D)``."""
    with _one_thread():
        t = torch.from_numpy(np.ascontiguousarray(x)).float().T[None]
        return F.adaptive_max_pool1d(t, n_out)[0].T.contiguous().numpy()


def adaptive_max_pool_2d(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Max over adaptive bins of axes 0 and 1: ``(h, w, D) -> float32 (out_h, out_w, D)``."""
    # (h, w, D) viewed as channels-last (1, D, h, w): no copy; torch converts fp16 -> fp32
    # far faster than numpy does, which is most of a read's cost
    with _one_thread():
        t = torch.from_numpy(np.ascontiguousarray(x)).float()[None].permute(0, 3, 1, 2)
        return F.adaptive_max_pool2d(t, (out_h, out_w))[0].permute(1, 2, 0).contiguous().numpy()


def warm_page_cache(path: str | Path, max_share: float = 0.5, chunk: int = 16 << 20) -> bool:
    """Read ``path`` once, sequentially, so that later random reads by id come from memory.

    A first epoch reads ids in random order: from a cold page cache that is one disk seek
    per ~200 KB grid (a few hundred reads/s, BENCHMARKS.md), far below a GPU node's need; a
    sequential pass runs at the disk's streaming speed and every later read is a memory
    copy (the page cache is shared by all processes of the machine). Done only when the
    file takes at most ``max_share`` of the memory available now; returns whether it was.
    """
    path = Path(path)
    size = path.stat().st_size
    if size > max_share * _available_memory():
        return False
    with open(path, "rb", buffering=0) as f:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        buffer = bytearray(chunk)
        while f.readinto(buffer):
            pass
    return True


def _available_memory() -> int:
    """MemAvailable of /proc/meminfo in bytes (0 where there is none: nothing is warmed)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


REEXTRACT = "delete the file and rerun `vladapter extract-features` (or the workflow) to extract it again"


def _h5_reason(e: OSError) -> str:
    """The useful part of an h5py error message (HDF5 appends its internal call chain)."""
    return str(e).split(" (", 1)[0].rstrip(".") or type(e).__name__


class FeatureStore:
    """Read features by id from ``path`` (a file written by ``vladapter extract-features``)."""

    def __init__(self, path: str | Path, n_tokens: int = 16):
        self.path = Path(path)
        self.n_tokens = int(n_tokens)
        if not self.path.exists():
            raise DataError("feature file not found", path=self.path, fix="run vladapter extract-features first")
        self._file: h5py.File | None = None
        self._pid: int | None = None
        f = self._h5()
        try:
            self.kind = str(f.attrs["kind"])
            self.dim = int(f.attrs["dim"])
            self.backbone = str(f.attrs["backbone"])
        except KeyError as e:
            raise DataError(f"not a feature file of `vladapter extract-features` (no attribute {e})", path=self.path,
                            fix=REEXTRACT) from None
        if self.kind == "grid":
            self.grid = tuple(int(v) for v in f.attrs["grid"])
            side = math.isqrt(self.n_tokens)
            if side * side != self.n_tokens:
                raise ConfigError(f"n_tokens for image features must be a square number (16, 36, 49), "
                                  f"got {self.n_tokens}")
            self._side = side
        self._ids: list[str] | None = None

    def _h5(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            # a handle inherited through fork belongs to the parent: open our own
            try:
                self._file = h5py.File(self.path, "r")
            except OSError as e:  # truncated, corrupt, or not HDF5 at all
                raise DataError(f"cannot read the feature file ({_h5_reason(e)})", path=self.path,
                                fix=REEXTRACT) from None
            self._pid = os.getpid()
        return self._file

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_file"] = state["_pid"] = None  # spawned workers open their own handle
        return state

    def ids(self) -> list[str]:
        """Every feature id in the file (sorted)."""
        if self._ids is None:
            f = self._h5()
            self._ids = sorted(k for k in f.keys() if f.get(k, getclass=True) is h5py.Dataset)
        return self._ids

    def __contains__(self, id_: str) -> bool:
        return "/" not in id_ and self._h5().get(id_, getclass=True) is h5py.Dataset

    def __len__(self) -> int:
        return len(self.ids())

    @property
    def attrs(self) -> dict:
        """Root attributes; JSON-valued ones (config, preprocessing, ...) decoded."""
        out = {}
        for key, value in self._h5().attrs.items():
            if isinstance(value, str) and value[:1] in "{[":
                value = json.loads(value)
            out[key] = value
        return out

    def _read(self, id_: str, group: str = "") -> tuple[np.ndarray, h5py.h5d.DatasetID]:
        """The stored array of ``id_`` (in ``group``) and its low-level dataset id.

        h5py's low-level API: opening by name through ``File.__getitem__`` costs several
        times the read itself for arrays this small (benchmarks/feature_reads.py).
        """
        try:
            dsid = h5py.h5d.open(self._h5().id, f"{group}/{id_}".lstrip("/").encode())
        except KeyError:
            raise DataError(f"no features for id {id_!r}", path=self.path, record=id_,
                            fix="re-run extract-features for this source (is the record's source right?)") from None
        out = np.empty(dsid.shape, dsid.dtype)
        try:
            dsid.read(h5py.h5s.ALL, h5py.h5s.ALL, out)
        except OSError as e:  # the file ends before this id's data
            raise DataError(f"cannot read the features of id {id_!r} ({_h5_reason(e)})", path=self.path,
                            record=id_, fix=REEXTRACT) from None
        return out, dsid

    def _finite(self, id_: str, features: np.ndarray) -> np.ndarray:
        """``features`` (what the model gets for ``id_``) if all finite, else a DataError: a NaN
        would be scored silently as a wrong answer. Checked after pooling, on float32 (a
        NaN or +inf survives max-pooling; checking the float16 grid costs a read's time)."""
        if not np.isfinite(features).all():
            raise DataError(f"the features of id {id_!r} hold NaN or infinite values", path=self.path, record=id_,
                            fix=REEXTRACT)
        return features

    def pooled(self, id_: str) -> np.ndarray:
        """Image: its pooled/projected vector; video: the mean of its frame vectors. float32 ``(D,)``."""
        if self.kind == "grid":
            return self._finite(id_, self._read(id_, "pooled")[0].astype(np.float32))
        return self._finite(id_, self._read(id_)[0].astype(np.float32).mean(0))

    def image(self, id_: str) -> np.ndarray:
        """Grid tokens of image ``id_`` adaptive-max-pooled to float32 ``(n_tokens, dim)``."""
        if self.kind != "grid":
            raise ConfigError(f"{self.path} holds video frame features; use FeatureStore.video()")
        tokens = self._read(id_)[0]
        h, w = self.grid
        pooled = adaptive_max_pool_2d(tokens.reshape(h, w, -1), self._side, self._side)
        return self._finite(id_, pooled.reshape(self.n_tokens, -1))

    def video(self, id_: str, span: tuple[float, float] | list[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Frame tokens of video ``id_`` within ``span`` = [start, end] seconds (None: all).

        Returns float32 ``(n_tokens, dim)`` and a bool mask ``(n_tokens,)`` (True = real frame).
        More frames than ``n_tokens``: adaptive max-pool over time; fewer: zero-padded at the
        end. A span that holds no sampled frame takes the frame nearest its middle.
        """
        if self.kind != "frames":
            raise ConfigError(f"{self.path} holds image grid features; use FeatureStore.image()")
        frames, dsid = self._read(id_)
        if span is not None:
            times = h5py.AttributeManager(h5py.Dataset(dsid))["timestamps"]
            start, end = float(span[0]), float(span[1])
            keep = (times >= start) & (times <= end)
            if not keep.any():
                keep = np.zeros(len(times), bool)
                keep[np.abs(times - (start + end) / 2).argmin()] = True
            frames = frames[keep]
        mask = np.zeros(self.n_tokens, bool)
        if len(frames) > self.n_tokens:
            mask[:] = True
            return self._finite(id_, adaptive_max_pool_1d(frames, self.n_tokens)), mask
        mask[: len(frames)] = True
        out = np.zeros((self.n_tokens, frames.shape[1]), np.float32)
        out[: len(frames)] = frames
        return self._finite(id_, out), mask

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None
