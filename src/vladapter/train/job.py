"""One training job's skeleton, shared by `vladapter train` and `vladapter pretrain`.

Both do the same around the loop: skip a finished run of the same settings on --resume
(refuse to replace one of other settings unless told: --replace), join the DDP group,
hold the run's work folder (vladapter.train.workdir), load tokenizer, data and features,
seed and build the model, fit it, and let rank 0 publish the result with its info file
last (its presence marks a finished run). What differs is a `Job`: which data, what is
done to the model before training, what the info file records and how the model is saved.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vladapter.core.config import TrainConfig, to_dict

if TYPE_CHECKING:
    from vladapter.core.inputs import Features, TaskData
    from vladapter.train.dist import DistInfo


@dataclass
class Job:
    """The parts of a training job that differ between a PETL run and pre-training."""

    info_file: str                  # written last into the output folder
    model_task: str | None = None   # route every batch as this task (pre-training: "pretrain")

    def data(self, cfg: TrainConfig, tokenizer, features: Features) -> tuple[dict[str, TaskData], int]:
        """The tasks' training data and the number of visual tokens per example."""
        raise NotImplementedError

    def prepare(self, model, cfg: TrainConfig) -> bool:
        """Changes to the built model before training; returns whether inputs carry a task prefix."""
        return True

    def initialise(self, model, cfg: TrainConfig, data: dict[str, TaskData], tokenizer, features: Features,
                   prefix: bool, work: Path) -> None:
        """Initialisation that reads training data (LST's Fisher pass), after ``prepare``; its
        result may be kept in the work folder ``work`` for a resumed run."""

    def describe(self, cfg: TrainConfig, model, data: dict[str, TaskData]) -> dict:
        """What the info file records beyond the common keys."""
        return {}

    def save(self, model, out: Path) -> None:
        raise NotImplementedError


def run_job(job: Job, cfg: TrainConfig, out: str | Path, resume: bool = False, replace: bool = False,
            dist: DistInfo | None = None) -> dict:
    """Train ``cfg``'s run as ``job`` describes into ``out``; returns what the info file records
    (plus the run's seconds and finishing time, which go to the log only: the same settings
    give the same bytes, so DVC sees no change).

    A finished run already in ``out`` is left as it is with ``resume`` when its settings are
    these; one of other settings is a ConfigError naming what differs, unless ``replace``.
    ``dist``: the process group this process already joined (several runs in one process,
    e.g. the seeds of `vladapter train`, share one); None: join it here and leave it after."""
    import torch

    from vladapter.core.inputs import Features
    from vladapter.core.model import build_model, feature_dim, load_run_tokenizer, set_dropout
    from vladapter.train import workdir
    from vladapter.train.dist import barrier, init_distributed, shutdown
    from vladapter.train.loop import fit
    from vladapter.utils.io import write_json

    out = Path(out)
    finished_before = _finished(out / job.info_file)
    if finished_before is not None:
        differs = workdir.setting_differences(finished_before.get("config") or {}, to_dict(cfg))
        if differs and not replace:
            from vladapter.errors import ConfigError

            raise ConfigError(
                f"{out} holds a finished run of other settings ({'; '.join(differs)}): training would replace it"
                f"{'' if not resume else ', and --resume cannot continue it'}; give another --out, or pass "
                "--replace to train these settings in its place")
        if resume and not differs:
            print(f"{out} is already finished; nothing to resume")
            return finished_before

    own_group = dist is None
    dist = init_distributed() if own_group else dist
    try:
        with workdir.writing(out, dist.is_main, resume) as work:
            tokenizer = load_run_tokenizer(cfg.tokenizer, cfg.lm)
            features = Features(cfg.features, cfg.backbone, cfg.n_image_tokens, cfg.n_video_frames)
            data, n_vis = job.data(cfg, tokenizer, features)
            feat_dim = feature_dim(features, data)  # every feature file alike, before the model is built

            torch.manual_seed(cfg.seed)  # identical initialisation on every rank and every resume
            model = build_model(cfg.lm, cfg.init, feat_dim, n_vis, len(tokenizer), cfg.random_init)
            prefix = job.prepare(model, cfg)
            job.initialise(model, cfg, data, tokenizer, features, prefix, Path(work))
            if cfg.dropout is not None:
                set_dropout(model, cfg.dropout)
            producer = workdir.producer(to_dict(cfg), dist.world_size, model, workdir.input_files(cfg))
            torch.manual_seed(cfg.seed * 1000 + 1 + dist.rank)  # per-rank dropout streams

            result = fit(model, data, cfg, work, tokenizer=tokenizer, features=features, prefix=prefix,
                         dist=dist, resume=resume, model_task=job.model_task, producer=producer)
            info = {"config": to_dict(cfg), **job.describe(cfg, model, data), "feat_dim": feat_dim,
                    "n_vis_tokens": n_vis, "vocab_size": len(tokenizer), "world_size": dist.world_size,
                    "steps": result.steps, "resumed_from": result.resumed_from,
                    "final_loss": result.loss if math.isfinite(result.loss) else None}
            finished = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            if dist.is_main:
                model.eval()
                out.mkdir(parents=True, exist_ok=True)
                job.save(model, out)
                workdir.publish_log(work, out)
                write_json(out / job.info_file, info)  # last: a finished run
                print(f"{out}: {result.steps} steps in {result.seconds:.1f} s, finished {finished}")
                workdir.discard(work)
        barrier(dist)  # every rank leaves the run together: the next one's collectives stay in step
        return {**info, "seconds": round(result.seconds, 2), "finished": finished}
    finally:
        if own_group:
            shutdown(dist)


def _finished(info: Path) -> dict | None:
    """The info file of a finished run (None when there is none, or it is not one: unreadable)."""
    if not info.is_file():
        return None
    try:
        return json.loads(info.read_text())
    except (OSError, ValueError):
        return None
