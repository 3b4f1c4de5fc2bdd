"""The one internal record type every reader produces.

Readers of the published formats (VQAv2, GQA, NLVR2, COCO Karpathy, TVQA, How2QA, TVC,
YouCook2 captions) turn each question / statement / caption into a ``Record``. Prepared
splits are JSON lines of ``Record.to_dict()`` at ``data/prepared/<dataset>/<split>.jsonl``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from vladapter.data.datasets import DATASETS, tasks_of

# task keys used by models, PETL task routing, samplers and metrics (vladapter.data.datasets)
IMAGE_TASKS = tasks_of("image")
VIDEO_TASKS = tasks_of("video")

# dataset name -> task key
DATASET_TASK = {d.name: d.task for d in DATASETS.values()}


@dataclass
class Record:
    """One example.

    uid:        unique id within the dataset (question_id, identifier, caption id ...)
    task:       task key (see IMAGE_TASKS / VIDEO_TASKS)
    split:      split name as the dataset calls it (train, val, test, dev, test1 ...)
    source:     feature source the ids below refer to (``data/features/<source>.<backbone>.h5``)
    images:     feature ids of the images (one, or two for NLVR2: img0, img1)
    video:      feature id of the video (frames HDF5 / video feature file), or None
    span:       [start, end] seconds inside the video, or None for the whole video
    text:       the question / statement (no task prefix; tasks/ adds prefixes)
    context:    extra text: subtitles for video tasks, else ""
    targets:    answer -> score (VQA soft scores, GQA {answer: 1}, NLVR2 {"true": 1});
                for captioning, each reference caption -> 1.0
    references: what the metric compares with: VQA's 10 human answers, caption references
    choices:    multiple-choice answers (TVQA/How2QA: 5), else []
    answer_idx: index of the correct choice, or None
    group:      consistency group (NLVR2: the sentence), or None
    meta:       anything else worth keeping (answer_type, question_type, image file ...)
    """

    uid: str
    task: str
    split: str
    source: str
    images: list[str] = field(default_factory=list)
    video: str | None = None
    span: list[float] | None = None
    text: str = ""
    context: str = ""
    targets: dict[str, float] = field(default_factory=dict)
    references: list[str] = field(default_factory=list)
    choices: list[str] = field(default_factory=list)
    answer_idx: int | None = None
    group: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Record":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise KeyError(f"unknown Record fields: {sorted(unknown)}")
        return cls(**d)
