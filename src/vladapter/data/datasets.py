"""One spec per dataset: the facts every stage derives from, registered in one place.

A dataset is three files: this spec (``register(DatasetSpec(...))``), its reader module
(``reader``: ``read(raw, problems)`` and ``media(raw, record)``) and its task module
(``task_module``: a ``TASK``). Derived from ``DATASETS``: the readers' and the tasks'
registries, the records' task tables, the workflow's feature sources, raw-data needs and
pre-training corpus, video captioning, the answer-prior baselines, the report's column
labels, the toy tokenizer's fixed words and the config schema's dataset enums
(generated: vladapter.core.schema). Real downloads are listed in data/registry.py.

Datasets outside this package register from their own spec module, named in the
environment variable ``VLADAPTER_DATASETS`` (comma-separated modules, imported when this
module is): docs/ARCHITECTURE.md, adding a dataset.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetSpec:
    name: str                  # in configs and data/ paths (data/prepared/<name>/)
    task: str                  # the task key of its records (vladapter.tasks)
    modality: str              # image | video | pretrain (the pre-training corpus)
    label: str = ""            # the benchmark's name in result tables (VQAv2)
    feature_source: str = ""   # the feature file its records refer to ("" = its own name)
    needs: tuple[str, ...] = ()  # other datasets whose raw files it reads (VQAv2: COCO's images)
    answer_prior: bool = False   # a QA task with majority / question-prior baselines
    reader: str = ""             # module[:function] of its reader ("" = vladapter.data.readers.<name>:read)
    task_module: str = ""        # module of its task's TASK ("" = vladapter.tasks.<task>)
    caption: bool = False        # a captioning task (video ones continue video pre-training)
    pretrain_corpus: bool = False  # real pre-training reads its raw files (COCO captions, VQAv2/GQA questions)

    @property
    def source(self) -> str:
        return self.feature_source or self.name

    @property
    def reader_function(self) -> tuple[str, str]:
        """(module, function) of its reader; ``media`` is the same module's."""
        module, _, function = (self.reader or f"vladapter.data.readers.{self.name}").partition(":")
        return module, function or "read"

    @property
    def task_path(self) -> str:
        return self.task_module or f"vladapter.tasks.{self.task}"


DATASETS: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    """Add a dataset (a name may be registered once)."""
    if spec.name in DATASETS:
        raise ValueError(f"dataset {spec.name!r} is already registered")
    if spec.modality not in ("image", "video", "pretrain"):
        raise ValueError(f"dataset {spec.name!r}: modality must be image, video or pretrain, got {spec.modality!r}")
    DATASETS[spec.name] = spec
    return spec


# in table order: the paper's image-text tasks, its video-text tasks, the pre-training corpus
register(DatasetSpec("vqav2", "vqa", "image", "VQAv2", feature_source="coco", needs=("coco",), answer_prior=True,
                     pretrain_corpus=True))
register(DatasetSpec("gqa", "gqa", "image", "GQA", answer_prior=True, pretrain_corpus=True))
register(DatasetSpec("nlvr2", "nlvr", "image", "NLVR2", answer_prior=True))
register(DatasetSpec("coco", "caption", "image", "COCO", caption=True, pretrain_corpus=True))
register(DatasetSpec("tvqa", "tvqa", "video", "TVQA", answer_prior=True))
register(DatasetSpec("how2qa", "how2qa", "video", "How2QA", answer_prior=True))
register(DatasetSpec("tvc", "tvc", "video", "TVC", reader="vladapter.data.readers.value_captions:read_tvc",
                     caption=True))
register(DatasetSpec("yc2c", "yc2c", "video", "YC2C", reader="vladapter.data.readers.value_captions:read_yc2c",
                     caption=True))
# the pre-training corpus: the toy world's own split, or built from the pretrain_corpus datasets
PRETRAIN = register(DatasetSpec("pretrain", "pretrain", "pretrain")).name


def tasks_of(modality: str) -> tuple[str, ...]:
    """Task keys of a modality's datasets, in registration order."""
    return tuple(d.task for d in DATASETS.values() if d.modality == modality)


def datasets_of(modality: str) -> tuple[str, ...]:
    return tuple(d.name for d in DATASETS.values() if d.modality == modality)


def spec_of_task(task: str) -> DatasetSpec | None:
    """The (first) dataset whose records have task key ``task``."""
    return next((d for d in DATASETS.values() if d.task == task), None)


def pretrain_corpus(image_datasets) -> list[str]:
    """The datasets real pre-training reads, of a config's image datasets (COCO's captions
    always: the corpus is built around them)."""
    always = [d.name for d in DATASETS.values() if d.pretrain_corpus and d.caption]
    return always + [d for d in image_datasets if DATASETS.get(d) and DATASETS[d].pretrain_corpus and d not in always]


def _register_plugins() -> None:
    """Import the spec modules named in ``VLADAPTER_DATASETS`` (each registers its datasets)."""
    for module in filter(None, (m.strip() for m in os.environ.get("VLADAPTER_DATASETS", "").split(","))):
        importlib.import_module(module)


_register_plugins()
