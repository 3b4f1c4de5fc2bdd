"""Tasks: one module per task (text format, training target, metric, submission format).

``get_task("vqa")`` returns the task object; training, pre-training and evaluation all
use it, so a task's behaviour is defined once.
"""

from __future__ import annotations

import importlib

from vladapter.tasks.base import Example, Task

from vladapter.data.datasets import DATASETS

# task key -> module defining TASK: each registered dataset's (vladapter.data.datasets)
TASK_MODULES = {d.task: d.task_path for d in DATASETS.values() if d.modality != "pretrain"}


def get_task(name: str, **options) -> Task:
    """The task object for a task key, under run ``options`` (``qa_target``: the video QA
    target, index | text); ConfigError names the known keys otherwise."""
    if name not in TASK_MODULES:
        from vladapter.errors import ConfigError

        raise ConfigError(f"unknown task {name!r} (known: {', '.join(TASK_MODULES)})")
    return importlib.import_module(TASK_MODULES[name]).TASK.with_options(**options)


__all__ = ["Example", "Task", "TASK_MODULES", "get_task"]
