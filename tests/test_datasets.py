"""One spec per dataset (vladapter.data.datasets): what derives from it, what must exist
beside it, the schema's enums checked against the code, and the traps of adding one."""

from __future__ import annotations

import dataclasses
import re
from contextlib import contextmanager

import pytest
import yaml

from vladapter import experiments, petl
from vladapter.data import datasets as D
from vladapter.data import readers
from vladapter.data.records import DATASET_TASK, IMAGE_TASKS, VIDEO_TASKS
from vladapter.data.registry import REGISTRY
from vladapter.models.specs import ALIASES, available_lms
from vladapter.tasks import TASK_MODULES
from vladapter.core.config import EvaluateConfig, PretrainConfig, TrainConfig
from workflow_helpers import REPO

SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())


@contextmanager
def registered(spec: D.DatasetSpec):
    """``spec`` registered for the block only."""
    D.register(spec)
    try:
        yield spec
    finally:
        del D.DATASETS[spec.name]


def test_the_tables_derive_from_the_specs():
    assert IMAGE_TASKS == ("vqa", "gqa", "nlvr", "caption") and VIDEO_TASKS == ("tvqa", "how2qa", "tvc", "yc2c")
    assert DATASET_TASK == {d.name: d.task for d in D.DATASETS.values()}
    assert experiments.FEATURE_SOURCE["vqav2"] == "coco" and experiments.RAW_NEEDS["vqav2"] == ("vqav2", "coco")
    with pytest.raises(ValueError, match="already registered"):
        D.register(D.DatasetSpec("gqa", "gqa", "image"))


@pytest.mark.parametrize("name", list(D.DATASETS))
def test_every_dataset_has_a_reader_a_task_and_its_download(name):
    spec = D.DATASETS[name]
    assert name in readers.DATASETS
    assert spec.task in TASK_MODULES or spec.task == "pretrain"
    if spec.modality != "pretrain":
        assert name in REGISTRY  # the files `vladapter download <name>` fetches
        assert spec.label, "the report's column name"


def test_the_schema_enums_are_the_code_s():
    props = SCHEMA["properties"]
    for modality in experiments.MODALITIES:
        assert props["datasets"]["properties"][modality]["items"]["enum"] == list(D.datasets_of(modality))
    assert SCHEMA["$defs"]["preset"]["enum"] == list(petl.PRESETS)
    # lms: any checkpoint name or folder (checked when resolved), so no enum; every built-in
    # name and alias the code knows must pass the schema's pattern
    pattern = re.compile(props["lms"]["items"]["pattern"])
    assert "enum" not in props["lms"]["items"]
    assert all(pattern.search(lm) for lm in [*available_lms(), *ALIASES])
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(props["train"]["properties"]) == fields
    assert set(props["pretrain"]["properties"]) == {f.name for f in dataclasses.fields(PretrainConfig)}
    assert set(props["evaluate"]["properties"]) == {f.name for f in dataclasses.fields(EvaluateConfig)}
    assert set(SCHEMA["$defs"]["train_overrides"]["properties"]) <= fields


def test_a_new_task_is_never_unknown_to_the_toy_tokenizer_and_moves_no_word():
    from vladapter.models.tokenizer import build_tokenizer

    texts = ["what colour is the cube ?", "a red circle left of the square"]
    before = build_tokenizer(texts).get_vocab()
    with registered(D.DatasetSpec("toyref", "refexp", "image", "RefExp")):
        after = build_tokenizer(texts).get_vocab()
    assert all(after[w] == i for w, i in before.items())  # no existing word moved
    assert after["refexp"] == len(before)  # appended, not <unk>
    for task in {d.task for d in D.DATASETS.values()}:
        assert task in before


def test_the_paper_s_parameter_accounting_ignores_added_datasets():
    """`vladapter params` counts the paper's four tasks per modality, not the registered
    datasets (which a new dataset extends)."""
    import ast
    import inspect

    from vladapter.petl import accounting

    assert accounting.MODALITIES["image"][2] == ("vqa", "gqa", "nlvr", "caption")
    assert accounting.MODALITIES["video"][2] == ("tvqa", "how2qa", "tvc", "yc2c")
    imported = {n.module for n in ast.walk(ast.parse(inspect.getsource(accounting)))
                if isinstance(n, ast.ImportFrom)}
    assert not any(m.startswith("vladapter.data") for m in imported if m)


def test_the_toy_world_generates_every_dataset():
    from vladapter.data import toyworld

    # its own order: generation order decides the toy world's random streams
    assert set(toyworld.DATASETS) == set(D.DATASETS)
