"""Where a video dataset's videos are, and which of them a prepared dataset can use.

A dataset's videos come in one of three released layouts, found by video id anywhere under
one folder (the user's own folder is only read):

- video files ``<id>.mp4|.webm|.mkv|...`` (the toy world; How2QA / YouCook2 clips a user
  has from YouTube: whole videos, segmented later by the records' timestamps);
- frame folders ``<id>/*.jpg`` at a known frame rate (TVQA / TVC: the released 3-fps
  ``frames_hq/<show>_frames/<vid_name>/00001.jpg``);
- released features ``<id>.npz`` (VALUE's ``vis_features/{tv,how2,yc2}/clip-vit/``: key
  ``features``, one CLIP ViT-B/32 vector per 1.5 s; features/released.py converts them):
  no video at all.

``check_videos`` is prepare's media check for video datasets: every video a record refers
to is looked up and opened (a video file must decode a first frame; a frame folder must
hold a readable JPEG; a feature file must hold a 2-D ``features`` array). Missing and unreadable videos are listed with counts in a report
(prepare writes it as ``videos_report.json``); their records are dropped, or, when more
than ``max_missing`` of the videos are affected under ``on_missing: stop``, the run stops
with an error naming the report (a ``MissingVideosError`` carrying it, for the caller to write).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from vladapter.errors import ConfigError, DataError

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")
FRAME_SUFFIXES = (".jpg", ".jpeg")
FEATURE_SUFFIX = ".npz"
FEATURE_KEY = "features"  # the array of a released feature file (VALUE, HERO's extractor)
ON_MISSING = ("stop", "skip")


@dataclass(frozen=True)
class VideoFolder:
    """A folder of one dataset's videos: video files (``fps`` None), frame folders (``fps``:
    the frame rate the frames were extracted at, e.g. 3 for TVQA), or released feature files
    (``features``: ``<id>.npz``, VALUE's)."""

    folder: Path
    fps: float | None = None
    features: bool = False

    def __post_init__(self) -> None:
        if self.fps is not None and self.fps <= 0:
            raise ConfigError(f"frame folders need a positive fps, got {self.fps}")
        if self.fps is not None and self.features:
            raise ConfigError("a videos folder holds frame folders (fps) or released feature files, not both")

    @property
    def layout(self) -> str:
        return "released features" if self.features else "frame folders" if self.frames else "video files"

    @property
    def frames(self) -> bool:
        return self.fps is not None

    def find(self, ids=None) -> dict[str, Path]:
        """Video id -> file or frame folder, searched recursively; only ``ids`` when given
        (frame folders are matched by name without listing their frames)."""
        if not self.folder.is_dir():
            raise DataError("released features folder not found" if self.features else "videos folder not found",
                            path=self.folder,
                            fix="point data.videos.<dataset>.features at VALUE's vis_features/<tv|how2|yc2>/clip-vit "
                                "(docs/data.md)" if self.features else
                                "point data.videos.<dataset>.folder at the clips or frame folders you have "
                                "(docs/data.md), or generate the toy world")
        wanted = None if ids is None else set(ids)
        found: dict[str, Path] = {}
        stack = [self.folder]
        while stack:
            with os.scandir(stack.pop()) as entries:
                for entry in sorted(entries, key=lambda e: e.name):
                    if entry.is_dir():
                        if self.frames and (wanted is None or entry.name in wanted) and _has_frames(entry.path):
                            found.setdefault(entry.name, Path(entry.path))
                        else:
                            stack.append(Path(entry.path))
                    elif self.features:
                        if entry.name.endswith(FEATURE_SUFFIX):
                            stem = entry.name[: -len(FEATURE_SUFFIX)]
                            if wanted is None or stem in wanted:
                                found.setdefault(stem, Path(entry.path))
                    elif not self.frames and Path(entry.name).suffix.lower() in VIDEO_SUFFIXES:
                        stem = Path(entry.name).stem
                        if wanted is None or stem in wanted:
                            found.setdefault(stem, Path(entry.path))
        return found


def _has_frames(path: str) -> bool:
    with os.scandir(path) as entries:
        return any(Path(e.name).suffix.lower() in FRAME_SUFFIXES for e in entries)


class MissingVideosError(DataError):
    """Too many videos are missing or unreadable; ``report`` lists them (what check_videos returns)."""

    def __init__(self, message: str, report: dict, **kwargs):
        super().__init__(message, **kwargs)
        self.report = report


def frame_files(folder: Path) -> list[Path]:
    """The JPEG frames of one frame folder in frame order: by the number in their names (the
    last run of digits: ``00001.jpg``, ``1.jpg``, ``frame_12.jpg``), so names that are not
    zero-padded (``2.jpg`` before ``10.jpg``) keep their order. A folder whose frames are not
    all numbered, or that numbers two frames alike, is a DataError naming them."""
    files = [p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES]
    numbers = {p: re.findall(r"\d+", p.stem) for p in files}
    unnumbered = sorted(p.name for p, found in numbers.items() if not found)
    if unnumbered:
        raise DataError(f"frame files without a frame number in their names: {', '.join(unnumbered[:3])}"
                        + (f" (and {len(unnumbered) - 3} more)" if len(unnumbered) > 3 else ""), path=folder,
                        fix="name each frame by its number (00001.jpg, 00002.jpg, ... as released), or move the "
                            "other JPEGs out of the frame folder")
    order = sorted(files, key=lambda p: (int(numbers[p][-1]), p.name))
    for a, b in zip(order, order[1:]):
        if int(numbers[a][-1]) == int(numbers[b][-1]):
            raise DataError(f"two frame files have the number {int(numbers[a][-1])}: {a.name} and {b.name}",
                            path=folder, fix="keep one file per frame number in the frame folder")
    return order


def read_feature_file(path: Path):
    """The ``features`` array of a released ``<id>.npz`` (no pickled objects are loaded);
    ValueError saying what is wrong with it."""
    import zipfile

    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as npz:
            if FEATURE_KEY not in npz.files:
                raise ValueError(f"no array {FEATURE_KEY!r} (has {', '.join(npz.files) or 'none'})")
            features = npz[FEATURE_KEY]
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"not a readable .npz ({type(e).__name__}: {str(e)[:80]})") from None
    if features.ndim != 2 or features.shape[1] == 0 or features.dtype.kind != "f":
        raise ValueError(f"{FEATURE_KEY!r} is {features.dtype} {tuple(features.shape)}, expected float (T, D)")
    return features


def unreadable(path: Path, frames: bool, features: bool = False) -> str | None:
    """Why the video (file, frame folder or released feature file) at ``path`` cannot be used, or None."""
    if features:
        try:
            read_feature_file(path)
            return None
        except ValueError as e:
            return str(e)
    try:
        if frames:
            from PIL import Image

            files = frame_files(path)
            if not files:
                return "no JPEG frames"
            with Image.open(files[0]) as image:
                image.load()
            return None
        import av

        with av.open(str(path)) as container:
            if not container.streams.video:
                return "no video stream"
            next(container.decode(video=0))
        return None
    except StopIteration:
        return "no decodable frame"
    except DataError as e:  # frame files that cannot be put in order
        return str(e).split("\n")[0]
    except Exception as e:  # PyAV / PIL raise many kinds for corrupt input
        message = (str(e).strip().splitlines() or [""])[0][:120]
        return f"cannot decode ({type(e).__name__}: {message})"


def check_videos(splits: dict, source: VideoFolder, on_missing: str = "stop", max_missing: float = 0.01,
                 report_path: Path | None = None) -> tuple[dict, dict]:
    """Drop the records whose video is missing or unreadable; returns (splits, report).

    ``report``: ``videos`` (referenced), ``missing`` / ``unreadable`` (id -> path or reason),
    ``records_dropped`` per split, ``fraction`` of videos affected. Stops (DataError) when
    ``on_missing`` is "stop" and that fraction is above ``max_missing``.
    """
    if on_missing not in ON_MISSING:
        raise ConfigError(f"on_missing must be one of {ON_MISSING}, got {on_missing!r}")
    ids = sorted({r.video for records in splits.values() for r in records if r.video is not None})
    found = source.find(ids)
    missing = {i: "not found" for i in ids if i not in found}
    bad = {i: reason for i in ids if i in found and (reason := unreadable(found[i], source.frames, source.features))}
    lost = set(missing) | set(bad)
    kept = {split: [r for r in records if r.video not in lost] for split, records in splits.items()}
    fraction = len(lost) / len(ids) if ids else 0.0
    report = {
        "folder": str(source.folder), "layout": source.layout,
        "fps": source.fps, "videos": len(ids), "found": len(ids) - len(missing), "missing_count": len(missing),
        "unreadable_count": len(bad), "fraction": round(fraction, 6), "on_missing": on_missing,
        "max_missing": max_missing,
        "records_dropped": {s: len(splits[s]) - len(kept[s]) for s in splits},
        "missing": missing, "unreadable": bad,
    }
    if on_missing == "stop" and fraction > max_missing:
        where = f" (listed in {report_path})" if report_path else ""
        raise MissingVideosError(f"{len(missing)} videos missing and {len(bad)} unreadable of {len(ids)} "
                        f"({100 * fraction:.1f} % > {100 * max_missing:g} %){where}",
                        path=source.folder,
                        fix="add the missing clips (or feature files), or set data.on_missing_video: skip (or raise "
                            "data.max_missing_videos; prepare --on-missing-video skip) to drop their records",
                        report=report)
    return kept, report
