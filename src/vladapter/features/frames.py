"""Sample video frames with decord into one HDF5 per dataset (data/frames/<dataset>.h5).

Frames are sampled by rate (one every N seconds; the paper uses 1.5 s, taking the middle of
each interval) or by count (N uniformly spaced), batch-decoded with decord, resized for the
extractor (bicubic shorter side + centre crop, as CLIP does) and stored as uint8
(T, size, size, 3) per video id with their timestamps. Videos are decoded in parallel
worker processes. The run is resumable: ids already in the output (or in the shards of an
interrupted run) are kept, and the output appears only when complete. A corrupt video
stops the run with an error naming it, or with --on-error skip is counted and reported.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vladapter.errors import ConfigError, DataError
from vladapter.features.h5writer import ResumableH5Writer
from vladapter.features.preprocess import resize_and_crop

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")


def frame_indices(n_frames: int, fps: float, mode: str, value: float) -> np.ndarray:
    """Indices of the frames to keep from a video of ``n_frames`` at ``fps``.

    mode "rate":  one frame per ``value`` seconds, at the middle of each interval
                  [k*value, (k+1)*value) that starts inside the video (at least one frame).
    mode "count": ``value`` frames, the middles of that many equal segments (fewer frames
                  in the video: every frame once).
    Indices are sorted, unique and inside [0, n_frames).
    """
    if n_frames <= 0:
        raise ValueError("the video has no frames")
    if mode == "rate":
        if value <= 0 or fps <= 0:
            raise ValueError(f"rate sampling needs a positive interval and fps (got {value}, {fps})")
        duration = n_frames / fps
        n = max(1, int(np.ceil(duration / value - 1e-9)))
        times = (np.arange(n) + 0.5) * value
        times = np.minimum(times, (n_frames - 0.5) / fps)  # last interval may run past the end
        idx = np.floor(times * fps).astype(np.int64)
    elif mode == "count":
        count = int(value)
        if count < 1:
            raise ValueError(f"count sampling needs at least 1 frame (got {value})")
        idx = np.floor((np.arange(count) + 0.5) * n_frames / count).astype(np.int64)
    else:
        raise ValueError(f"unknown sampling mode {mode!r} (rate or count)")
    return np.unique(np.clip(idx, 0, n_frames - 1))


def read_video(path: str | Path, mode: str, value: float, size: int,
               threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Decode the sampled frames of one video.

    Returns uint8 ``(T, size, size, 3)`` frames and float32 ``(T,)`` start times in seconds.
    Raises DataError naming the file when decord cannot read it.
    """
    import decord

    path = Path(path)
    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=threads)
        idx = frame_indices(len(reader), float(reader.get_avg_fps()), mode, value)
        times = reader.get_frame_timestamp(idx.tolist())[:, 0].astype(np.float32)
        try:
            frames = reader.get_batch(idx.tolist()).asnumpy()
        except decord.DECORDError as e:
            if "size must exactly match" not in str(e):
                raise
            frames = _decode_unaligned(path, idx, reader[0].shape, threads)
    except Exception as e:  # decord raises DECORDError/RuntimeError with ffmpeg's message
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        first = re.sub(r"^\[[\d:]+\] \S+: ", "", first)  # drop decord's "[time] file.cc:line: "
        raise DataError(f"cannot decode video ({first})", path=path,
                        fix="re-download or re-encode the file, or pass --on-error skip") from None
    frames = np.stack([resize_and_crop(frame, size) for frame in frames])
    return frames, times


def _decode_unaligned(path: Path, idx: np.ndarray, shape: tuple, threads: int) -> np.ndarray:
    """decord 0.6 fails to batch-copy frames of some small widths (e.g. 48 px); decoding at a
    width padded to a multiple of 32 works, so decode there and resize back."""
    import decord
    from PIL import Image

    height, width = int(shape[0]), int(shape[1])
    padded = -(-width // 32) * 32
    reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=threads, width=padded, height=height)
    frames = reader.get_batch(idx.tolist()).asnumpy()
    return np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.BICUBIC)) for f in frames])


def _decode(job: tuple) -> tuple[str, object]:
    """Worker: (id, (frames, times)) or (id, DataError) so the parent decides what to do."""
    id_, path, mode, value, size, threads = job
    try:
        return id_, read_video(path, mode, value, size, threads)
    except DataError as e:
        return id_, e


@dataclass
class SampleReport:
    written: int = 0
    kept: int = 0
    total: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)


def list_videos(videos_dir: str | Path) -> dict[str, Path]:
    """Video id (file stem) -> path, for every video file in ``videos_dir``."""
    videos_dir = Path(videos_dir)
    if not videos_dir.is_dir():
        raise DataError("videos folder not found", path=videos_dir,
                        fix="generate or download the dataset first (vladapter toyworld / download)")
    videos = {p.stem: p for p in sorted(videos_dir.iterdir()) if p.suffix.lower() in VIDEO_SUFFIXES}
    if not videos:
        raise DataError("no video files in folder", path=videos_dir, fix=f"expected {', '.join(VIDEO_SUFFIXES)} files")
    return videos


def sample_frames(videos: dict[str, Path], output: str | Path, mode: str = "rate", value: float = 1.5,
                  size: int = 224, workers: int = 2, on_error: str = "raise", overwrite: bool = False,
                  flush_every: int = 64, progress: bool = True) -> SampleReport:
    """Sample every video of ``videos`` (id -> path) into the frames HDF5 ``output``.

    Ids already in ``output`` (or flushed by an interrupted run) are not decoded again.
    on_error "raise": the first unreadable video raises DataError (completed ids stay in
    the shards for the rerun); "skip": it is left out and listed in the report.
    """
    if on_error not in ("raise", "skip"):
        raise ConfigError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    frame_indices(1, 1.0, mode, value)  # validates mode/value before any work
    attrs = {"sampler": {"mode": mode, "value": value}, "size": int(size)}
    writer = ResumableH5Writer(output, attrs, flush_every=flush_every, overwrite=overwrite)
    todo = {k: v for k, v in videos.items() if k not in writer.done}
    report = SampleReport(kept=len(videos) - len(todo), total=len(videos))
    threads = 0 if workers <= 1 else 1  # parallelism comes from the processes
    jobs = [(id_, str(path), mode, value, size, threads) for id_, path in todo.items()]
    bar = tqdm(total=len(jobs), desc=f"frames {Path(output).name}", unit="video", disable=not progress)

    def handle(id_: str, result) -> None:
        if isinstance(result, DataError):
            if on_error == "raise":
                writer.flush()
                raise result
            report.skipped.append((str(videos[id_]), str(result).splitlines()[0]))
        else:
            frames, times = result
            writer.add(id_, frames, attrs={"timestamps": times})
            report.written += 1
        bar.update()

    try:
        if workers <= 1:
            for job in jobs:
                handle(*_decode(job))
        else:
            ctx = multiprocessing.get_context("spawn")  # decord/torch state is not fork-safe
            with cf.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
                futures = [pool.submit(_decode, job) for job in jobs]
                try:
                    for future in cf.as_completed(futures):
                        handle(*future.result())
                except BaseException:
                    for future in futures:
                        future.cancel()
                    raise
    except BaseException:
        writer.flush()  # keep what is done for the rerun
        raise
    finally:
        bar.close()
    writer.finish()
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="video dataset name (tvqa, how2qa, tvc, yc2c)")
    parser.add_argument("--videos", type=Path, help="folder of videos (default: data/raw/<dataset>/videos)")
    parser.add_argument("--output", type=Path, help="frames HDF5 (default: data/frames/<dataset>.h5)")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--every", type=float, default=1.5, metavar="SECONDS",
                     help="one frame per SECONDS, at the middle of each interval (default: 1.5, the paper's)")
    how.add_argument("--count", type=int, metavar="N", help="N uniformly spaced frames per video instead")
    parser.add_argument("--size", type=int, default=224,
                        help="frames are resized (shorter side) and centre-cropped to SIZE x SIZE: the "
                             "extractor's input size (default: 224; the toy CLIP uses 64)")
    parser.add_argument("--workers", type=int, default=2, help="decoding processes (default: 2)")
    parser.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                        help="unreadable video: stop with an error naming it (default) or skip and report it")
    parser.add_argument("--flush-every", type=int, default=64,
                        help="videos per resumable shard: the most work an interruption loses (default: 64)")
    parser.add_argument("--overwrite", action="store_true", help="discard an existing output / unfinished run")


def run(args: argparse.Namespace) -> int:
    videos = list_videos(args.videos or Path("data/raw") / args.dataset / "videos")
    output = args.output or Path("data/frames") / f"{args.dataset}.h5"
    mode, value = ("count", args.count) if args.count is not None else ("rate", args.every)
    try:
        report = sample_frames(videos, output, mode, value, size=args.size, workers=args.workers,
                               on_error=args.on_error, overwrite=args.overwrite, flush_every=args.flush_every)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    print(f"{output}: {report.written} videos sampled, {report.kept} kept from before, "
          f"{len(report.skipped)} skipped of {report.total}")
    for path, reason in report.skipped:
        print(f"  skipped {path}: {reason}")
    return 0
