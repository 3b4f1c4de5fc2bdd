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
--resume continues a killed run from its last checkpoint to the same final weights.

With --seeds (train.seeds) the run is trained once per seed into <out>/seed-<n>/, one
after the other in this process (Python, torch and transformers start once).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from vladapter.train.config import TrainConfig, add_config_flags, load_section, overrides_from, to_dict
from vladapter.utils.names import name_key


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config; its `train` section is read (flags override it)")
    parser.add_argument("--settings", help="the `train` settings as one JSON object, taken as they are (what a "
                        "workflow job receives; instead of --config)")
    parser.add_argument("--out", help="run folder (default: models/<lm>/<method>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the newest checkpoint of --out's work folder when the same run wrote it "
                             "(a finished run is left as is)")
    add_config_flags(parser, TrainConfig)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from vladapter.experiments import seed_dir

    cfg = load_section(args.config, "train", TrainConfig, overrides_from(args, TrainConfig), settings=args.settings)
    out = Path(args.out or Path("models") / name_key(cfg.lm) / cfg.method)
    if cfg.seeds is None:
        train(cfg, out, resume=args.resume)
    for seed in cfg.seeds or []:
        print(f"seed {seed}: {seed_dir(str(out), seed)}", flush=True)
        train(dataclasses.replace(cfg, seed=seed, seeds=None), seed_dir(str(out), seed), resume=args.resume)
    return 0


def param_count(model) -> dict:
    from vladapter import petl

    count = petl.count(model)
    return {"trainable": count.trainable, "total": count.total, "percent": count.percent}


def train(cfg: TrainConfig, out: str | Path, resume: bool = False, section: str = "train") -> dict:
    """Train the run described by ``cfg`` into ``out``; returns what train.json records."""
    import torch

    from vladapter import petl
    from vladapter.train import workdir
    from vladapter.train.data import Features, load_task_data
    from vladapter.train.dist import init_distributed, shutdown
    from vladapter.train.loop import fit
    from vladapter.train.model import (ADAPTER_FILE, TRAIN_INFO, build_model, feature_dim, load_run_tokenizer,
                                       n_visual_tokens, set_dropout)
    from vladapter.utils.io import write_json

    out = Path(out)
    if resume and (out / TRAIN_INFO).is_file():
        print(f"{out} is already trained; nothing to resume")
        return json.loads((out / TRAIN_INFO).read_text())

    dist = init_distributed()
    try:
        with workdir.writing(out, dist.is_main, resume) as work:
            tokenizer = load_run_tokenizer(cfg.tokenizer, cfg.lm)
            data = load_task_data(cfg.prepared, cfg.tasks, cfg.split, cfg.max_examples, cfg.task_options())
            features = Features(cfg.features, cfg.backbone, cfg.n_image_tokens, cfg.n_video_frames)
            feat_dim = feature_dim(features, data)
            n_vis = n_visual_tokens(features, cfg.tasks)

            torch.manual_seed(cfg.seed)  # identical initialisation on every rank and every resume
            model = build_model(cfg.lm, cfg.init, feat_dim, n_vis, len(tokenizer), cfg.random_init)
            petl.apply(model, cfg.method, tasks=list(cfg.tasks), **cfg.method_overrides)
            if cfg.dropout is not None:
                set_dropout(model, cfg.dropout)
            prefix = petl.uses_task_prefix(model)
            producer = workdir.producer(to_dict(cfg), dist.world_size, model, workdir.input_files(cfg))
            torch.manual_seed(cfg.seed * 1000 + 1 + dist.rank)  # per-rank dropout streams

            result = fit(model, data, cfg, work, tokenizer=tokenizer, features=features, prefix=prefix,
                         dist=dist, resume=resume, producer=producer)
            info = {
                "config": to_dict(cfg), "section": section, "feat_dim": feat_dim, "n_vis_tokens": n_vis,
                "vocab_size": len(tokenizer), "task_prefix": prefix, "world_size": dist.world_size,
                "steps": result.steps, "resumed_from": result.resumed_from,
                "final_loss": result.loss if math.isfinite(result.loss) else None,
                "seconds": round(result.seconds, 2), "examples": {t: len(d.records) for t, d in data.items()},
                "params": param_count(model),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            if dist.is_main:
                model.eval()
                out.mkdir(parents=True, exist_ok=True)
                workdir.publish_log(work, out)
                petl.save(model, out / ADAPTER_FILE)
                # last: its presence marks a finished run. Without the timing (printed to the log
                # instead): the same settings give the same bytes, so DVC sees no change
                write_json(out / TRAIN_INFO, {k: v for k, v in info.items() if k not in ("seconds", "finished")})
                print(f"{out}: {result.steps} steps in {result.seconds:.1f} s, finished {info['finished']}")
                workdir.discard(work)
        return info
    finally:
        shutdown(dist)
