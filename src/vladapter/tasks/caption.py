"""COCO captioning: "caption:" + image -> a reference caption; CIDEr (beam 5, 20 tokens)."""

from __future__ import annotations

import re
from collections import Counter
from typing import Sequence

import numpy as np

from vladapter.data.records import Record
from vladapter.tasks.base import Example, Task, numeric_id
from vladapter.utils.io import write_json


def references(record: Record) -> list[str]:
    """A captioning record's reference captions (Record.references, else its targets)."""
    return list(record.references) or list(record.targets)


class CaptionTask(Task):
    name = "caption"
    prefix = "caption:"
    max_input_tokens = 8
    max_target_tokens = 40
    max_new_tokens = 20
    num_beams = 5
    batch_scale = 50 / 60
    metric = "cider"

    def example(self, record: Record, rng: np.random.Generator, prefix: bool) -> Example:
        refs = references(record)
        if not refs:
            raise ValueError(f"caption record {record.uid} has no captions")
        return Example(self.source_text(record, prefix), refs[int(rng.integers(len(refs)))])

    def answer(self, record: Record) -> str:
        return references(record)[0]

    def score(self, predictions: Sequence[str], records: Sequence[Record]) -> dict[str, float]:
        from vladapter.metrics import cider

        preds = {r.uid: p for r, p in zip(records, predictions, strict=True)}
        return {"cider": cider(preds, {r.uid: references(r) for r in records})}

    def majority(self, train_records: Sequence[Record]) -> str:
        counts = Counter(c.strip().lower() for r in train_records for c in references(r))
        return max(counts.items(), key=lambda kv: (kv[1], kv[0]))[0]

    def write_submission(self, path, predictions, records):
        path = path.with_suffix(".json")  # COCO results format: [{image_id, caption}]
        write_json(path, [{"image_id": image_id(r), "caption": p} for r, p in zip(records, predictions)])
        return path


def image_id(record: Record):
    """COCO's integer image id: meta["image_id"], else the digits ending the image name."""
    if "image_id" in record.meta:
        return record.meta["image_id"]
    match = re.search(r"(\d+)$", record.images[0]) if record.images else None
    return int(match.group(1)) if match else numeric_id(record.uid)


TASK = CaptionTask()
