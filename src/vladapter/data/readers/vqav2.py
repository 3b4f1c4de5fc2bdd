"""VQAv2: the official questions + annotations JSON, split by the image's Karpathy split.

Files (raw layout): vqav2/v2_OpenEnded_mscoco_{train2014,val2014}_questions.json and
vqav2/v2_mscoco_{train2014,val2014}_annotations.json; images are COCO's, so the split
(Karpathy train+restval -> train, val, test) comes from coco/dataset_coco.json, as in
VL-T5 / VL-Adapter.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable

from vladapter.data.readers.common import Problems, load_json, require
from vladapter.data.readers.coco import karpathy_splits
from vladapter.data.records import Record
from vladapter.errors import DataError
from vladapter.data.answers import normalize_answer

SUBTYPES = ("train2014", "val2014")
FIX_DOWNLOAD = "run `vladapter download vqav2` (or `vladapter toyworld`)"


def soft_scores(answers: Iterable[str]) -> dict[str, float]:
    """VL-T5 / LXMERT soft targets: each normalised answer given by n of the 10 humans
    scores min(1, 0.3 * n) (1 -> 0.3, 2 -> 0.6, 3 -> 0.9, 4+ -> 1.0)."""
    counts = Counter(normalize_answer(a) for a in answers)
    return {a: round(min(1.0, 0.3 * n), 2) for a, n in counts.items()}


def image_stem(subtype: str, image_id: int) -> str:
    """COCO's file stem (= feature id) of an image: COCO_val2014_000000391895."""
    return f"COCO_{subtype}_{int(image_id):012d}"


def read_questions(path: Path, problems: Problems) -> dict[int, dict]:
    """question_id -> {image_id, question, question_id} from an official questions file."""
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("questions"), list):
        raise DataError("not a VQA questions file (no 'questions' list)", path=path, fix=FIX_DOWNLOAD)
    out = {}
    for i, q in enumerate(data["questions"]):
        if not isinstance(q, dict) or not {"image_id", "question", "question_id"} <= set(q):
            problems.bad("question needs image_id, question and question_id", path, f"questions[{i}]",
                         "fix or remove the question")
            continue
        out[int(q["question_id"])] = q
    return out


def read_annotations(path: Path, problems: Problems) -> dict[int, dict]:
    """question_id -> annotation (answers x10, answer_type, question_type, ...)."""
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise DataError("not a VQA annotations file (no 'annotations' list)", path=path, fix=FIX_DOWNLOAD)
    out = {}
    for i, a in enumerate(data["annotations"]):
        ok = isinstance(a, dict) and "question_id" in a and isinstance(a.get("answers"), list) and all(
            isinstance(x, dict) and isinstance(x.get("answer"), str) for x in a["answers"])
        if not ok or not a["answers"]:
            problems.bad("annotation needs question_id and a non-empty answers list of {answer}", path,
                         f"annotations[{i}]", "fix or remove the annotation")
            continue
        out[int(a["question_id"])] = a
    return out


def records(questions: dict[int, dict], annotations: dict[int, dict] | None, subtype: str, split: str,
            problems: Problems, path: Path | None = None) -> list[Record]:
    """Records of one subtype's questions; without annotations (test sets) targets are empty."""
    out = []
    for qid, q in questions.items():
        ann = None
        if annotations is not None:
            ann = annotations.get(qid)
            if ann is None:
                problems.bad("question has no annotation", path, f"question_id {qid}",
                             "use the annotations file of the same release as the questions file")
                continue
        answers = [a["answer"] for a in ann["answers"]] if ann else []
        meta = {"image_id": int(q["image_id"])}
        if ann:
            meta.update(answer_type=ann.get("answer_type"), question_type=ann.get("question_type"),
                        multiple_choice_answer=ann.get("multiple_choice_answer"))
        out.append(Record(uid=str(qid), task="vqa", split=split, source="coco",
                          images=[image_stem(subtype, q["image_id"])], text=q["question"],
                          targets=soft_scores(answers), references=answers, meta=meta))
    return out


def read(raw: Path, problems: Problems) -> dict[str, list[Record]]:
    """All VQAv2 records of the raw layout, by prepared split (train / val / test)."""
    split_of = karpathy_splits(raw, problems)
    out: dict[str, list[Record]] = {"train": [], "val": [], "test": []}
    for sub in SUBTYPES:
        qpath = require(raw / "vqav2" / f"v2_OpenEnded_mscoco_{sub}_questions.json", "VQAv2 questions", FIX_DOWNLOAD)
        apath = require(raw / "vqav2" / f"v2_mscoco_{sub}_annotations.json", "VQAv2 annotations", FIX_DOWNLOAD)
        qs, anns = read_questions(qpath, problems), read_annotations(apath, problems)
        for r in records(qs, anns, sub, "", problems, apath):
            split = split_of.get(r.images[0])
            if split is None:
                problems.bad("image is in no Karpathy split", qpath, f"question_id {r.uid} ({r.images[0]})",
                             "use the Karpathy dataset_coco.json that covers COCO train2014 + val2014")
                continue
            r.split = split
            out[split].append(r)
    return out


def media(raw: Path, record: Record) -> list[Path]:
    sub = record.images[0].split("_")[1]
    return [raw / "coco" / "images" / sub / f"{record.images[0]}.jpg"]
