"""Multi-task training: sampler, optimiser, schedule, config, resume-after-kill, NaN handling."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import vl_world
from workflow_helpers import kill_at_checkpoint
from vladapter.errors import ConfigError, TrainingError
from vladapter.train.checkpoint import list_checkpoints
from vladapter.core.config import TrainConfig, load_section
from vladapter.train.optim import build_optimizer, parameter_groups, warmup_linear
from vladapter.train.sampler import TaskSampler
from vladapter.train.workdir import work_dir

REPO = Path(__file__).resolve().parents[1]
VLADAPTER = [sys.executable, "-m", "vladapter.cli"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return vl_world.build(tmp_path_factory.mktemp("world"))


def train_args(world, out, *extra):
    return [*VLADAPTER, "train", "--prepared", str(world["prepared"]), "--features", str(world["features"]),
            "--tokenizer", str(world["tokenizer"]), "--tasks", "vqa,nlvr,caption,tvqa", "--batch-size", "6",
            "--n-video-frames", "8", "--lr", "1e-3", "--log-every", "5", "--out", str(out), *extra]


def env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}


# --- sampler --------------------------------------------------------------------------------

def test_sampler_covers_every_example_once_per_epoch_in_task_proportion():
    sampler = TaskSampler({"vqa": 30, "gqa": 12, "nlvr": 5}, {"vqa": 6, "gqa": 4, "nlvr": 2}, seed=3)
    assert sampler.batches_per_epoch == 5 + 3 + 3
    batches = sampler.epoch(0)
    for task, n in (("vqa", 30), ("gqa", 12), ("nlvr", 5)):
        seen = np.concatenate([idx for t, idx in batches if t == task])
        assert sorted(seen.tolist()) == list(range(n))
    assert [t for t, _ in batches] != sorted(t for t, _ in batches)  # tasks are interleaved
    assert [t for t, _ in sampler.epoch(0)] == [t for t, _ in batches]  # deterministic
    assert [t for t, _ in sampler.epoch(1)] != [t for t, _ in batches]  # reshuffled per epoch


def test_sampler_iterate_is_a_slice_of_the_run():
    sampler = TaskSampler({"a": 7, "b": 4}, {"a": 2, "b": 2}, seed=0)
    whole = list(sampler.iterate(0, 20))
    assert [s.step for s in whole] == list(range(20))
    assert list(sampler.iterate(13, 20)) == whole[13:]
    assert whole[6].epoch == 1  # 4 + 2 batches per epoch


def test_lazy_run_plan_is_the_run_slice_computed_as_it_is_walked():
    sampler = TaskSampler({"a": 7, "b": 4}, {"a": 2, "b": 2}, seed=0)
    plan = sampler.plan(3, 17)
    assert len(plan) == 14 and list(plan) == list(sampler.iterate(3, 17)) == list(plan)  # walkable twice


def test_sampler_drops_batches_too_small_for_every_rank():
    sampler = TaskSampler({"a": 5}, {"a": 2}, min_batch=2)
    assert [len(i) for _, i in sampler.epoch(0)] == [2, 2]


# --- optimiser, schedule --------------------------------------------------------------------

def test_no_weight_decay_on_biases_and_layernorms():
    from vladapter.models import build_vl_model

    model = build_vl_model("tiny-bart", feat_dim=8, n_vis_tokens=4, vocab_size=50)
    decay, no_decay = parameter_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 0.01
    norm_weights = {f"{m}.weight" for m, mod in model.named_modules() if isinstance(mod, torch.nn.LayerNorm)}
    assert no_decay_names == norm_weights | {n for n, _ in model.named_parameters() if n.endswith("bias")}
    assert "visual.feat.1.weight" in no_decay_names  # the visual embedding's LayerNorm
    assert "lm.model.encoder.layers.0.self_attn_layer_norm.weight" in no_decay_names
    assert "lm.model.encoder.layers.0.fc1.bias" in no_decay_names
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    opt = build_optimizer(model, 1e-3)
    assert opt.defaults["eps"] == 1e-6


def test_warmup_then_linear_decay():
    f = warmup_linear(100, 0.1)
    assert [f(0), f(5), f(10), f(55), f(100)] == pytest.approx([0.0, 0.5, 1.0, 0.5, 0.0])


# --- configuration --------------------------------------------------------------------------

def test_config_section_flags_and_unknown_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  steps: 300\n  batch_size: 32\n  lr: {default: 1.0e-3, full_finetuning: 1.0e-4}\n"
                    "  video: {steps: 200, batch_size: 16}\n")
    cfg = load_section(path, "train", TrainConfig, {"method": "full_finetuning"})
    assert (cfg.steps, cfg.batch_size, cfg.learning_rate()) == (300, 32, 1e-4)
    video = load_section(path, "train", TrainConfig, {"tasks": ["tvqa", "tvc"], "batch_size": 8})
    assert (video.steps, video.batch_size) == (200, 8)  # video overrides, then flags
    path.write_text("train:\n  stepz: 3\n  batch_size: 2\n")
    with pytest.raises(ConfigError, match="stepz"):
        load_section(path, "train", TrainConfig)
    path.write_text("train:\n  steps: 3\n  qa_target: pointer\n")
    with pytest.raises(ConfigError, match="qa_target must be index or text"):
        load_section(path, "train", TrainConfig)


def test_lr_and_batch_size_per_method_and_per_lm(tmp_path):
    # a later method's recipe differs per LM (VL-PET: BART 1e-3 / 500, T5 3e-4 / 300)
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  steps: 3\n  lr: {default: 1.0e-3, vl_pet_large: {default: 1.0e-3, t5-base: 3.0e-4}}\n"
                    "  batch_size: {default: 500, dora: 300, vl_pet_large: {default: 500, t5-base: 300}}\n")
    t5 = load_section(path, "train", TrainConfig, {"method": "vl_pet_large", "lm": "google-t5/t5-base"})
    bart = load_section(path, "train", TrainConfig, {"method": "vl_pet_large", "lm": "facebook/bart-base"})
    dora = load_section(path, "train", TrainConfig, {"method": "dora", "lm": "t5-base"})
    other = load_section(path, "train", TrainConfig, {"method": "single_adapter", "lm": "t5-base"})
    assert [(c.lr, c.batch_size) for c in (t5, bart, dora, other)] == [(3e-4, 300), (1e-3, 500), (1e-3, 300),
                                                                       (1e-3, 500)]
    # LST's recipe has its own weight decay (0.03); a negative one is refused, naming the key
    path.write_text("train:\n  steps: 3\n  weight_decay: {default: 0.01, lst: 0.03}\n")
    lst = load_section(path, "train", TrainConfig, {"method": "lst", "lm": "t5-base"})
    assert (lst.weight_decay, load_section(path, "train", TrainConfig, {"method": "dora"}).weight_decay) == (0.03, 0.01)
    # steps per method too (null: epochs decide); a fraction is refused naming the method
    path.write_text("train:\n  steps: {default: 300, lst: {default: 1200, tiny-bart: 900}}\n")
    assert [load_section(path, "train", TrainConfig, {"method": m, "lm": lm}).steps
            for m, lm in (("lst", "tiny-t5"), ("lst", "tiny-bart"), ("dora", "tiny-t5"))] == [1200, 900, 300]
    # a bad value in a per-method table is refused, naming the key and the method
    refused = {"steps: {default: 300, lst: 2.5}": "train.steps of lst: 2.5 must be a whole number",
               "steps: 3\n  weight_decay: {default: 0.01, lst: -0.1}": "train.weight_decay of lst: -0.1 must be",
               "steps: 3\n  batch_size: {dora: 300}": "train.batch_size must be a number or a mapping with a 'default'",
               "steps: 3\n  batch_size: {default: 2.5}": "batch_size of lst: 2.5 is not a whole number"}
    for text, message in refused.items():
        path.write_text(f"train:\n  {text}\n")
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_section(path, "train", TrainConfig, {"method": "lst"})


def test_fp16_with_grad_scaler_and_gradient_checkpointing_train(world, tmp_path):
    """The options for GPUs without bf16 and for memory, on CPU autocast: a run that learns."""
    run = tmp_path / "fp16"
    subprocess.run(train_args(world, run, "--steps", "3", "--checkpoint-every", "0", "--precision", "fp16",
                              "--grad-checkpointing", "true", "--tasks", "vqa"), check=True, env=env(),
                   capture_output=True)
    info = json.loads((run / "train.json").read_text())
    assert info["config"]["precision"] == "fp16" and np.isfinite(info["final_loss"])


def test_precision_auto_is_fp16_on_a_gpu_without_native_bf16(monkeypatch):
    """A V100 (compute capability 7.0) reports bf16 as supported when emulation counts; auto
    must take fp16 (with the GradScaler) there, and bf16 on an A100 (8.0)."""
    from vladapter.core.model import resolve_precision

    capability = {"value": (7, 0)}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability["value"])
    # torch's rule: native from 8.0 on; below that, emulated bf16 counts unless told not to
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: capability["value"] >= (8, 0) or including_emulation)
    gpu = torch.device("cuda", 0)
    assert resolve_precision("auto", gpu) == torch.float16
    capability["value"] = (8, 0)
    assert resolve_precision("auto", gpu) == torch.bfloat16
    assert resolve_precision("auto", torch.device("cpu")) is None
    assert resolve_precision("bf16", gpu) == torch.bfloat16  # asked for: taken as it is


def test_checkpoint_keeps_the_grad_scaler_state(tmp_path):
    """An fp16 run resumes with the loss scale it had (a fresh scaler starts at 2^16 and
    overflows, skipping steps, until it has backed off again)."""
    from vladapter.train import checkpoint as ckpt
    from vladapter.train.optim import build_scheduler

    model = torch.nn.Linear(3, 2)
    optimizer = build_optimizer(model, 1e-3, 0.0, 1e-8)
    scheduler = build_scheduler(optimizer, 10, 0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=5)
    for _ in range(3):  # three good steps: the growth tracker counts them
        scaler.scale(model(torch.ones(1, 3)).sum()).backward()
        scaler.step(optimizer)
        scaler.update()
    scaler.update(new_scale=256.0)
    saved = scaler.state_dict()
    path = ckpt.save_checkpoint(tmp_path, 3, 3, model, optimizer, scheduler, [torch.get_rng_state()], scaler=scaler)
    fresh = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=5)
    ckpt.load_checkpoint(path, model, optimizer, scheduler, scaler=fresh)
    assert fresh.state_dict() == saved and saved["scale"] == 256.0 and saved["_growth_tracker"] == 3


def test_a_task_batch_smaller_than_the_processes_is_refused():
    """NLVR2's batch is 20/60 of the base: base 32 on 16 GPUs gives 11 rows, and 5 ranks would
    get none. The workflow's config check refuses it, naming the key, the task and the fix."""
    import copy

    import yaml

    import stand_ins
    from vladapter import experiments
    from workflow_helpers import published_configs_home

    config = yaml.safe_load((REPO / "config" / "paper-image.yaml").read_text())
    with stand_ins.offline_hub(published_configs_home()):  # offline, the paper's LMs in the HF cache
        experiments.check_config(config)
        config = copy.deepcopy(config)
        config["train"]["batch_size"] = 32
        config["resources"]["train"].update(gpu=8, nodes=2)
        with pytest.raises(ConfigError, match=r"train\.batch_size: 32 gives batches of fewer rows than the 16 "
                                              r"processes training together \(nlvr 11;.*at least 47"):
            experiments.check_config(config)
        config["train"]["batch_size"] = 47
        experiments.check_config(config)
    # the same check in every training process (a torchrun started by hand)
    from vladapter.core.config import check_world_size

    with pytest.raises(ConfigError, match=r"batch_size: 1 .* than the 4 processes .*\(gqa 2, vqa 1;"):
        check_world_size({"vqa": 1.0, "gqa": 100 / 60}, 1, 4)


# --- end to end: resume after a kill, NaN ---------------------------------------------------

RESUMABLE = ["--steps", "24", "--checkpoint-every", "4", "--keep-checkpoints", "2"]


@pytest.fixture(scope="module")
def uninterrupted(world, tmp_path_factory):
    """The weights of a run that nothing stopped."""
    full = tmp_path_factory.mktemp("full") / "run"
    subprocess.run(train_args(world, full, *RESUMABLE), check=True, env=env(), capture_output=True)
    return load_file(full / "adapter.safetensors")


def assert_same_weights(a: dict, run: Path) -> None:
    b = load_file(run / "adapter.safetensors")
    assert a.keys() == b.keys() and len(a) > 10
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_after_kill_equals_uninterrupted_run(world, tmp_path, uninterrupted):
    common = RESUMABLE
    killed = tmp_path / "killed"
    kill_at_checkpoint(train_args(world, killed, *common), env(), killed)
    assert list_checkpoints(work_dir(killed)), "no checkpoint before the kill"

    resumed = subprocess.run(train_args(world, killed, *common, "--resume"), check=True, env=env(),
                             capture_output=True, text=True)
    assert "resumed from step" in resumed.stdout
    assert_same_weights(uninterrupted, killed)
    assert not work_dir(killed).exists()  # a finished run keeps only its result


@pytest.mark.faults
def test_stop_signal_checkpoints_and_exits_so_a_rerun_continues(world, tmp_path, uninterrupted):
    """SLURM's warning before a time limit (--signal=TERM@...): checkpoint now, exit 75,
    resume later. (SIGUSR1 is handled the same way.) SLURM signals every process of the job
    step, the 2 DataLoader workers too: they carry on (a worker that died made the run fail
    before it could checkpoint)."""
    sig = signal.SIGTERM
    run = tmp_path / "run"
    proc = subprocess.Popen(train_args(world, run, *RESUMABLE, "--num-workers", "2"), env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list_checkpoints(work_dir(run)):
        time.sleep(0.05)
    os.killpg(proc.pid, sig)  # the whole process group: the run and its loader workers
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err[-2000:]
    stopped = re.search(rf"stopped at step (\d+) of 24 on {sig.name}", err)
    assert stopped and "Traceback" not in err, err[-2000:]
    assert list_checkpoints(work_dir(run))[-1].name == f"step-{int(stopped.group(1)):07d}"
    assert not (run / "train.json").exists()

    resumed = subprocess.run(train_args(world, run, *RESUMABLE, "--resume"), check=True, env=env(),
                             capture_output=True, text=True)
    assert f"resumed from step {stopped.group(1)} of 24" in resumed.stdout
    assert_same_weights(uninterrupted, run)


def test_nan_loss_stops_with_training_error_and_keeps_checkpoint(world, tmp_path):
    from vladapter.train.run import train

    # an absurd learning rate: the first step's update overflows the weights (NaN features,
    # the other way to a NaN loss, are refused where they are read: test_badinput)
    cfg = TrainConfig(tasks=["vqa", "nlvr"], prepared=str(world["prepared"]), features=str(world["features"]),
                      tokenizer=str(world["tokenizer"]), steps=30, batch_size=6, checkpoint_every=1, lr=1e15)
    torch.set_num_threads(1)
    with pytest.raises(TrainingError, match=r"non-finite loss at step \d+ .*task (vqa|nlvr)") as err:
        train(cfg, tmp_path / "run")
    # the batches before the first VQA batch (seed 0: NLVR2's) were checkpointed, and the
    # error names the last of them
    failed_at = int(re.search(r"at step (\d+)", str(err.value)).group(1))
    kept = list_checkpoints(work_dir(tmp_path / "run"))
    assert failed_at > 1 and kept, str(err.value)
    assert int(kept[-1].name.split("-")[-1]) == failed_at - 1 and str(kept[-1]) in str(err.value)
    assert not (tmp_path / "run" / "adapter.safetensors").exists()
