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
        """The Record of a prepared line; ValueError naming the field when a field is unknown,
        a required one (REQUIRED) is missing, or a value has the wrong type (FIELD_TYPES)."""
        if not isinstance(d, dict):
            raise ValueError(f"a record is a JSON object, not {type(d).__name__}")
        unknown = sorted(set(d) - set(FIELD_TYPES))
        if unknown:
            raise ValueError(f"unknown fields {unknown} (known: {', '.join(FIELD_TYPES)})")
        missing = [name for name in REQUIRED if name not in d]
        if missing:
            raise ValueError(f"missing fields {missing}")
        for name, value in d.items():
            check, expected = FIELD_TYPES[name]
            if not check(value):
                raise ValueError(f"field {name!r} is {json_type(value)} {_short(value)}, expected {expected}")
        return cls(**d)


# Fields every prepared record has (Record.to_dict writes all of them; these carry meaning
# even when empty, so a line without one was not written by `vladapter prepare`).
REQUIRED = ("uid", "task", "split", "source", "images", "video", "text", "targets")


def _is_str(v) -> bool:
    return isinstance(v, str)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _str_list(v) -> bool:
    return isinstance(v, list) and all(map(_is_str, v))


# field -> (check, what it should be): the JSON types of Record's fields
FIELD_TYPES = {
    "uid": (lambda v: _is_str(v) and v != "", "a non-empty string"),
    "task": (lambda v: v in DATASET_TASK.values(), f"one of {', '.join(DATASET_TASK.values())}"),
    "split": (lambda v: _is_str(v) and v != "", "a non-empty string"),
    "source": (lambda v: _is_str(v) and v != "", "a non-empty string"),
    "images": (_str_list, "a list of feature ids (strings)"),
    "video": (lambda v: v is None or _is_str(v), "a feature id (string) or null"),
    "span": (lambda v: v is None or (isinstance(v, list) and len(v) == 2 and all(map(_is_number, v))),
             "[start, end] in seconds or null"),
    "text": (_is_str, "a string"),
    "context": (_is_str, "a string"),
    "targets": (lambda v: isinstance(v, dict) and all(map(_is_number, v.values())), "an object answer -> score"),
    "references": (_str_list, "a list of strings"),
    "choices": (_str_list, "a list of strings"),
    "answer_idx": (lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)), "an integer or null"),
    "group": (lambda v: v is None or _is_str(v), "a string or null"),
    "meta": (lambda v: isinstance(v, dict), "an object"),
}


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type (what the user sees in the file)."""
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
             dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _short(value: Any) -> str:
    text = repr(value)
    return f"({text[:40]}...)" if len(text) > 43 else f"({text})"
