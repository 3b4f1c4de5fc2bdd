"""Read one dataset's published files (real download or toy world) into prepared records:
<out>/<dataset>/{train,val,test}.jsonl (one Record.to_dict() per line) and summary.json
(counts per split, skipped records by reason, the first few problems).

Split names are normalised (train / val / test, test = the paper's test split: Karpathy
test, GQA testdev, NLVR2 test1, the VALUE test split). A malformed record or a missing
file stops with an error naming the file, the record and the fix; with --on-error skip
bad records are left out, counted and reported instead.

Video datasets: each record's video is looked up by id in the dataset's videos folder
(video files, released frame folders, or released feature files such as VALUE's
vis_features/<tv|how2|yc2>/clip-vit/<id>.npz: see data/videos.py) and opened; missing and
unreadable videos are listed in videos_report.json with counts and their records dropped,
or the run stops when more than --max-missing-videos of them are affected (--on-missing-video
stop, the default; the report is written before the stop). --source renames the feature
source the records refer to (TVC's records use TVQA's sampled videos: one sampling of the
shared clips).

A prepared dataset changes as a whole: its files are written into a new folder beside
<out>/<dataset>, which replaces the old one when every file is there (vladapter.utils.io
.atomic_dir). An interrupted or failed run leaves the older output as it was, never new
splits beside old ones.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm import tqdm

from vladapter.data.layout import as_layout
from vladapter.data.readers import DATASETS, SPLITS, Problems, read_dataset
from vladapter.data.records import DATASET_TASK, VIDEO_TASKS
from vladapter.data.videos import ON_MISSING, MissingVideosError, VideoFolder, check_videos
from vladapter.utils.io import atomic_dir, write_json


def prepare(dataset: str, raw="data/raw", out: str | Path = "data/prepared",
            on_error: str = "raise", check_media: bool = True, videos: VideoFolder | None = None,
            on_missing_video: str = "stop", max_missing_videos: float = 0.01, source: str | None = None) -> dict:
    """Write the prepared splits and summary of ``dataset``; return the summary. ``raw`` is
    the raw root, or a RawLayout naming the user's own folders per dataset.

    Video datasets check their videos in ``videos`` (default: <raw>/<dataset>/videos, video
    files) and write videos_report.json; ``source`` (default: the dataset) is the feature
    source the records refer to.
    """
    problems = Problems(on_error)
    video = DATASET_TASK[dataset] in VIDEO_TASKS
    splits = read_dataset(dataset, raw, problems, check_media=check_media and not video)
    target = Path(out) / dataset
    report = None
    if video and check_media:
        videos = videos or VideoFolder(as_layout(raw) / dataset / "videos")
        try:
            splits, report = check_videos(splits, videos, on_missing_video, max_missing_videos,
                                          report_path=target / "videos_report.json")
        except MissingVideosError as e:  # the list the message names, for the user to act on
            write_json(target / "videos_report.json", e.report)
            raise
    if source:
        for records in splits.values():
            for r in records:
                r.source = source
    summary = {
        "dataset": dataset, "raw": str(raw), "on_error": on_error, "media_checked": check_media,
        "counts": {s: len(splits[s]) for s in SPLITS},
        "skipped": problems.total, "skipped_by_reason": dict(problems.skipped), "problems": problems.examples,
    }
    if report is not None:
        summary["videos"] = {k: report[k] for k in ("videos", "missing_count", "unreadable_count", "records_dropped")}
    with atomic_dir(target) as folder:  # every file or none: never new splits beside old ones
        if report is not None:
            _write(folder / "videos_report.json", [json.dumps(report, indent=2)])
        for split in tqdm(SPLITS, desc=f"prepare {dataset}", unit="split", leave=False):
            _write(folder / f"{split}.jsonl", (json.dumps(r.to_dict()) for r in splits[split]))
        _write(folder / "summary.json", [json.dumps(summary, indent=2)])
    return summary


def _write(path: Path, lines) -> None:
    """Each of ``lines`` and a newline into ``path`` (a file of the folder being prepared,
    which is published as a whole)."""
    with open(path, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(line)
            f.write("\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, choices=DATASETS, help="dataset to prepare")
    parser.add_argument("--raw", default="data/raw", help="root of the raw layout (default: data/raw)")
    parser.add_argument("--path", action="append", metavar="DATASET=FOLDER",
                        help="a dataset's raw folder elsewhere than <raw>/<dataset> (repeatable): read where it "
                             "lies, never modified")
    parser.add_argument("--out", default="data/prepared", help="output root (default: data/prepared)")
    parser.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                        help="bad record or missing media: stop with an error (default) or skip and count it")
    parser.add_argument("--no-media-check", dest="check_media", action="store_false",
                        help="do not check that every referenced image/video file exists")
    parser.add_argument("--videos", type=Path,
                        help="video datasets: folder of the videos, found by id anywhere below it "
                             "(default: <raw>/<dataset>/videos)")
    parser.add_argument("--frames-fps", type=float,
                        help="the videos are released frame folders <id>/*.jpg at this frame rate (TVQA: 3)")
    parser.add_argument("--video-features", type=Path, metavar="FOLDER",
                        help="video datasets without videos: released feature files <id>.npz (VALUE's "
                             "vis_features/<tv|how2|yc2>/clip-vit), checked instead of videos (same report, same policy)")
    parser.add_argument("--on-missing-video", choices=ON_MISSING, default="stop",
                        help="missing/unreadable videos: drop their records and list them in videos_report.json "
                             "(skip), or do so only up to --max-missing-videos and stop above it (stop, default)")
    parser.add_argument("--max-missing-videos", type=float, default=0.01,
                        help="fraction of videos that may be missing under --on-missing-video stop (default: 0.01)")
    parser.add_argument("--source", help="feature source the records refer to (default: the dataset; "
                                         "tvc: tvqa when both use the same sampled clips)")


def run(args: argparse.Namespace) -> int:
    from vladapter.data.layout import RawLayout, parse_paths
    from vladapter.errors import ConfigError

    raw = RawLayout(args.raw, parse_paths(args.path))
    if args.video_features and (args.videos or args.frames_fps):
        raise ConfigError("--video-features replaces --videos / --frames-fps: give one or the other")
    if args.video_features:
        videos = VideoFolder(args.video_features, features=True)
    else:
        videos = VideoFolder(args.videos or raw / args.dataset / "videos", args.frames_fps)
    s = prepare(args.dataset, raw, args.out, args.on_error, args.check_media,
                videos=videos, on_missing_video=args.on_missing_video,
                max_missing_videos=args.max_missing_videos, source=args.source)
    counts = " ".join(f"{k}={v}" for k, v in s["counts"].items())
    print(f"{args.dataset}: {counts} -> {Path(args.out) / args.dataset}")
    if "videos" in s:
        v = s["videos"]
        print(f"videos: {v['videos']} referenced, {v['missing_count']} missing, {v['unreadable_count']} unreadable; "
              f"records dropped: {v['records_dropped']} (list: {Path(args.out) / args.dataset / 'videos_report.json'})")
    if s["skipped"]:
        print(f"skipped {s['skipped']} bad records: " + ", ".join(f"{r} ({n})" for r, n in s["skipped_by_reason"].items()))
    return 0
