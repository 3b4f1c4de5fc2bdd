"""Kills and second writers under the real workflow: a training job SIGKILLed mid-run
resumes from its checkpoint when Snakemake is rerun, and ends with the weights of an
uninterrupted run; a run folder being written by another process is refused clearly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from vladapter.train.checkpoint import list_checkpoints
from vladapter.train.workdir import run_lock, work_dir
from workflow_helpers import copy_workflow, snakemake, snakemake_env

pytestmark = [pytest.mark.faults, pytest.mark.slow]

RUN = Path("models/tiny-t5/image-single_adapter-nopt")
MODEL = RUN / "seed-0"  # the run's one seed (faults.yaml): its model and, beside the run, its work folder
LOG = Path("logs/train/tiny-t5/image-single_adapter-nopt.log")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """The smoke workflow cut to one image run (no pre-training, no video), with a training
    job long enough to be killed after its first checkpoints; its inputs already built."""
    work = copy_workflow(tmp_path_factory.mktemp("faults"))
    config = yaml.safe_load((work / "config" / "smoke.yaml").read_text())
    config["datasets"] = {"image": ["vqav2"], "video": []}
    config["methods"] = {"image": ["single_adapter"], "video": []}
    config["pretrain"].update(enabled=False, matching={"enabled": False}, video={"enabled": False})
    config["train"].update(steps=16, checkpoint_every=2, keep_checkpoints=1, seeds=[0])
    (work / "faults.yaml").write_text(yaml.safe_dump(config))
    inputs = ["data/features/coco.toyclip-resnet.h5", "models/tokenizer", "data/prepared/vqav2/train.jsonl"]
    snakemake(work, "--configfile=faults.yaml", *inputs, timeout=600)
    return work


def _start(work: Path, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "snakemake", "--profile", "profiles/default", "--configfile=faults.yaml", *args]
    return subprocess.Popen(cmd, cwd=work, env=snakemake_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # its own process group: killed with its jobs


def test_killed_training_job_resumes_from_its_checkpoint_to_the_uninterrupted_weights(work):
    proc = _start(work, str(RUN))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list_checkpoints(work_dir(work / MODEL)) and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # snakemake and its job at once, like a lost node
    proc.wait()
    assert not (work / MODEL / "train.json").exists(), "the job finished before it could be killed"
    killed_at = list_checkpoints(work_dir(work / MODEL))
    assert killed_at, "no checkpoint before the kill"

    snakemake(work, "--unlock", "--configfile=faults.yaml")
    snakemake(work, "--configfile=faults.yaml", str(RUN))  # the profile reruns incomplete jobs
    log = (work / LOG).read_text()
    assert f"resumed from step {int(killed_at[-1].name.split('-')[1])} of 16" in log
    resumed = load_file(work / MODEL / "adapter.safetensors")
    assert not work_dir(work / MODEL).exists()  # a finished run keeps only its result

    snakemake(work, "--configfile=faults.yaml", f"--forcerun={RUN}", str(RUN))
    assert "resumed from" not in (work / LOG).read_text()
    uninterrupted = load_file(work / MODEL / "adapter.safetensors")
    assert resumed.keys() == uninterrupted.keys() and len(resumed) > 10
    for name in resumed:
        assert torch.equal(resumed[name], uninterrupted[name]), name


def test_a_second_writer_is_refused_with_a_clear_message(work):
    # a process holding the run's lock, like a job left running after snakemake was killed
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from vladapter.train.workdir import "
         "run_lock; lock = run_lock(Path(sys.argv[1])); lock.__enter__(); print('locked', flush=True); "
         "time.sleep(120)", str(work_dir(work / MODEL))],
        stdout=subprocess.PIPE, text=True, env=snakemake_env())
    try:
        assert holder.stdout.readline().strip() == "locked"
        proc = snakemake(work, "--configfile=faults.yaml", f"--forcerun={RUN}", str(RUN), check=False)
        assert proc.returncode != 0
        log = (work / LOG).read_text()
        assert f"is being written by pid {holder.pid}" in log and "Traceback" not in log
    finally:
        holder.kill()
        holder.wait()
    with run_lock(work_dir(work / MODEL)):  # the lock died with its holder
        pass
