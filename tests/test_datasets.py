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
        ref = props["datasets"]["properties"][modality]["items"]["$ref"].rsplit("/", 1)[-1]
        assert SCHEMA["$defs"][ref]["enum"] == list(D.datasets_of(modality))
    assert SCHEMA["$defs"]["preset"]["enum"] == list(petl.PRESETS)
    # lms: any checkpoint name or folder (checked when resolved), so no enum; every built-in
    # name and alias the code knows must pass the schema's pattern
    pattern = re.compile(props["lms"]["items"]["pattern"])
    assert "enum" not in props["lms"]["items"]
    assert all(pattern.search(lm) for lm in [*available_lms(), *ALIASES])
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(props["train"]["properties"]) == fields  # types and ranges: tests/test_declarations.py
    assert set(props["pretrain"]["properties"]) == {f.name for f in dataclasses.fields(PretrainConfig)}
    assert set(props["evaluate"]["properties"]) == {f.name for f in dataclasses.fields(EvaluateConfig)}
    assert set(props["train"]["properties"]["video"]["properties"]) <= fields


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


def test_workflow_rules_name_no_dataset():
    """The rules derive every dataset from the config and the specs (the pre-training split
    `pretrain` shares its name with the stage and the config section, so it is not checked)."""
    names = [d for d in D.DATASETS if D.DATASETS[d].modality != "pretrain"]
    for rules in sorted((REPO / "workflow" / "rules").glob("*.smk")) + [REPO / "Snakefile"]:
        text = rules.read_text()
        found = [n for n in names if re.search(rf"\b{n}\b", text)]
        assert not found, f"{rules.name} names {found}"


# --- a dataset is three files: a spec, a reader, a task module --------------------------------

SPEC = '''
from vladapter.data.datasets import DatasetSpec, register

register(DatasetSpec("shapes", "shapeqa", "image", "Shapes", reader="shapes_dataset.reader",
                     task_module="shapes_dataset.task", answer_prior=True))
'''
READER = '''
import json

from vladapter.data.records import Record


def read(raw, problems):
    """shapes/questions.json: {split: [{id, image, question, answer}]} -> {split: [Record]}."""
    doc = json.loads((raw / "shapes" / "questions.json").read_text())
    return {split: [Record(uid=q["id"], task="shapeqa", split=split, source="shapes", images=[q["image"]],
                           text=q["question"], targets={q["answer"]: 1.0}, references=[q["answer"]])
                    for q in items] for split, items in doc.items()}


def media(raw, record):
    return [raw / "shapes" / "images" / f"{image}.png" for image in record.images]
'''
TASK = '''
from vladapter.tasks.base import Task


class ShapeQATask(Task):
    name = "shapeqa"
    prefix = "shapeqa:"
    max_new_tokens = 4
    metric = "accuracy"


TASK = ShapeQATask()
'''


@pytest.mark.slow
def test_a_fourth_image_dataset_from_three_files_runs_end_to_end(tmp_path):
    """A dataset outside the package, written as a spec, a reader and a task module (and
    named in VLADAPTER_DATASETS): prepare -> features -> one training step -> evaluate."""
    import json
    import os
    import subprocess
    import sys

    import torch
    from PIL import Image
    from transformers import CLIPModel

    from vladapter.features.toy_clip import tiny_clip_config
    from workflow_helpers import BIN, snakemake_env

    package = tmp_path / "plugins" / "shapes_dataset"
    package.mkdir(parents=True)
    for name, text in {"__init__.py": "", "spec.py": SPEC, "reader.py": READER, "task.py": TASK}.items():
        (package / name).write_text(text)
    raw = tmp_path / "raw" / "shapes"
    (raw / "images").mkdir(parents=True)
    colours = {"red": (220, 30, 30), "blue": (30, 30, 220)}
    questions = {"train": [], "val": [], "test": []}
    for i in range(12):
        colour = list(colours)[i % 2]
        Image.new("RGB", (32, 32), colours[colour]).save(raw / "images" / f"img{i}.png")
        split = "train" if i < 8 else "val" if i < 10 else "test"
        questions[split].append({"id": f"q{i}", "image": f"img{i}", "question": "what colour is it?",
                                 "answer": colour})
    (raw / "questions.json").write_text(json.dumps(questions))
    torch.manual_seed(0)
    clip = tmp_path / "tinyclip"
    CLIPModel(tiny_clip_config(40, image_size=32, patch_size=8, width=64, layers=1, text_width=32, text_layers=1,
                               projection_dim=16)).save_pretrained(clip)
    env = snakemake_env()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(package.parent), env.get("PYTHONPATH")]))
    env["VLADAPTER_DATASETS"] = "shapes_dataset.spec"

    # the commands as a user runs them, in one interpreter (one start-up instead of five)
    common = ["--prepared", "prepared", "--features", "features", "--tokenizer", "tokenizer"]
    commands = [
        ["prepare", "--dataset", "shapes", "--raw", str(tmp_path / "raw"), "--out", "prepared"],
        ["extract-features", "--source", "shapes", "--input", str(raw / "images"), "--backbone", str(clip),
         "--output", "features/shapes.tinyclip.h5", "--workers", "0", "--device", "cpu"],
        ["build-tokenizer", "--prepared", "prepared", "--out", "tokenizer"],
        ["train", "--tasks", "shapeqa", "--steps", "1", "--batch-size", "4", "--n-image-tokens", "4", "--lm", "tiny-t5",
         "--method", "single_adapter", *common, "--out", "run"],
        ["evaluate", "--model", "run", "--out", "metrics.json", "--device", "cpu"],
    ]
    driver = ("import json, sys\nfrom vladapter.cli import main\nfor args in json.loads(sys.argv[1]):\n"
              "    rc = main(args)\n    if rc:\n        sys.exit(f'{args[0]} exited {rc}')\n")
    proc = subprocess.run([sys.executable, "-c", driver, json.dumps(commands)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "prepared" / "shapes" / "summary.json").read_text())["counts"] == \
        {"train": 8, "val": 2, "test": 2}
    assert (tmp_path / "run" / "adapter.safetensors").is_file()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["tasks"]["shapeqa"]["n"] == 2 and 0 <= metrics["tasks"]["shapeqa"]["accuracy"] <= 1
    assert list(metrics["scores"]) == ["shapeqa"]
    # without the plugin the dataset is unknown, with a clear error
    del env["VLADAPTER_DATASETS"]
    proc = subprocess.run([str(BIN / "vladapter"), "prepare", "--dataset", "shapes", "--raw", str(tmp_path / "raw")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "shapes" in proc.stderr
