"""How2QA, from either of its two releases (the folder's files decide; VALUE's when both):

- VALUE's (the paper's benchmark; DataRelease download_how2_annotations.sh writes
  ``ann/how2qa/how2qa_{train,val,test_public}_release.jsonl`` and ``ann/how2_subtitles.jsonl``):
  TVQA-style lines {vid_name, ts "s-e", qid, q, a0..a3, answer_idx}. Records keep VALUE's qids
  (uid) and choice order (a0..a3, answer_idx), which the leaderboard's submissions index.
- HERO's original CSVs ``how2QA_{train,val,test_public}_release.csv`` + how2qa_subtitles.jsonl:
  no header, 7 columns: video_id, "[start:end]" (seconds), three wrong answers, the question,
  the correct answer. The correct answer always comes last in the file, so the reader inserts
  it among the wrong ones at a position fixed by a hash of the row (deterministic, uniform over
  the 4 positions): the answer position carries no prior. Not VALUE's benchmark: other sizes
  (val 2,852 lines against VALUE's 3,115 questions), other choice order, row-numbered uids
  (docs/data.md).

Prepared splits: train, val, test (= test_public).
"""

from __future__ import annotations

import contextlib
import csv
import zlib
from pathlib import Path

from vladapter.data.readers.common import (Problems, read_subtitles, require, subtitle_context, subtitles_path,
                                           text_lines)
from vladapter.data.readers.tvqa import parse_span, read_jsonl
from vladapter.data.records import Record

SPLITS = {"train": "train", "val": "val", "test_public": "test"}
N_COLUMNS = 7
N_CHOICES = 4
VALUE_FILE = "how2qa_{}_release.jsonl"
FIX_DOWNLOAD = "run `vladapter download how2qa` (or `vladapter toyworld`)"


def answer_position(video_id: str, span: str, question: str, n_choices: int = 4) -> int:
    return zlib.crc32(f"{video_id}|{span}|{question}".encode()) % n_choices


def read_csv(path: Path, problems: Problems, split: str, subtitles: dict | None = None,
             uid_prefix: str | None = None) -> list[Record]:
    out = []
    prefix = uid_prefix or path.stem.replace("how2QA_", "").replace("_release", "")
    # a line that is not UTF-8 reads as an empty row (reported to problems): rows keep their numbers
    with contextlib.closing(text_lines(path, problems)) as lines:
        for lineno, row in enumerate(csv.reader(line for _, line in lines), 1):
            if not row:
                continue
            where = f"line {lineno}"
            if len(row) != N_COLUMNS:
                problems.bad(f"{len(row)} columns, expected {N_COLUMNS} (video_id, [start:end], 3 wrong answers, "
                             "question, answer)", path, where, "quote fields that contain commas, or remove the line")
                continue
            video_id, ts, w1, w2, w3, question, answer = (x.strip() for x in row)
            try:
                if not (ts.startswith("[") and ts.endswith("]")):
                    raise ValueError(f"span {ts!r} is not [start:end]")
                span = parse_span(ts[1:-1].split(":"))
            except (TypeError, ValueError) as e:
                problems.bad(str(e), path, where, "write the span as [start:end] in seconds")
                continue
            idx = answer_position(video_id, ts, question)
            choices = [w1, w2, w3]
            choices.insert(idx, answer)
            subs = (subtitles or {}).get(video_id, [])
            out.append(Record(uid=f"{prefix}-{lineno}", task="how2qa", split=split, source="how2qa", video=video_id,
                              span=span, text=question, context=subtitle_context(subs, span),
                              targets={answer: 1.0}, references=[answer], choices=choices, answer_idx=idx))
    return out


def is_value_release(folder: Path) -> bool:
    """Whether ``folder`` holds VALUE's How2QA jsonl (else HERO's CSVs are read)."""
    return any((Path(folder) / VALUE_FILE.format(name)).exists() for name in SPLITS)


def read(raw: Path, problems: Problems) -> dict[str, list[Record]]:
    folder = raw / "how2qa"
    subs = read_subtitles(subtitles_path(folder, "how2qa_subtitles.jsonl", "how2_subtitles.jsonl"), problems)
    if is_value_release(folder):
        fix = "download VALUE's How2QA annotations (VALUE-Leaderboard/DataRelease, docs/data.md)"
        return {split: read_jsonl(require(folder / VALUE_FILE.format(name), f"VALUE How2QA {name} questions", fix),
                                  problems, split, subs, task="how2qa", n_choices=N_CHOICES)
                for name, split in SPLITS.items()}
    return {split: read_csv(require(folder / f"how2QA_{name}_release.csv", f"How2QA {name} CSV", FIX_DOWNLOAD),
                            problems, split, subs)
            for name, split in SPLITS.items()}


def media(raw: Path, record: Record) -> list[Path]:
    return [raw / "how2qa" / "videos" / f"{record.video}.mp4"]
