"""GQA: {train,val,testdev}_balanced_questions.json = {qid: {imageId, question, answer, ...}}.

Prepared splits: train, val, test (= testdev, the paper's test split). Targets: {answer: 1}.
"""

from __future__ import annotations

from pathlib import Path

from vladapter.data.readers.common import Problems, load_json, require
from vladapter.data.records import Record
from vladapter.errors import DataError

SPLITS = {"train": "train", "val": "val", "testdev": "test"}
FIX_DOWNLOAD = "run `vladapter download gqa` (or `vladapter toyworld`)"
KEEP_META = ("fullAnswer", "types", "groups", "isBalanced")


def read_questions(path: Path, problems: Problems, split: str) -> list[Record]:
    """Records of one GQA question file (answers may be absent: the challenge test split)."""
    data = load_json(path)
    if not isinstance(data, dict):
        raise DataError("not a GQA questions file (expected {qid: question})", path=path, fix=FIX_DOWNLOAD)
    out = []
    for qid, q in data.items():
        if not isinstance(q, dict) or not isinstance(q.get("imageId"), str) or not isinstance(q.get("question"), str):
            problems.bad("question needs imageId and question strings", path, f"qid {qid}", "fix or remove it")
            continue
        answer = q.get("answer")
        if answer is not None and not isinstance(answer, str):
            problems.bad("answer is not a string", path, f"qid {qid}", "fix or remove it")
            continue
        out.append(Record(uid=str(qid), task="gqa", split=split, source="gqa", images=[q["imageId"]],
                          text=q["question"], targets={answer: 1.0} if answer else {},
                          references=[answer] if answer else [], meta={k: q[k] for k in KEEP_META if k in q}))
    return out


def read(raw: Path, problems: Problems) -> dict[str, list[Record]]:
    out = {}
    for name, split in SPLITS.items():
        path = require(raw / "gqa" / f"{name}_balanced_questions.json", f"GQA {name} questions", FIX_DOWNLOAD)
        out[split] = read_questions(path, problems, split)
    return out


def media(raw: Path, record: Record) -> list[Path]:
    from vladapter.data.layout import images_dir

    return [images_dir(raw / "gqa") / f"{record.images[0]}.jpg"]
