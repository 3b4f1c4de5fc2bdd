"""Video decode throughput: decord (what `vladapter sample-frames` uses) vs PyAV, same mp4s.

Both decoders produce the same thing: the frames `frame_indices` picks (one every 1.5 s,
the paper's rate) as uint8 RGB arrays. decord seeks and batch-decodes (`get_batch`); PyAV
decodes the stream in order and keeps the wanted frames (the plain way to do it with PyAV).
Measured in one run, side by side, median of --repeats passes over all videos.

    .venv/bin/python benchmarks/decode.py                                  # synthetic 320x240, 20 s clips
    .venv/bin/python benchmarks/decode.py --videos data/raw/tvqa/videos    # the toy world's videos
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import machine_description, markdown_table, time_call  # noqa: E402

from vladapter.features.frames import frame_indices  # noqa: E402
from vladapter.features.synthetic import write_video  # noqa: E402


def decode_decord(path: Path, every: float, threads: int = 1) -> np.ndarray:
    import decord

    reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=threads)
    idx = frame_indices(len(reader), float(reader.get_avg_fps()), "rate", every)
    return reader.get_batch(idx.tolist()).asnumpy()


def decode_pyav(path: Path, every: float, threads: int = 1) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = threads
        n = stream.frames
        idx = set(frame_indices(n, float(stream.average_rate), "rate", every).tolist())
        frames = [f.to_ndarray(format="rgb24") for i, f in enumerate(container.decode(stream)) if i in idx]
    return np.stack(frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=Path, help="folder of mp4s (default: synthetic clips written to a temp dir)")
    parser.add_argument("--n", type=int, default=8, help="synthetic clips / at most this many videos (default: 8)")
    parser.add_argument("--seconds", type=float, default=20, help="synthetic clip length (default: 20)")
    parser.add_argument("--size", default="320x240", help="synthetic clip size WxH (default: 320x240)")
    parser.add_argument("--every", type=float, default=1.5, help="sampling interval in seconds (default: 1.5)")
    parser.add_argument("--threads", type=int, default=1,
                        help="decoder threads, both decoders (default: 1, as each sample-frames worker uses)")
    parser.add_argument("--gop", type=int, default=30, help="synthetic clips' keyframe interval (default: 30 = 1 s)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, help="write the raw results as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        if args.videos:
            videos = sorted(args.videos.glob("*.mp4"))[: args.n]
        else:
            w, h = map(int, args.size.split("x"))
            videos = [write_video(Path(tmp) / f"clip{i}.mp4", n_frames=int(args.seconds * 30), fps=30, width=w,
                                  height=h, noise=True, seed=i, gop=args.gop) for i in range(args.n)]
        # same frames from both decoders (up to colour-conversion rounding)
        a, b = decode_decord(videos[0], args.every), decode_pyav(videos[0], args.every)
        assert a.shape == b.shape, (a.shape, b.shape)
        max_diff = int(np.abs(a.astype(int) - b.astype(int)).max())
        n_frames = sum(len(decode_decord(v, args.every)) for v in videos)
        rows, results = [], {}
        for name, fn in [("decord get_batch", decode_decord), ("PyAV sequential", decode_pyav)]:
            t = time_call(lambda: [fn(v, args.every, args.threads) for v in videos], warmup=1, repeats=args.repeats)
            results[name] = t
            rows.append([name, len(videos) / t["median_s"], n_frames / t["median_s"]])
    base = results["PyAV sequential"]["median_s"]
    rows = [r + [base / results[r[0]]["median_s"]] for r in rows]
    table = markdown_table(["decoder", "videos/s", "sampled frames/s", "speed vs PyAV"], rows)
    source = str(args.videos) if args.videos else f"{args.n} synthetic {args.size} clips of {args.seconds:g} s at 30 fps"
    print(f"videos: {source}; {n_frames} sampled frames (one every {args.every} s); {args.threads} decoder thread(s); "
          f"max pixel difference between decoders {max_diff}\n")
    print(table)
    if args.out:
        args.out.write_text(json.dumps({"machine": machine_description(), "videos": source, "n_frames": n_frames,
                                        "max_pixel_diff": max_diff, "results": results}, indent=2))


if __name__ == "__main__":
    main()
