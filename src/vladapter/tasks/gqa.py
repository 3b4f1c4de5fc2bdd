"""GQA: "gqa: {question}" -> answer; exact-match accuracy."""

from __future__ import annotations

from vladapter.tasks.base import Task
from vladapter.utils.io import write_json


class GQATask(Task):
    name = "gqa"
    prefix = "gqa:"
    max_input_tokens = 20
    max_target_tokens = 8
    max_new_tokens = 10
    batch_scale = 100 / 60
    metric = "accuracy"

    def write_submission(self, path, predictions, records):
        path = path.with_suffix(".json")  # the official submission: [{questionId, prediction}]
        write_json(path, [{"questionId": r.uid, "prediction": p} for r, p in zip(records, predictions)])
        return path


TASK = GQATask()
