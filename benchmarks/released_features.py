"""Released video features (VALUE's <id>.npz) into the feature HDF5: prepare's check and the conversion.

A folder laid out like VALUE's vis_features/<set>/clip-vit: one np.savez file per video,
``features`` float16 (T, 512), T vectors one per 1.5 s (default 40: a 60 s clip). Times
prepare's media check (every file opened and its array read, no pickle) and
`vladapter import-features`' conversion (resumable writer, timestamps attached), and
reports the bytes per vector of both; nothing is sampled or extracted on this path.

    .venv/bin/python benchmarks/released_features.py --videos 1000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import machine_description, markdown_table  # noqa: E402

from vladapter.data.records import Record  # noqa: E402
from vladapter.data.videos import VideoFolder, check_videos  # noqa: E402
from vladapter.features.released import import_features  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=1000, help="feature files to write and convert (default 1000)")
    parser.add_argument("--vectors", type=int, default=40, help="vectors per video (default 40: a 60 s clip)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "vis_features" / "tv" / "clip-vit"
        folder.mkdir(parents=True)
        rng = np.random.default_rng(0)
        ids = [f"clip_{i:05d}" for i in range(args.videos)]
        for i in ids:
            np.savez(folder / f"{i}.npz", features=rng.standard_normal((args.vectors, 512)).astype(np.float16))
        records = {"val": [Record(uid=i, task="tvqa", split="val", source="tvqa", video=i) for i in ids]}
        start = time.perf_counter()
        check_videos(records, VideoFolder(folder, features=True), "stop")
        check_s = time.perf_counter() - start
        start = time.perf_counter()
        report = import_features(folder, ids, Path(tmp) / "tvqa.h5", progress=False)
        import_s = time.perf_counter() - start
        npz = sum(p.stat().st_size for p in folder.glob("*.npz"))
        h5 = (Path(tmp) / "tvqa.h5").stat().st_size
    result = {"videos": args.videos, "vectors": report.frames, "check_videos_per_s": args.videos / check_s,
              "import_videos_per_s": args.videos / import_s, "npz_bytes_per_vector": npz / report.frames,
              "h5_bytes_per_vector": h5 / report.frames, "machine": machine_description()}
    print(markdown_table(["videos", "vectors", "prepare check videos/s", "import videos/s", "npz B/vector",
                          "HDF5 B/vector"],
                         [[result["videos"], result["vectors"], round(result["check_videos_per_s"]),
                           round(result["import_videos_per_s"]), round(result["npz_bytes_per_vector"]),
                           round(result["h5_bytes_per_vector"])]]))
    return result


if __name__ == "__main__":
    main()
