"""What a task is: how a Record becomes model text, what it is trained on, how it is scored.

Training, pre-training and evaluation all go through these objects, so a task's text
format, target and metric live in exactly one place (its module in this package).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from vladapter.data.records import Record
from vladapter.utils.io import write_json


@dataclass(frozen=True)
class Example:
    """One training example: encoder text, decoder target, loss weight."""

    source: str
    target: str
    weight: float = 1.0


def scaled_batch_size(base: int, scale: float) -> int:
    """round(base x scale), at least 1: a task's batch size from the base batch size."""
    return max(1, round(base * scale))


class Task:
    """Base class. Subclasses set the class attributes and override what differs.

    Decisions are made either by generation (``candidates`` is None: decode up to
    ``max_new_tokens``) or by scoring fixed candidate targets (``candidates(record)``
    returns them, the highest-likelihood one wins: NLVR2 true/false, video QA a0..a4).
    """

    name: str = ""                # task key (Record.task; routes per-task PETL modules)
    prefix: str = ""              # "vqa:"; used when the method needs task prefixes
    max_input_tokens: int = 32    # encoder text length limit
    max_target_tokens: int = 8    # training target length limit
    max_new_tokens: int = 8       # decoding limit
    num_beams: int = 1            # default beams for generation
    batch_scale: float = 1.0      # per-task batch size = round(base batch x scale)
    metric: str = "accuracy"      # the headline metric key in `score`'s result
    modality: str = "image"       # image | video

    def batch_size(self, base: int) -> int:
        """This task's global batch size for the base batch size ``base``."""
        return scaled_batch_size(base, self.batch_scale)

    # --- text -------------------------------------------------------------------------
    def source_text(self, record: Record, prefix: bool) -> str:
        """Encoder input text (with the task prefix when ``prefix``)."""
        return self._with_prefix(record.text, prefix)

    def example(self, record: Record, rng: np.random.Generator, prefix: bool) -> Example:
        """The training example for ``record`` (``rng`` picks among several targets)."""
        return Example(self.source_text(record, prefix), self.answer(record))

    def answer(self, record: Record) -> str:
        """The single best target (highest score; ties: first)."""
        if not record.targets:
            raise ValueError(f"record {record.uid} has no targets")
        return max(record.targets.items(), key=lambda kv: kv[1])[0]

    def candidates(self, record: Record) -> list[str] | None:
        """Fixed candidate targets to score, or None to decide by generation."""
        return None

    def with_options(self, **options) -> "Task":
        """This task under run options (train config keys such as ``qa_target``); tasks
        that no option concerns return themselves."""
        return self

    def _with_prefix(self, text: str, prefix: bool) -> str:
        return f"{self.prefix} {text}".strip() if prefix else text

    # --- evaluation -------------------------------------------------------------------
    def has_label(self, record: Record) -> bool:
        """Whether ``record`` carries what the metric compares with (public test splits
        withhold it: such records can be predicted and submitted, not scored)."""
        return bool(record.targets or record.references)

    def score(self, predictions: Sequence[str], records: Sequence[Record]) -> dict[str, float]:
        """Metrics (percent) of ``predictions[i]`` for ``records[i]``."""
        from vladapter.metrics import exact_match

        return {"accuracy": exact_match(predictions, [self.answer(r) for r in records])}

    def majority(self, train_records: Sequence[Record]) -> str:
        """The most frequent best answer in the training records (the baseline's answer)."""
        return self._most_frequent(self.answer(r) for r in train_records)

    def majority_baseline(self, train_records: Sequence[Record],
                          records: Sequence[Record]) -> tuple[str, dict[str, float]]:
        """The majority-answer baseline: the training records' majority answer, predicted
        for each of ``records``, and its metrics (the toy world's statistics; `vladapter
        evaluate --majority` predicts the same ``majority`` answer and scores it the way it
        scores a model, submission-only splits included)."""
        answer = self.majority(train_records)
        return answer, self.score([answer] * len(records), records)

    def _most_frequent(self, answers) -> str:
        """The most frequent of ``answers`` (ties: the largest string)."""
        counts = Counter(answers)
        if not counts:
            raise ValueError(f"{self.name}: no training records for the majority answer")
        return max(counts.items(), key=lambda kv: (kv[1], kv[0]))[0]

    def write_submission(self, path: Path, predictions: Sequence[str], records: Sequence[Record]) -> Path:
        """Write predictions in the benchmark's submission format; returns the file."""
        path = Path(path).with_suffix(".json")
        write_json(path, [{"uid": r.uid, "prediction": p} for r, p in zip(records, predictions)])
        return path


def numeric_id(uid: str):
    """``uid`` as an int when it is one (benchmarks' ids are ints in their JSON)."""
    try:
        return int(uid)
    except (TypeError, ValueError):
        return uid
