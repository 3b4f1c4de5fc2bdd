"""Configuration of `vladapter train`, `pretrain` and `evaluate`.

Each command reads its own section of config/config.yaml (``train``, ``pretrain``,
``evaluate``); command-line flags override single keys. The dataclasses below are the
schema of those sections: every key, its default, and what it means. Unknown keys are a
ConfigError that names them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from vladapter.data.records import IMAGE_TASKS, VIDEO_TASKS
from vladapter.errors import ConfigError
from vladapter.metrics import VQA_EVALUATORS
from vladapter.tasks.videoqa import QA_TARGETS

# the paper's learning rates (image-text): full FT 1e-4, multiple/half-shared adapters 3e-4, others 1e-3
PAPER_LR = {"full_finetuning": 1e-4, "multiple_adapters": 3e-4, "half_shared_adapters": 3e-4, "default": 1e-3}


MAX_LR = 1e30
SPLITS = ("train", "val", "test")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# the sub-sections a key may also appear in (workflow/schemas/config.schema.yaml is generated
# from these declarations: vladapter.core.schema)
TRAIN_VIDEO, PRETRAIN_VIDEO, MATCHING = "train.video", "pretrain.video", "pretrain.matching"
OVERRIDES = (TRAIN_VIDEO, PRETRAIN_VIDEO, MATCHING)


def key(default: Any = dataclasses.MISSING, doc: str = "", *, factory: Any = None, minimum: float | None = None,
        maximum: float | None = None, exclusive_minimum: float | None = None,
        exclusive_maximum: float | None = None, choices: tuple | None = None, items: dict | None = None,
        min_items: int | None = None, unique: bool = False, ref: str | None = None, workflow: bool = False,
        also_in: tuple[str, ...] = (), required: tuple[str, ...] = ()) -> Any:
    """A config key, declared once: its default, what it means (``--help``, the schema's
    description) and what values it takes (the schema's type comes from the annotation;
    range, choices and list constraints from here; ``validate`` checks the same).

    ref:      the schema's ``$defs`` entry for its values (``preset``, ``lr``), instead of
              the annotation's type
    workflow: read by the workflow only (which stages run, which runs exist): no command
              flag, never part of a job's settings
    also_in:  the sub-sections that may override it (``train.video``, ``pretrain.video``,
              ``pretrain.matching``)
    required: the sections a config file must give it in (``train``, ``pretrain.matching``)
    """
    meta = {"doc": doc, "minimum": minimum, "maximum": maximum, "exclusive_minimum": exclusive_minimum,
            "exclusive_maximum": exclusive_maximum, "choices": choices, "items": items, "min_items": min_items,
            "unique": unique, "ref": ref, "workflow": workflow, "also_in": also_in, "required": required}
    meta = {k: v for k, v in meta.items() if v is not None and v is not False and v != ()}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Section ``train``: multi-task training of one PETL method. Every key is declared once,
    below: its default, its meaning and its values (``vladapter train --help`` and the
    config schema are generated from these declarations)."""

    lm: str = key("tiny-t5", "language backbone: tiny-t5 | tiny-bart, or a checkpoint (hub id in any spelling, "
                  "or folder)")
    method: str = key("single_adapter", "PETL preset (vladapter.petl.PRESETS), e.g. single_adapter, "
                      "full_finetuning", ref="preset")
    method_overrides: dict[str, Any] = key(doc="keyword overrides passed to petl.apply (e.g. {reduction_factor: 4})",
                                           factory=dict)
    tasks: list[str] = key(doc="task keys trained together (image: vqa gqa nlvr caption; video: tvqa how2qa tvc "
                           "yc2c)", factory=lambda: list(IMAGE_TASKS))
    init: str | None = key(None, "directory of a VL-pre-trained backbone (VLModel.save_pretrained), or null")
    init_per_seed: bool = key(False, "init holds one backbone per seed (<init>/seed-<n>, pre-trained with that "
                              "seed): seed n of the run starts from its own (seeds that cover VL pre-training)")
    random_init: bool = key(False, "build lm from its config with fresh weights even when it names a checkpoint")
    tokenizer: str = key("models/tokenizer", "tokenizer directory or HF name")
    prepared: str = key("data/prepared", "prepared records folder (<prepared>/<dataset>/<split>.jsonl)")
    features: str = key("data/features", "feature folder (<features>/<source>.<backbone>.h5)")
    backbone: str | None = key(None, "visual backbone name in the feature file names (null = the source's only "
                               "file)")
    split: str = key("train", "training split", choices=SPLITS)
    n_image_tokens: int = key(16, "visual tokens per image (grid adaptive-max-pooled; a square number)", minimum=1)
    n_video_frames: int = key(16, "frame tokens per video clip", minimum=1)
    max_examples: int | None = key(None, "at most this many records per task (null = all); for quick runs",
                                   minimum=1)
    steps: Any = key(None, "optimiser steps of the run (null = epochs decide); a number, or per method as lr "
                     "({default: 300, lst: 1200})", ref="steps", also_in=OVERRIDES)
    epochs: float | None = key(10, "passes over the data when steps is null (an epoch covers every task's data "
                               "once)", exclusive_minimum=0, also_in=OVERRIDES)
    batch_size: Any = key(32, "base batch B; task t uses round(B x its batch_scale) (VQA B, GQA 100/60 B, ...); "
                          "a number, or per method as lr", ref="batch_size", minimum=1, also_in=OVERRIDES,
                          required=("train",))
    grad_accum: int = key(1, "micro-batches per optimiser step", minimum=1)
    lr: Any = key(doc='learning rate; a number, or a mapping method -> lr with a "default" entry, where a '
                  "method's entry may map LM -> lr ({default: 1e-3, t5-base: 3e-4}: its recipe per LM)",
                  factory=lambda: dict(PAPER_LR), ref="lr", also_in=OVERRIDES, required=("train",))
    warmup_ratio: float = key(0.1, "linear warmup over this share of the steps, then linear decay to 0",
                              minimum=0, maximum=1)
    weight_decay: Any = key(0.01, "AdamW weight decay (never on biases and LayerNorm weights); a number, or per "
                            "method as lr (LST's recipe: 0.03)", ref="weight_decay")
    adam_eps: float = key(1e-6, "AdamW epsilon", exclusive_minimum=0, maximum=1)
    grad_clip: float = key(5.0, "gradient-norm clipping (0 = off)", minimum=0)
    dropout: float | None = key(None, "dropout probability of the backbone (null = the model config's)",
                                minimum=0, exclusive_maximum=1, also_in=OVERRIDES)
    seed: int = key(0, "seed of initialisation, data order and sampled targets", minimum=0)
    seeds: list[int] | None = key(None, "train the run once per seed, in one process, into <out>/seed-<n> (null: "
                                  "once, with seed, into <out>); the report gives mean ± sd over them",
                                  items={"minimum": 0}, min_items=1, unique=True, also_in=(TRAIN_VIDEO,))
    num_workers: int = key(0, "DataLoader worker processes", minimum=0)
    checkpoint_every: int = key(200, "write a resumable checkpoint every this many steps (0 = only at the end)",
                                minimum=0)
    keep_checkpoints: int = key(1, "how many step checkpoints to keep", minimum=1)
    log_every: int = key(10, "log loss and lr to dvclive every this many steps", minimum=1)
    precision: str = key("auto", "auto (bf16 autocast on GPU, fp16 + GradScaler on GPUs without bf16, fp32 on "
                         "CPU) | fp32 | bf16 | fp16", choices=PRECISIONS)
    tf32: bool = key(True, "TF32 matmuls and convolutions on GPU (float32 range, lower mantissa)")
    fused_adamw: bool = key(True, "one fused AdamW kernel on GPU")
    find_unused_parameters: Any = key("auto", "DDP's search for parameters without a gradient: auto (only when "
                                      "the method has task-specific modules) | true | false",
                                      choices=("auto", True, False))
    grad_checkpointing: bool = key(False, "recompute the language model's activations in the backward pass (less "
                                   "memory, ~30% slower)")
    compile: bool = key(False, "torch.compile the model (start-up cost; faster steps on GPU)")
    qa_target: str = key("index", 'video QA target: index ("a{idx}", the paper\'s) | text (the correct choice\'s '
                         "words)", choices=QA_TARGETS, also_in=(TRAIN_VIDEO,))
    video: dict[str, Any] = key(doc="overrides of the keys above for video-text runs (all tasks video)",
                                factory=dict, workflow=True)

    def learning_rate(self) -> float:
        """The lr of this run's method (``lr`` may be one number or a per-method mapping)."""
        return float(per_method(self.lr, self.method, self.lm, "lr"))

    def run_steps(self) -> int | None:
        """The optimiser steps of this run's method (``steps``: null, a number or a per-method
        mapping); None: ``epochs`` decide."""
        value = self.steps
        if isinstance(value, dict):
            value = per_method(value, self.method, self.lm, "steps")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"train.steps of {self.method}: {value!r} must be a whole number >= 1 (or null: epochs "
                              "decide)")
        return value

    def decay(self) -> float:
        """The AdamW weight decay of this run's method (a number or a per-method mapping)."""
        return float(per_method(self.weight_decay, self.method, self.lm, "weight_decay"))

    def base_batch_size(self) -> int:
        """The base batch of this run's method (``batch_size``: a number or a per-method mapping)."""
        value = per_method(self.batch_size, self.method, self.lm, "batch_size")
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"train.batch_size of {self.method}: {value!r} is not a whole number")
        if value < 1:
            raise ConfigError(f"train.batch_size: {value} is outside the allowed range (>= 1)")
        return value

    def validate(self, section: str = "train") -> None:
        if isinstance(self.find_unused_parameters, str) and self.find_unused_parameters != "auto":
            self.find_unused_parameters = {"true": True, "false": False}.get(self.find_unused_parameters.lower(),
                                                                             self.find_unused_parameters)
        if self.qa_target not in QA_TARGETS:
            raise ConfigError(f"{section}.qa_target must be {' or '.join(QA_TARGETS)}, got {self.qa_target!r}")
        if not (self.run_steps() or 0) > 0 and not (self.epochs or 0) > 0:
            raise ConfigError(f"{section}: set steps > 0 or epochs > 0")
        if not self.tasks:
            raise ConfigError(f"{section}.tasks is empty")
        check_tasks(self.tasks, f"{section}.tasks", allowed=("pretrain",))
        check_n_image_tokens(self.n_image_tokens, f"{section}.n_image_tokens")
        if self.seeds is not None:
            try:
                self.seeds = [int(s) for s in self.seeds]
            except (TypeError, ValueError):
                raise ConfigError(f"{section}.seeds must be a list of integers, got {self.seeds!r}") from None
            if not self.seeds or len(set(self.seeds)) != len(self.seeds):
                raise ConfigError(f"{section}.seeds must list distinct seeds, got {self.seeds!r}")
        self.base_batch_size()
        decay = self.decay()
        if not (math.isfinite(decay) and decay >= 0):
            raise ConfigError(f"{section}.weight_decay of {self.method}: {decay} must be a finite number >= 0, e.g. 0.01")
        lr = self.learning_rate()
        if not (math.isfinite(lr) and 0 < lr < MAX_LR):
            raise ConfigError(f"{section}.lr of {self.method}: {lr} is not a learning rate (a finite number above 0 "
                              f"and below {MAX_LR:g}, where AdamW's step overflows float32), e.g. 1e-3")
        check_values(self, section)

    def task_options(self) -> dict[str, Any]:
        """Options of this run's tasks (vladapter.tasks.get_task keywords)."""
        return task_options(dataclasses.asdict(self))


def per_method(table: Any, method: str, lm: str, key: str) -> Any:
    """A value of a per-method setting (``lr``, ``batch_size``): a number, or a mapping
    method -> value with a ``default`` entry, where a method's value may map LM (the last
    part of its name: ``t5-base``) -> value with a ``default`` too (the method's per-LM recipe)."""
    if isinstance(table, (int, float)) and not isinstance(table, bool):
        return table
    lm_key = str(lm).rstrip("/").rsplit("/", 1)[-1]
    value = table.get(method, table.get("default")) if isinstance(table, dict) else None
    if isinstance(value, dict):
        value = value.get(lm_key, value.get("default"))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    raise ConfigError(f"train.{key} must be a number or a mapping with a 'default' entry (a method's entry: a number "
                      f"or a mapping of LMs with a 'default'), got {table!r} for {method} on {lm_key}")


def task_options(train_config: dict[str, Any]) -> dict[str, Any]:
    """The task options of a run from its train config (a run's train.json "config"),
    with the defaults of keys it predates."""
    return {"qa_target": train_config.get("qa_target", TrainConfig.qa_target)}


@dataclass
class PretrainConfig(TrainConfig):
    """Section ``pretrain``: VL pre-training of the whole backbone: the ``train`` keys (their
    defaults differ: method full_finetuning, tasks [pretrain], lr 1e-3), plus the keys below."""

    method: str = key("full_finetuning", TrainConfig.__dataclass_fields__["method"].metadata["doc"], ref="preset")
    tasks: list[str] = key(doc="[pretrain] = the objectives on the pre-training split; downstream task keys (e.g. "
                           "[tvc, yc2c]) = continued pre-training on their training data",
                           factory=lambda: ["pretrain"])
    objectives: list[str] = key(doc="pre-training objectives (span: masked span prediction on captions, prefix: "
                                "prefix LM / captioning, itm: image-text matching, qa: question answering, pair: "
                                "NLVR-style pair matching)", factory=lambda: ["span", "prefix", "itm", "qa"],
                                items={"enum": ["span", "prefix", "itm", "qa", "pair"]}, min_items=1, unique=True,
                                also_in=(MATCHING,))
    lr: Any = key(1e-3, TrainConfig.__dataclass_fields__["lr"].metadata["doc"], ref="lr", also_in=OVERRIDES)
    enabled: bool = key(True, "read by the workflow: runs start from the VL-pre-trained backbone (in video: "
                        "video runs start from a video-pre-trained one; in matching: the stage runs)",
                        workflow=True, also_in=(PRETRAIN_VIDEO, MATCHING), required=("pretrain", MATCHING))
    compare: list[str] = key(doc="read by the workflow: presets also trained without pre-training (<run>-nopt)",
                             factory=list, ref="presets", workflow=True)
    per_seed: bool = key(False, "read by the workflow: one VL pre-training per seed of the runs (matching, "
                         "objectives, video); seed n of a run starts from the backbone pre-trained with seed n",
                         workflow=True)
    matching: dict[str, Any] = key(doc="a first stage of image-text matching alone (vladapter pretrain --matching: "
                                   "objectives [itm] unless it lists [itm, pair]; these keys override the others); "
                                   "the objectives' stage then starts from its backbone", factory=dict,
                                   workflow=True)
    video: dict[str, Any] = key(doc="video pre-training: the backbone continued on the video captioning data; "
                                "video runs start from it", factory=dict, workflow=True)

    def validate(self, section: str = "pretrain") -> None:
        super().validate(section)


@dataclass
class EvaluateConfig:
    """Section ``evaluate``: generation and scoring. Tasks whose split has no labels (public
    test sets) get a submission file and no score."""

    split: str = key("test", "evaluated split (test = the paper's test split)", choices=SPLITS)
    submit: list[str] = key(doc="further splits only predicted, into submission files under "
                            "<predictions>/<split>/ (the leaderboards' test sets: [test])", factory=list,
                            items={"enum": list(SPLITS)}, unique=True)
    tasks: list[str] | None = key(None, "task keys to evaluate (null: those the run was trained on)")
    batch_size: int = key(64, "examples per generation batch", minimum=1)
    num_beams: int | None = key(None, "beams for generation (null = each task's default: 5 for captions, 1 else)",
                                minimum=1)
    max_new_tokens: int | None = key(None, "decoding limit (null = each task's default: 20 for captions, 10 for "
                                     "QA)", minimum=1)
    max_examples: int | None = key(None, "at most this many records per task (null = all)", minimum=1)
    precision: str = key("auto", "auto (bf16 autocast on GPU, fp16 where bf16 is missing, fp32 on CPU) | fp32 | "
                         "bf16 | fp16", choices=PRECISIONS)
    vqa_evaluator: str = key("official", "how VQA predictions match the human answers: official (the VQA "
                             "evaluation: normalised only when the humans disagree) | vl-t5 (VL-T5's evaluator: "
                             "the prediction always normalised)", choices=VQA_EVALUATORS)
    prepared: str | None = key(None, "prepared records folder (null: the trained run's, from its train.json)")
    features: str | None = key(None, "feature folder (null: the trained run's)")
    backbone: str | None = key(None, "visual backbone name in the feature file names (null: the trained run's)")
    tokenizer: str | None = key(None, "tokenizer directory or HF name (null: the trained run's)")
    n_image_tokens: int | None = key(None, "visual tokens per image (null: the trained run's)", minimum=1)
    n_video_frames: int | None = key(None, "frame tokens per video clip (null: the trained run's)", minimum=1)

    def validate(self, section: str = "evaluate") -> None:
        if self.tasks is not None:
            check_tasks(self.tasks, f"{section}.tasks")
        if self.n_image_tokens is not None:
            check_n_image_tokens(self.n_image_tokens, f"{section}.n_image_tokens")
        check_values(self, section)


# --- the declarations read back: types, ranges, docs -----------------------------------------

def key_info(cls: type, name: str) -> dict[str, Any]:
    """The declaration of key ``name`` of config class ``cls`` (a subclass's redeclared field
    keeps what it does not restate from the base's)."""
    info: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        own = klass.__dict__.get("__dataclass_fields__", {})
        if name in own and klass.__dict__.get("__annotations__", {}).get(name) is not None:
            info.update(own[name].metadata)
    return info


def key_types(cls: type, name: str) -> tuple[str, ...]:
    """The JSON types of key ``name`` from its annotation: ``int | None`` -> (integer, null);
    () for ``Any`` (the declaration's ``ref`` or ``choices`` say what it takes)."""
    annotation = {f.name: f.type for f in dataclasses.fields(cls)}[name]
    names = {"int": "integer", "float": "number", "str": "string", "bool": "boolean", "None": "null"}
    out = []
    for part in str(annotation).split("|"):
        part = part.strip()
        if part == "Any":
            return ()
        base = part.split("[", 1)[0]
        out.append({"list": "array", "dict": "object"}.get(base) or names[base])
    return tuple(out)


def item_type(cls: type, name: str) -> str | None:
    """JSON type of a list key's items (``list[int]`` -> integer)."""
    annotation = str({f.name: f.type for f in dataclasses.fields(cls)}[name])
    if "list[" not in annotation:
        return None
    inner = annotation.split("list[", 1)[1].split("]", 1)[0]
    return {"int": "integer", "float": "number", "str": "string", "bool": "boolean"}.get(inner)


_PY_TYPES = {"integer": (int,), "number": (int, float), "string": (str,), "boolean": (bool,),
             "null": (type(None),), "array": (list, tuple), "object": (dict,)}


def _is(value: Any, json_type: str) -> bool:
    if json_type in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, _PY_TYPES[json_type])


def check_values(config: Any, section: str) -> None:
    """Every key's value against its declaration (type, choices, range, list constraints):
    a ConfigError naming ``<section>.<key>``, the value and what it may be."""
    cls = type(config)
    for f in dataclasses.fields(cls):
        info, value = key_info(cls, f.name), getattr(config, f.name)
        if info.get("workflow"):
            continue
        types, where = key_types(cls, f.name), f"{section}.{f.name}"
        if info.get("choices") is not None and value not in info["choices"]:
            choices = ", ".join("true" if c is True else "false" if c is False else str(c) for c in info["choices"])
            raise ConfigError(f"{where} must be one of {choices}, got {value!r}")
        if types and not any(_is(value, t) for t in types):
            raise ConfigError(f"{where}: {value!r} is not {' or '.join(types)}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            _check_range(value, info, where)
        if isinstance(value, (list, tuple)):
            if len(value) < info.get("min_items", 0):
                raise ConfigError(f"{where}: needs at least {info['min_items']} item(s), got {list(value)!r}")
            if info.get("unique") and len(set(map(str, value))) != len(value):
                raise ConfigError(f"{where}: {list(value)!r} lists an item twice")
            item = info.get("items") or {}
            for v in value:
                if "enum" in item and v not in item["enum"]:
                    raise ConfigError(f"{where}: {v!r} is not one of {', '.join(map(str, item['enum']))}")
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    _check_range(v, item, where)


def _check_range(value: float, info: dict, where: str) -> None:
    low, high = info.get("minimum"), info.get("maximum")
    xlow, xhigh = info.get("exclusive_minimum"), info.get("exclusive_maximum")
    bad = (not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high)
           or (xlow is not None and value <= xlow) or (xhigh is not None and value >= xhigh))
    if bad:
        lo = f">= {low:g}" if low is not None else f"> {xlow:g}" if xlow is not None else ""
        hi = f"<= {high:g}" if high is not None else f"< {xhigh:g}" if xhigh is not None else ""
        raise ConfigError(f"{where}: {value!r} is outside the allowed range ({' and '.join(p for p in (lo, hi) if p)}"
                          f"{', finite' if not math.isfinite(value) else ''})")


def check_tasks(tasks: list[str], key: str, allowed: tuple[str, ...] = ()) -> None:
    """ConfigError naming the task keys of ``tasks`` that are no task (vladapter.tasks)."""
    from vladapter.tasks import TASK_MODULES

    unknown = [t for t in tasks if t not in TASK_MODULES and t not in allowed]
    if unknown:
        raise ConfigError(f"{key}: unknown task keys {unknown} (known: {', '.join([*TASK_MODULES, *allowed])})")


def check_world_size(scales: dict[str, float], base: int, world_size: int, key: str = "batch_size") -> None:
    """ConfigError when a task's global batch (``base`` x its batch scale) has fewer rows than
    the ``world_size`` processes training together: a process would get an empty shard of
    it, and the others would wait for that process forever."""
    from vladapter.tasks.base import scaled_batch_size

    small = {t: scaled_batch_size(base, s) for t, s in sorted(scales.items())
             if scaled_batch_size(base, s) < world_size}
    if small:
        need = base
        while any(scaled_batch_size(need, s) < world_size for s in scales.values()):
            need += 1
        batches = ", ".join(f"{t} {b}" for t, b in small.items())
        raise ConfigError(f"{key}: {base} gives batches of fewer rows than the {world_size} processes training "
                          f"together ({batches}; each process needs a row of every batch); raise {key} to at least "
                          f"{need} or train on fewer GPUs")


def check_n_image_tokens(n: int, key: str) -> None:
    """Image grids are pooled to a square: ``n`` must be 1, 4, 9, 16, 36, ..."""
    side = math.isqrt(n) if n > 0 else 0
    if side * side != n:
        raise ConfigError(f"{key}: {n} is not a square number (image grids are pooled to side x side tokens: "
                          f"use {max(1, side) ** 2} or {(side + 1) ** 2})")


C = TypeVar("C")

# keys of a section that only the workflow reads (which stages run, which runs exist);
# applied or dropped when a stage's settings are resolved, never part of them
WORKFLOW_KEYS = tuple(f.name for f in dataclasses.fields(PretrainConfig)
                      if key_info(PretrainConfig, f.name).get("workflow"))
# what the matching stage trains when its sub-section does not say
MATCHING_DEFAULTS = {"objectives": ["itm"]}


def resolve_section(values: dict[str, Any] | None, section: str, cls: type[C],
                    overrides: dict[str, Any] | None = None, stage: str | None = None, where: str = "config") -> C:
    """The settings of one job: section ``section`` of a config (``values``), with

    - its ``video`` overrides when every task of the job is a video task,
    - its ``stage`` sub-section (``matching``: ``MATCHING_DEFAULTS`` where it is silent),
    - ``overrides`` (command-line values; None means "not given") over all of these,
    - ``lr``, ``batch_size``, ``weight_decay`` and ``steps`` resolved to the job's method and LM (a per-method mapping
      becomes one number).

    The one place a stage's settings are merged: the workflow's rules (through
    vladapter.experiments.job_settings) and the commands (load_section) both call it.
    Unknown keys raise ConfigError naming ``where``, the section and the keys.
    """
    values = dict(values or {})
    _check_keys(values, cls, f"{where}: section '{section}'")
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    video = values.pop("video", None) or {}
    if video:
        _check_keys(video, cls, f"{where}: section '{section}.video'")
        tasks = given.get("tasks", values.get("tasks", cls().tasks))
        if tasks and all(t in VIDEO_TASKS for t in tasks):
            values.update(video)
    if stage is not None:
        staged = {k: v for k, v in (values.get(stage) or {}).items() if k != "enabled"}
        _check_keys(staged, cls, f"{where}: section '{section}.{stage}'")
        values.update({**(MATCHING_DEFAULTS if stage == "matching" else {}), **staged})
    values.update(given)
    for key in WORKFLOW_KEYS:
        values.pop(key, None)
    try:
        config = cls(**values)
    except TypeError as e:
        raise ConfigError(f"section '{section}': {e}") from None
    if hasattr(config, "learning_rate"):
        config.validate()
        config.lr = config.learning_rate()
        config.batch_size = config.base_batch_size()
        config.weight_decay = config.decay()
        config.steps = config.run_steps()
    elif hasattr(config, "validate"):
        config.validate()
    return config


def load_section(path: str | Path | None, section: str, cls: type[C], overrides: dict[str, Any] | None = None,
                 stage: str | None = None, settings: str | None = None) -> C:
    """A command's settings: ``settings`` (the JSON a workflow job receives, taken as it
    is) or ``section`` of the YAML file at ``path`` (if any) resolved by resolve_section;
    then ``overrides`` (command-line values; None values mean "not given")."""
    if settings is not None:
        try:
            values = json.loads(settings)
        except json.JSONDecodeError as e:
            raise ConfigError(f"--settings is not a JSON object: {e}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"--settings must be a JSON object of '{section}' keys, got {settings[:80]!r}")
        _check_keys(values, cls, f"--settings ('{section}' keys)")
        return resolve_section({**values, **{k: v for k, v in (overrides or {}).items() if v is not None}},
                               section, cls, where="--settings")
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file not found: {path}")
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
        values = dict(doc.get(section) or {})
    return resolve_section(values, section, cls, overrides, stage, where=str(path))


def settings_of(config) -> dict[str, Any]:
    """A resolved config as the settings a job receives (``--settings``): every key but
    the workflow's (WORKFLOW_KEYS)."""
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in WORKFLOW_KEYS}


def canonical(settings: dict[str, Any]) -> str:
    """``settings`` as canonical JSON: the ``--settings`` argument of a workflow job and
    what Snakemake's params trigger compares; changes only when a value does."""
    return json.dumps(settings, sort_keys=True)


def _check_keys(values: dict, cls: type, where: str) -> None:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown keys: {', '.join(unknown)} (known: {', '.join(sorted(names))})")


def add_config_flags(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """One ``--key`` flag per scalar/list key of ``cls`` (not the workflow's, not mappings),
    defaulting to None (= the config's value); its help is the key's declaration."""
    for f in dataclasses.fields(cls):
        info, types = key_info(cls, f.name), key_types(cls, f.name)
        if f.name in skip or info.get("workflow") or "object" in types:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        doc = info.get("doc") or f.name
        help_ = (doc if "(default:" in doc else f"{doc} (default: {default})").replace("%", "%%")
        if "array" in types:
            parser.add_argument(flag, nargs="+", default=None, help=help_)
        elif f.name in ("lr", "batch_size", "weight_decay", "steps"):  # one number on the command line; per method in a config
            parser.add_argument(flag, type=int if f.name in ("batch_size", "steps") else float, default=None, help=help_)
        else:
            typ = {"integer": int, "number": float, "boolean": _yes_no}.get(types[0] if types else "", str)
            parser.add_argument(flag, type=typ, default=None, help=help_)


def _yes_no(text: str) -> bool:
    """A boolean flag's value: true/false (also yes/no, 1/0)."""
    value = text.strip().lower()
    if value in ("true", "yes", "1", "on"):
        return True
    if value in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def overrides_from(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The values of ``cls``'s fields given on the command line (lists: "a,b c" -> [a, b, c])."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}
    for name, value in given.items():
        if isinstance(value, list):
            given[name] = [part for item in value for part in str(item).split(",") if part]
    return given


def to_dict(config) -> dict[str, Any]:
    return dataclasses.asdict(config)
