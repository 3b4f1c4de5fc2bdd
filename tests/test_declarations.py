"""Declared once: a preset in the registry, a config key in its dataclass. The schema's
sections, the docs' preset table and ``--help`` are derived from those declarations, and
tests fail when a derived copy drifts (types and ranges, not only names)."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from vladapter.config_schema import config_problems
from vladapter.core import schema
from vladapter.core.config import TRAIN_VIDEO, TrainConfig, add_config_flags, key, resolve_section
from vladapter.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def checked_in() -> dict:
    return yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))


def test_the_checked_in_schema_is_generated_from_the_code():
    assert schema.drift(checked_in()) == []
    proc = subprocess.run([sys.executable, "workflow/scripts/config_schema.py", "--check"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("where, plant, named", [
    (("train", "batch_size"), {"type": "number", "minimum": 1}, "train.batch_size"),         # a type
    (("train", "warmup_ratio"), {"type": "number", "minimum": 0, "maximum": 2}, "train.warmup_ratio"),  # a range
    (("evaluate", "precision"), {"enum": ["auto", "fp32"]}, "evaluate.precision"),          # choices
    (("train", "video", "dropout"), {"type": "number"}, "train.video.dropout"),              # a sub-section
])
def test_drift_names_a_planted_mismatch(where, plant, named, tmp_path):
    doc = checked_in()
    props = doc["properties"][where[0]]
    for part in where[1:-1]:
        props = props["properties"][part]
    props["properties"][where[-1]] = {**props["properties"][where[-1]], **plant}
    found = schema.drift(doc)
    assert len(found) == 1 and found[0].startswith(named + ":"), found
    if where != ("train", "batch_size"):
        return
    # the script says so too, and exits 1
    planted = tmp_path / "config.schema.yaml"
    planted.write_text(yaml.safe_dump(doc, sort_keys=False))
    proc = subprocess.run([sys.executable, "workflow/scripts/config_schema.py", "--check", "--schema", str(planted)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and named in proc.stderr and "fix: python workflow/scripts/config_schema.py" \
        in proc.stderr


def test_drift_names_a_type_changed_in_the_code():
    @dataclass
    class Changed(TrainConfig):
        batch_size: float = key(32.0, "base batch", exclusive_minimum=0, also_in=(TRAIN_VIDEO,), required=("train",))

    found = schema.drift(checked_in(), schema.generated(sections={**schema.SECTIONS, "train": Changed}))
    assert any(f.startswith("train.batch_size:") for f in found) and any(
        f.startswith("train.video.batch_size:") for f in found)


def copy_of_schema(tmp_path: Path) -> Path:
    path = tmp_path / "config.schema.yaml"
    shutil.copy(SCHEMA, path)
    return path


def default_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_a_new_config_key_is_declared_in_one_place(tmp_path):
    """One field: the schema (after regenerating), --help, the job's validation and the
    video sub-section all know it, with its type, range and description."""
    @dataclass
    class WithKey(TrainConfig):
        label_smoothing: float = key(0.0, "label smoothing of the token loss", minimum=0, exclusive_maximum=1,
                                     also_in=(TRAIN_VIDEO,))

    path = copy_of_schema(tmp_path)
    assert schema.write(path, schema.generated(sections={**schema.SECTIONS, "train": WithKey}))
    prop = yaml.safe_load(path.read_text())["properties"]["train"]["properties"]["label_smoothing"]
    assert prop == {"type": "number", "minimum": 0, "exclusiveMaximum": 1,
                    "description": "label smoothing of the token loss (default: 0.0)"}
    config = default_config()
    config["train"]["label_smoothing"] = 0.1
    config["train"]["video"] = {"label_smoothing": 0.2}
    assert config_problems(copy.deepcopy(config), path) is None
    assert "label_smoothing" in config_problems(copy.deepcopy(config), SCHEMA)  # the old schema refuses it
    config["train"]["label_smoothing"] = 1.5
    assert "train.label_smoothing" in config_problems(copy.deepcopy(config), path)
    config["train"]["label_smoothing"] = "much"
    assert "train.label_smoothing" in config_problems(copy.deepcopy(config), path)
    # the command's flag and its help, and the job's own check
    parser = argparse.ArgumentParser()
    add_config_flags(parser, WithKey)
    assert parser.parse_args(["--label-smoothing", "0.1"]).label_smoothing == 0.1
    assert "label smoothing of the token loss (default: 0.0)" in parser.format_help().replace("\n", " ").replace(
        "  ", " ")
    assert resolve_section({"label_smoothing": 0.1}, "train", WithKey).label_smoothing == 0.1
    with pytest.raises(ConfigError, match=r"train.label_smoothing: 1.5 is outside the allowed range \(>= 0 and < 1\)"):
        resolve_section({"label_smoothing": 1.5}, "train", WithKey)
    with pytest.raises(ConfigError, match="train.label_smoothing: 'much' is not number"):
        resolve_section({"label_smoothing": "much"}, "train", WithKey)
    # the checked-in schema stays in sync only when it is regenerated
    assert schema.drift(checked_in(), schema.generated(sections={**schema.SECTIONS, "train": WithKey}))


@pytest.mark.parametrize("value, named", [
    (("warmup_ratio", 2), "train.warmup_ratio: 2 is outside"), (("adam_eps", 0), "train.adam_eps: 0 is outside"),
    (("precision", "fp8"), "train.precision must be one of auto, fp32, bf16, fp16"),
    (("batch_size", 0), "train.batch_size: 0 is outside"), (("seeds", [1, 1]), "train.seeds must list distinct seeds"),
    (("num_workers", -1), "train.num_workers: -1 is outside"),
    (("tf32", "maybe"), "train.tf32: 'maybe' is not boolean"),
])
def test_the_job_checks_the_declared_range_the_schema_checks(value, named):
    name, bad = value
    with pytest.raises(ConfigError, match=named):
        resolve_section({name: bad}, "train", TrainConfig)
    config = default_config()
    config["train"][name] = bad
    assert f"train.{name}" in config_problems(config, SCHEMA)


def test_a_new_preset_is_declared_in_one_place(tmp_path, monkeypatch):
    """One Preset line: the schema's enum (after regenerating), petl.apply, the parameter
    table; the docs table test then names it until docs/petl.md shows it."""
    from vladapter import petl
    from vladapter.petl import registry
    from vladapter.petl.accounting import parameter_table
    from vladapter.petl.lora import LoRAConfig

    throwaway = registry.Preset("tiny_lora", "LoRA rank 2", (LoRAConfig(rank=2),), ("visual", "bias"))
    monkeypatch.setitem(registry.PRESETS, throwaway.name, throwaway)
    path = copy_of_schema(tmp_path)
    assert schema.write(path)
    config = default_config()
    config["methods"]["image"] = ["single_adapter", "tiny_lora"]
    config["train"]["lr"] = {"default": 1e-3, "tiny_lora": 5e-3}
    assert config_problems(copy.deepcopy(config), path) is None
    assert "tiny_lora" in config_problems(copy.deepcopy(config), SCHEMA)
    row, = parameter_table("tiny-t5", "image", presets=["tiny_lora"])
    assert row["method"] == "tiny_lora" and 0 < row["percent"] < 100
    assert throwaway.mergeable and throwaway.task_prefix and "| tiny_lora | LoRA rank 2 | lora (shared) |" in \
        registry.markdown_table()
    assert docs_table_problem() is not None and "tiny_lora" in docs_table_problem()
    assert petl.PRESETS["tiny_lora"] is throwaway


def docs_table_problem() -> str | None:
    from vladapter.petl.registry import markdown_table

    text = (REPO / "docs" / "petl.md").read_text()
    table = markdown_table()
    if table in text:
        return None
    return "docs/petl.md's preset table is not the registry's; replace it with:\n" + table


def test_the_docs_preset_table_is_the_registry_s():
    assert docs_table_problem() is None


def test_workflow_only_keys_are_no_flags_and_no_job_settings():
    from vladapter.core.config import WORKFLOW_KEYS, PretrainConfig, key_info, settings_of

    assert set(WORKFLOW_KEYS) == {"video", "matching", "enabled", "compare"}
    parser = argparse.ArgumentParser()
    add_config_flags(parser, PretrainConfig)
    flags = {a.dest for a in parser._actions}
    assert not flags & set(WORKFLOW_KEYS) and "method_overrides" not in flags and "objectives" in flags
    assert not set(settings_of(PretrainConfig())) & set(WORKFLOW_KEYS)
    assert all(key_info(PretrainConfig, f.name).get("doc") for f in dataclasses.fields(PretrainConfig))
