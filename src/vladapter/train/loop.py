"""The training loop shared by `vladapter train` and `vladapter pretrain`.

Multi-task batches from the TaskSampler, a loss weighted per example (VQA: the sampled
answer's score), AdamW with warmup + linear decay, gradient clipping and accumulation,
bf16 autocast on GPU (fp16 with a GradScaler where bf16 is missing), DDP when launched
by torchrun, dvclive logging and tqdm. Resumable checkpoints every ``checkpoint_every``
steps in the run's work folder; a non-finite loss stops the run with a TrainingError and
leaves the last good checkpoint in place; SIGUSR1/SIGTERM checkpoint and stop. Losses
reach the host only every ``log_every`` steps (and at checkpoints): no sync per step.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import signal
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from vladapter.core.config import TrainConfig, check_world_size
from vladapter.core.inputs import MODEL_INPUTS, Features, TaskData, to_device
from vladapter.core.model import resolve_precision
from vladapter.errors import TrainingError
from vladapter.train import checkpoint as ckpt
from vladapter.train.data import BatchBuilder
from vladapter.train.dist import DistInfo, all_sum, any_rank, barrier, broadcast_int, gather_tensors
from vladapter.train.optim import build_optimizer, build_scheduler
from vladapter.train.sampler import BatchSpec, TaskSampler
from vladapter.train.workdir import run_name


@dataclass
class FitResult:
    steps: int            # optimiser steps of the whole run
    resumed_from: int     # step the run continued from (0: fresh)
    loss: float           # mean loss of the last logging window
    seconds: float        # wall time of this process's part


def task_batch_sizes(data: dict[str, TaskData], base: int) -> dict[str, int]:
    """Per-task batch sizes scaled from the base B (VQA B, GQA 100/60 B, NLVR2 20/60 B, ...)."""
    return {name: d.task.batch_size(base) for name, d in data.items()}


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


def fit(model, data: dict[str, TaskData], cfg: TrainConfig, work: str | Path, *, tokenizer,
        features: Features, prefix: bool, dist: DistInfo, resume: bool = False,
        model_task: str | None = None, producer: dict | None = None) -> FitResult:
    """Train ``model`` (PETL already applied) on ``data``; checkpoints and the dvclive log
    go to the run's work folder ``work`` (vladapter.train.workdir).

    With ``resume``, continues from the newest checkpoint in ``work`` whose producer equals
    ``producer``; the result is the same as that of an uninterrupted run with the same
    configuration. SIGUSR1 or SIGTERM (a SLURM time limit near) ends the run after the
    current step with a checkpoint and TrainingInterrupted.
    """
    work = Path(work)
    device = dist.device
    started = time.perf_counter()
    batch_sizes = task_batch_sizes(data, cfg.batch_size)
    check_world_size({t: d.task.batch_scale for t, d in data.items()}, cfg.batch_size, dist.world_size)
    sampler = TaskSampler({t: len(d.records) for t, d in data.items()}, batch_sizes,
                          seed=cfg.seed, min_batch=dist.world_size)
    accum = cfg.grad_accum
    total_steps = cfg.steps or math.ceil(sampler.total_batches(cfg.epochs) / accum)
    model.to(device)
    if device.type == "cuda":  # TF32 matmuls and convolutions: float32 range, ~8x the throughput
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = cfg.tf32
    precision = resolve_precision(cfg.precision, device)
    optimizer = build_optimizer(model, cfg.learning_rate(), cfg.decay(), cfg.adam_eps,
                                fused=cfg.fused_adamw and device.type == "cuda")
    scheduler = build_scheduler(optimizer, total_steps, cfg.warmup_ratio)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    scaler = torch.amp.GradScaler(device.type, enabled=precision == torch.float16)

    start = 0
    last = _resume_point(work, producer, dist) if resume else None
    if last is not None:
        start = ckpt.load_checkpoint(last, model, optimizer, scheduler, rank=dist.rank, scaler=scaler)["step"]
        if dist.is_main:
            print(f"resumed from step {start} of {total_steps} (checkpoint {last})", flush=True)
    if start >= total_steps:
        return FitResult(total_steps, start, float("nan"), 0.0)

    train_model = model
    if cfg.grad_checkpointing:
        model.gradient_checkpointing_enable()
    if dist.enabled:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            # per-task modules of the other tasks get no gradient in a batch; without any,
            # DDP's search for unused parameters is a wasted pass over the graph every step
            find_unused_parameters=_find_unused(cfg, prefix))
    if cfg.compile:
        # the language model in place (Module.compile: parameter names, hence checkpoints and
        # saved weights, stay as they are); shapes vary per batch, so dynamic
        getattr(model, "lm", model).compile(dynamic=True)

    if dist.local_rank == 0:  # one sequential pass per machine; random reads then hit memory
        features.warm([td.records[0] for td in data.values()])
    builder = BatchBuilder(data, tokenizer, features, prefix=prefix, seed=cfg.seed, rank=dist.rank,
                           world_size=dist.world_size, model_task=model_task)
    specs = sampler.plan(start * accum, total_steps * accum)  # lazy: one epoch's order at a time
    loader = torch.utils.data.DataLoader(builder, batch_size=None, sampler=specs, num_workers=cfg.num_workers,
                                         pin_memory=device.type == "cuda", worker_init_fn=ignore_stop_signals,
                                         # its own generator: the loader's seed draw must not
                                         # shift the global RNG that dropout (and resume) use
                                         generator=torch.Generator().manual_seed(cfg.seed))
    live = _live(work, resume=start > 0) if dist.is_main else None
    autocast = torch.autocast(device_type=device.type, dtype=precision or torch.float32,
                              enabled=precision is not None)

    model.train()
    pending: list[tuple[BatchSpec, torch.Tensor]] = []  # (spec, summed stats) not yet read on the host
    window: dict[str, list[float]] = defaultdict(list)
    grad_norms: list[torch.Tensor] = []
    last_loss = float("nan")
    step = start
    bar = tqdm(total=total_steps, initial=start, desc=f"train {run_name(work)}", disable=not dist.is_main,
               dynamic_ncols=True)
    optimizer.zero_grad(set_to_none=True)
    with StopSignals() as stop:
        for micro, (spec, batch) in enumerate(zip(specs, loader), start * accum):
            batch = to_device(batch, device, non_blocking=True)
            sync = (micro + 1) % accum == 0
            no_sync = train_model.no_sync() if dist.enabled and not sync else contextlib.nullcontext()
            with no_sync:
                with autocast:
                    weighted, losses = forward_loss(train_model, batch)
                # DDP averages gradients over ranks: scale so the result is the global-batch mean
                loss = weighted * dist.world_size / batch["n_global"] / accum
                # the sum over ranks of (weighted loss, loss, rows): device tensors only, one
                # all-reduce, read on the host only at logging and checkpoint steps (no per-step sync)
                stats = all_sum(torch.stack([weighted.detach().float(), losses.sum().float(),
                                             torch.ones_like(losses).sum().float()]), dist)
                pending.append((spec, stats))
                scaler.scale(loss).backward()
            if not sync:
                continue
            scaler.unscale_(optimizer)
            # the norm before clipping (inf: no clipping) is logged: it shows the loss scale, which Adam hides
            max_norm = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
            grad_norms.append(torch.nn.utils.clip_grad_norm_(params, max_norm).detach())
            step += 1
            log_now = step % cfg.log_every == 0 or step == total_steps
            checkpoint_now = bool(cfg.checkpoint_every) and step % cfg.checkpoint_every == 0 and step < total_steps
            # every step, every rank agrees whether any was signalled (a one-int all-reduce on
            # the CPU): torchrun kills its workers 30 s after passing a signal on, so the
            # checkpoint cannot wait for the next logging step
            stop_now = any_rank(stop.requested, dist)
            if log_now or checkpoint_now or stop_now:
                _read_window(pending, window, data, work, step, micro)
                pending.clear()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            bar.update(1)
            if log_now:
                last_loss = _log(live, window, grad_norms, scheduler.get_last_lr()[0], step, bar)
                window.clear()
                grad_norms.clear()
            if checkpoint_now or (stop_now and step < total_steps):
                _checkpoint(work, step, step * accum, model, optimizer, scheduler, scaler, cfg, dist, producer)
            if stop_now and step < total_steps:
                bar.close()
                if live is not None:
                    live.end()
                where = ckpt.latest_checkpoint(work)
                raise TrainingInterrupted(f"stopped at step {step} of {total_steps} on {stop.name or 'a signal to another rank'} "
                                          f"(a time limit near?); checkpoint written: {where}; "
                                          "rerun (the workflow passes --resume) to continue from it")
    if pending:
        _read_window(pending, window, data, work, step, micro)
    bar.close()
    if live is not None:
        live.end()
    return FitResult(total_steps, start, last_loss, time.perf_counter() - started)


class TrainingInterrupted(TrainingError):
    """A stop signal ended the run after a checkpoint; rerunning with --resume continues it."""

    exit_code = 75  # EX_TEMPFAIL: try again


class StopSignals:
    """While active, SIGUSR1 and SIGTERM only set a flag: the loop checkpoints and stops.

    SLURM sends ``--signal=TERM@<seconds>`` before a job's time limit to every process of
    the job step: torchrun, its workers and their DataLoader workers, which ignore it
    (:func:`ignore_stop_signals`). Only the main thread can install handlers; elsewhere
    this does nothing.
    """

    SIGNALS = ("SIGUSR1", "SIGTERM")

    def __init__(self):
        self.requested = False
        self.name = ""
        self._previous: dict = {}

    def _handle(self, signum, frame):
        self.requested = True
        self.name = signal.Signals(signum).name

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                sig = getattr(signal, name)
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: a stop signal sent to the whole process group (SLURM's
    warning) must not end a loader worker, or the loop fails ("DataLoader worker exited
    unexpectedly") before it can checkpoint; the main process stops the workers itself."""
    for name in StopSignals.SIGNALS:
        signal.signal(getattr(signal, name), signal.SIG_IGN)


def _find_unused(cfg: TrainConfig, prefix: bool) -> bool:
    if cfg.find_unused_parameters != "auto":
        return bool(cfg.find_unused_parameters)
    return not prefix  # task-specific modules: those of the batch's other tasks stay unused


NO_CHECKPOINT, STALE = -1, -2


def _resume_point(work: Path, producer: dict | None, dist: DistInfo) -> Path | None:
    """The newest checkpoint in ``work`` if the same producer wrote it; else None (the stale
    state is then removed, so the new run's checkpoints do not mix with it).

    The main rank decides and tells the others (a rank that looked for itself could find
    the folder already emptied and skip the collectives the others make); every rank has
    decided before the main rank deletes anything."""
    decision = NO_CHECKPOINT
    if dist.is_main and (last := ckpt.latest_checkpoint(work)) is not None:
        state = ckpt.read_state(last)
        written_by = state.get("producer")
        if producer is None or written_by == producer:
            decision = int(state["step"])
        else:
            decision = STALE
            changed = sorted(k for k in set(producer) | set(written_by or {})
                             if producer.get(k) != (written_by or {}).get(k))
            print(f"not resuming from {last}: its run differs from this one ({', '.join(changed)}); "
                  "starting over", flush=True)
    decision = broadcast_int(decision, dist)
    if decision >= 0:
        return ckpt.checkpoint_dir(work, decision)
    if decision == STALE:
        barrier(dist)
        if dist.is_main:
            for stale in ("checkpoints", "dvclive"):
                shutil.rmtree(work / stale, ignore_errors=True)
        barrier(dist)
    return None


def _read_window(pending, window: dict[str, list[float]], data, work: Path, step: int, micro: int) -> None:
    """Move the pending micro-batch stats to the host (one sync) into ``window``; raise
    TrainingError at the first non-finite loss."""
    rows = torch.stack([s for _, s in pending]).cpu()
    for (spec, _), values in zip(pending, rows):
        if not torch.isfinite(values).all():
            where = ckpt.latest_checkpoint(work)
            raise TrainingError(
                f"non-finite loss at step {step} or before (micro-batch {spec.step} of at most {micro}, task {spec.task}, "
                f"records {[data[spec.task].records[i].uid for i in spec.indices[:8]]}); "
                + (f"last good checkpoint kept: {where}" if where else "no checkpoint written yet")
                + "; lower the learning rate or check the data, then rerun (a changed setting starts over)")
        window[spec.task].append(float(values[1] / values[2]))


def _checkpoint(work, step, micro, model, optimizer, scheduler, scaler, cfg, dist: DistInfo, producer) -> None:
    rngs = gather_tensors(torch.get_rng_state(), dist)
    cuda_rngs = gather_tensors(torch.cuda.get_rng_state(dist.device), dist) if dist.device.type == "cuda" else None
    if dist.is_main:
        ckpt.save_checkpoint(work, step, micro, model, optimizer, scheduler, rngs, keep=cfg.keep_checkpoints,
                             extra={"producer": producer} if producer is not None else None,
                             cuda_rng_states=cuda_rngs, scaler=scaler)
    barrier(dist)


def _live(work: Path, resume: bool):
    """A dvclive logger writing only files under ``<work>/dvclive`` (metrics.json, plots/)."""
    from dvclive import Live

    class FilesOnlyLive(Live):
        # dvclive would otherwise look for a DVC repository and, inside a bare git
        # checkout, run `dvc init` there; the workflow's dvc.yaml tracks these files itself
        def _init_dvc(self):
            self._dvc_file = None

    return FilesOnlyLive(dir=str(work / "dvclive"), resume=resume, save_dvc_exp=False, dvcyaml=None)


def _log(live, window: dict[str, list[float]], grad_norms: list[torch.Tensor], lr: float, step: int, bar) -> float:
    per_task = {t: sum(v) / len(v) for t, v in window.items() if v}
    n = sum(len(v) for v in window.values())
    mean = sum(sum(v) for v in window.values()) / max(1, n)
    bar.set_postfix(loss=f"{mean:.3f}", lr=f"{lr:.2e}")
    if live is not None:
        live.step = step
        live.log_metric("train/loss", mean)
        live.log_metric("train/lr", lr)
        live.log_metric("train/grad_norm", float(torch.stack(grad_norms).mean()) if grad_norms else float("nan"))
        for task, value in sorted(per_task.items()):
            live.log_metric(f"train/loss_{task}", value)
        live.next_step()
    return mean
