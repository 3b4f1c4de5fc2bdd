"""Video multiple-choice QA (TVQA, How2QA) in the paper's text format.

Input: "[Subs] {subtitles} [Q] {question} [TS] {start}-{end} [Choices] a0: .. a4: .. tvqa:"
(the task name ends the text when the method uses task prefixes); target "a{idx}".
At evaluation the choice is the candidate "a0".."a4" with the highest likelihood.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from vladapter.data.records import Record
from vladapter.tasks.base import Task, numeric_id
from vladapter.utils.io import write_jsonl

MAX_SUBTITLE_WORDS = 400  # keeps the question and choices inside the 600-token input


class VideoQATask(Task):
    max_input_tokens = 600
    max_target_tokens = 3
    max_new_tokens = 3
    modality = "video"
    metric = "accuracy"
    submission_suffix = ".jsonl"

    def __init__(self, name: str):
        self.name = name
        self.prefix = f"{name}:"

    def source_text(self, record: Record, prefix: bool) -> str:
        subs = " ".join(record.context.split()[-MAX_SUBTITLE_WORDS:])
        parts = [f"[Subs] {subs}", f"[Q] {record.text}"]
        if record.span:
            parts.append(f"[TS] {record.span[0]:.1f}-{record.span[1]:.1f}")
        parts.append("[Choices] " + " ".join(f"a{i}: {c}" for i, c in enumerate(record.choices)))
        if prefix:
            parts.append(self.prefix)
        return " ".join(parts)

    def answer(self, record: Record) -> str:
        if record.answer_idx is None:
            raise ValueError(f"{self.name} record {record.uid} has no answer_idx")
        return f"a{record.answer_idx}"

    def candidates(self, record: Record) -> list[str]:
        return [f"a{i}" for i in range(len(record.choices))]

    def score(self, predictions: Sequence[str], records: Sequence[Record]) -> dict[str, float]:
        from vladapter.evaluate.metrics import exact_match

        return {"accuracy": exact_match(predictions, [self.answer(r) for r in records])}

    def majority(self, train_records: Sequence[Record]) -> str:
        counts = Counter(self.answer(r) for r in train_records)
        return max(counts.items(), key=lambda kv: (kv[1], kv[0]))[0]

    def write_submission(self, path, predictions, records):
        # VALUE QA submission: one {"qid", "answer_idx"} per line
        path = path.with_suffix(".jsonl")
        write_jsonl(path, ({"qid": numeric_id(r.uid), "answer_idx": _choice_index(p)}
                           for r, p in zip(records, predictions)))
        return path


def _choice_index(prediction: str) -> int:
    p = prediction.strip().lower()
    return int(p[1:]) if p.startswith("a") and p[1:].isdigit() else -1
