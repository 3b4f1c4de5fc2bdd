"""NLVR2: "nlvr: {statement}" with two images -> "true"/"false".

At evaluation the answer is decided by comparing the likelihoods of the two targets,
not by free generation. Accuracy and consistency (per statement, Record.group).
"""

from __future__ import annotations

from typing import Sequence

from vladapter.data.records import Record
from vladapter.tasks.base import Task
from vladapter.utils.io import write_text

LABELS = ("true", "false")


class NLVRTask(Task):
    name = "nlvr"
    prefix = "nlvr:"
    max_input_tokens = 32
    max_target_tokens = 2
    max_new_tokens = 2
    batch_scale = 20 / 60
    metric = "accuracy"

    def answer(self, record: Record) -> str:
        label = super().answer(record).strip().lower()
        if label not in LABELS:
            raise ValueError(f"NLVR2 record {record.uid}: label {label!r} is not true/false")
        return label

    def candidates(self, record: Record) -> list[str]:
        return list(LABELS)

    def score(self, predictions: Sequence[str], records: Sequence[Record]) -> dict[str, float]:
        from vladapter.metrics import nlvr_scores

        correct = [p.strip().lower() == self.answer(r) for p, r in zip(predictions, records, strict=True)]
        return nlvr_scores(correct, [r.group or r.text for r in records])

    def write_submission(self, path, predictions, records):
        # the leaderboard's csv: identifier,prediction with True/False
        path = path.with_suffix(".csv")
        rows = [f"{r.uid},{p.strip().capitalize()}" for r, p in zip(records, predictions)]
        write_text(path, "\n".join(rows) + "\n")
        return path


TASK = NLVRTask()
