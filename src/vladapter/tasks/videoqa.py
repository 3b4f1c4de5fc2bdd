"""Video multiple-choice QA (TVQA, How2QA) in the paper's text format.

Input: "[Subs] {subtitles} [Q] {question} [TS] {start}-{end} [Choices] a0: .. a4: .. tvqa:"
(the task name ends the text when the method uses task prefixes). The target is set by
``qa_target`` (train config): ``index`` = "a{idx}" (the paper's), ``text`` = the correct
choice's words. At evaluation the prediction is the candidate with the highest likelihood
("a0".."a4", or the choices' texts); the submission names its index either way:
{"<qid>": index} in one JSON object, the TVQA / VALUE leaderboard format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from vladapter.data.records import Record
from vladapter.errors import ConfigError
from vladapter.tasks.base import Task
from vladapter.utils.io import write_json

MAX_SUBTITLE_WORDS = 400  # keeps the question and choices inside the 600-token input
QA_TARGETS = ("index", "text")


class VideoQATask(Task):
    max_input_tokens = 600
    max_target_tokens = 3
    max_new_tokens = 3
    modality = "video"
    metric = "accuracy"

    def __init__(self, name: str, target: str = "index"):
        if target not in QA_TARGETS:
            raise ConfigError(f"{name}: qa_target must be one of {', '.join(QA_TARGETS)}, got {target!r}")
        self.name = name
        self.prefix = f"{name}:"
        self.target = target
        self.max_target_tokens = 3 if target == "index" else 16

    def with_options(self, qa_target: str | None = None, **_) -> "VideoQATask":
        return self if qa_target in (None, self.target) else VideoQATask(self.name, qa_target)

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
        return self.candidates(record)[record.answer_idx]

    def has_label(self, record: Record) -> bool:
        return record.answer_idx is not None

    def candidates(self, record: Record) -> list[str]:
        if self.target == "text":
            return list(record.choices)
        return [f"a{i}" for i in range(len(record.choices))]

    def choice_index(self, prediction: str, record: Record) -> int:
        """The index of the choice ``prediction`` names (-1: none)."""
        p = prediction.strip().lower()
        for i, c in enumerate(self.candidates(record)):
            if p == c.strip().lower():
                return i
        return -1

    def majority(self, train_records: Sequence[Record]) -> str:
        """The most frequent answer position "a{idx}" (a text target's majority is scored
        through its position too, so the baseline is the same for both targets)."""
        return self._most_frequent(f"a{r.answer_idx}" for r in train_records if r.answer_idx is not None)

    def write_submission(self, path, predictions, records):
        # the TVQA / VALUE QA submission: one JSON object {"<qid>": answer index}, what the
        # official scorer (VALUE EvaluationTools evaluate_tvqa.py) reads
        path = Path(path).with_suffix(".json")
        write_json(path, {str(r.uid): self.choice_index(p, r) for r, p in zip(records, predictions)})
        return path
