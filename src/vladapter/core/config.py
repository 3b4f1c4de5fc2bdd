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
# numeric train keys and their closed ranges (all finite)
NUMBER_RANGES = (("warmup_ratio", 0, 1), ("weight_decay", 0, math.inf), ("adam_eps", 0, 1),
                 ("grad_clip", 0, math.inf))


@dataclass
class TrainConfig:
    """Section ``train``: multi-task training of one PETL method.

    lm:               language backbone: tiny-t5 | tiny-bart, or a checkpoint (hub id in any spelling, or folder)
    method:           PETL preset (vladapter.petl.PRESETS), e.g. single_adapter, full_finetuning
    method_overrides: keyword overrides passed to petl.apply (e.g. {reduction_factor: 4})
    tasks:            task keys trained together (image: vqa gqa nlvr caption; video: tvqa how2qa tvc yc2c)
    init:             directory of a VL-pre-trained backbone (VLModel.save_pretrained), or null
    random_init:      build lm from its config with fresh weights even when it names a checkpoint
    tokenizer:        tokenizer directory or HF name
    prepared:         prepared records folder (<prepared>/<dataset>/<split>.jsonl)
    features:         feature folder (<features>/<source>.<backbone>.h5)
    backbone:         visual backbone name in the feature file names (null = the source's only file)
    split:            training split
    n_image_tokens:   visual tokens per image (grid adaptive-max-pooled)
    n_video_frames:   frame tokens per video clip
    max_examples:     at most this many records per task (null = all); for quick runs
    steps:            optimiser steps of the run (null = epochs decide)
    epochs:           passes over the data when steps is null (an epoch covers every task's data once)
    batch_size:       base batch B; task t uses round(B x its batch_scale) (VQA B, GQA 100/60 B, ...);
                      a number, or a per-method mapping as lr
    grad_accum:       micro-batches per optimiser step
    lr:               learning rate; a number, or a mapping method -> lr with a "default" entry, where a
                      method's value may itself map LM -> lr ({default: 1e-3, t5-base: 3e-4}: per LM)
    warmup_ratio:     linear warmup over this share of the steps, then linear decay to 0
    weight_decay:     AdamW weight decay (never on biases and LayerNorm weights)
    adam_eps:         AdamW epsilon
    grad_clip:        gradient-norm clipping (0 = off)
    dropout:          dropout probability of the backbone (null = the model config's)
    seed:             seed of initialisation, data order and sampled targets
    seeds:            train the run once per seed, in one process, into <out>/seed-<n> (null: once, with seed, into <out>)
    num_workers:      DataLoader worker processes
    checkpoint_every: write a resumable checkpoint every this many steps (0 = only at the end)
    keep_checkpoints: how many step checkpoints to keep
    log_every:        log loss and lr to dvclive every this many steps
    precision:        auto (bf16 autocast on GPU, fp16 + GradScaler on GPUs without bf16, fp32 on CPU) | fp32 | bf16 | fp16
    tf32:             TF32 matmuls and convolutions on GPU (float32 range, lower mantissa)
    fused_adamw:      one fused AdamW kernel on GPU
    find_unused_parameters: DDP's search for parameters without a gradient: auto (only when
                      the method has task-specific modules) | true | false
    grad_checkpointing: recompute the language model's activations in the backward pass (less memory, ~30% slower)
    compile:          torch.compile the model (start-up cost; faster steps on GPU)
    qa_target:        video QA target: index ("a{idx}", the paper's) | text (the correct choice's words)
    video:            overrides of the keys above for video-text runs (all tasks video)
    """

    lm: str = "tiny-t5"
    method: str = "single_adapter"
    method_overrides: dict[str, Any] = field(default_factory=dict)
    tasks: list[str] = field(default_factory=lambda: list(IMAGE_TASKS))
    init: str | None = None
    random_init: bool = False
    tokenizer: str = "models/tokenizer"
    prepared: str = "data/prepared"
    features: str = "data/features"
    backbone: str | None = None
    split: str = "train"
    n_image_tokens: int = 16
    n_video_frames: int = 16
    max_examples: int | None = None
    steps: int | None = None
    epochs: float | None = 10
    batch_size: Any = 32
    grad_accum: int = 1
    lr: Any = field(default_factory=lambda: dict(PAPER_LR))
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    adam_eps: float = 1e-6
    grad_clip: float = 5.0
    dropout: float | None = None
    seed: int = 0
    seeds: list[int] | None = None
    num_workers: int = 0
    checkpoint_every: int = 200
    keep_checkpoints: int = 1
    log_every: int = 10
    precision: str = "auto"
    tf32: bool = True
    fused_adamw: bool = True
    find_unused_parameters: Any = "auto"
    grad_checkpointing: bool = False
    compile: bool = False
    qa_target: str = "index"
    video: dict[str, Any] = field(default_factory=dict)

    def learning_rate(self) -> float:
        """The lr of this run's method (``lr`` may be one number or a per-method mapping)."""
        return float(per_method(self.lr, self.method, self.lm, "lr"))

    def base_batch_size(self) -> int:
        """The base batch of this run's method (``batch_size``: a number or a per-method mapping)."""
        value = per_method(self.batch_size, self.method, self.lm, "batch_size")
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"train.batch_size of {self.method}: {value!r} is not a whole number")
        return value

    def validate(self) -> None:
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ConfigError(f"train.precision must be auto, fp32, bf16 or fp16, got {self.precision!r}")
        if isinstance(self.find_unused_parameters, str) and self.find_unused_parameters != "auto":
            self.find_unused_parameters = {"true": True, "false": False}.get(self.find_unused_parameters.lower(),
                                                                             self.find_unused_parameters)
        if self.find_unused_parameters not in ("auto", True, False):
            raise ConfigError("train.find_unused_parameters must be auto, true or false, "
                              f"got {self.find_unused_parameters!r}")
        if self.base_batch_size() < 1 or self.grad_accum < 1:
            raise ConfigError("train.batch_size and train.grad_accum must be >= 1")
        if not (self.steps or 0) > 0 and not (self.epochs or 0) > 0:
            raise ConfigError("train: set steps > 0 or epochs > 0")
        if not self.tasks:
            raise ConfigError("train.tasks is empty")
        check_tasks(self.tasks, "train.tasks", allowed=("pretrain",))
        check_n_image_tokens(self.n_image_tokens, "train.n_image_tokens")
        if self.seeds is not None:
            try:
                self.seeds = [int(s) for s in self.seeds]
            except (TypeError, ValueError):
                raise ConfigError(f"train.seeds must be a list of integers, got {self.seeds!r}") from None
            if not self.seeds or len(set(self.seeds)) != len(self.seeds):
                raise ConfigError(f"train.seeds must list distinct seeds, got {self.seeds!r}")
        if self.qa_target not in QA_TARGETS:
            raise ConfigError(f"train.qa_target must be {' or '.join(QA_TARGETS)}, got {self.qa_target!r}")
        lr = self.learning_rate()
        if not (math.isfinite(lr) and 0 < lr < MAX_LR):
            raise ConfigError(f"train.lr of {self.method}: {lr} is not a learning rate (a finite number above 0 and "
                              f"below {MAX_LR:g}, where AdamW's step overflows float32), e.g. 1e-3")
        for key, low, high in NUMBER_RANGES:
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or not (math.isfinite(value) and low <= value <= high):
                raise ConfigError(f"train.{key}: {value!r} is outside {low:g} .. {high:g}")
        if self.adam_eps <= 0:
            raise ConfigError(f"train.adam_eps: {self.adam_eps!r} must be above 0, e.g. 1e-8")
        if self.dropout is not None and not (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1):
            raise ConfigError(f"train.dropout: {self.dropout!r} is not a probability (0 <= p < 1), or null for the "
                              "model config's")

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
    """Section ``pretrain``: VL pre-training of the whole backbone (the ``train`` keys, plus):

    objectives: pre-training objectives (span: masked span prediction on captions,
                prefix: prefix LM / captioning, itm: image-text matching, qa: question answering)
    tasks:      [pretrain] = the objectives on the pre-training split; downstream task keys
                (e.g. [tvc, yc2c]) = continued pre-training on their training data
    enabled:    read by the workflow (whether runs start from the pre-trained backbone;
                in ``video``: whether video runs start from a video-pre-trained one)
    compare:    read by the workflow (methods also trained without pre-training, <run>-nopt)
    matching:   a first stage of image-text matching alone (``vladapter pretrain --matching``:
                objectives [itm] unless it lists [itm, pair]; these keys override the others;
                ``enabled`` is the workflow's); the objectives' stage then starts from its backbone
    Defaults differ from ``train``: method full_finetuning, tasks [pretrain], lr 1e-3.
    """

    method: str = "full_finetuning"
    tasks: list[str] = field(default_factory=lambda: ["pretrain"])
    objectives: list[str] = field(default_factory=lambda: ["span", "prefix", "itm", "qa"])
    lr: Any = 1e-3
    epochs: float | None = 10
    enabled: bool = True
    compare: list[str] = field(default_factory=list)
    matching: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvaluateConfig:
    """Section ``evaluate``: generation and scoring.

    split:          evaluated split (test = the paper's test split); tasks whose split has no
                    labels (public test sets) get a submission file and no score
    submit:         further splits only predicted, into submission files under
                    <predictions>/<split>/ (the leaderboards' test sets: [test])
    tasks:          task keys to evaluate (default: those the run was trained on)
    batch_size:     examples per generation batch
    num_beams:      beams for generation (null = each task's default: 5 for captions, 1 else)
    max_new_tokens: decoding limit (null = each task's default: 20 for captions, 10 for QA)
    max_examples:   at most this many records per task (null = all)
    precision:      auto (bf16 autocast on GPU, fp16 where bf16 is missing, fp32 on CPU) | fp32 | bf16 | fp16
    vqa_evaluator:  how VQA predictions match the human answers: official (the VQA
                    evaluation: normalised only when the humans disagree) | vl-t5 (VL-T5's
                    evaluator: the prediction always normalised)
    prepared:       prepared records folder (default: the trained run's, from its train.json)
    features:       feature folder (default: the trained run's)
    backbone:       visual backbone name in the feature file names (default: the trained run's)
    tokenizer:      tokenizer directory or HF name (default: the trained run's)
    n_image_tokens: visual tokens per image (default: the trained run's)
    n_video_frames: frame tokens per video clip (default: the trained run's)
    """

    split: str = "test"
    submit: list[str] = field(default_factory=list)
    tasks: list[str] | None = None
    batch_size: int = 64
    num_beams: int | None = None
    max_new_tokens: int | None = None
    max_examples: int | None = None
    precision: str = "auto"
    vqa_evaluator: str = "official"
    prepared: str | None = None
    features: str | None = None
    backbone: str | None = None
    tokenizer: str | None = None
    n_image_tokens: int | None = None
    n_video_frames: int | None = None

    def validate(self) -> None:
        if self.batch_size < 1:
            raise ConfigError("evaluate.batch_size must be >= 1")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ConfigError(f"evaluate.precision must be auto, fp32, bf16 or fp16, got {self.precision!r}")
        unknown = sorted(set(self.submit) - {"train", "val", "test"})
        if unknown:
            raise ConfigError(f"evaluate.submit: unknown splits {unknown} (train, val, test)")
        if self.vqa_evaluator not in VQA_EVALUATORS:
            raise ConfigError(f"evaluate.vqa_evaluator must be {' or '.join(VQA_EVALUATORS)}, got {self.vqa_evaluator!r}")
        if self.tasks is not None:
            check_tasks(self.tasks, "evaluate.tasks")
        if self.n_image_tokens is not None:
            check_n_image_tokens(self.n_image_tokens, "evaluate.n_image_tokens")


def check_tasks(tasks: list[str], key: str, allowed: tuple[str, ...] = ()) -> None:
    """ConfigError naming the task keys of ``tasks`` that are no task (vladapter.tasks)."""
    from vladapter.tasks import TASK_MODULES

    unknown = [t for t in tasks if t not in TASK_MODULES and t not in allowed]
    if unknown:
        raise ConfigError(f"{key}: unknown task keys {unknown} (known: {', '.join([*TASK_MODULES, *allowed])})")


def check_n_image_tokens(n: int, key: str) -> None:
    """Image grids are pooled to a square: ``n`` must be 1, 4, 9, 16, 36, ..."""
    side = math.isqrt(n) if n > 0 else 0
    if side * side != n:
        raise ConfigError(f"{key}: {n} is not a square number (image grids are pooled to side x side tokens: "
                          f"use {max(1, side) ** 2} or {(side + 1) ** 2})")


C = TypeVar("C")

# keys of a section that only the workflow reads (which stages run, which runs exist);
# applied or dropped when a stage's settings are resolved, never part of them
WORKFLOW_KEYS = ("video", "matching", "enabled", "compare")
# what the matching stage trains when its sub-section does not say
MATCHING_DEFAULTS = {"objectives": ["itm"]}


def resolve_section(values: dict[str, Any] | None, section: str, cls: type[C],
                    overrides: dict[str, Any] | None = None, stage: str | None = None, where: str = "config") -> C:
    """The settings of one job: section ``section`` of a config (``values``), with

    - its ``video`` overrides when every task of the job is a video task,
    - its ``stage`` sub-section (``matching``: ``MATCHING_DEFAULTS`` where it is silent),
    - ``overrides`` (command-line values; None means "not given") over all of these,
    - ``lr`` and ``batch_size`` resolved to the job's method and LM (a per-method mapping
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


def _field_docs(cls: type) -> dict[str, str]:
    """The documentation of each key: the ``key: text`` entries of the dataclass docstrings,
    with their continuation lines (indented deeper than the key)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        key_indent, current = None, None
        for line in (klass.__doc__ or "").splitlines():
            indent = len(line) - len(line.lstrip())
            name, sep, text = line.strip().partition(":")
            if sep and name.isidentifier() and text.strip() and (key_indent is None or indent <= key_indent):
                key_indent, current = indent, name
                docs[name] = text.strip()
            elif current is not None and line.strip() and indent > key_indent:
                docs[current] += " " + line.strip()
            else:
                current = None
    return docs


def _check_keys(values: dict, cls: type, where: str) -> None:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown keys: {', '.join(unknown)} (known: {', '.join(sorted(names))})")


def add_config_flags(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """One ``--key`` flag per scalar/list field of ``cls``, defaulting to None (= the config's value)."""
    docs = _field_docs(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or f.name in ("method_overrides", "video", "matching", "enabled", "compare"):
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kind = str(f.type)
        doc = docs.get(f.name, f.name)
        help_ = (doc if "(default:" in doc else f"{doc} (default: {default})").replace("%", "%%")
        if kind.startswith("list"):
            parser.add_argument(flag, nargs="+", default=None, help=help_)
        elif f.name in ("lr", "batch_size"):  # one number on the command line; per method in a config
            parser.add_argument(flag, type=float if f.name == "lr" else int, default=None, help=help_)
        else:
            typ = {"int": int, "float": float, "int | None": int, "float | None": float, "bool": _yes_no}.get(kind, str)
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
