"""One spec per dataset: the facts every stage derives from, registered in one place.

A dataset is registered with ``register(DatasetSpec(...))`` (the way peft registers its
methods); records' task tables, the workflow's feature sources and raw-data needs, the
answer-prior baselines, the report's column labels and the toy tokenizer's fixed words are
derived from ``DATASETS``. What implements a dataset lives beside it, one entry each, and
tests check that every registered dataset has them: its reader (data/readers), its
download files (data/registry.py, real data), its task (vladapter.tasks, by task key) and
the schema's dataset enums (workflow/schemas/config.schema.yaml). docs/ARCHITECTURE.md:
adding a dataset.
"""

from __future__ import annotations

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

    @property
    def source(self) -> str:
        return self.feature_source or self.name


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
register(DatasetSpec("vqav2", "vqa", "image", "VQAv2", feature_source="coco", needs=("coco",), answer_prior=True))
register(DatasetSpec("gqa", "gqa", "image", "GQA", answer_prior=True))
register(DatasetSpec("nlvr2", "nlvr", "image", "NLVR2", answer_prior=True))
register(DatasetSpec("coco", "caption", "image", "COCO"))
register(DatasetSpec("tvqa", "tvqa", "video", "TVQA", answer_prior=True))
register(DatasetSpec("how2qa", "how2qa", "video", "How2QA", answer_prior=True))
register(DatasetSpec("tvc", "tvc", "video", "TVC"))
register(DatasetSpec("yc2c", "yc2c", "video", "YC2C"))
register(DatasetSpec("pretrain", "pretrain", "pretrain"))


def tasks_of(modality: str) -> tuple[str, ...]:
    """Task keys of a modality's datasets, in registration order."""
    return tuple(d.task for d in DATASETS.values() if d.modality == modality)


def datasets_of(modality: str) -> tuple[str, ...]:
    return tuple(d.name for d in DATASETS.values() if d.modality == modality)
