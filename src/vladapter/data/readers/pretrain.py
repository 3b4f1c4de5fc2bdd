"""Pre-training data: Karpathy-format captions (dataset_pretrain.json) and QA in VL-T5's
Karpathy-VQA variant (pretrain_qa.json: [{img_id, sent, question_id, label: {answer: score}}]).

Both become task "pretrain" Records on source "pretrain": captions with meta kind
"caption" (references = captions), QA with meta kind "qa" (targets = label). A QA's
split is its image's Karpathy split.
"""

from __future__ import annotations

from pathlib import Path

from vladapter.data.readers.coco import read_karpathy
from vladapter.data.readers.common import Problems, load_json, require
from vladapter.data.records import Record
from vladapter.errors import DataError

FIX = "run `vladapter toyworld` (the pre-training split is part of the toy world)"


def read_vlt5_qa(path: Path, problems: Problems, split_of: dict[str, str], task: str = "pretrain",
                 source: str = "pretrain") -> list[Record]:
    """Records of a VL-T5 Karpathy-VQA-style file; ``split_of`` maps img_id -> split."""
    data = load_json(path)
    if not isinstance(data, list):
        raise DataError("not a VL-T5 QA file (expected a JSON list)", path=path, fix=FIX)
    out = []
    for i, q in enumerate(data):
        where = f"[{i}] (question_id {q.get('question_id') if isinstance(q, dict) else None})"
        ok = isinstance(q, dict) and isinstance(q.get("img_id"), str) and isinstance(q.get("sent"), str) \
            and isinstance(q.get("label"), dict)
        if not ok:
            problems.bad("entry needs img_id, sent and a label {answer: score}", path, where, "fix or remove it")
            continue
        split = split_of.get(q["img_id"])
        if split is None:
            problems.bad(f"image {q['img_id']} is not in the captions file", path, where,
                         "regenerate the pre-training split")
            continue
        out.append(Record(uid=f"qa-{q.get('question_id', i)}", task=task, split=split, source=source,
                          images=[q["img_id"]], text=q["sent"], targets={a: float(s) for a, s in q["label"].items()},
                          meta={"kind": "qa", "answer_type": q.get("answer_type")}))
    return out


def read(raw: Path, problems: Problems) -> dict[str, list[Record]]:
    caps = read_karpathy(require(raw / "pretrain" / "dataset_pretrain.json", "pre-training captions", FIX), problems,
                         task="pretrain", source="pretrain")
    for r in caps:
        r.uid = f"cap-{r.uid}"
        r.meta["kind"] = "caption"
    split_of = {r.images[0]: r.split for r in caps}
    qa = read_vlt5_qa(require(raw / "pretrain" / "pretrain_qa.json", "pre-training QA", FIX), problems, split_of)
    out: dict[str, list[Record]] = {"train": [], "val": [], "test": []}
    for r in caps + qa:
        out[r.split].append(r)
    return out


def media(raw: Path, record: Record) -> list[Path]:
    return [raw / "pretrain" / "images" / f"{record.images[0]}.jpg"]
