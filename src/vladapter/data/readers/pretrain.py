"""Pre-training data, task "pretrain": captions (meta kind "caption", references = the
image's captions) and questions (meta kind "qa", targets = answer scores).

Two sources:
- a ``pretrain/`` folder (the toy world writes one): Karpathy-format captions
  (dataset_pretrain.json) and QA in VL-T5's Karpathy-VQA variant (pretrain_qa.json:
  [{img_id, sent, question_id, label: {answer: score}}]), on source "pretrain"; a QA's
  split is its image's Karpathy split.
- otherwise the corpus of VL-T5's pre-training built from the downloaded datasets
  (:func:`read_corpus`): COCO captions of the Karpathy train (+restval) images, VQAv2
  questions on those images, GQA balanced train questions. Karpathy val images give the
  val split (validation loss only); Karpathy test images are left out. Records keep the
  feature source of their images (coco, gqa), so the features extracted for the
  downstream tasks are reused, not extracted a second time.
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
    if not (raw / "pretrain" / "dataset_pretrain.json").is_file() and (raw / "coco").is_dir():
        return read_corpus(raw, problems)
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


# the datasets of the corpus: (dataset, uid prefix, kind); COCO's Karpathy file is required
CORPUS = (("coco", "cap", "caption"), ("vqav2", "vqa", "qa"), ("gqa", "gqa", "qa"))
CORPUS_SPLITS = {"coco": ("train", "val"), "vqav2": ("train", "val"), "gqa": ("train",)}


def read_corpus(raw: Path, problems: Problems) -> dict[str, list[Record]]:
    """The pre-training split from the downloaded COCO (required), VQAv2 and GQA (each when
    its folder is there), with the prepared records of each re-labelled as task "pretrain"."""
    import dataclasses

    from vladapter.data.readers import coco, gqa, vqav2

    readers = {"coco": coco.read, "vqav2": vqav2.read, "gqa": gqa.read}
    out: dict[str, list[Record]] = {"train": [], "val": [], "test": []}
    for dataset, prefix, kind in CORPUS:
        if dataset != "coco" and not (raw / dataset).is_dir():
            continue
        splits = readers[dataset](raw, problems)
        for split in CORPUS_SPLITS[dataset]:
            for r in splits[split]:
                meta = {"kind": kind, "dataset": dataset}
                if "file" in r.meta:
                    meta["file"] = r.meta["file"]
                if r.meta.get("answer_type"):
                    meta["answer_type"] = r.meta["answer_type"]
                out[split].append(dataclasses.replace(r, uid=f"{prefix}-{r.uid}", task="pretrain", meta=meta))
    return out


def media(raw: Path, record: Record) -> list[Path]:
    from vladapter.data.readers import coco, gqa, vqav2

    dataset = record.meta.get("dataset")
    if dataset == "coco":
        return coco.media(raw, record)
    if dataset in ("vqav2", "gqa"):
        return {"vqav2": vqav2.media, "gqa": gqa.media}[dataset](raw, record)
    return [raw / "pretrain" / "images" / f"{record.images[0]}.jpg"]
