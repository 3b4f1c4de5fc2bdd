"""Random-access feature reads per second (FeatureStore) vs what training consumes.

Training reads one image's (or clip's) features per example: a batch of 32 every ~40 ms
(the toy VL-T5 step) is 800 reads/s. This writes feature files of the toy size (8x8 grid
of 128-d, pooled to 16 tokens) and of the paper's size (CLIP RN101 7x7x2048, pooled to
36 tokens; video: 1.5 s frames of 512-d, to 64 frame tokens) with the same writer the
extractor uses, then times random reads by id in one process and through a DataLoader
with --workers worker processes (the way training reads them).

    .venv/bin/python benchmarks/feature_reads.py
    .venv/bin/python benchmarks/feature_reads.py --n 20000 --workers 2
    .venv/bin/python benchmarks/feature_reads.py --cold --workers 8 --case "paper image 7x7x2048 -> 36"

--cold evicts the file from the page cache before each measurement (posix_fadvise
DONTNEED after an fsync: no root needed), so reads come from the disk as on a first
epoch over a dataset larger than memory. --warm then does what training does at start
(vladapter.features.store.warm_page_cache: one sequential pass) and times it. The reference of a paper-scale node: 8 GPUs at
batch 500 and ~0.4 s per step need ~10,000 reads/s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import check, machine_description, markdown_table  # noqa: E402

from vladapter.features.h5writer import ResumableH5Writer  # noqa: E402
from vladapter.features.store import FeatureStore, warm_page_cache  # noqa: E402

NEEDED = 32 / 0.040  # reads/s: batch 32 every 40 ms
NODE_NEEDED = 10_000  # reads/s: an 8-GPU node at batch 500 (paper scale)

CASES = {  # name: (kind, grid side or frames, dim, n_tokens)
    "toy image 8x8x128 -> 16": ("grid", 8, 128, 16),
    "paper image 7x7x2048 -> 36": ("grid", 7, 2048, 36),
    "paper video 40x512 -> 64": ("frames", 40, 512, 64),
}


def write_file(path: Path, kind: str, size: int, dim: int, n: int) -> list[str]:
    rng = np.random.default_rng(0)
    attrs = {"backbone": "bench", "kind": kind, "dim": dim}
    if kind == "grid":
        attrs["grid"] = [size, size]
    writer = ResumableH5Writer(path, attrs, flush_every=2048)
    for i in range(n):
        if kind == "grid":
            writer.add(f"id{i}", rng.normal(size=(size * size, dim)).astype(np.float16),
                       extra={"pooled": rng.normal(size=512).astype(np.float16)})
        else:
            writer.add(f"id{i}", rng.normal(size=(size, dim)).astype(np.float16),
                       attrs={"timestamps": (np.arange(size) * 1.5 + 0.75).astype(np.float32)})
    writer.finish()
    return [f"id{i}" for i in range(n)]


class _Reads:
    def __init__(self, store: FeatureStore, ids: list[str]):
        self.store, self.ids = store, ids

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        id_ = self.ids[i]
        return self.store.image(id_) if self.store.kind == "grid" else self.store.video(id_)[0]


def evict(path: Path) -> None:
    """Drop ``path``'s pages from the page cache (clean pages only: fsync first)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


WARMUP_S: list[float] = []  # seconds of each warm-up pass (--warm)


def start_cold(path: Path, warm: bool) -> None:
    evict(path)
    if warm:
        start = time.perf_counter()
        assert warm_page_cache(path), "the file does not fit the memory share warm_page_cache allows"
        WARMUP_S.append(time.perf_counter() - start)


def reads_per_s(store: FeatureStore, ids: list[str], workers: int, batch: int = 32, cold: bool = False,
                warm: bool = False) -> float:
    from torch.utils.data import DataLoader

    dataset = _Reads(store, ids)
    if workers == 0:
        if cold:
            start_cold(store.path, warm)
        start = time.perf_counter()
        for i in range(len(dataset)):
            dataset[i]
        return len(dataset) / (time.perf_counter() - start)
    loader = DataLoader(dataset, batch_size=batch, num_workers=workers, persistent_workers=True)
    iter(loader).__next__()  # start the workers before timing
    if cold:
        start_cold(store.path, warm)
    start = time.perf_counter()
    n = sum(len(b) for b in loader)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=4000, help="ids per feature file (default: 4000)")
    parser.add_argument("--reads", type=int, default=3000, help="random reads timed per case (default: 3000)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for the second column (default: 2)")
    parser.add_argument("--out", type=Path, help="write the raw results as JSON")
    parser.add_argument("--cold", action="store_true", help="evict each file from the page cache before timing")
    parser.add_argument("--warm", action="store_true", help="with --cold: one sequential pass first (timed)")
    parser.add_argument("--case", action="append", choices=list(CASES), help="only these cases (default: all)")
    args = parser.parse_args()

    rows, results = [], {}
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        for name, (kind, size, dim, n_tokens) in CASES.items():
            if args.case and name not in args.case:
                continue
            path = Path(tmp) / f"{kind}{size}x{dim}.h5"
            ids = write_file(path, kind, size, dim, args.n)
            sample = [ids[i] for i in rng.integers(0, len(ids), args.reads)]
            store = FeatureStore(path, n_tokens=n_tokens)
            one = reads_per_s(store, sample, 0, cold=args.cold, warm=args.warm)
            many = reads_per_s(store, sample, args.workers, cold=args.cold, warm=args.warm)
            results[name] = {"reads_per_s": one, f"reads_per_s_{args.workers}_workers": many,
                             "file_mib": path.stat().st_size / 2**20}
            rows.append([name, round(path.stat().st_size / 2**20), round(one), round(many), round(many / NEEDED, 1),
                         check(many >= NEEDED), round(many / NODE_NEEDED, 2)])
    table = markdown_table(["features", "file MiB", "reads/s, 1 process", f"reads/s, {args.workers} workers",
                            f"x training need ({NEEDED:.0f}/s)", "enough", f"x 8-GPU node ({NODE_NEEDED}/s)"], rows)
    print(f"{args.n} ids per file, {args.reads} random reads per case "
          f"(page cache {'cold' if args.cold else 'warm'}"
          + (f", then one sequential pass: {', '.join(f'{t:.2f} s' for t in WARMUP_S)}" if WARMUP_S else "") + ")\n")
    print(table)
    if args.out:
        args.out.write_text(json.dumps({"machine": machine_description(), "needed_reads_per_s": NEEDED,
                                        "results": results}, indent=2))


if __name__ == "__main__":
    main()
