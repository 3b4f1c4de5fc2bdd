"""The training loop shared by `vladapter train` and `vladapter pretrain`.

Multi-task batches from the TaskSampler, a loss weighted per example (VQA: the sampled
answer's score), AdamW with warmup + linear decay, gradient clipping and accumulation,
bf16 autocast on GPU, DDP when launched by torchrun, dvclive logging and tqdm. Resumable
checkpoints every ``checkpoint_every`` steps; a non-finite loss stops the run with a
TrainingError and leaves the last good checkpoint in place.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from vladapter.errors import TrainingError
from vladapter.train import checkpoint as ckpt
from vladapter.train.config import TrainConfig
from vladapter.train.data import MODEL_INPUTS, BatchBuilder, Features, TaskData, to_device
from vladapter.train.dist import DistInfo, all_sum, barrier, gather_tensors
from vladapter.train.optim import build_optimizer, build_scheduler
from vladapter.train.sampler import TaskSampler


@dataclass
class FitResult:
    steps: int            # optimiser steps of the whole run
    resumed_from: int     # step the run continued from (0: fresh)
    loss: float           # mean loss of the last logging window
    seconds: float        # wall time of this process's part


def task_batch_sizes(data: dict[str, TaskData], base: int) -> dict[str, int]:
    """Per-task batch sizes scaled from the base B (VQA B, GQA 100/60 B, NLVR2 20/60 B, ...)."""
    return {name: max(1, round(base * d.task.batch_scale)) for name, d in data.items()}


def example_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean token cross-entropy of each example ``(B,)`` (labels -100 are ignored)."""
    tokens = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=-100, reduction="none")
    counts = (labels != -100).sum(1).clamp(min=1)
    return tokens.sum(1) / counts


def forward_loss(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum over this rank's rows of weight x example loss, the unweighted losses)."""
    core = getattr(model, "module", model)
    decoder_input_ids = core.lm.prepare_decoder_input_ids_from_labels(labels=batch["labels"])
    out = model(**{k: batch[k] for k in MODEL_INPUTS}, task=batch["task"], decoder_input_ids=decoder_input_ids)
    losses = example_losses(out.logits, batch["labels"])
    return (losses * batch["weights"]).sum(), losses.detach()


def fit(model, data: dict[str, TaskData], cfg: TrainConfig, run_dir: str | Path, *, tokenizer,
        features: Features, prefix: bool, dist: DistInfo, resume: bool = False,
        model_task: str | None = None) -> FitResult:
    """Train ``model`` (PETL already applied) on ``data``; checkpoints go to ``run_dir``.

    With ``resume``, continues from the newest checkpoint in ``run_dir``; the result is
    the same as that of an uninterrupted run with the same configuration.
    """
    run_dir = Path(run_dir)
    device = dist.device
    started = time.perf_counter()
    sampler = TaskSampler({t: len(d.records) for t, d in data.items()}, task_batch_sizes(data, cfg.batch_size),
                          seed=cfg.seed, min_batch=dist.world_size)
    accum = cfg.grad_accum
    total_steps = cfg.steps or math.ceil(sampler.total_batches(cfg.epochs) / accum)
    model.to(device)
    optimizer = build_optimizer(model, cfg.learning_rate(), cfg.weight_decay, cfg.adam_eps)
    scheduler = build_scheduler(optimizer, total_steps, cfg.warmup_ratio)
    params = [p for g in optimizer.param_groups for p in g["params"]]

    start = 0
    last = ckpt.latest_checkpoint(run_dir) if resume else None
    if last is not None:
        start = ckpt.load_checkpoint(last, model, optimizer, scheduler, rank=dist.rank)["step"]
    if start >= total_steps:
        return FitResult(total_steps, start, float("nan"), 0.0)

    train_model = model
    if dist.enabled:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True)  # per-task modules of other tasks get no gradient

    builder = BatchBuilder(data, tokenizer, features, prefix=prefix, seed=cfg.seed, rank=dist.rank,
                           world_size=dist.world_size, model_task=model_task)
    specs = list(sampler.iterate(start * accum, total_steps * accum))
    loader = torch.utils.data.DataLoader(builder, batch_size=None, sampler=specs, num_workers=cfg.num_workers,
                                         pin_memory=device.type == "cuda",
                                         # its own generator: the loader's seed draw must not
                                         # shift the global RNG that dropout (and resume) use
                                         generator=torch.Generator().manual_seed(cfg.seed))
    use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    live = _live(run_dir, resume=start > 0) if dist.is_main else None

    model.train()
    window: dict[str, list[float]] = defaultdict(list)
    grad_norms: list[float] = []
    last_loss = float("nan")
    step = start
    bar = tqdm(total=total_steps, initial=start, desc=f"train {run_dir.name}", disable=not dist.is_main,
               dynamic_ncols=True)
    optimizer.zero_grad(set_to_none=True)
    for micro, (spec, batch) in enumerate(zip(specs, loader), start * accum):
        batch = to_device(batch, device, non_blocking=True)
        sync = (micro + 1) % accum == 0
        no_sync = train_model.no_sync() if dist.enabled and not sync else contextlib.nullcontext()
        with no_sync:
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
                weighted, losses = forward_loss(train_model, batch)
            # DDP averages gradients over ranks: scale so the result is the global-batch mean
            loss = weighted * dist.world_size / batch["n_global"] / accum
            stats = all_sum(torch.stack([weighted.detach().float(), losses.sum().float(),
                                         torch.tensor(float(len(losses)), device=losses.device)]), dist)
            if not torch.isfinite(stats).all():
                where = ckpt.latest_checkpoint(run_dir)
                raise TrainingError(
                    f"non-finite loss at step {step + 1} (micro-batch {micro}, task {spec.task}, "
                    f"records {[data[spec.task].records[i].uid for i in spec.indices[:8]]}); "
                    + (f"last good checkpoint kept: {where}" if where else "no checkpoint written yet")
                    + "; lower the learning rate or check the data, then rerun with --resume")
            loss.backward()
        window[spec.task].append(float(stats[1] / stats[2]))
        if not sync:
            continue
        # the norm before clipping (inf: no clipping) is logged: it shows the loss scale, which Adam hides
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        grad_norms.append(float(torch.nn.utils.clip_grad_norm_(params, max_norm)))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        bar.update(1)
        if step % cfg.log_every == 0 or step == total_steps:
            last_loss = _log(live, window, grad_norms, scheduler.get_last_lr()[0], step, bar)
            window.clear()
            grad_norms.clear()
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < total_steps:
            _checkpoint(run_dir, step, step * accum, model, optimizer, scheduler, cfg, dist)
    bar.close()
    if live is not None:
        live.end()
    return FitResult(total_steps, start, last_loss, time.perf_counter() - started)


def _checkpoint(run_dir, step, micro, model, optimizer, scheduler, cfg, dist: DistInfo) -> None:
    rngs = gather_tensors(torch.get_rng_state(), dist)
    if dist.is_main:
        ckpt.save_checkpoint(run_dir, step, micro, model, optimizer, scheduler, rngs, keep=cfg.keep_checkpoints)
    barrier(dist)


def _live(run_dir: Path, resume: bool):
    """A dvclive logger writing only files under ``<run>/dvclive`` (metrics.json, plots/)."""
    from dvclive import Live

    class FilesOnlyLive(Live):
        # dvclive would otherwise look for a DVC repository and, inside a bare git
        # checkout, run `dvc init` there; the workflow's dvc.yaml tracks these files itself
        def _init_dvc(self):
            self._dvc_file = None

    return FilesOnlyLive(dir=str(run_dir / "dvclive"), resume=resume, save_dvc_exp=False, dvcyaml=None)


def _log(live, window: dict[str, list[float]], grad_norms: list[float], lr: float, step: int, bar) -> float:
    per_task = {t: sum(v) / len(v) for t, v in window.items() if v}
    n = sum(len(v) for v in window.values())
    mean = sum(sum(v) for v in window.values()) / max(1, n)
    bar.set_postfix(loss=f"{mean:.3f}", lr=f"{lr:.2e}")
    if live is not None:
        live.step = step
        live.log_metric("train/loss", mean)
        live.log_metric("train/lr", lr)
        live.log_metric("train/grad_norm", sum(grad_norms) / max(1, len(grad_norms)))
        for task, value in sorted(per_task.items()):
            live.log_metric(f"train/loss_{task}", value)
        live.next_step()
    return mean
