"""VQAv2: "vqa: {question}" -> one answer sampled by its soft score, loss x score."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from vladapter.data.records import Record
from vladapter.tasks.base import Example, Task, numeric_id
from vladapter.utils.io import write_json


class VQATask(Task):
    name = "vqa"
    prefix = "vqa:"
    max_input_tokens = 20
    max_target_tokens = 8
    max_new_tokens = 10
    metric = "vqa_score"

    def __init__(self, evaluator: str = "official"):
        self.evaluator = evaluator  # how predictions match the human answers (metrics.VQA_EVALUATORS)

    def with_options(self, vqa_evaluator: str | None = None, **_) -> "VQATask":
        return self if vqa_evaluator in (None, self.evaluator) else VQATask(vqa_evaluator)

    def example(self, record: Record, rng: np.random.Generator, prefix: bool) -> Example:
        answers = list(record.targets)
        if not answers:
            raise ValueError(f"record {record.uid} has no targets")
        scores = np.array([record.targets[a] for a in answers], dtype=np.float64)
        if scores.sum() <= 0:  # only zero-score answers: train on the first, unweighted
            return Example(self.source_text(record, prefix), answers[0], 1.0)
        i = int(rng.choice(len(answers), p=scores / scores.sum()))
        return Example(self.source_text(record, prefix), answers[i], float(scores[i]))

    def score(self, predictions: Sequence[str], records: Sequence[Record]) -> dict[str, float]:
        """VQA score with the 10 human answers (Record.references), matched as the
        official evaluation does (or VL-T5's evaluator: option ``vqa_evaluator``).

        Records without human answers (the Karpathy-split variant keeps only soft
        scores) are scored by the soft score of the normalised prediction, as VL-T5 does.
        """
        from vladapter.data.answers import normalize_answer
        from vladapter.metrics import vqa_accuracy

        total = 0.0
        for pred, record in zip(predictions, records, strict=True):
            if record.references:
                total += vqa_accuracy(pred, record.references, self.evaluator)
            else:
                soft = {normalize_answer(a): s for a, s in record.targets.items()}
                total += soft.get(normalize_answer(pred), 0.0)
        return {"vqa_score": 100.0 * total / max(len(records), 1)}

    def write_submission(self, path, predictions, records):
        path = path.with_suffix(".json")
        write_json(path, [{"question_id": numeric_id(r.uid), "answer": p} for r, p in zip(records, predictions)])
        return path


TASK = VQATask()
