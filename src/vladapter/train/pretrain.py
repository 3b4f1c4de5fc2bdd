"""VL pre-training of the whole backbone (`vladapter pretrain`).

VL-T5-style objectives on data/prepared/pretrain (masked span prediction on captions
with the image, image-text matching, QA), trained together with the multi-task loop of
`vladapter train` (same sampler, optimiser, checkpoints, DDP, --resume). The result is a
whole model (VLModel.save_pretrained: model.safetensors + vl_config.json) that
`vladapter train --init <out>` starts from. Reads the ``pretrain`` section of --config.

With ``--tasks`` of downstream tasks (e.g. ``--tasks tvc yc2c --init models/pretrain/tiny-t5``)
it continues pre-training a backbone on those tasks' training data in their own formats
(video-text pre-training on captioned clips); the section's ``video`` overrides apply when
every task is a video task. The result is again a whole backbone, for ``train --init``.

``--matching`` runs the stage before it: image-text matching alone, with the section's
``matching`` keys (the toy default: 600 steps, no dropout). A small backbone trained on the
objectives' mix from scratch never gets past chance on matching (its loss stays at ln 2):
the generative objectives' gradients swamp the weak early signal. After this stage it keeps
the skill through the mix, and true/false tasks (NLVR2, "is there" questions) build on it
(docs/training.md: the matching stage, measured).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from vladapter.core.config import PretrainConfig, add_config_flags, load_section, overrides_from
from vladapter.train.job import Job, run_job
from vladapter.utils.names import name_key

INFO_FILE = "pretrain.json"
MATCHING_OBJECTIVES = ("itm", "pair")  # what the matching stage may train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config; its `pretrain` section is read (flags override it)")
    parser.add_argument("--settings", help="the `pretrain` (stage's) settings as one JSON object, taken as they are (what a "
                        "workflow job receives; instead of --config)")
    parser.add_argument("--out", help="backbone folder (default: models/pretrain/<lm>)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint of --out's work folder "
                             "when the same run wrote it (vladapter.train.workdir)")
    parser.add_argument("--replace", action="store_true",
                        help="pre-train in place of a finished backbone of other settings in --out (refused without "
                             "it, naming what differs)")
    parser.add_argument("--matching", action="store_true",
                        help="the matching stage: image-text matching alone (objectives [itm], or [itm, pair]) "
                             "with the section's `matching` keys over the others "
                             "(default out: models/pretrain-matching/<lm>)")
    add_config_flags(parser, PretrainConfig, skip=("method", "seeds", "init_per_seed"))  # one backbone: no seeds of runs


def run(args: argparse.Namespace) -> int:
    cfg = load_section(args.config, "pretrain", PretrainConfig, overrides_from(args, PretrainConfig),
                       stage="matching" if args.matching else None, settings=args.settings)
    if args.matching:
        _check_matching_stage(cfg)
    folder = "pretrain-matching" if args.matching else "pretrain" if list(cfg.tasks) == ["pretrain"] else "pretrain-video"
    out = Path(args.out or Path("models") / folder / name_key(cfg.lm))
    pretrain(cfg, out, resume=args.resume, replace=args.replace)
    return 0


def _check_matching_stage(cfg: PretrainConfig) -> None:
    """The matching stage trains matching objectives on the pre-training split, nothing else."""
    from vladapter.errors import ConfigError

    wrong = []
    if list(cfg.tasks) != ["pretrain"]:
        wrong.append(f"tasks {' '.join(cfg.tasks)}")
    if not set(cfg.objectives) <= set(MATCHING_OBJECTIVES):
        wrong.append(f"objectives {' '.join(cfg.objectives)}")
    if wrong:
        raise ConfigError(f"--matching trains image-text matching (objectives {' / '.join(MATCHING_OBJECTIVES)}) on "
                          f"the pre-training split (tasks [pretrain]), not {' / '.join(wrong)}: drop those "
                          "settings from the command line or the `pretrain.matching` section")


class PretrainJob(Job):
    """Pre-training: the objectives' data (or downstream tasks'), the whole backbone saved."""

    def __init__(self):
        super().__init__(info_file=INFO_FILE, model_task="pretrain")  # no per-task modules: one task

    def data(self, cfg, tokenizer, features):
        from vladapter.core.inputs import TaskData, load_records, load_task_data
        from vladapter.core.model import n_visual_tokens
        from vladapter.errors import ConfigError
        from vladapter.tasks.pretrain import objectives

        if list(cfg.tasks) == ["pretrain"]:
            records = load_records(cfg.prepared, "pretrain", cfg.split, None)
            sentinels = "<extra_id_0>" in tokenizer.get_vocab()
            return ({name: TaskData(task, recs[: cfg.max_examples] if cfg.max_examples else recs)
                     for name, (task, recs) in objectives(cfg.objectives, records, sentinels, cfg.seed).items()},
                    cfg.n_image_tokens)
        if "pretrain" in cfg.tasks:
            raise ConfigError(f"pretrain.tasks {list(cfg.tasks)}: either [pretrain] (the pre-training split's "
                              "objectives) or downstream task keys (their training data), not both")
        data = load_task_data(cfg.prepared, cfg.tasks, cfg.split, cfg.max_examples, cfg.task_options())
        return data, n_visual_tokens(features, cfg.tasks)

    def describe(self, cfg, model, data) -> dict:
        return {"objectives": {n: len(d.records) for n, d in data.items()}}

    def save(self, model, out):
        _save_backbone(model, out)


def pretrain(cfg: PretrainConfig, out: str | Path, resume: bool = False, replace: bool = False) -> dict:
    """Pre-train ``cfg.lm`` on the pre-training split (``cfg.tasks == ["pretrain"]``) or on
    downstream tasks' training data (other task keys); writes the backbone to ``out``."""
    return run_job(PretrainJob(), cfg, out, resume, replace)


def _save_backbone(model, out: Path) -> None:
    """VLModel.save_pretrained into ``out`` (its files replace older ones, config last)."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".backbone.", dir=out))
    try:
        model.save_pretrained(tmp / "model")
        files = sorted((tmp / "model").iterdir(), key=lambda p: p.suffix == ".json")  # config last
        for f in files:
            os.replace(f, out / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
