"""Answer-prior baselines: what a model scores without looking at the image or video.

- majority: the most frequent training answer, predicted for every test record
  (VQA score for VQAv2, exact match for GQA, accuracy for NLVR2 and video QA), scored by
  the task's own metric (vladapter.tasks).
- question prior: for each test question, the most frequent training answer of the same
  question text (the majority answer when the text is new): the best a blind model can
  do with the question alone.
Captioning has no answer prior here (CIDEr needs Java; not worth it for a baseline).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Sequence

from vladapter.data.datasets import DATASETS
from vladapter.data.records import DATASET_TASK, Record

QA_TASKS = tuple(d.task for d in DATASETS.values() if d.answer_prior)


def _score(task_key: str, predictions: list[str], records: Sequence[Record]) -> float:
    from vladapter.tasks import get_task

    task = get_task(task_key)
    return round(task.score(predictions, records)[task.metric], 2)


def majority_baseline(task_key: str, train: Sequence[Record], test: Sequence[Record]) -> float | None:
    """Score (percent) of predicting the training majority answer on every test record."""
    from vladapter.tasks import get_task

    labelled = [r for r in test if r.targets]
    if task_key not in QA_TASKS or not train or not labelled:
        return None
    task = get_task(task_key)
    return round(task.majority_baseline(train, labelled)[1][task.metric], 2)


def question_prior_baseline(task_key: str, train: Sequence[Record], test: Sequence[Record]) -> float | None:
    """Score (percent) of the most frequent training answer given the same question text."""
    from vladapter.tasks import get_task

    labelled = [r for r in test if r.targets]
    if task_key not in QA_TASKS or not train or not labelled:
        return None
    task = get_task(task_key)
    multiple_choice = task.candidates(labelled[0]) is not None and labelled[0].choices

    def answer_text(r: Record) -> str:
        return r.choices[r.answer_idx] if multiple_choice else task.answer(r)

    by_question: dict[str, Counter] = defaultdict(Counter)
    for r in train:
        by_question[r.text.lower()][answer_text(r)] += 1
    overall = Counter(answer_text(r) for r in train).most_common(1)[0][0]
    fallback = task.majority(train)
    predictions = []
    for r in labelled:
        counts = by_question.get(r.text.lower())
        guess = counts.most_common(1)[0][0] if counts else overall
        if multiple_choice:  # pick the choice that matches the prior answer, if offered
            predictions.append(f"a{r.choices.index(guess)}" if guess in r.choices else fallback)
        else:
            predictions.append(guess)
    return _score(task_key, predictions, labelled)


def dataset_stats(name: str, raw: str | Path) -> dict:
    """Counts per prepared split and the answer-prior baselines of one dataset."""
    from vladapter.data.readers import read_dataset

    splits = read_dataset(name, raw)
    task = DATASET_TASK[name]
    out: dict = {"counts": {s: len(rs) for s, rs in splits.items()}}
    if task in QA_TASKS:
        out["majority_baseline"] = majority_baseline(task, splits["train"], splits["test"])
        out["question_prior_baseline"] = question_prior_baseline(task, splits["train"], splits["test"])
        if task == "nlvr":
            labels = Counter(a for r in splits["train"] for a in r.targets)
            out["true_fraction_train"] = round(labels["true"] / max(1, sum(labels.values())), 3)
    return out
