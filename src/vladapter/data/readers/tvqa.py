"""TVQA: tvqa_{train,val,test_public}.jsonl {qid, q, a0..a4, answer_idx, ts "s-e", vid_name}
(test_public has no answer_idx in the real release) + tvqa_subtitles.jsonl; also the TVQA+
JSON list (answer_idx a string, ts a [s, e] list).

VALUE's release (DataRelease download_tv_annotations.sh: ``ann/tvqa/``) adds
tvqa_test_release.jsonl, test-public merged with test-private (the leaderboard's test
split), and keeps the subtitles in ``ann/tv_subtitles.jsonl``, one level up.

Prepared splits: train, val, test (= tvqa_test_release.jsonl and/or tvqa_test_public.jsonl,
each question once). Context = subtitle lines in the span.
"""

from __future__ import annotations

import math
from pathlib import Path

from vladapter.data.readers.common import (Problems, field_of, first_existing, json_lines, load_json,
                                           read_subtitles, subtitle_context, subtitles_path)
from vladapter.data.records import Record
from vladapter.errors import DataError

# the files of each prepared split, first found first (VALUE's merged test, then the public one)
FILES = {"train": ["tvqa_train.jsonl"], "val": ["tvqa_val.jsonl"],
         "test": ["tvqa_test_release.jsonl", "tvqa_test_public.jsonl"]}
N_CHOICES = 5
FIX_DOWNLOAD = "run `vladapter download tvqa` (or `vladapter toyworld`)"


def parse_span(ts) -> list[float] | None:
    """[start, end] seconds from "48.62-60.02" or [48.62, 60.02]; None for NaN/absent.

    Raises ValueError on anything else (and on end < start).
    """
    if ts is None:
        return None
    if isinstance(ts, str):
        parts = ts.split("-")
        if len(parts) != 2:
            raise ValueError(f"timestamp {ts!r} is not 'start-end'")
        ts = parts
    start, end = (float(x) for x in ts)
    if math.isnan(start) or math.isnan(end):
        return None
    if end < start:
        raise ValueError(f"timestamp ends before it starts: {ts!r}")
    return [start, end]


def record_from(obj: dict, path: Path, where: str, problems: Problems, task: str, split: str,
                subtitles: dict | None, n_choices: int = N_CHOICES) -> Record | None:
    """A multiple-choice Record from a TVQA-style object (also TVQA+ and VALUE's How2QA, whose
    4 choices a0..a3 and answer_idx are kept in the file's order; uid = the qid)."""
    qid = field_of(obj, "qid", path, where, problems)
    q = field_of(obj, "q", path, where, problems, str) if qid is not None else None
    name = field_of(obj, "vid_name", path, where, problems, str) if q is not None else None
    if name is None:
        return None
    choices = [obj.get(f"a{i}") for i in range(n_choices)]
    if not all(isinstance(c, str) for c in choices):
        problems.bad(f"needs {n_choices} answer strings a0..a{n_choices - 1}", path, where, "fix or remove it")
        return None
    try:
        span = parse_span(obj.get("ts"))
        idx = obj.get("answer_idx")
        idx = None if idx is None else int(idx)
        if idx is not None and not 0 <= idx < n_choices:
            raise ValueError(f"answer_idx {idx} out of range")
    except (TypeError, ValueError) as e:
        problems.bad(str(e), path, where, f"fix ts ('start-end' seconds) / answer_idx (0-{n_choices - 1})")
        return None
    subs = (subtitles or {}).get(name, [])
    choices = [c.strip() for c in choices]
    return Record(uid=str(qid), task=task, split=split, source=task, video=name, span=span, text=q.strip(),
                  context=subtitle_context(subs, span), targets={choices[idx]: 1.0} if idx is not None else {},
                  references=[choices[idx]] if idx is not None else [], choices=choices, answer_idx=idx,
                  meta={k: obj[k] for k in ("show_name",) if k in obj})


def read_jsonl(path: Path, problems: Problems, split: str, subtitles: dict | None = None, task: str = "tvqa",
               n_choices: int = N_CHOICES) -> list[Record]:
    out = []
    for lineno, obj in json_lines(path, problems):
        r = record_from(obj, path, f"line {lineno} (qid {obj.get('qid')})", problems, task, split, subtitles,
                        n_choices)
        if r is not None:
            out.append(r)
    return out


def read_files(paths: list[Path], read) -> list[Record]:
    """The records of ``read(path)`` over ``paths``, each uid once (the first file's record):
    VALUE's test_release repeats every test_public question."""
    seen: dict[str, Record] = {}
    for path in paths:
        for r in read(path):
            seen.setdefault(r.uid, r)
    return list(seen.values())


def read_tvqa_plus(path: Path, problems: Problems, split: str, subtitles: dict | None = None) -> list[Record]:
    """TVQA+ (a JSON list); bounding boxes are not used (CLIP features are global)."""
    data = load_json(path)
    if not isinstance(data, list):
        raise DataError("not a TVQA+ file (expected a JSON list)", path=path, fix="download tvqa_plus_*.json again")
    out = []
    for i, obj in enumerate(data):
        if not isinstance(obj, dict):
            problems.bad("entry is not an object", path, f"[{i}]", "fix or remove it")
            continue
        r = record_from(obj, path, f"[{i}] (qid {obj.get('qid')})", problems, "tvqa", split, subtitles)
        if r is not None:
            out.append(r)
    return out


def read(raw: Path, problems: Problems) -> dict[str, list[Record]]:
    folder = raw / "tvqa"
    subs = read_subtitles(subtitles_path(folder, "tvqa_subtitles.jsonl", "tv_subtitles.jsonl"), problems)
    return {split: read_files(first_existing(folder, names, f"TVQA {split} questions", FIX_DOWNLOAD),
                              lambda p, split=split: read_jsonl(p, problems, split, subs))
            for split, names in FILES.items()}


def media(raw: Path, record: Record) -> list[Path]:
    return [raw / record.source / "videos" / f"{record.video}.mp4"]
