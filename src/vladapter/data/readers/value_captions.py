"""Video captioning in the VALUE / TVC jsonl format (TVC, YC2C), plus TVR and YouCook2.

VALUE / TVC: one moment per line {vid_name, duration, ts: [s, e], clip_id, descs: [{desc,
...}]} (descs withheld in the real test_public files: such moments keep empty references).
TVR: one description per line {vid_name, ts, desc, desc_id}: grouped per (vid_name, ts)
into moments. YouCook2 official: {"database": {video_id: {subset, annotations: [{segment,
id, sentence}]}}}: one moment per segment.
Context = subtitle lines in the moment's span.

VALUE's release (DataRelease download_{tv,yc2}_annotations.sh) writes ``ann/tvc/`` with
tvc_test_release.jsonl (test-public merged with test-private: the leaderboard's test split)
and ``ann/yc2c/yc2c_{train,val,test}_release.jsonl`` (one YouCook2 segment clip per
vid_name, no ts: the whole clip), subtitles one level up in ``ann/{tv,yc2}_subtitles.jsonl``.
"""

from __future__ import annotations

from pathlib import Path

from vladapter.data.readers.common import (Problems, field_of, first_existing, json_lines, load_json,
                                           read_subtitles, subtitle_context, subtitles_path)
from vladapter.data.readers.tvqa import parse_span, read_files
from vladapter.data.records import Record
from vladapter.errors import DataError

# prepared split -> its files, first found first (VALUE's merged TVC test, then the public one)
TVC_FILES = {"train": ["tvc_train_release.jsonl"], "val": ["tvc_val_release.jsonl"],
             "test": ["tvc_test_release.jsonl", "tvc_test_public_release.jsonl"]}
YC2C_FILES = {split: [f"yc2c_{split}_release.jsonl"] for split in ("train", "val", "test")}
# VALUE's subtitle file (in ann/, beside the datasets' folders) per task
VALUE_SUBTITLES = {"tvc": "tv_subtitles.jsonl", "yc2c": "yc2_subtitles.jsonl"}
YOUCOOK2_SUBSETS = {"training": "train", "validation": "val", "testing": "test"}


def _moment(task: str, uid: str, split: str, name: str, span, descs: list[str], subs: dict | None,
            meta: dict) -> Record:
    return Record(uid=uid, task=task, split=split, source=task, video=name, span=span,
                  context=subtitle_context((subs or {}).get(name, []), span),
                  targets={d: 1.0 for d in descs}, references=descs, meta=meta)


def read_value_jsonl(path: Path, problems: Problems, task: str, split: str, subtitles: dict | None = None
                     ) -> list[Record]:
    out = []
    for lineno, obj in json_lines(path, problems):
        where = f"line {lineno} (clip_id {obj.get('clip_id')})"
        name = field_of(obj, "vid_name", path, where, problems, str)
        if name is None:
            continue
        descs = obj.get("descs", [])
        try:
            span = parse_span(obj.get("ts"))
            texts = [d["desc"].strip() for d in descs]
        except (TypeError, ValueError, KeyError, AttributeError) as e:
            problems.bad(f"bad ts or descs ({e})", path, where, "ts must be [start, end]; descs [{desc: text}]")
            continue
        uid = str(obj.get("clip_id", f"{path.stem}-{lineno}"))
        meta = {"clip_id": obj["clip_id"]} if "clip_id" in obj else {}
        if "duration" in obj:
            meta["duration"] = obj["duration"]
        out.append(_moment(task, uid, split, name, span, texts, subtitles, meta))
    return out


def read_tvr(path: Path, problems: Problems, split: str, task: str = "tvc", subtitles: dict | None = None
             ) -> list[Record]:
    """TVR descriptions grouped into one caption Record per moment (vid_name, ts)."""
    moments: dict[tuple, Record] = {}
    for lineno, obj in json_lines(path, problems):
        where = f"line {lineno} (desc_id {obj.get('desc_id')})"
        name = field_of(obj, "vid_name", path, where, problems, str)
        desc = field_of(obj, "desc", path, where, problems, str) if name is not None else None
        if desc is None:
            continue
        try:
            span = parse_span(obj.get("ts"))
        except (TypeError, ValueError) as e:
            problems.bad(str(e), path, where, "ts must be [start, end]")
            continue
        key = (name, tuple(span) if span else None)
        if key not in moments:
            moments[key] = _moment(task, str(obj.get("desc_id", lineno)), split, name, span, [], subtitles,
                                   {"duration": obj.get("duration")})
        moments[key].references.append(desc.strip())
        moments[key].targets[desc.strip()] = 1.0
    return list(moments.values())


def read_youcook2(path: Path, problems: Problems, subtitles: dict | None = None) -> list[Record]:
    """YouCook2's official annotations: one caption Record per segment (split from 'subset')."""
    data = load_json(path)
    db = data.get("database") if isinstance(data, dict) else None
    if not isinstance(db, dict):
        raise DataError("not a YouCook2 annotations file (no 'database')", path=path,
                        fix="download youcookii_annotations_trainval.json again")
    out = []
    for vid, entry in db.items():
        split = YOUCOOK2_SUBSETS.get(entry.get("subset")) if isinstance(entry, dict) else None
        if split is None or not isinstance(entry.get("annotations"), list):
            problems.bad("video needs subset (training/validation/testing) and annotations", path, vid,
                         "fix or remove the video")
            continue
        for seg in entry["annotations"]:
            try:
                span = parse_span(seg["segment"])
                sentence = seg["sentence"].strip()
                uid = f"{vid}-{seg['id']}"
            except (TypeError, ValueError, KeyError, AttributeError) as e:
                problems.bad(f"segment needs segment [s, e], id and sentence ({e})", path, vid, "fix the segment")
                continue
            out.append(_moment("yc2c", uid, split, vid, span, [sentence], subtitles,
                               {"duration": entry.get("duration"), "recipe_type": entry.get("recipe_type")}))
    return out


def _subtitles_path(folder: Path, task: str) -> Path:
    return subtitles_path(folder, f"{task}_subtitles.jsonl", VALUE_SUBTITLES[task])


def _read(raw: Path, problems: Problems, task: str, files: dict) -> dict[str, list[Record]]:
    fix = f"run `vladapter download {task}` (or `vladapter toyworld`), or point it at VALUE's ann/{task}"
    subs = read_subtitles(_subtitles_path(raw / task, task), problems)
    return {split: read_files(first_existing(raw / task, names, f"{task} {split} captions", fix),
                              lambda p, split=split: read_value_jsonl(p, problems, task, split, subs))
            for split, names in files.items()}


def read_tvc(raw: Path, problems: Problems) -> dict[str, list[Record]]:
    return _read(raw, problems, "tvc", TVC_FILES)


def read_yc2c(raw: Path, problems: Problems) -> dict[str, list[Record]]:
    """VALUE's yc2c_*_release.jsonl; without them, YouCook2's official annotations (train/val)."""
    folder = raw / "yc2c"
    official = folder / "youcookii_annotations_trainval.json"
    if not (folder / "yc2c_train_release.jsonl").exists() and official.exists():
        subs_path = folder / "yc2c_subtitles.jsonl"
        if not subs_path.exists() and (folder.parent / VALUE_SUBTITLES["yc2c"]).exists():
            subs_path = folder.parent / VALUE_SUBTITLES["yc2c"]
        subs = read_subtitles(subs_path, problems) if subs_path.exists() else None
        out: dict[str, list[Record]] = {"train": [], "val": [], "test": []}
        for r in read_youcook2(official, problems, subs):
            out[r.split].append(r)
        return out
    return _read(raw, problems, "yc2c", YC2C_FILES)


def media(raw: Path, record: Record) -> list[Path]:
    return [raw / record.source / "videos" / f"{record.video}.mp4"]
