"""Sample video frames into one HDF5 per feature source (data/frames/<source>.h5).

Videos are video files (decoded with decord) or released frame folders (``<id>/*.jpg`` at a
known fps, e.g. TVQA's 3-fps frames; data/videos.py finds both by id). Frames are sampled
by rate (one every N seconds; the paper uses 1.5 s, taking the middle of each interval)
or by count (N uniformly spaced), by frame index, in the same way for both; given the
prepared records (--records), only their videos and only the frames inside their
timestamps are taken. Frames are resized for the extractor (bicubic shorter side + centre
crop, as CLIP does) and stored JPEG-compressed: per video id one uint8 dataset of the
concatenated JPEG files, with attributes ``offsets`` (T + 1 byte offsets) and
``timestamps`` (T seconds); ``decode_frames`` turns it back into (T, size, size, 3).
Videos are decoded in parallel worker processes. The run is resumable: ids already in the
output (or in the shards of an interrupted run) are kept, and the output appears only
when complete. A corrupt video stops the run with an error naming it, or with
--on-error skip is counted and reported.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import io
import multiprocessing
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vladapter.data.videos import VideoFolder, frame_files
from vladapter.errors import ConfigError, DataError
from vladapter.features.h5writer import ResumableH5Writer
from vladapter.features.preprocess import resize_and_crop
from vladapter.utils.io import read_jsonl

JPEG_QUALITY = 85  # 224 x 224 frames: 13 % of the raw bytes on texture-heavy frames (BENCHMARKS.md)


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


def segment_indices(n_frames: int, fps: float, mode: str, value: float,
                    segments: list | None = None) -> np.ndarray:
    """``frame_indices`` restricted to ``segments`` ([start, end] seconds; None or a None
    segment: the whole video), by frame index.

    rate: the frames of the whole video's sampling grid that fall inside a segment (so
    overlapping segments share frames), and for a segment no grid frame falls in, the grid
    frame nearest its middle (the frame FeatureStore.video would take for it).
    count: ``value`` uniform frames inside each segment.
    """
    if not segments or any(seg is None for seg in segments):
        return frame_indices(n_frames, fps, mode, value)
    if mode == "rate":
        grid = frame_indices(n_frames, fps, mode, value)
        times = grid / fps
        keep = np.zeros(len(grid), bool)
        for start, end in segments:
            inside = (times >= start) & (times <= end)
            if not inside.any():
                inside = np.zeros(len(grid), bool)
                inside[np.abs(times - (start + end) / 2).argmin()] = True
            keep |= inside
        return grid[keep]
    if mode == "count":
        frame_indices(n_frames, fps, mode, value)  # validates value
        count = int(value)
        idx = [np.floor((start + (np.arange(count) + 0.5) * (end - start) / count) * fps) for start, end in segments]
        return np.unique(np.clip(np.concatenate(idx).astype(np.int64), 0, n_frames - 1))
    raise ValueError(f"unknown sampling mode {mode!r} (rate or count)")


def read_video(path: str | Path, mode: str, value: float, size: int, threads: int = 0,
               segments: list | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode the sampled frames of one video file (inside ``segments`` when given).

    Returns uint8 ``(T, size, size, 3)`` frames and float32 ``(T,)`` start times in seconds.
    Raises DataError naming the file when decord cannot read it.
    """
    import decord

    path = Path(path)
    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=threads)
        idx = segment_indices(len(reader), float(reader.get_avg_fps()), mode, value, segments)
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


def read_frame_folder(folder: str | Path, fps: float, mode: str, value: float, size: int,
                      segments: list | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The sampled frames of one released frame folder (``<id>/*.jpg`` at ``fps``): the same
    sampling by frame index as a video file, frame k at k / fps seconds."""
    from PIL import Image

    folder = Path(folder)
    files = frame_files(folder)
    if not files:
        raise DataError("no JPEG frames in the frame folder", path=folder,
                        fix="unpack the frames again, or pass --on-error skip")
    idx = segment_indices(len(files), fps, mode, value, segments)
    frames = []
    for i in idx:
        try:
            with Image.open(files[i]) as image:
                image.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when it is larger
                frames.append(resize_and_crop(image.convert("RGB"), size))
        except (OSError, ValueError, SyntaxError) as e:
            raise DataError(f"cannot read frame ({e})", path=files[i],
                            fix="unpack the frames again, or pass --on-error skip") from None
    return np.stack(frames), (idx / fps).astype(np.float32)


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


def encode_frames(frames: np.ndarray, quality: int = JPEG_QUALITY) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (T, H, W, 3) -> (the T JPEG files concatenated as uint8, int64 (T + 1,) offsets)."""
    from PIL import Image

    blobs = []
    for frame in frames:
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
        blobs.append(buf.getvalue())
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    return np.frombuffer(b"".join(blobs), dtype=np.uint8), offsets


def decode_frames(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The inverse of ``encode_frames``: uint8 (T, H, W, 3)."""
    from PIL import Image

    raw = np.asarray(data).tobytes()
    out = []
    for a, b in zip(offsets[:-1], offsets[1:]):
        with Image.open(io.BytesIO(raw[int(a):int(b)])) as image:
            out.append(np.asarray(image.convert("RGB")))
    return np.stack(out)


def _decode(job: tuple) -> tuple[str, object]:
    """Worker: (id, (jpeg bytes, offsets, times)) or (id, DataError): the parent decides."""
    id_, path, fps, mode, value, size, threads, segments, quality = job
    try:
        if fps is None:
            frames, times = read_video(path, mode, value, size, threads, segments)
        else:
            frames, times = read_frame_folder(path, fps, mode, value, size, segments)
        return id_, (*encode_frames(frames, quality), times)
    except DataError as e:
        return id_, e


@dataclass
class SampleReport:
    written: int = 0
    kept: int = 0
    total: int = 0
    frames: int = 0       # frames written by this run
    bytes: int = 0        # their stored (JPEG) bytes
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)


def list_videos(videos_dir: str | Path, fps: float | None = None) -> dict[str, Path]:
    """Video id -> path for every video file (or, with ``fps``, frame folder) under ``videos_dir``."""
    source = VideoFolder(Path(videos_dir), fps)
    videos = source.find()
    if not videos:
        what = "frame folders (<id>/*.jpg)" if source.frames else "video files (.mp4, .webm, .mkv ...)"
        raise DataError(f"no {what} in folder", path=videos_dir, fix="check data.videos.<dataset>.folder and fps")
    return videos


def record_segments(prepared: list[str | Path]) -> dict[str, list]:
    """Video id -> the [start, end] spans (None: the whole video) of the prepared records in
    the given dataset folders (every split), in first-seen order."""
    segments: dict[str, list] = {}
    for folder in map(Path, prepared):
        for split in ("train", "val", "test"):
            path = folder / f"{split}.jsonl"
            if not path.exists():
                raise DataError(f"no prepared {split} split", path=path, fix="run `vladapter prepare` first")
            for row in read_jsonl(path):
                if row.get("video") is not None:
                    spans = segments.setdefault(row["video"], [])
                    if row.get("span") not in spans:
                        spans.append(row.get("span"))
    return segments


def sample_frames(videos: dict[str, Path], output: str | Path, mode: str = "rate", value: float = 1.5,
                  size: int = 224, workers: int = 2, on_error: str = "raise", overwrite: bool = False,
                  flush_every: int = 64, progress: bool = True, fps: float | None = None,
                  segments: dict[str, list] | None = None, quality: int = JPEG_QUALITY) -> SampleReport:
    """Sample every video of ``videos`` (id -> video file, or frame folder when ``fps`` is
    given) into the frames HDF5 ``output``; with ``segments`` (id -> spans), only inside them.

    Ids already in ``output`` (or flushed by an interrupted run) are not decoded again.
    on_error "raise": the first unreadable video raises DataError (completed ids stay in
    the shards for the rerun); "skip": it is left out and listed in the report.
    """
    if on_error not in ("raise", "skip"):
        raise ConfigError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if not 1 <= quality <= 100:
        raise ConfigError(f"JPEG quality must be 1..100, got {quality}")
    frame_indices(1, 1.0, mode, value)  # validates mode/value before any work
    attrs = {"sampler": {"mode": mode, "value": value}, "size": int(size), "encoding": "jpeg",
             "quality": int(quality)}
    if fps is not None:
        attrs["fps"] = float(fps)
    writer = ResumableH5Writer(output, attrs, flush_every=flush_every, overwrite=overwrite)
    todo = {k: v for k, v in videos.items() if k not in writer.done}
    report = SampleReport(kept=len(videos) - len(todo), total=len(videos))
    threads = 0 if workers <= 1 else 1  # parallelism comes from the processes
    jobs = [(id_, str(path), fps, mode, value, size, threads, (segments or {}).get(id_), quality)
            for id_, path in todo.items()]
    bar = tqdm(total=len(jobs), desc=f"frames {Path(output).name}", unit="video", disable=not progress)

    def handle(id_: str, result) -> None:
        if isinstance(result, DataError):
            if on_error == "raise":
                writer.flush()
                raise result
            report.skipped.append((str(videos[id_]), str(result).splitlines()[0]))
        else:
            data, offsets, times = result
            writer.add(id_, data, attrs={"timestamps": times, "offsets": offsets})
            report.written += 1
            report.frames += len(times)
            report.bytes += int(data.nbytes)
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
                    for future in futures:  # in job order: the same file, byte for byte, every run
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
    parser.add_argument("--dataset", required=True,
                        help="feature source name (tvqa, how2qa, tvc, yc2c): default paths and the output name")
    parser.add_argument("--videos", type=Path,
                        help="folder of the videos, found by id anywhere below it (default: data/raw/<dataset>/videos)")
    parser.add_argument("--frames-fps", type=float, metavar="FPS",
                        help="the videos are released frame folders <id>/*.jpg extracted at FPS (TVQA/TVC: 3)")
    parser.add_argument("--records", type=Path, nargs="+",
                        help="prepared dataset folders (data/prepared/<dataset>): sample only their videos, inside "
                             "their timestamps (several: datasets sharing the videos, sampled once)")
    parser.add_argument("--output", type=Path, help="frames HDF5 (default: data/frames/<dataset>.h5)")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--every", type=float, default=1.5, metavar="SECONDS",
                     help="one frame per SECONDS, at the middle of each interval (default: 1.5, the paper's)")
    how.add_argument("--count", type=int, metavar="N", help="N uniformly spaced frames per video instead")
    parser.add_argument("--size", type=int, default=224,
                        help="frames are resized (shorter side) and centre-cropped to SIZE x SIZE: the "
                             "extractor's input size (default: 224; the toy CLIP uses 64)")
    parser.add_argument("--quality", type=int, default=JPEG_QUALITY,
                        help=f"JPEG quality of the stored frames (default: {JPEG_QUALITY})")
    parser.add_argument("--workers", type=int, default=2, help="decoding processes (default: 2)")
    parser.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                        help="unreadable video: stop with an error naming it (default) or skip and report it")
    parser.add_argument("--flush-every", type=int, default=64,
                        help="videos per resumable shard: the most work an interruption loses (default: 64)")
    parser.add_argument("--overwrite", action="store_true", help="discard an existing output / unfinished run")


def run(args: argparse.Namespace) -> int:
    folder = args.videos or Path("data/raw") / args.dataset / "videos"
    segments = record_segments(args.records) if args.records else None
    if segments is None:
        videos = list_videos(folder, args.frames_fps)
    else:
        found = VideoFolder(folder, args.frames_fps).find(segments)
        missing = [i for i in segments if i not in found]
        if missing:
            raise DataError(f"{len(missing)} videos of the prepared records not found (first: {missing[0]})",
                            path=folder, fix="prepare the records against this videos folder (vladapter prepare "
                                             "--videos), which drops the records of missing videos")
        videos = {i: found[i] for i in segments}
    output = args.output or Path("data/frames") / f"{args.dataset}.h5"
    mode, value = ("count", args.count) if args.count is not None else ("rate", args.every)
    try:
        report = sample_frames(videos, output, mode, value, size=args.size, workers=args.workers,
                               on_error=args.on_error, overwrite=args.overwrite, flush_every=args.flush_every,
                               fps=args.frames_fps, segments=segments, quality=args.quality)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    per_frame = f", {report.bytes / report.frames / 1024:.1f} KiB/frame" if report.frames else ""
    print(f"{output}: {report.written} videos sampled ({report.frames} frames{per_frame}), {report.kept} kept "
          f"from before, {len(report.skipped)} skipped of {report.total}")
    for path, reason in report.skipped:
        print(f"  skipped {path}: {reason}")
    return 0
