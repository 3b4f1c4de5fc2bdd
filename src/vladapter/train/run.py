"""Multi-task training of one PETL method (`vladapter train`).

Reads the ``train`` section of --config (flags override single keys), trains every task
of the run together with the paper's round-robin sampler, and writes the run folder:

    <out>/adapter.safetensors + method.json   trained parameters only (vladapter.petl.save)
    <out>/train.json                          configuration, sizes, steps, loss, parameter count
    <out>/dvclive/                            loss, lr and per-task losses per step

While it runs, its state is in the work folder beside it (vladapter.train.workdir):
``.<out name>.partial/`` holds the lock against a second writer, the resumable
checkpoints (``checkpoints/step-N/``) and the log so far; the run folder appears when the
run has finished. Run it under `torchrun` for DDP (gloo on CPU, NCCL on GPU).
--resume continues a killed run from its last checkpoint to the same final weights. A
finished run of other settings in --out is refused, naming what differs (--replace trains
in its place).

With --seeds (train.seeds) the run is trained once per seed into <out>/seed-<n>/, one
after the other in this process (Python, torch and transformers start once; under
torchrun the process group is joined once for all seeds); with --init-per-seed each seed
starts from its own pre-trained backbone, <init>/seed-<n>/.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vladapter.core.config import TrainConfig, add_config_flags, load_section, overrides_from
from vladapter.core.model import ADAPTER_FILE, TRAIN_INFO
from vladapter.train.job import Job, run_job
from vladapter.utils.names import name_key


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config; its `train` section is read (flags override it)")
    parser.add_argument("--settings", help="the `train` settings as one JSON object, taken as they are (what a "
                        "workflow job receives; instead of --config)")
    parser.add_argument("--out", help="run folder (default: models/<lm>/<method>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the newest checkpoint of --out's work folder when the same run wrote it "
                             "(a finished run of the same settings is left as is)")
    parser.add_argument("--replace", action="store_true",
                        help="train in place of a finished run of other settings in --out (refused without it, "
                             "naming what differs)")
    add_config_flags(parser, TrainConfig)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from vladapter.experiments import seed_dir

    from vladapter.train.dist import init_distributed, shutdown

    cfg = load_section(args.config, "train", TrainConfig, overrides_from(args, TrainConfig), settings=args.settings)
    out = Path(args.out or Path("models") / name_key(cfg.lm) / cfg.method)
    dist = init_distributed()
    try:
        if cfg.seeds is None:
            train(cfg, out, resume=args.resume, replace=args.replace, dist=dist)
        for seed in cfg.seeds or []:
            if dist.is_main:
                print(f"seed {seed}: {seed_dir(str(out), seed)}", flush=True)
            # with init_per_seed, each seed starts from the backbone pre-trained with that seed
            init = seed_dir(cfg.init, seed) if cfg.init and cfg.init_per_seed else cfg.init
            train(dataclasses.replace(cfg, seed=seed, seeds=None, init=init, init_per_seed=False),
                  seed_dir(str(out), seed), resume=args.resume, replace=args.replace, dist=dist)
    finally:
        shutdown(dist)
    return 0


def param_count(model) -> dict:
    from vladapter import petl

    count = petl.count(model)
    return {"trainable": count.trainable, "total": count.total, "percent": count.percent}


class TrainJob(Job):
    """A PETL run: the tasks' training data, the method applied, its trained parameters saved."""

    def __init__(self, section: str = "train"):
        super().__init__(info_file=TRAIN_INFO)
        self.section = section
        self.side_init: dict | None = None

    def data(self, cfg, tokenizer, features):
        from vladapter.core.inputs import load_task_data
        from vladapter.core.model import n_visual_tokens

        data = load_task_data(cfg.prepared, cfg.tasks, cfg.split, cfg.max_examples, cfg.task_options())
        return data, n_visual_tokens(features, cfg.tasks)

    def prepare(self, model, cfg) -> bool:
        from vladapter import petl

        petl.apply(model, cfg.method, tasks=list(cfg.tasks), **cfg.method_overrides)
        if not petl.needs_backbone_grad(model) and cfg.grad_checkpointing:
            from vladapter.errors import ConfigError

            raise ConfigError(f"train.grad_checkpointing recomputes the backbone for its backward, but "
                              f"{cfg.method} never runs a backward through the backbone: set it to false")
        return petl.uses_task_prefix(model)

    def initialise(self, model, cfg, data, tokenizer, features, prefix, work):
        if getattr(model, "side", None) is None:
            return
        from vladapter.petl.lst_init import initialise
        from vladapter.train.data import BatchBuilder
        from vladapter.train.sampler import fisher_order

        # the same examples whatever the seed (builder seed 0): seeds of one base share the pass
        builder = BatchBuilder(data, tokenizer, features, prefix=prefix, seed=0)
        data_id = {t: [len(d.records), d.records[0].uid] for t, d in sorted(data.items())}
        self.side_init = initialise(model, lambda n: (builder[spec] for spec in fisher_order(data, n)),
                                    {"data": data_id, "prefix": prefix}, work)

    def describe(self, cfg, model, data) -> dict:
        from vladapter import petl

        from vladapter.utils.digest import state_digest

        # the frozen weights the method was trained on: evaluation checks it rebuilt the same
        return {"section": self.section, "task_prefix": petl.uses_task_prefix(model),
                "examples": {t: len(d.records) for t, d in data.items()}, "params": param_count(model),
                "base_state": state_digest(model, frozen_only=True),
                **({"side_init": self.side_init} if self.side_init else {})}

    def save(self, model, out):
        from vladapter import petl

        petl.save(model, out / ADAPTER_FILE)


def train(cfg: TrainConfig, out: str | Path, resume: bool = False, section: str = "train",
          replace: bool = False, dist=None) -> dict:
    """Train the run described by ``cfg`` into ``out``; returns what train.json records. A
    finished run of other settings in ``out`` is refused unless ``replace``. ``dist``: the
    process group already joined (vladapter.train.job.run_job)."""
    return run_job(TrainJob(section), cfg, out, resume, replace, dist)
